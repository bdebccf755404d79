"""Load HF safetensors checkpoints into our Flax models, each tensor straight into its sharding.

Abstract params come from `jax.eval_shape(model.init)`, shardings from their logical
axes; every leaf is built with `jax.make_array_from_callback`, whose callback slices the
memory-mapped file, so a device only reads its own shard (no full host copy of a 7B model).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import traverse_util
import flax.linen as nn
import jax
from jax.sharding import Mesh
from jax.sharding import SingleDeviceSharding
import numpy as np

from mer_jax.hf import keymaps
from mer_jax.hf.safetensors_io import SafetensorsCheckpoint
from mer_jax.models import lora as lora_lib
from mer_jax.models import sharding as sharding_lib

Params = dict[str, Any]


def config_from_hf_dir(hf_dir: str, **runtime: Any):
  """Our config for the checkpoint in `hf_dir` (type inferred from `config.json`)."""
  d = keymaps.read_hf_config(hf_dir)
  return keymaps.spec_for_hf_dict(d).config_cls.from_hf_dict(d, **runtime)


def abstract_params(model: nn.Module, rng: jax.Array | None = None) -> Params:
  """Boxed abstract params `{'params': ...}` (ShapeDtypeStructs with logical axis names)."""
  rng = jax.random.key(0) if rng is None else rng
  return jax.eval_shape(lambda r: model.init(r, **model.dummy_inputs(model.config)), rng)


def param_shardings(abstract: Params, mesh: Mesh | None, rules=None) -> Params:
  """NamedShardings from logical axes, or this process's first device when `mesh` is None.

  (`jax.devices()[0]` belongs to process 0: on any other process a model loaded there,
  e.g. OPPO's sentence embedder, could not be read.)
  """
  if mesh is None:
    device = SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda _: device, nn.unbox(abstract))
  return sharding_lib.logical_shardings(
      abstract, mesh, rules or sharding_lib.DEFAULT_LOGICAL_AXIS_RULES
  )


class _KeyResolver:
  """Finds the checkpoint key of each leaf and records which keys were used."""

  def __init__(self, ckpt: SafetensorsCheckpoint, spec: keymaps.ArchSpec, flat_paths: list):
    self.ckpt, self.spec, self.used = ckpt, spec, set()
    probe = [keymaps.hf_key_candidates(p, spec)[0] for p in flat_paths]
    self.prefix = next((pre for pre in spec.prefixes if any(pre + k in ckpt for k in probe)), "")

  def find(self, path) -> str | None:
    for cand in keymaps.hf_key_candidates(path, self.spec):
      if self.prefix + cand in self.ckpt:
        self.used.add(self.prefix + cand)
        return self.prefix + cand
    return None


def _read(
    ckpt: SafetensorsCheckpoint, key: str, perm: tuple[int, ...], index: tuple, dtype
) -> np.ndarray:
  """`ckpt[key].transpose(perm)[index]`, reading only the indexed part of the file."""
  hf_index = [slice(None)] * len(perm)
  for ours, theirs in enumerate(perm):
    hf_index[theirs] = index[ours] if ours < len(index) else slice(None)
  return np.asarray(ckpt[key][tuple(hf_index)]).transpose(perm).astype(dtype)


def load_hf_params(
    hf_dir: str,
    model_cls: type | None = None,
    config: Any = None,
    mesh: Mesh | None = None,
    rules=None,
    dtype: Any = None,
    rng: jax.Array | None = None,
) -> Params:
  """Loads `hf_dir` (config.json + model.safetensors or a sharded index) into our params.

  Args:
    model_cls: e.g. `Qwen2ForCausalLM`; default from `config` or `config.json`.
    config: our config (runtime fields such as scan_layers / lora_rank matter); default
      read from `hf_dir/config.json`.
    mesh, rules: place each leaf with its logical sharding (default: this process's first
      device).
    dtype: param dtype (default `config.param_dtype`); bf16/fp16/fp32 files convert.
    rng: initializes the LoRA leaves (absent from HF checkpoints; lora_b is zero).

  Returns `{'params': ...}` of unboxed jax Arrays. Raises ValueError naming every
  missing or unexpected checkpoint key, or a shape mismatch.
  """
  config = config_from_hf_dir(hf_dir) if config is None else config
  if dtype is not None:
    config = dataclasses.replace(config, param_dtype=str(np.dtype(dtype)))
  spec = keymaps.spec_for_model(model_cls) if model_cls else keymaps.spec_for_config(config)
  model = spec.model_cls(config)
  abstract = abstract_params(model, rng)
  shardings = traverse_util.flatten_dict(param_shardings(abstract, mesh, rules))
  flat = traverse_util.flatten_dict(nn.unbox(abstract))
  ckpt = SafetensorsCheckpoint(hf_dir)
  resolver = _KeyResolver(ckpt, spec, [p[1:] for p in flat])

  out, missing, lora_paths = {}, [], []
  for path, leaf in flat.items():
    inner = path[1:]  # drop the 'params' collection
    if lora_lib.is_lora_path(inner):
      lora_paths.append(path)
      continue
    layer_paths = keymaps.unscanned_paths(inner, spec, leaf.shape[0] if leaf.ndim else None)
    scanned = layer_paths is not None
    layer_paths = layer_paths or [inner]
    keys = [resolver.find(p) for p in layer_paths]
    if None in keys:
      missing.extend(
          keymaps.hf_key_candidates(p, spec)[0]
          for p, k in zip(layer_paths, keys, strict=True)
          if k is None
      )
      continue
    per_layer_shape = leaf.shape[1:] if scanned else leaf.shape
    perm = keymaps.layout_perm(inner, len(per_layer_shape))
    for key in keys:
      expect = tuple(int(per_layer_shape[j]) for j in np.argsort(perm))
      if ckpt.shape(key) != expect:
        raise ValueError(
            f"{key}: checkpoint shape {ckpt.shape(key)} != expected {expect} "
            f"(for {'/'.join(inner)})"
        )

    def callback(index, keys=keys, perm=perm, scanned=scanned, dtype=leaf.dtype):
      if not scanned:
        return _read(ckpt, keys[0], perm, index, dtype)
      layer_keys = keys[index[0]] if index else keys
      return np.stack([_read(ckpt, k, perm, index[1:], dtype) for k in layer_keys])

    out[path] = jax.make_array_from_callback(leaf.shape, shardings[path], callback)

  unexpected = sorted(
      k for k in ckpt.keys() if k not in resolver.used and not spec.ignored(k, config)
  )
  if missing or unexpected:
    raise ValueError(
        f"{hf_dir}: checkpoint does not match {spec.model_cls.__name__}.\n"
        f"  missing keys ({len(missing)}): {missing}\n"
        f"  unexpected keys ({len(unexpected)}): {unexpected}"
    )
  if lora_paths:
    out.update(_init_leaves(model, lora_paths, shardings, rng))
  return traverse_util.unflatten_dict(out)


def _init_leaves(model: nn.Module, paths: list, shardings: dict, rng: jax.Array | None) -> dict:
  """Runs the model's own initializers for `paths` only; XLA drops the rest of `init`."""
  rng = jax.random.key(0) if rng is None else rng

  def init(r):
    flat = traverse_util.flatten_dict(nn.unbox(model.init(r, **model.dummy_inputs(model.config))))
    return {"/".join(p): flat[p] for p in paths}

  out_shardings = {"/".join(p): shardings[p] for p in paths}
  values = jax.jit(init, out_shardings=out_shardings)(rng)
  return {p: values["/".join(p)] for p in paths}
