"""Frozen-encoder feature cache: run CLIP/HuBERT once per clip, train on the cached features.

AffectGPT's encoders are frozen, so their outputs are a pure function of (encoder weights,
preprocessing settings, media). `precompute_features` writes one `.npz` per sample under a
directory keyed by a hash of those settings, skips what is already there (a rerun or a
resumed run costs nothing), and returns that directory; the input pipeline then reads
`vision_feats [F, Dv]` / `audio_feats [C, Da]` instead of decoding media every epoch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Mapping, Sequence

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from input_pipeline import datasets
from input_pipeline import decode
from input_pipeline import synthmer
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib


def cache_key(config, policy: policy_lib.Policy) -> str:
  """Hash of everything the cached features depend on."""
  d = config.data
  key = {
      "vision": policy.vision.config.to_hf_dict(),
      "audio": policy.audio.config.to_hf_dict(),
      "num_last_layers": policy.audio.num_last_layers,
      "frozen": {k: policy.frozen_source.get(k) for k in ("vision", "audio", "seed")},
      "data": {
          k: d[k]
          for k in (
              "num_frames",
              "num_audio_clips",
              "audio_clip_seconds",
              "sample_rate",
              "image_size",
              "face_or_frame",
          )
      },
      "dtype": config.model.frozen_dtype,
      "preprocessing": decode.PIPELINE_VERSION,
      # Which media: the same sample names may exist in different datasets.
      "source": d.source,
      "root": os.path.abspath(d.root) if d.root else "",
      "synthmer": d.synthmer.to_dict() if d.source == "synthmer" else None,
  }
  return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def feature_dir(config, policy: policy_lib.Policy) -> str:
  root = config.data.feature_cache_dir or os.path.join(synthmer.default_cache_dir(), "features")
  return os.path.join(root, cache_key(config, policy))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _encode(vision, audio, encoder_params, frames, clips):
  v = vision.apply({"params": encoder_params["vision"]}, frames)
  a = audio.apply({"params": encoder_params["audio"]}, clips)
  return v, a


def precompute_features(
    config,
    policy: policy_lib.Policy,
    samples: Sequence[Mapping],
    out_dir: str,
    batch_size: int = 8,
    show_progress: bool = True,
) -> str:
  """Writes `<out_dir>/<name>.npz` for every sample that lacks one; returns `out_dir`."""
  names = [s["name"] for s in samples]
  todo = set(datasets.missing_features(out_dir, names))
  if jax.process_count() > 1:
    # The encoders run on the global mesh: every process must make the same calls, but
    # each sees the cache at its own moment (another process may be writing to it).
    missing = np.asarray([n in todo for n in names], np.int32)
    todo = {
        n
        for n, m in zip(names, multihost_utils.process_allgather(missing).any(axis=0), strict=True)
        if m
    }
  pending = [s for s in samples if s["name"] in todo]
  if not pending:
    return out_dir
  logging.info("features: encoding %d of %d clips into %s", len(pending), len(samples), out_dir)
  data = config.data
  bar = tqdm(total=len(pending), desc="features", unit="clip", disable=not show_progress)
  for start in range(0, len(pending), batch_size):
    chunk = list(pending[start : start + batch_size])
    n = len(chunk)
    media = [datasets.media_arrays(s, _no_cache(data)) for s in chunk]
    # Pad the last chunk so one compiled program serves every call.
    media += [media[-1]] * (batch_size - n)
    frames = jnp.asarray(np.stack([m["frames"] for m in media]))
    clips = jnp.asarray(np.stack([m["audio"] for m in media]))
    v, a = map(
        mesh_lib.to_host, _encode(policy.vision, policy.audio, policy.encoder_params, frames, clips)
    )
    for i, s in enumerate(chunk):
      datasets.save_features(out_dir, s["name"], v[i], a[i])
    bar.update(n)
  bar.close()
  return out_dir


class _NoCache(dict):
  """A view of config.data with feature_cache_dir cleared (so media_arrays decodes media)."""

  def __getattr__(self, key):
    try:
      return self[key]
    except KeyError:
      raise AttributeError(key) from None


def _no_cache(data) -> _NoCache:
  view = _NoCache(data.to_dict() if hasattr(data, "to_dict") else dict(data))
  view["feature_cache_dir"] = ""
  return view
