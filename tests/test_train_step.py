"""Train-step machinery: exact CE, accumulation == big batch, sharded == single device, schedule."""

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from mer_jax.train import mesh as mesh_lib
from mer_jax.train import optimizer as optim
from mer_jax.train import train_step as ts

V, D, B, T = 16, 8, 8, 6


def _params(seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return {
      "embed": {"embedding": jax.random.normal(k1, (V, D))},
      "head": {"kernel": jax.random.normal(k2, (D, V)) * 0.3, "bias": jnp.zeros((V,))},
  }


def _loss_fn(trainable, frozen, batch, rng):
  del rng
  h = frozen["embed"]["embedding"][batch["input_ids"]]
  logits = h @ trainable["head"]["kernel"] + trainable["head"]["bias"]
  s, c = ts.token_cross_entropy(logits, batch["input_ids"], batch["loss_mask"])
  return s, c, {}


def _batch(seed=1):
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, V, (B, T)).astype(np.int32)
  mask = (rng.random((B, T)) < 0.6).astype(np.float32)
  mask[:, 0] = 0
  return {"input_ids": ids, "loss_mask": mask}


def test_token_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
  ids = rng.integers(0, 7, (2, 5))
  mask = np.array([[0, 0, 1, 1, 1], [0, 1, 0, 1, 0]], np.float32)
  total, count = ts.token_cross_entropy(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(mask))
  expected = 0.0
  for b in range(2):
    for t in range(1, 5):
      if mask[b, t]:
        p = np.exp(logits[b, t - 1] - logits[b, t - 1].max())
        p /= p.sum()
        expected -= np.log(p[ids[b, t]])
  assert count == 5
  np.testing.assert_allclose(total, expected, rtol=1e-5)


def _run(grad_accum, mesh=None, steps=2):
  params = _params()
  frozen = {"embed": params["embed"]}
  trainable = {"head": params["head"]}
  tx, schedule = optim.make_optimizer(lr=1e-2, weight_decay=0.05, grad_clip=1.0), None
  state = ts.init_train_state(trainable, tx, seed=0)
  step = ts.make_train_step(_loss_fn, tx, schedule, grad_accum=grad_accum)
  if mesh is None:
    jitted = jax.jit(step, donate_argnums=0)
    batch = {k: jnp.asarray(v) for k, v in _batch().items()}
  else:
    rep = NamedSharding(mesh, P())
    state = jax.device_put(state, rep)
    frozen = jax.device_put(frozen, rep)
    batch = mesh_lib.put_global_batch(_batch(), mesh)
    jitted = jax.jit(
        step,
        in_shardings=(rep, rep, mesh_lib.batch_sharding(mesh)),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )
  losses = []
  for _ in range(steps):
    state, metrics = jitted(state, frozen, batch)
    losses.append(float(metrics["loss"]))
  return losses, jax.device_get(state.trainable)


def test_accumulation_equals_one_big_batch():
  big_losses, big_params = _run(grad_accum=1)
  for k in (2, 4):
    losses, params = _run(grad_accum=k)
    np.testing.assert_allclose(losses, big_losses, rtol=1e-5)
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(big_params), strict=True
    ):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape",
    [
        {"data": 8, "fsdp": 1, "tensor": 1},
        {"data": 2, "fsdp": 4, "tensor": 1},
        {"data": 1, "fsdp": 4, "tensor": 2},
    ],
)
def test_sharded_step_equals_single_device(shape):
  single_losses, single_params = _run(grad_accum=1)
  mesh = mesh_lib.make_mesh(shape)
  losses, params = _run(grad_accum=1, mesh=mesh)
  np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
  for a, b in zip(
      jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(single_params), strict=True
  ):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_released_schedule():
  sched = optim.learning_rate_schedule(steps=100, init_lr=1e-6, peak_lr=1e-5, warmup_steps=10)
  np.testing.assert_allclose(
      [sched(0), sched(5), sched(10), sched(99)], [1e-6, 5.5e-6, 1e-5, 1e-5], rtol=1e-6
  )
  cos = optim.learning_rate_schedule(
      steps=110, init_lr=1e-6, peak_lr=1e-5, warmup_steps=10, schedule="cosine", min_lr=1e-6
  )
  np.testing.assert_allclose([cos(10), cos(60), cos(110)], [1e-5, 5.5e-6, 1e-6], rtol=1e-5)


def test_decay_mask_skips_biases_norms_and_vectors():
  params = {
      "layer": {
          "q_proj": {"kernel": jnp.zeros((4, 4)), "bias": jnp.zeros(4)},
          "input_norm": {"scale": jnp.zeros(4)},
          "lora_a": jnp.zeros((4, 2)),
      }
  }
  mask = optim.decay_mask(params)
  assert mask["layer"]["q_proj"]["kernel"] and mask["layer"]["lora_a"]
  assert not mask["layer"]["q_proj"]["bias"] and not mask["layer"]["input_norm"]["scale"]


def test_map_micro_batches_equals_one_pass():
  rng = np.random.default_rng(0)
  batch = {"x": rng.normal(size=(16, 3, 5)).astype(np.float32), "w": rng.normal(size=(16,))}
  fn = lambda b: jnp.tanh(b["x"]).sum(-1) * b["w"].astype(jnp.float32)[:, None]  # row-wise
  mesh = mesh_lib.make_mesh({"data": 2, "fsdp": -1, "tensor": 1})
  sharded = mesh_lib.put_global_batch(batch, mesh)
  want = np.asarray(fn(batch))
  for k in (1, 2, 4):
    got = jax.jit(lambda b, k=k: ts.map_micro_batches(fn, b, k))(sharded)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
