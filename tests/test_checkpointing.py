"""Checkpoints restore state, data iterator position and RNG exactly; half-written steps are ignored."""

import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.hf import safetensors_io
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
  assert ckpt.save(7, state, it, meta={"frozen": {"llm": {"random": "x", "seed": 0}}})
  ckpt.wait()
  expected_next = [next(it) for _ in range(2)]

  fresh = _iterator()
  restored, meta = ckpt.restore(ckpt.latest_step(), checkpointing.abstract_like(state), fresh)
  ckpt.close()
  assert meta["step"] == 7 and meta["frozen"] == {"llm": {"random": "x", "seed": 0}}
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


def test_frozen_weights_are_identified_by_content_not_path(tmp_path):
  rng = np.random.default_rng(0)
  tensors = {
      "model.embed_tokens.weight": rng.normal(size=(64, 16)).astype(np.float32),
      "model.norm.weight": rng.normal(size=(16,)).astype(np.float32),
  }
  for d in ("a", "moved"):
    os.makedirs(tmp_path / d)
    safetensors_io.save_safetensors(tensors, str(tmp_path / d / "model.safetensors"))
  os.makedirs(tmp_path / "sharded")
  safetensors_io.shard_checkpoint(tensors, str(tmp_path / "sharded"), max_shard_bytes=1024)
  fp = {
      d: safetensors_io.checkpoint_fingerprint(str(tmp_path / d)) for d in ("a", "moved", "sharded")
  }
  assert fp["a"] == fp["moved"] == fp["sharded"]
  tuned = dict(
      tensors, **{"model.embed_tokens.weight": tensors["model.embed_tokens.weight"] + 1e-3}
  )
  os.makedirs(tmp_path / "tuned")
  safetensors_io.save_safetensors(tuned, str(tmp_path / "tuned" / "model.safetensors"))
  assert safetensors_io.checkpoint_fingerprint(str(tmp_path / "tuned")) != fp["a"]

  saved = {"frozen": {"llm": {"weights": fp["a"]}, "vision": {"random": "x", "seed": 0}}}
  checkpointing.check_frozen(
      saved, {"llm": {"weights": fp["moved"]}, "vision": {"random": "x", "seed": 0}}, "c/4"
  )
  with pytest.raises(ValueError, match=r"trained on other frozen weights \(llm:"):
    checkpointing.check_frozen(
        saved, {"llm": {"weights": "0" * 16}, "vision": {"random": "x", "seed": 0}}, "c/4"
    )


def test_mesh_shapes():
  assert mesh_lib.mesh_shape({"data": 2, "fsdp": -1, "tensor": 2}, 8) == (2, 2, 2)
  with pytest.raises(ValueError, match="not divisible"):
    mesh_lib.mesh_shape({"data": 3, "fsdp": -1, "tensor": 1}, 8)
  with pytest.raises(ValueError, match="needs 4 devices"):
    mesh_lib.mesh_shape({"data": 2, "fsdp": 2, "tensor": 1}, 8)
