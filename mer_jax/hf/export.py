"""Export our params to a HF checkpoint directory that `transformers` loads.

LoRA is merged first (`W + alpha/r * A @ B`), scanned stacks are split into per-layer
keys, kernels go back to the torch layout, and `config.json` gets the right
`architectures` / `model_type`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from mer_jax.hf import keymaps
from mer_jax.hf.safetensors_io import SINGLE_FILE, save_safetensors, shard_checkpoint
from mer_jax.models import lora as lora_lib

Params = dict[str, Any]


def hf_state_dict(params: Params, config: Any, dtype: Any = None) -> dict[str, np.ndarray]:
  """Our params (`{'params': ...}` or the inner dict) -> HF key -> numpy array (torch layout)."""
  spec = keymaps.spec_for_config(config)
  params = params.get("params", params)
  if any(lora_lib.is_lora_path(p) for p in traverse_util.flatten_dict(params)):
    params = lora_lib.merge_lora(params, config.lora_scale)
  tensors = {}
  for path, value in traverse_util.flatten_dict(params).items():
    arr = np.asarray(jax.device_get(value))
    if dtype is not None:
      arr = arr.astype(dtype)
    layer_paths = keymaps.unscanned_paths(path, spec, arr.shape[0] if arr.ndim else None)
    pieces = zip(layer_paths, arr) if layer_paths is not None else [(path, arr)]
    for p, a in pieces:
      tensors[keymaps.hf_key_candidates(p, spec)[0]] = np.ascontiguousarray(keymaps.to_hf_layout(a, p))
  return tensors


def export_hf(params: Params, config: Any, out_dir: str, arch: str | None = None,
              dtype: Any = None, max_shard_bytes: int | None = None) -> str:
  """Writes `out_dir/model.safetensors` (or shards + index) and `config.json`.

  arch: key of `mer_jax.hf.keymaps.ARCHS` (checked against `config`); dtype: cast every
  tensor (e.g. `ml_dtypes.bfloat16`), default keeps the param dtype. Returns out_dir.
  """
  spec = keymaps.spec_for_config(config)
  if arch is not None and arch != spec.name:
    raise ValueError(f"arch {arch!r} does not match config type {type(config).__name__}")
  os.makedirs(out_dir, exist_ok=True)
  tensors = hf_state_dict(params, config, dtype)
  if max_shard_bytes is None:
    save_safetensors(tensors, os.path.join(out_dir, SINGLE_FILE))
  else:
    shard_checkpoint(tensors, out_dir, max_shard_bytes)
  hf_config = config.to_hf_dict()
  first = next(iter(tensors.values()))
  hf_config["dtype"] = str(np.dtype(dtype) if dtype is not None else first.dtype)
  with open(os.path.join(out_dir, "config.json"), "w") as f:
    json.dump(hf_config, f, indent=2, sort_keys=True)
  return out_dir
