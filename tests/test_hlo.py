"""Loop-aware HLO statistics: FLOPs and collective bytes against hand counts of small programs."""

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from mer_jax.tools import hlo


def _compiled_text(fn, *args):
  return jax.jit(fn).lower(*args).compile().as_text()


def test_scanned_layers_inside_loops_count_every_trip():
  w = jnp.ones((4, 64, 96), jnp.float32)  # 4 scanned "layers" of a [8, 64] @ [64, 96] matmul
  x = jnp.ones((8, 64), jnp.float32)

  def fn(w, x):
    def layer(h, wl):
      return h, jnp.tanh(h @ wl)

    def step(i, acc):
      _, ys = jax.lax.scan(layer, x + i, w)
      return acc + ys.sum()

    known = jax.lax.fori_loop(0, 3, step, 0.0)  # known trip count 3
    unbounded = jax.lax.while_loop(
        lambda c: c[1] < known, lambda c: (c[0] + 1, c[1] + step(c[0], 0.0)), (0, 0.0)
    )
    return unbounded[1]

  stats = hlo.analyse(_compiled_text(fn, w, x), 1)
  per_scan = 4 * 2 * 8 * 64 * 96
  assert stats["flops"] == pytest.approx(3 * per_scan)
  assert [loop["flops"] for loop in stats["loops"]] == [pytest.approx(per_scan)]
  # XLA's own count sees each loop body once.
  xla = jax.jit(fn).lower(w, x).compile().cost_analysis()
  xla = xla[0] if isinstance(xla, (list, tuple)) else xla
  assert xla["flops"] < 2 * per_scan


def test_collective_bytes_per_iteration():
  if jax.device_count() < 8:
    pytest.skip("needs the 8 fake CPU devices of conftest")
  mesh = jax.make_mesh((8,), ("fsdp",), axis_types=(jax.sharding.AxisType.Explicit,))

  def gather_and_sum(x):  # per device: x [2, 64] f32 -> all-gather [16, 64], all-reduce [64]
    full = jax.lax.all_gather(x, "fsdp", tiled=True)
    return jax.lax.psum(full.sum(0), "fsdp")[None]

  inner = jax.shard_map(gather_and_sum, mesh=mesh, in_specs=P("fsdp"), out_specs=P("fsdp"))

  def fn(x):
    def body(c):
      i, y = c
      return i + 1, y + inner(x * i).sum()  # loop-variant: not hoisted out of the loop

    return jax.lax.while_loop(lambda c: c[1] < 1e9, body, (0, 0.0))[1]

  x = jax.device_put(np.ones((16, 64), np.float32), jax.NamedSharding(mesh, P("fsdp")))
  stats = hlo.analyse(_compiled_text(fn, x), 8)
  gathered = 16 * 64 * 4 * 7 / 8  # all-gather: output bytes x (n-1)/n
  reduced = 2 * 64 * 4 * 7 / 8  # all-reduce: 2 x bytes x (n-1)/n
  (loop,) = stats["loops"]
  # the loop-exit test of the while adds a tiny all-reduce of its own
  assert gathered + reduced <= loop["collective_bytes"] <= gathered + reduced + 64


def test_group_size_spellings():
  assert hlo.group_size("replica_groups={{0,1,2,3},{4,5,6,7}}, dims", 8) == 4
  assert hlo.group_size("replica_groups=[4,2]<=[2,4]T(1,0), dims", 8) == 2
  assert hlo.group_size("replica_groups=mesh['data'=2,'fsdp'=4] {'fsdp'}, x", 8) == 4
  assert hlo.group_size("replica_groups={}, x", 8) == 8
