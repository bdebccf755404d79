"""Device mesh from `config.mesh` and the shardings of batches on it.

Axes are always (`data`, `fsdp`, `tensor`); one size may be -1 = all remaining devices.
The batch dimension is split over `data` x `fsdp` (FSDP shards parameters over `fsdp`
and still consumes its own slice of the batch); `tensor` splits heads/MLP columns.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from input_pipeline import datasets

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")


def mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, int, int]:
  """Resolves -1 and checks the product; `sizes` has keys data, fsdp, tensor."""
  shape = [int(sizes[a]) for a in AXES]
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(
          f"config.mesh: {num_devices} devices are not divisible by the fixed axes "
          f"({dict(zip(AXES, shape, strict=True))})"
      )
    shape[shape.index(-1)] = num_devices // known
  if math.prod(shape) != num_devices:
    raise ValueError(
        f"config.mesh {dict(zip(AXES, shape, strict=True))} needs {math.prod(shape)} devices, "
        f"but {num_devices} are available"
    )
  return tuple(shape)


def make_mesh(mesh_config: Mapping[str, Any], devices=None) -> Mesh:
  """A `Mesh` over all devices (or `devices`) with axes data, fsdp, tensor."""
  devices = jax.devices() if devices is None else list(devices)
  shape = mesh_shape(mesh_config, len(devices))
  # Auto axes: XLA's sharding propagation (GSPMD) places intermediates; we annotate
  # params, batches and key activations only (docs/decisions.md).
  auto = (jax.sharding.AxisType.Auto,) * len(AXES)
  if devices == jax.devices():
    return jax.make_mesh(shape, AXES, devices=devices, axis_types=auto)
  return Mesh(np.asarray(devices).reshape(shape), AXES, axis_types=auto)


def batch_axes(mesh: Mesh, rows: int | None = None):
  """Mesh axes the batch dimension is split over: data x fsdp when they divide `rows`.

  A single process may run a batch that data x fsdp does not divide (e.g. 4 eval rows
  on 8 devices): it then falls back to the largest axis set that divides it (finally
  replicated). Multi-process runs must divide exactly, since each host feeds its rows.
  """
  if rows is None or rows % batch_divisor(mesh) == 0:
    return BATCH_AXES
  if jax.process_count() > 1:
    raise ValueError(
        f"a batch of {rows} rows does not split over the data x fsdp axes "
        f"({batch_divisor(mesh)} ways); make config.data batch sizes multiples of it"
    )
  for axes in (("data",), ("fsdp",)):
    if mesh.shape[axes[0]] > 1 and rows % mesh.shape[axes[0]] == 0:
      return axes
  return None


def batch_sharding(mesh: Mesh, ndim: int = 2, rows: int | None = None) -> NamedSharding:
  """Leading (batch) dim over data x fsdp (see `batch_axes`), the rest replicated."""
  return NamedSharding(mesh, P(batch_axes(mesh, rows), *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_divisor(mesh: Mesh) -> int:
  """How many ways the batch dimension is split."""
  return mesh.shape["data"] * mesh.shape["fsdp"]


def with_activation_rules(fn: Callable, mesh: Mesh, rules) -> Callable:
  """`fn` traced with the models' activation constraints in force.

  `nn.with_logical_constraint` (batch over data x fsdp, heads over tensor, ...) is a
  no-op unless logical-axis rules and a mesh are in context while a step is traced.
  Without them XLA follows the fsdp-sharded weights and may replicate activations: the
  planner measured 108 GiB per chip instead of 5.7 for 64 GRPO rows on fsdp 64.
  """
  rules = tuple(tuple(r) for r in rules)

  @functools.wraps(fn)
  def traced(*args, **kwargs):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(rules):
      return fn(*args, **kwargs)

  return traced


def process_rows(mesh: Mesh, rows: int) -> np.ndarray:
  """Indices of the global batch rows this process feeds, in the order it feeds them.

  `jax.make_array_from_process_local_data` fills this process's devices from its local
  rows in ascending global order, so a host's local batch must hold exactly these rows.
  They are the process-major block `[i * rows / n, (i + 1) * rows / n)` when the mesh
  lists each host's devices together (CPU, GPU nodes); on TPU slices the physical
  device order can interleave hosts.
  """
  sharding = batch_sharding(mesh, 1, rows=rows)
  blocks = sorted(
      {
          (s[0].start or 0, rows if s[0].stop is None else s[0].stop)
          for s in sharding.addressable_devices_indices_map((rows,)).values()
      }
  )
  return np.concatenate([np.arange(a, b) for a, b in blocks])


def common_length(batch: dict, pad_id: int, left_pad: bool) -> dict:
  """This host's batch with its tokens padded to the longest length over all processes.

  Every host buckets its own rows to a length, but the rows of a global array need
  one; the bucket of the longest global row is what a single process would pick.
  """
  if jax.process_count() == 1:
    return batch
  lengths = multihost_utils.process_allgather(np.asarray(batch["input_ids"].shape[1], np.int32))
  return datasets.pad_tokens(batch, int(np.max(lengths)), pad_id, left_pad)


def wait_for_processes(name: str, timeout_s: int = 3600) -> None:
  """Blocks until every process reaches the barrier `name` (no-op with one process).

  Goes through the coordination service, not a collective: gloo gives up on a
  collective when the processes arrive more than 30 s apart, which uneven setup work
  (weights, compilation) easily exceeds on a loaded machine.
  """
  if jax.process_count() == 1:
    return
  from jax._src import distributed  # the runtime's client; JAX's own multi-process tests use it too

  distributed.global_state.client.wait_at_barrier(name, timeout_s * 1000)


class CompileTogether:
  """A jitted function whose new programs every process compiles, then starts, together.

  Gloo (CPU collectives) gives up when processes enter a new program's first collective
  more than 30 s apart; a compile that takes longer on one process (a busy host, or a
  compilation-cache hit on the other) is enough. With several processes, each new input
  signature is compiled ahead of time (`lower().compile()`) and followed by a barrier;
  one process calls `fn` directly.
  """

  def __init__(self, fn: Callable, name: str):
    self._fn = fn
    self._name = name
    self._compiled: dict = {}

  def lower(self, *args):
    return self._fn.lower(*args)

  def __call__(self, *args):
    if jax.process_count() == 1:
      return self._fn(*args)
    leaves, tree = jax.tree_util.tree_flatten(args)
    key = (tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves))
    if key not in self._compiled:
      self._compiled[key] = self._fn.lower(*args).compile()
      wait_for_processes(f"{self._name}:{len(self._compiled)}")
    return self._compiled[key](*args)


def to_host(x: jax.Array) -> np.ndarray:
  """The full value of a (possibly multi-host) global array, on every host."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def gather_rows(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Per-row host values `{name: [n]}` of every process, concatenated (as is with one process).

  For statistics of a global batch whose rows are spread over the processes (row order
  is not preserved across processes); one collective for all columns.
  """
  if jax.process_count() == 1:
    return {k: np.asarray(v) for k, v in columns.items()}
  names = sorted(columns)
  table = np.stack([np.asarray(columns[k], np.float32) for k in names], axis=1)
  table = np.asarray(multihost_utils.process_allgather(table, tiled=True))
  return {k: table[:, i] for i, k in enumerate(names)}


def put_global_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
  """Places a host batch on the mesh.

  Single process: `batch` is the global batch. Multi-process: `batch` is this process's
  rows (`process_rows`; all hosts at the same token length, `common_length`), assembled
  with `jax.make_array_from_process_local_data`.
  """
  out = {}
  for key, value in batch.items():
    value = np.asarray(value)
    if jax.process_count() == 1:
      sharding = batch_sharding(mesh, value.ndim, rows=value.shape[0])
      out[key] = jax.device_put(value, sharding)
    else:
      sharding = batch_sharding(mesh, value.ndim)
      out[key] = jax.make_array_from_process_local_data(sharding, value)
  return out
