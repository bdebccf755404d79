"""Checkpoints restore state, data iterator position and RNG exactly; half-written steps are ignored."""

import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax import config_lib
from mer_jax.train import checkpointing
from mer_jax.train import mesh as mesh_lib


def _iterator(seed=0):
  ds = grain.MapDataset.range(100).shuffle(seed=seed).batch(4)
  return iter(ds.to_iter_dataset())


def _state(mesh):
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp", None))
  w = jax.device_put(jnp.arange(32.0).reshape(8, 4), sharding)
  return {
      "params": {"w": w},
      "opt": {"mu": w * 0.5},
      "step": jnp.asarray(7, jnp.int32),
      "rng": jax.random.key_data(jax.random.PRNGKey(3)),
  }


def test_roundtrip_state_iterator_rng(tmp_path):
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  state = _state(mesh)
  it = _iterator()
  for _ in range(3):
    next(it)
  ckpt = checkpointing.Checkpointer(str(tmp_path / "ckpt"), every_steps=1, keep=2)
  assert ckpt.save(7, state, it, meta={"frozen_source": {"llm": "seed:0"}})
  ckpt.wait()
  expected_next = [next(it) for _ in range(2)]

  fresh = _iterator()
  restored, meta = ckpt.restore(ckpt.latest_step(), checkpointing.abstract_like(state), fresh)
  ckpt.close()
  assert meta["step"] == 7 and meta["frozen_source"] == {"llm": "seed:0"}
  for a, b in zip(
      jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(restored), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert restored["params"]["w"].sharding == state["params"]["w"].sharding
  for want in expected_next:
    np.testing.assert_array_equal(next(fresh), want)


def test_half_written_step_is_ignored(tmp_path):
  mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 1, "tensor": 1})
  ckpt = checkpointing.Checkpointer(str(tmp_path / "ckpt"), every_steps=2, keep=3, async_save=False)
  ckpt.save(2, _state(mesh))
  ckpt.wait()
  # A save killed mid-way leaves only Orbax's temporary directory behind.
  os.makedirs(tmp_path / "ckpt" / "4.orbax-checkpoint-tmp-123" / "state")
  ckpt.close()
  reopened = checkpointing.Checkpointer(str(tmp_path / "ckpt"), every_steps=2, keep=3)
  assert reopened.latest_step() == 2
  reopened.close()


def test_frozen_source_mismatch_is_refused():
  with pytest.raises(config_lib.ConfigError, match="trained on frozen weights"):
    checkpointing.check_frozen_source({"frozen_source": {"llm": "/a"}}, {"llm": "/b"}, "ckpt/4")


def test_mesh_shapes():
  assert mesh_lib.mesh_shape({"data": 2, "fsdp": -1, "tensor": 2}, 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="not divisible"):
    mesh_lib.mesh_shape({"data": 3, "fsdp": -1, "tensor": 1}, 8)
  with pytest.raises(ValueError, match="needs 4 devices"):
    mesh_lib.mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
