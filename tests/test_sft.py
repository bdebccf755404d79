"""SFT on the real AffectGPT policy: sharded == single device, accumulation, exact resume,
init_from (start weights) and the RL split as training data."""

import dataclasses

import jax
import numpy as np
import pytest

from input_pipeline import datasets
from mer_jax import run_io
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib
from mer_jax.train import sft
from mer_jax.train import state as state_lib


def _config(recipe, **train):
  config = recipe("sft", "test")
  config.data.batch_size = 8
  config.data.synthmer.num_sft = 16
  config.data.synthmer.num_eval = 4
  config.checkpoint.every_steps = 2
  for k, v in train.items():
    config.train[k] = v
  return config


@pytest.fixture(scope="module")
def ctx(recipe, run_context, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("sft_ctx")
  with run_context(_config(recipe), workdir) as ctx:
    yield ctx


def _batch(ctx, config):
  it = datasets.make_train_iterator(config, ctx.samples["sft"], ctx.tokenizer)
  arrays, _ = datasets.split_meta(next(it))
  return {k: arrays[k] for k in sft.TRAIN_KEYS}


def _two_steps(ctx, config, mesh):
  policy = policy_lib.build_policy(config, ctx.tokenizer, mesh)
  state, frozen, step_fn = sft.make_sft_step(policy, config, mesh)
  batch = mesh_lib.put_global_batch(_batch(ctx, ctx.config), mesh)
  losses = []
  for _ in range(2):
    state, metrics = step_fn(state, frozen, batch)
    losses.append(float(metrics["loss"]))
  return losses, jax.device_get(state.trainable)


def _assert_same(a, b):
  np.testing.assert_allclose(a[0], b[0], rtol=2e-5)
  for x, y in zip(jax.tree_util.tree_leaves(a[1]), jax.tree_util.tree_leaves(b[1]), strict=True):
    np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6)


def test_sharded_step_equals_single_device(ctx):
  config = ctx.config
  single = _two_steps(
      ctx, config, mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  )
  assert single[0][1] < single[0][0]  # it learns on a repeated batch
  for shape in (
      {"data": 8, "fsdp": 1, "tensor": 1},
      {"data": 2, "fsdp": 2, "tensor": 2},
      {"data": 1, "fsdp": 4, "tensor": 2},
  ):
    _assert_same(_two_steps(ctx, config, mesh_lib.make_mesh(shape)), single)


def test_accumulation_equals_big_batch(ctx):
  config = ctx.config.copy_and_resolve_references()
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  big = _two_steps(ctx, config, mesh)
  config.train.grad_accum = 4
  _assert_same(_two_steps(ctx, config, mesh), big)


def test_resume_is_exact(ctx, tmp_path):
  straight_writer = run_io.RunWriter(str(tmp_path / "a"), tensorboard=False)
  ctx_a = context_lib.RunContext(**{**ctx.__dict__, "writer": straight_writer})
  straight = sft.train_sft(ctx_a, samples=ctx.samples["sft"], ckpt_dir=str(tmp_path / "a" / "ckpt"))

  resumed_writer = run_io.RunWriter(str(tmp_path / "b"), tensorboard=False)
  short = ctx.config.copy_and_resolve_references()
  short.train.steps = 2
  ctx_b = context_lib.RunContext(**{**ctx.__dict__, "writer": resumed_writer, "config": short})
  sft.train_sft(ctx_b, samples=ctx.samples["sft"], ckpt_dir=str(tmp_path / "b" / "ckpt"))
  # A crashed run may have logged past its last checkpoint: resume must drop those lines.
  resumed_writer.write_metrics(3, {"train/loss": -1.0})
  ctx_b.config = ctx.config
  resumed = sft.train_sft(ctx_b, samples=ctx.samples["sft"], ckpt_dir=str(tmp_path / "b" / "ckpt"))
  for x, y in zip(
      jax.tree_util.tree_leaves(straight["params"]),
      jax.tree_util.tree_leaves(resumed["params"]),
      strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  a = {r["step"]: r["train/loss"] for r in run_io.read_metrics(str(tmp_path / "a"))}
  b = {r["step"]: r["train/loss"] for r in run_io.read_metrics(str(tmp_path / "b"))}
  assert sorted(b) == [1, 2, 3, 4] and a == b
  straight_writer.close()
  resumed_writer.close()


def test_init_from_starts_sft_from_a_checkpoint_on_the_rl_split(ctx, recipe, tmp_path):
  """Mode sft with `checkpoint.init_from` and `train.split='rl'` (the supervised control of
  a GRPO run) starts from the checkpoint's weights and trains on the RL split's labels."""
  start = ctx.config.copy_and_resolve_references()
  start.train.steps = 2
  ctx_a = context_lib.RunContext(**{**ctx.__dict__, "config": start})
  trained = sft.train_sft(ctx_a, samples=ctx.samples["sft"], ckpt_dir=str(tmp_path / "a"))
  config = _config(recipe, steps=1, split="rl", init_lr=0.0, peak_lr=0.0)
  config.data.features_dir = ctx.config.data.features_dir.rsplit("/", 1)[0]
  config.checkpoint.init_from = str(tmp_path / "a" / "2")
  workdir = str(tmp_path / "control")
  writer = run_io.RunWriter(workdir, tensorboard=False)
  result = sft.run(config, workdir, writer)
  writer.close()
  assert result["sft"]["split"] == "rl"
  summary = run_io.read_json(f"{workdir}/summary.json")
  assert summary["data"]["num_samples"] == {"rl": 8, "eval": 4}
  # lr 0: the one step leaves the weights where init_from put them (not the random init).
  restored = state_lib.load_trained_params(
      dataclasses.replace(ctx, writer=None), f"{workdir}/checkpoints/1"
  )
  for x, y in zip(
      jax.tree_util.tree_leaves(trained["params"]),
      jax.tree_util.tree_leaves(restored),
      strict=True,
  ):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
