r"""Predictions on new clips with a trained or released AffectGPT checkpoint.

    python -m mer_jax.predict --config=configs/eval.py:paper \
        --config.checkpoint.init_from=CKPT [--video a.mp4 b.mp4 ...] [--subtitle "..."] \
        [--output preds.csv]

CKPT is one of our checkpoint step directories or a released `checkpoint_*.pth`. With
`--video`, each file is one clip named by its stem: frames from the video (frame mode;
face mode reads OpenFace crops from `<stem>.npy` next to it), audio from `<stem>.wav` next
to it or else the video's own audio track, subtitle from `--subtitle` (one for all, or one
per video) or empty. Without `--video`, every clip of the released layout under
`config.data.root` is read (names from `config.data.eval_labels_csv` when set, else every
`video/*.mp4`), subtitles from `config.data.subtitles_csv`.

Each clip gets the OV question; the answer is generated as `config.eval.decoding` says
(`official` = the released sampling settings and post-processing). Writes, in the released
formats that `python -m mer_jax.evaluate` reads:
  OUTPUT                 name,openset  (the labels parsed from each answer)
  OUTPUT stem-reason.csv name,reason   (the answer text)
  OUTPUT stem-skipped.csv name,reason  (clips that could not be read, and why)
"""

from __future__ import annotations

import csv
import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
from tqdm import tqdm

from input_pipeline import datasets
from input_pipeline import decode
from input_pipeline import readers
from input_pipeline import tokenization
from mer_jax import config_lib
from mer_jax.decode import generation
from mer_jax.decode import layout as layout_lib
from mer_jax.hf import export
from mer_jax.train import context as context_lib
from mer_jax.train import evaluation
from mer_jax.train import features as features_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib
from mer_jax.train import state as state_lib

_FLAGS: dict = {}  # defined by `_define_flags` when run as a program


def _clip_from_video(data, path: str, subtitle: str) -> dict:
  stem = os.path.splitext(path)[0]
  wav = stem + ".wav"
  media = readers.read_media(data, path, stem + ".npy", wav if os.path.exists(wav) else None)
  return {"name": os.path.basename(stem), "subtitle": subtitle, **media}


def _released_names(data) -> list[str]:
  labels = data.eval_labels_csv
  if labels:
    path = labels if os.path.isabs(labels) else os.path.join(data.root, labels)
    return list(readers.read_gold(path))
  video_dir = os.path.join(data.root, "video")
  face_dir = os.path.join(data.root, "openface_face")
  if data.face_or_frame == "face" and os.path.isdir(face_dir):
    return sorted(os.listdir(face_dir))
  if not os.path.isdir(video_dir):
    raise ValueError(
        f"config.data.root={data.root!r} has no video/ directory; pass --video or set "
        "config.data.eval_labels_csv"
    )
  return sorted(os.path.splitext(f)[0] for f in os.listdir(video_dir) if f.endswith(".mp4"))


def read_clips(config, videos=(), subtitles=()) -> tuple[list[dict], list[dict]]:
  """(clips, skipped): decoded clips and {'name', 'reason'} for each unreadable one."""
  d = config.data
  clips, skipped = [], []
  if videos:
    if len(subtitles) not in (0, 1, len(videos)):
      raise ValueError(
          f"--subtitle: give one, or one per --video ({len(videos)}), not {len(subtitles)}"
      )
    subs = list(subtitles) * len(videos) if len(subtitles) == 1 else list(subtitles)
    items = [(v, subs[i] if subs else "") for i, v in enumerate(videos)]
    read = lambda item: _clip_from_video(d, *item)
    name_of = lambda item: os.path.splitext(os.path.basename(item[0]))[0]
  else:
    subtitles_csv = d.subtitles_csv
    if subtitles_csv and not os.path.isabs(subtitles_csv):
      subtitles_csv = os.path.join(d.root, subtitles_csv)
    subs = readers.read_csv_column(subtitles_csv, "english") if subtitles_csv else {}
    items = _released_names(d)

    def read(name):
      paths = readers.media_paths(d, d.root, name)
      media = readers.read_media(d, paths["video"], paths["faces"], paths["audio"])
      return {"name": name, "subtitle": subs.get(name, ""), **media}

    name_of = lambda name: name
  for item in tqdm(items, desc="decode", unit="clip", leave=False):
    try:
      clips.append(read(item))
    except decode.DecodeError as e:
      skipped.append({"name": name_of(item), "reason": str(e)})
  return clips, skipped


def predict(config, clips: list[dict], checkpoint: str = "") -> list[dict]:
  """[{'name', 'openset', 'reason'}] for `clips` (dicts with name, subtitle, frames, audio)."""
  mesh = mesh_lib.make_mesh(config.mesh)
  workdir = export.checkpoint_run_dir(checkpoint) if config.data.tokenizer == "synthmer" else None
  tokenizer = tokenization.get_tokenizer(config, workdir)
  policy = policy_lib.build_policy(config, tokenizer, mesh)
  encoders = policy_lib.build_encoders(config, mesh)
  ctx = context_lib.RunContext(config, "", None, mesh, tokenizer, policy, {})
  params = state_lib.load_trained_params(ctx, checkpoint) if checkpoint else policy.params
  dec = evaluation.decoding(config, tokenizer)
  stops = generation.stop_strings_for(config.data.target)
  decoder = generation.prepare(
      policy.model,
      params,
      mesh,
      layout_lib.settings_from_config(config),
      rules=config.mesh.logical_axis_rules,
  )
  rng = jax.random.PRNGKey(config.seed + 17)
  out = []
  media_config = config.copy_and_resolve_references()
  with media_config.unlocked():
    media_config.data.features_dir = ""  # these clips are decoded here, not in a features pass
  batches = datasets.make_eval_batches(media_config, clips, tokenizer, question="labels")
  total = -(-len(clips) // int(config.data.eval_batch_size))
  for batch in tqdm(batches, total=total, desc="predict", unit="batch"):
    batch = mesh_lib.common_length(batch, tokenizer.pad_token_id, left_pad=True)
    batch = evaluation.keep_last_prompt_tokens(batch, dec.keep_prompt_tokens)
    arrays, meta = datasets.split_meta(batch)
    v, a = features_lib.encode(encoders, arrays["frames"], arrays["audio"])
    arrays = dict(arrays, vision_feats=mesh_lib.to_host(v), audio_feats=mesh_lib.to_host(a))
    rng, step_rng = jax.random.split(rng)
    gen = decoder.generate(arrays, step_rng, dec.sampling)
    texts = dec.texts(tokenizer, gen["tokens"], gen["lengths"], stops)
    for name, valid, text in zip(meta["name"], meta["valid"], texts, strict=True):
      if valid:
        out.append({"name": name, "openset": evaluation.predicted_labels(text), "reason": text})
  return out


def _write(path: str, header: list[str], rows) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)


def write_outputs(output: str, predictions: list[dict], skipped: list[dict]) -> dict:
  """The three csv files (module docstring); returns their paths."""
  stem = os.path.splitext(output)[0]
  files = {"openset": output, "reason": f"{stem}-reason.csv", "skipped": f"{stem}-skipped.csv"}
  _write(
      files["openset"], ["name", "openset"], [[p["name"], str(p["openset"])] for p in predictions]
  )
  _write(files["reason"], ["name", "reason"], [[p["name"], p["reason"]] for p in predictions])
  _write(files["skipped"], ["name", "reason"], [[s["name"], s["reason"]] for s in skipped])
  return files


def predict_and_write(config, output: str, videos=(), subtitles=()) -> dict:
  """Reads the clips, predicts, prints one line per clip, writes the csv files; a summary."""
  clips, skipped = read_clips(config, videos, subtitles)
  for s in skipped:
    logging.warning("skipped %s: %s", s["name"], s["reason"])
  predictions = predict(config, clips, config.checkpoint.init_from) if clips else []
  for p in predictions:
    print(f"{p['name']}\t{', '.join(p['openset'])}\t{p['reason']}")
  files = write_outputs(output, predictions, skipped)
  print(
      f"{len(predictions)} clips predicted, {len(skipped)} skipped -> {files['openset']}, "
      f"{files['reason']}, {files['skipped']}",
      file=sys.stderr,
  )
  return {"num_predicted": len(predictions), "skipped": skipped, "files": files}


def run(config, workdir: str, writer) -> dict:
  """Mode `predict`: every clip of the released layout under config.data.root."""
  summary = predict_and_write(config, os.path.join(workdir, "predictions.csv"))
  writer.update_summary("predict", summary)
  return summary


def _define_flags() -> None:
  """Command-line flags, defined only when this module runs as a program, so tests can
  import it next to other tools that define --config."""
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", None, "Recipe, e.g. configs/eval.py:paper."
  )
  _FLAGS["video"] = flags.DEFINE_multi_string(
      "video", [], "Video files to predict on (repeatable)."
  )
  _FLAGS["subtitle"] = flags.DEFINE_multi_string(
      "subtitle", [], "Subtitle of every --video (one), or of each (one per --video)."
  )
  _FLAGS["output"] = flags.DEFINE_string(
      "output", "predictions.csv", "The name,openset csv to write."
  )


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = _FLAGS["config"].value
    with config.unlocked():
      config.mode = "predict"
      if _FLAGS["video"].value:  # new clips: no released layout to validate (data.source is unused)
        config.data.source, config.data.root = "synthmer", ""
    config_lib.validate(config)
    summary = predict_and_write(
        config, _FLAGS["output"].value, _FLAGS["video"].value, _FLAGS["subtitle"].value
    )
  except (ValueError, OSError, KeyError) as e:
    print(f"predict: {e}", file=sys.stderr)
    return 2
  return 0 if summary["num_predicted"] or not summary["skipped"] else 1


if __name__ == "__main__":
  _define_flags()
  flags.mark_flags_as_required(["config"])
  app.run(main)
