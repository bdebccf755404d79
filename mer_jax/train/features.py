"""The features pass: frozen CLIP/HuBERT over every clip once, streamed into feature shards.

`ensure_features(config, splits)` is what every mode calls first; `mode=features` runs it
alone (`python -m mer_jax.main --config=configs/sft.py:paper --config.mode=features`).

  1. Fingerprint: the encoders' weights (content, not path), their settings and every
     preprocessing setting of `config.data` (`input_pipeline.features`); its hash names
     the directory `<data.features_dir>/<key>/`.
  2. Which clips are missing: those without an entry in the manifest, or whose media
     files changed since (`Manifest.covers`). All processes must agree (checked).
  3. The missing clips are cut into shards of `data.features_shard_clips`; process i
     takes shards i, i + N, ... . Each process decodes its clips in a pool of
     `data.decode_workers` processes (a bounded window: memory O(batch)), runs the
     encoders on its own devices in batches of `data.features_batch_size`, and writes
     each shard with its sidecar when it is complete (a rerun keeps finished shards).
  4. Process 0 merges the sidecars into manifest.json; every process then checks that
     it reads the same manifest (a host that sees other data fails).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import itertools
import json
import multiprocessing
import os
import time
from typing import Iterator, Mapping, Sequence

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
from tqdm import tqdm

from input_pipeline import decode
from input_pipeline import features as features_lib
from input_pipeline import readers
from input_pipeline import synthmer
from mer_jax import run_io
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib

# Splits the features pass covers for each role of a run (readers.RELEASED_SPLITS names
# the released files of each split).
SPLITS = {
    "synthmer": {"sft": "sft", "rl": "rl", "eval": "eval", "val": "val"},
    "released": {"sft": "train", "rl": "rl", "eval": "eval", "val": "val"},
}


def split_of(config, role: str) -> str:
  """The split a role reads; the `eval` role reads the validation split with
  `eval.split='validation'` (choosing settings), else the held-out split."""
  if role == "eval" and config.eval.get("split", "heldout") == "validation":
    role = "val"
  return SPLITS[config.data.source][role]


def fingerprint(config) -> dict:
  """Everything a clip's features depend on besides its media (module docstring)."""
  m = config.model
  vision_cfg, audio_cfg = policy_lib.encoder_configs(config)
  return {
      "format": features_lib.FORMAT,
      "vision": {
          "weights": policy_lib.weights_fingerprint(config, "vision"),
          "arch": vision_cfg.to_hf_dict(),
      },
      "audio": {
          "weights": policy_lib.weights_fingerprint(config, "audio"),
          "arch": audio_cfg.to_hf_dict(),
          "num_last_layers": int(m.audio.num_last_layers),
      },
      "dtype": {"compute": m.dtype, "weights": m.frozen_dtype},
      "preprocessing": features_lib.preprocessing_settings(config),
      "pipeline": decode.PIPELINE_VERSION,
  }


def features_dir(config, fp: Mapping | None = None) -> str:
  """`<data.features_dir or the default cache>/<fingerprint key>`."""
  root = config.data.features_dir or features_lib.default_root()
  return str(root).rstrip("/") + "/" + features_lib.fingerprint_key(fp or fingerprint(config))


def _digest(obj) -> np.ndarray:
  blob = json.dumps(obj, sort_keys=True, default=str).encode()
  return np.frombuffer(hashlib.sha256(blob).digest()[:16], np.uint8)


def check_same_on_all_processes(what: str, obj) -> None:
  """Fails on every process when process i sees another `obj` than process 0."""
  if jax.process_count() == 1:
    return
  digests = np.asarray(multihost_utils.process_allgather(_digest(obj)))
  differ = [i for i in range(len(digests)) if not np.array_equal(digests[i], digests[0])]
  if differ:
    raise RuntimeError(
        f"process(es) {differ} see other {what} than process 0: every host must read the "
        "same data files and the same features_dir (shared storage)"
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(vision, audio, params, frames, clips):
  return vision.apply({"params": params["vision"]}, frames), audio.apply(
      {"params": params["audio"]}, clips
  )


def encode(encoders: policy_lib.Encoders, frames, clips) -> tuple[jax.Array, jax.Array]:
  """Frozen features of a batch: frames [B, F, 3, S, S] -> [B, F, Dv], clips [B, C, L] -> [B, C, Da]."""
  return _encode(encoders.vision, encoders.audio, encoders.params, frames, clips)


def _decoded(data, jobs: Sequence, workers: int, window: int) -> Iterator[dict]:
  """`features_lib.decode_clip` of each job, in order; at most `window` decoded ahead."""
  if workers == 0:
    for clip, sample in jobs:
      yield features_lib.decode_clip(data, clip, sample)
    return
  ctx = multiprocessing.get_context("spawn")  # never fork a process that runs JAX
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
    todo = iter(jobs)
    pending = collections.deque(
        pool.submit(features_lib.decode_clip, data, *job) for job in itertools.islice(todo, window)
    )
    while pending:
      result = pending.popleft().result()
      job = next(todo, None)
      if job is not None:
        pending.append(pool.submit(features_lib.decode_clip, data, *job))
      yield result


def _pass_id(clips: Sequence[features_lib.Clip]) -> str:
  """Names a pass over `clips` (its shard `j` is `<id>-<j:05d>`): a hash of the clips and
  their media files' size and mtime, so a pass over replaced media never reuses an id."""
  h = hashlib.sha256()
  for clip in clips:
    h.update(clip.name.encode() + b"\0")
    for kind, path in sorted(clip.paths.items()):
      st = os.stat(path) if path and os.path.exists(path) else None
      h.update(f"{kind}:{st and (st.st_size, st.st_mtime_ns)}\0".encode())
  return h.hexdigest()[:12]


def encode_clips(config, clips: Sequence[features_lib.Clip], out_dir: str) -> dict:
  """Encodes this process's shards of `clips` into `out_dir` (step 3 of the module docstring)."""
  data = config.data
  per_shard = int(data.features_shard_clips)
  shards = [clips[i : i + per_shard] for i in range(0, len(clips), per_shard)]
  mine = [
      (j, shard) for j, shard in enumerate(shards) if j % jax.process_count() == jax.process_index()
  ]
  stats = {"encoded": 0, "skipped": 0, "shards": len(mine)}
  if not mine:
    return stats
  devices = jax.local_devices()
  mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1}, devices)
  with run_io.activity("features: loading the frozen encoders"):
    encoders = policy_lib.build_encoders(config, mesh)
  batch_size = -(-int(data.features_batch_size) // len(devices)) * len(devices)

  generated = {}
  if data.source == "synthmer":  # generated media: the (cached) split, memory-mapped
    for split in sorted({c.split for clip_list in shards for c in clip_list}):
      generated.update({s["name"]: s for s in synthmer.generate_split(data, split)})
  jobs = [(clip, generated.get(clip.name)) for _, shard in mine for clip in shard]
  owner = [j for j, shard in mine for _ in shard]
  remaining = {j: len(shard) for j, shard in mine}
  pass_id = _pass_id(clips)
  writers = {j: features_lib.ShardWriter(out_dir, f"{pass_id}-{j:05d}") for j, _ in mine}
  workers = int(data.decode_workers)
  bar = tqdm(total=len(jobs), desc="features", unit="clip", disable=jax.process_index() != 0)
  pending: list[tuple[int, dict]] = []

  def flush():
    n = len(pending)
    stack = lambda key: np.stack(
        [r[key] for _, r in pending] + [pending[-1][1][key]] * (batch_size - n)
    )
    frames = jax.device_put(stack("frames"), mesh_lib.batch_sharding(mesh, 5, rows=batch_size))
    audio = jax.device_put(stack("audio"), mesh_lib.batch_sharding(mesh, 3, rows=batch_size))
    v, a = encode(encoders, frames, audio)
    v, a = np.asarray(v), np.asarray(a)
    for i, (j, r) in enumerate(pending):
      writers[j].add(r["name"], r["media"], v[i], a[i])
      finish(j)
    stats["encoded"] += n
    bar.update(n)
    pending.clear()

  def finish(j):
    remaining[j] -= 1
    if remaining[j] == 0:
      writers.pop(j).close()

  window = 2 * max(workers, 1) + batch_size
  for j, result in zip(owner, _decoded(data, jobs, workers, window), strict=True):
    if "skip" in result:
      writers[j].skip(result["name"], result["media"], result["skip"])
      stats["skipped"] += 1
      bar.update(1)
      finish(j)
      continue
    pending.append((j, result))
    if len(pending) == batch_size:
      flush()
  if pending:
    flush()
  bar.close()
  return stats


def ensure_features(
    config, clips_by_split: Mapping[str, Sequence[str]]
) -> tuple[str, features_lib.Manifest]:
  """(features directory, manifest) covering every named clip; encodes what is missing.

  `clips_by_split`: split -> clip names (in a fixed order). Every process must call it with
  the same names.
  """
  clips = [
      clip
      for split, names in clips_by_split.items()
      for clip in features_lib.clips_of_split(config.data, split, names)
  ]
  return ensure_clip_features(config, clips)


def ensure_clip_features(
    config, clips: Sequence[features_lib.Clip]
) -> tuple[str, features_lib.Manifest]:
  """`ensure_features` of explicit clips (their own media paths, e.g. MER-UniBench's)."""
  t0 = time.time()
  fp = fingerprint(config)
  out_dir = features_dir(config, fp)
  manifest = features_lib.load_manifest(out_dir, fp)
  seen, todo = set(), []
  for clip in clips:
    if clip.name not in seen and not manifest.covers(clip):
      todo.append(clip)
    seen.add(clip.name)
  check_same_on_all_processes("clips to encode", [c.name for c in todo])
  if todo:
    logging.info(
        "features: encoding %d of %d clips into %s (%d process(es))",
        len(todo),
        len(seen),
        out_dir,
        jax.process_count(),
    )
    stats = encode_clips(config, todo, out_dir)
    mesh_lib.wait_for_processes("features_written")
    if jax.process_index() == 0:
      features_lib.write_manifest(out_dir, fp)
    mesh_lib.wait_for_processes("features_manifest")
    manifest = features_lib.load_manifest(out_dir, fp)
    logging.info(
        "features: this process encoded %d clips, skipped %d (%d shards) in %.1fs (%.1f clips/s)",
        stats["encoded"],
        stats["skipped"],
        stats["shards"],
        time.time() - t0,
        (stats["encoded"] + stats["skipped"]) / max(time.time() - t0, 1e-9),
    )
  missing = [
      c.name for c in clips if c.name not in manifest.clips and c.name not in manifest.skipped
  ]
  if missing:
    raise RuntimeError(
        f"{out_dir}: no features or skip entry for {len(missing)} clips, e.g. {missing[:3]}"
    )
  check_same_on_all_processes(f"features manifests in {out_dir}", manifest.digest())
  # A store this process opened earlier may predate clips that this pass or another job
  # sharing the directory encoded since: reopen it from the manifest just read.
  features_lib.forget_store(out_dir)
  return out_dir, manifest


def data_roles(config) -> tuple[str, ...]:
  """The roles whose splits the data config names (what `mode=features` covers)."""
  if config.data.source == "synthmer":
    return ("sft", "rl", "eval", "val")
  return tuple(role for role, split in SPLITS["released"].items() if split_named(config, split))


def split_named(config, split: str) -> bool:
  """Whether the data config names the labels file of a released split."""
  return bool(config.data.get(readers.RELEASED_SPLITS[split][1]))


def data_key(out_dir: str, samples: Sequence[Mapping], manifest: features_lib.Manifest) -> str:
  """16 hex digits naming a role's data: its features setting, and each clip's text
  fields, gold and features entry (media stamps). Phase caches are keyed by it."""
  rows = [
      [s["name"], s.get("labels"), s.get("reason"), s.get("subtitle"), manifest.clips[s["name"]]]
      for s in samples
  ]
  return features_lib.fingerprint_key(
      {"features": out_dir.rstrip("/").rsplit("/", 1)[-1], "clips": rows}
  )


def prepare(config, roles: Sequence[str]) -> tuple[str, dict, dict]:
  """(features directory, role -> text samples with features, summary of the data).

  Reads the text of each role's split (no media), makes sure the features cover every
  clip (`ensure_features`), and drops the clips the features pass skipped (their reasons
  go to the summary, as `readers.data_summary` reports them). The summary's `keys` holds
  each role's `data_key`.
  """
  splits = {role: split_of(config, role) for role in roles}
  texts = {}
  for split in sorted(set(splits.values())):
    with run_io.activity(f"data: reading the {split} split ({config.data.source})"):
      texts[split] = readers.load_texts(config, split)
  check_same_on_all_processes(
      "data files", {split: [s["name"] for s in t] for split, t in sorted(texts.items())}
  )
  out_dir, manifest = ensure_features(
      config, {split: [s["name"] for s in t] for split, t in texts.items()}
  )
  samples, summary, keys = {}, {}, {}
  for role, split in splits.items():
    kept = [s for s in texts[split] if s["name"] in manifest.clips]
    keys[role] = data_key(out_dir, kept, manifest)
    skipped = [
        {"name": s["name"], "reason": manifest.skipped[s["name"]]["reason"]}
        for s in texts[split]
        if s["name"] in manifest.skipped
    ]
    samples[role] = kept
    summary[role] = (kept, skipped)
    logging.info("data: %s split has %d samples (%d skipped)", role, len(kept), len(skipped))
  return out_dir, samples, dict(readers.data_summary(**summary), keys=keys)


def run(config, workdir: str, writer) -> dict:
  """Mode `features`: the features of every split the data config names."""
  del workdir
  t0 = time.time()
  out_dir, samples, data_summary = prepare(config, data_roles(config))
  result = {
      "dir": out_dir,
      "num_samples": {role: len(s) for role, s in samples.items()},
      "num_skipped": len(data_summary["skipped"]),
      "seconds": time.time() - t0,
  }
  writer.update_summary("data", data_summary)
  writer.update_summary("features", result)
  logging.info("features: %s", result)
  return result
