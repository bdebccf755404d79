"""Logical axis names -> mesh axes (`data`, `fsdp`, `tensor`).

Modules only name logical axes (docs/architecture.md); this table maps them onto the
mesh (the same table as `configs/common.py`); `config.mesh.logical_axis_rules` overrides it.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

DEFAULT_LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
    ("conv", None),
    ("lora_rank", None),
    ("q_len", None),
    ("kv_len", None),
)


def _mesh_axes_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else axes
  size = 1
  for a in axes:
    size *= mesh.shape[a]
  return size


def logical_to_sharding(
    names: Sequence[str | None],
    shape: Sequence[int],
    mesh: Mesh,
    rules: Rules = DEFAULT_LOGICAL_AXIS_RULES,
) -> NamedSharding:
  """NamedSharding for an array with logical axis `names`.

  A dimension the mesh axes do not divide falls back to replicated, so tiny test
  models and odd sizes (e.g. a vocab not divisible by `tensor`) still place.
  """
  # A logical name may label several dims (e.g. a conv kernel's spatial dims); only the
  # first can map to a mesh axis, the rest stay replicated.
  seen: set = set()
  names = tuple(None if n is not None and (n in seen or seen.add(n)) else n for n in names)
  spec = nn.logical_to_mesh_axes(names, rules)
  spec = [
      ax if dim % _mesh_axes_size(mesh, ax) == 0 else None
      for ax, dim in zip(spec, shape, strict=True)
  ]
  return NamedSharding(mesh, PartitionSpec(*spec))


def logical_shardings(
    abstract_boxed_params: Any, mesh: Mesh, rules: Rules = DEFAULT_LOGICAL_AXIS_RULES
) -> Any:
  """Pytree of NamedSharding matching the *unboxed* params of `abstract_boxed_params`.

  abstract_boxed_params: output of `jax.eval_shape(model.init, ...)` (leaves are
  `nn.LogicallyPartitioned` around ShapeDtypeStructs; unboxed leaves get replicated).
  """

  def one(leaf):
    if isinstance(leaf, nn.Partitioned):
      return logical_to_sharding(leaf.names, leaf.value.shape, mesh, rules)
    return NamedSharding(mesh, PartitionSpec())

  return jax.tree.map(one, abstract_boxed_params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
