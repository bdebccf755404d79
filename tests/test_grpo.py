"""GRPO update on the real policy: sharded == single device; zero-variance groups give no gradient."""

import jax
import numpy as np
import pytest

from input_pipeline import datasets
from mer_jax import run_io
from mer_jax.models import lora as lora_lib
from mer_jax.rl import grpo
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib

G = 4


def _config(recipe):
  config = recipe("grpo", "test")
  config.data.synthmer.num_sft = 8
  config.data.synthmer.num_rl = 8
  config.data.synthmer.num_eval = 4
  config.grpo.prompts_per_step = 2
  config.grpo.num_generations = G
  config.grpo.beta = 0.0
  return config


@pytest.fixture(scope="module")
def ctx(recipe, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("grpo_ctx"))
  writer = run_io.RunWriter(workdir, tensorboard=False)
  yield context_lib.build_context(_config(recipe), workdir, writer, roles=("rl", "eval"))
  writer.close()


def _update_batch(ctx, rewards):
  """A rollout-shaped batch with fixed random completions (no sampling noise)."""
  config = ctx.config.copy_and_resolve_references()
  config.data.batch_size = config.grpo.prompts_per_step
  it = datasets.make_train_iterator(
      config, ctx.samples["rl"], ctx.tokenizer, prompt_only=True, question="labels"
  )
  arrays, _ = datasets.split_meta(next(it))
  rng = np.random.default_rng(0)
  n, length = len(rewards), config.grpo.max_new_tokens
  cmask = (np.arange(length)[None] < rng.integers(3, length + 1, n)[:, None]).astype(np.int32)
  rep = lambda x: np.repeat(x, G, axis=0)
  return {
      "prompt_ids": rep(arrays["input_ids"]),
      "prompt_mask": rep(arrays["attention_mask"]),
      "vision_feats": rep(arrays["vision_feats"]),
      "audio_feats": rep(arrays["audio_feats"]),
      "completion": rng.integers(5, 200, (n, length)).astype(np.int32),
      "completion_mask": cmask,
      "rewards": np.asarray(rewards, np.float32),
      "old_logprobs": np.zeros((n, length), np.float32),
  }


def _update(ctx, mesh, batch, steps=2):
  config = ctx.config
  policy = policy_lib.build_policy(config, ctx.tokenizer, mesh)
  mask = policy.trainable_mask()
  trainable, frozen = lora_lib.split_params(policy.params, mask)
  t_sh, f_sh = lora_lib.split_params(policy.param_shardings, mask)
  state, _, update, _ = grpo.make_grpo_step(policy, config, mesh, trainable, frozen, t_sh, f_sh)
  arrays = mesh_lib.put_global_batch(batch, mesh)
  out = []
  for _ in range(steps):
    state, metrics = update(state, frozen, arrays)
    out.append(jax.device_get(metrics))
  return out, jax.device_get(state.trainable)


def test_sharded_grpo_step_equals_single_device(ctx):
  batch = _update_batch(ctx, [0.1, 0.9, 0.5, 0.2, 1.0, 0.0, 0.3, 0.3])
  one = _update(
      ctx, mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1]), batch
  )
  assert one[0][0]["grad_norm"] > 0
  for shape in ({"data": 8, "fsdp": 1, "tensor": 1}, {"data": 2, "fsdp": 2, "tensor": 2}):
    many = _update(ctx, mesh_lib.make_mesh(shape), batch)
    for a, b in zip(one[0], many[0], strict=True):
      np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4, atol=1e-6)
      np.testing.assert_allclose(a["grad_norm"], b["grad_norm"], rtol=1e-4)
    for x, y in zip(
        jax.tree_util.tree_leaves(one[1]), jax.tree_util.tree_leaves(many[1]), strict=True
    ):
      np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6)


def test_zero_variance_groups_give_zero_gradient(ctx):
  batch = _update_batch(ctx, [0.7] * G + [0.2] * G)
  metrics, _ = _update(
      ctx,
      mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1]),
      batch,
      steps=1,
  )
  assert metrics[0]["zero_variance_groups"] == 1.0
  assert metrics[0]["advantage_std"] == 0.0
  assert metrics[0]["grad_norm"] == 0.0
