"""LoRA adapters: parameters inside the adapted Dense, masks, merge / unmerge.

An adapted Dense `kernel [in, out]` holds `lora_a [in, r]` (kaiming-uniform like HF peft)
and `lora_b [r, out]` (zeros, so a fresh adapter is the identity). The forward adds
`dropout(x) @ lora_a @ lora_b * alpha / r`; `enabled=False` gives the frozen base model
without a second weight copy: after `merge_lora` of the cold-start adapters into the base
weights and fresh adapters, that is the SFT policy, the reference of GRPO's KL term.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp

LORA_LEAVES = ("lora_a", "lora_b")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Params = dict[str, Any]
PathPredicate = Callable[[tuple[str, ...]], bool]


def normalize_targets(targets: Sequence[str]) -> tuple[str, ...]:
  """Accepts HF names (`q_proj`) or short names (`q`, `gate`)."""
  return tuple(t if t.endswith("_proj") else f"{t}_proj" for t in targets)


def lora_delta(
    module: nn.Module,
    x: jax.Array,
    features: int,
    *,
    rank: int,
    alpha: float,
    dropout: float,
    axes: tuple,
    dtype: Any,
    param_dtype: Any,
    enabled: bool,
    deterministic: bool,
) -> jax.Array | float:
  """Creates `lora_a`/`lora_b` in `module` (a compact Dense) and returns the LoRA update.

  x: `[..., in]` -> `[..., features]`. Dropout acts on the LoRA input path only and only
  when not deterministic (needs the `dropout` rng).
  """
  # peft: kaiming_uniform_(a=sqrt(5)) on A [r, in] == U(-1/sqrt(in), 1/sqrt(in)).
  a_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=0, out_axis=1)
  a = module.param(
      "lora_a",
      nn.with_logical_partitioning(a_init, (axes[0], "lora_rank")),
      (x.shape[-1], rank),
      param_dtype,
  )
  b = module.param(
      "lora_b",
      nn.with_logical_partitioning(nn.initializers.zeros, ("lora_rank", axes[-1])),
      (rank, features),
      param_dtype,
  )
  if not enabled:
    return 0.0
  h = x.astype(dtype)
  if dropout > 0.0 and not deterministic:
    keep = jax.random.bernoulli(module.make_rng("dropout"), 1.0 - dropout, h.shape)
    h = jnp.where(keep, h / (1.0 - dropout), 0.0).astype(dtype)
  h = jnp.einsum("...i,ir->...r", h, a.astype(dtype))
  return jnp.einsum("...r,ro->...o", h, b.astype(dtype)) * (alpha / rank)


def is_lora_path(path: tuple[str, ...]) -> bool:
  return bool(path) and path[-1] in LORA_LEAVES


def trainable_mask(params: Params, predicate: PathPredicate | None = None) -> Params:
  """Bool pytree like `params`: True for LoRA leaves and leaves whose path `predicate` accepts.

  `predicate` gets the path as a tuple of keys (e.g. `('params', 'fusion', 'proj', 'kernel')`);
  the fusion / projection issues pass theirs here.
  """
  flat = traverse_util.flatten_dict(params)
  mask = {p: is_lora_path(p) or bool(predicate and predicate(p)) for p in flat}
  return traverse_util.unflatten_dict(mask)


def split_params(params: Params, mask: Params) -> tuple[Params, Params]:
  """Splits into (selected, rest) nested dicts holding only their own leaves."""
  flat, flat_mask = traverse_util.flatten_dict(params), traverse_util.flatten_dict(mask)
  sel = {p: v for p, v in flat.items() if flat_mask[p]}
  rest = {p: v for p, v in flat.items() if not flat_mask[p]}
  return traverse_util.unflatten_dict(sel), traverse_util.unflatten_dict(rest)


def adapter_params(params: Params) -> Params:
  """Only the LoRA leaves of `params`."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({p: v for p, v in flat.items() if is_lora_path(p)})


def fresh_adapters(adapters: Params, rng: jax.Array) -> Params:
  """New adapters shaped like `adapters`: A as at init (peft kaiming-uniform), B = 0.

  A fresh adapter is the identity (B = 0) but trainable (A != 0). Works on a leading
  `layers` axis too; `in` is the second-to-last axis of A.
  """
  flat = traverse_util.flatten_dict(adapters)
  out = {}
  for i, (path, x) in enumerate(sorted(flat.items())):
    if path[-1] == "lora_a":
      bound = 1.0 / float(x.shape[-2]) ** 0.5
      out[path] = jax.random.uniform(
          jax.random.fold_in(rng, i), x.shape, jnp.float32, -bound, bound
      ).astype(x.dtype)
    else:
      out[path] = jnp.zeros(x.shape, x.dtype)
  return traverse_util.unflatten_dict(out)


def combine_params(*parts: Params) -> Params:
  """Inverse of `split_params`; a leaf in a later part replaces the same leaf in an earlier one."""
  flat = {}
  for part in parts:
    flat.update(traverse_util.flatten_dict(part))
  return traverse_util.unflatten_dict(flat)


def _adapted_modules(flat: dict) -> list[tuple[str, ...]]:
  return sorted({p[:-1] for p in flat if p[-1] == "lora_a"})


def merged_kernel(kernel: jax.Array, a: jax.Array, b: jax.Array, scale: float) -> jax.Array:
  """`kernel + scale * a @ b` in float32, in the kernel's dtype (any leading `layers` axis)."""
  delta = jnp.einsum("...ir,...ro->...io", a.astype(jnp.float32), b.astype(jnp.float32)) * scale
  return (kernel.astype(jnp.float32) + delta).astype(kernel.dtype)


def _add_delta(params: Params, scale: float, drop_adapters: bool) -> Params:
  flat = dict(traverse_util.flatten_dict(params))
  for mod in _adapted_modules(flat):
    flat[mod + ("kernel",)] = merged_kernel(
        flat[mod + ("kernel",)], flat[mod + ("lora_a",)], flat[mod + ("lora_b",)], scale
    )
    if drop_adapters:
      del flat[mod + ("lora_a",)], flat[mod + ("lora_b",)]
  return traverse_util.unflatten_dict(flat)


def merge_lora(params: Params, scale: float, keep_adapters: bool = False) -> Params:
  """`kernel <- kernel + scale * lora_a @ lora_b` for every adapted Dense.

  scale = alpha / rank (`config.lora_scale`); a, b may carry a leading `layers` axis.
  Without `keep_adapters` the LoRA leaves are dropped (the HF-exportable base layout).
  """
  return _add_delta(params, scale, drop_adapters=not keep_adapters)


def unmerge_lora(params: Params, scale: float) -> Params:
  """Inverse of `merge_lora(..., keep_adapters=True)`: subtracts the adapter update."""
  return _add_delta(params, -scale, drop_adapters=False)


def count_lora_params(params: Params) -> int:
  flat = traverse_util.flatten_dict(params)
  return sum(int(v.size) for p, v in flat.items() if is_lora_path(p))
