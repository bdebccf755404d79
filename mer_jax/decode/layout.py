"""The decode layout: weights as the rollout wants them, resharded from the training layout.

Training keeps the frozen weights sharded over `fsdp` (and `data` replicas of those shards);
a decode step under that layout all-gathers every layer's weights for every generated
token (about 13 GB per token for the 7B policy on fsdp 8, measured by the planner). The
decode layout instead, once per rollout:

  1. merges the LoRA adapters into the kernels (`decode.lora = merge`; in float32, then
     cast) or keeps them (`adapter`), and casts the LLM weights to `decode.dtype`;
  2. reshards the result: every `data`/`fsdp` split of a weight is dropped (replicated),
     `tensor` splits stay (tensor parallel), as tunix's `reshard_pytree` does between its
     trainer and rollout meshes.

Activations of the decode program keep the batch over `data` x `fsdp`, heads / MLP /
vocabulary over `tensor` (`decode_rules`). `decode.layout = train` decodes with the
training layout as is (for models whose replicated weights do not fit a chip).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import traverse_util
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from mer_jax.models import lora as lora_lib

LAYOUTS = ("replicated", "train")
_WEIGHT_AXES = ("data", "fsdp")


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """How rollouts and evaluation decode (config section `decode`, configs/common.py)."""

  layout: str = "train"  # replicated | train
  dtype: str = ""  # LLM weight dtype of the decode layout ('' = the model's compute dtype)
  lora: str = "merge"  # merge | adapter
  slots: int = 0  # rows decoded at once; freed slots take the next queued row (0 = all rows)


TRAIN_LAYOUT = DecodeSettings()  # decode with the training layout as is


def settings_from_config(config) -> DecodeSettings:
  d = config.decode
  return DecodeSettings(
      layout=str(d.layout), dtype=str(d.dtype), lora=str(d.lora), slots=int(d.slots)
  )


def _strip(axes):
  """Mesh axes of one dimension without `data` / `fsdp`."""
  if axes is None:
    return None
  if isinstance(axes, str):
    return None if axes in _WEIGHT_AXES else axes
  kept = tuple(a for a in axes if a not in _WEIGHT_AXES)
  return kept[0] if len(kept) == 1 else (kept or None)


def decode_rules(rules) -> tuple:
  """Logical-axis rules of the decode program: only `batch` keeps the data/fsdp axes."""
  return tuple((name, axes if name == "batch" else _strip(axes)) for name, axes in rules)


def decode_sharding(sharding: NamedSharding) -> NamedSharding:
  """A weight's decode sharding: its training sharding without data/fsdp splits."""
  return NamedSharding(sharding.mesh, PartitionSpec(*(_strip(a) for a in sharding.spec)))


def decode_model(model, settings: DecodeSettings):
  """The AffectGPT module that runs the decode-layout weights (no adapters once merged)."""
  llm = model.config.llm
  # Layers unrolled: a scanned stack threads the whole KV cache through the scan's outputs
  # and copies it every token (the decode step ran 1.8x slower on CPU).
  changes = {"dtype": settings.dtype or llm.dtype, "scan_layers": False, "remat_policy": "none"}
  if settings.lora == "merge":
    changes["lora_rank"] = 0
  config = dataclasses.replace(model.config, llm=dataclasses.replace(llm, **changes))
  return model.clone(config=config)


def _unstack(flat: dict, num_layers: int, take) -> dict:
  """`model/layers/...` leaves with a leading layer axis -> `model/layers_{i}/...` (unrolled)."""
  out = {}
  for path, x in flat.items():
    if path[:2] == ("model", "layers"):
      for i in range(num_layers):
        out[("model", f"layers_{i}") + path[2:]] = take(x, i)
    else:
      out[path] = x
  return out


def scanned_layers(model) -> int:
  """The training model's scanned layer count (0 when its layers are already unrolled)."""
  llm = model.config.llm
  return llm.num_hidden_layers if llm.scan_layers else 0


def decode_params(
    params: dict, scale: float, settings: DecodeSettings, lora: bool, dtype, scanned: int
) -> dict:
  """Merged (or base, `lora=False`), cast and unrolled (`scanned` layers) weights; traced
  inside `prepare_fn`'s jit."""
  llm = params["llm"]
  if settings.lora == "merge":
    llm = lora_lib.merge_lora(llm, scale if lora else 0.0)
  flat = traverse_util.flatten_dict(llm)
  cast = {
      path: x.astype(dtype)
      if jnp.issubdtype(x.dtype, jnp.floating) and not lora_lib.is_lora_path(path)
      else x
      for path, x in flat.items()
  }
  if scanned:
    cast = _unstack(cast, scanned, lambda x, i: x[i])
  return {**_policy_only(params), "llm": traverse_util.unflatten_dict(cast)}


def _policy_only(params: dict) -> dict:
  """The AffectGPT policy's own params (`fusion`, `llm`): other entries a trainer keeps next
  to them (e.g. GRPO's frozen KL reference) are not decoded with, so not resharded."""
  return {k: v for k, v in params.items() if k in ("fusion", "llm")}


def target_shardings(params: dict, settings: DecodeSettings, scanned: int) -> dict:
  """Decode shardings of `decode_params(params)` from the training shardings of `params`."""
  flat = traverse_util.flatten_dict(params["llm"])
  if settings.lora == "merge":
    flat = {p: x for p, x in flat.items() if not lora_lib.is_lora_path(p)}
  flat = {p: decode_sharding(x.sharding) for p, x in flat.items()}
  if scanned:
    layer = lambda s, i: NamedSharding(s.mesh, PartitionSpec(*s.spec[1:]))
    flat = _unstack(flat, scanned, layer)
  rest = {k: v for k, v in _policy_only(params).items() if k != "llm"}
  rest = jax.tree_util.tree_map(lambda x: decode_sharding(x.sharding), rest)
  return {**rest, "llm": traverse_util.unflatten_dict(flat)}


_PREPARE: dict = {}


def prepare_fn(model, settings: DecodeSettings, lora: bool):
  """Jitted `params -> decode params` (merge + cast, under the training layout), cached."""
  key = (id(model), settings, lora)
  if key not in _PREPARE:
    llm = model.config.llm
    scale = llm.lora_alpha / llm.lora_rank if llm.lora_rank else 0.0
    dtype = jnp.dtype(settings.dtype or llm.dtype)
    scanned = scanned_layers(model)
    fn = lambda p: decode_params(p, scale, settings, lora, dtype, scanned)
    _PREPARE[key] = (model, jax.jit(fn))  # the model is kept so that its id stays unique
  return _PREPARE[key][1]


def reshard(params: Any, shardings: Any) -> Any:
  """Moves a pytree onto new shardings (the once-per-rollout weight all-gather)."""
  return jax.device_put(params, shardings)
