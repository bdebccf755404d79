"""GRPO/OPPO's KL reference is the cold-start (SFT) policy, with LoRA and with full fine-tuning.

Reference outside the code under test: the SFT params' own log-probs (the policy the RL
phase must start from and be pulled back to), and the KL of a policy to itself (0).
"""

import jax
import numpy as np
import pytest

from input_pipeline import datasets
from mer_jax.models import lora as lora_lib
from mer_jax.rl import grpo
from mer_jax.train import checkpointing
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import optimizer as optim
from mer_jax.train import policy as policy_lib
from mer_jax.train import state as state_lib
from tests import rl_helpers

G = 4


def _config(recipe):
  config = rl_helpers.small_grpo_config(recipe, G, beta=0.04)
  config.model.llm.trainable = "lora"
  config.grpo.lr = 3e-3
  return config


@pytest.fixture(scope="module")
def ctx(recipe, run_context, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("kl_ctx")
  with run_context(_config(recipe), workdir, roles=("rl", "eval")) as ctx:
    yield ctx


def _moved_sft_params(policy) -> dict:
  """A cold start far from the base model: noise on every trained leaf (adapters included)."""
  trainable, frozen = lora_lib.split_params(policy.params, policy.trainable_mask())
  leaves, tree = jax.tree_util.tree_flatten(trainable)
  rng = np.random.default_rng(1)
  moved = [x + rng.normal(0.0, 0.3, x.shape).astype(x.dtype) for x in leaves]
  return lora_lib.combine_params(jax.tree_util.tree_unflatten(tree, moved), frozen)


def _batch(ctx, config) -> dict:
  """A rollout-shaped update batch: fixed random completions and rewards (no sampling noise)."""
  prompt_config = config.copy_and_resolve_references()
  prompt_config.data.batch_size = config.grpo.prompts_per_step
  it = datasets.make_train_iterator(
      prompt_config, ctx.samples["rl"], ctx.tokenizer, prompt_only=True, question="labels"
  )
  arrays, _ = datasets.split_meta(next(it))
  rng = np.random.default_rng(0)
  n, length = config.grpo.prompts_per_step * G, config.grpo.max_new_tokens
  rep = lambda x: np.repeat(x, G, axis=0)
  return {
      "prompt_ids": rep(arrays["input_ids"]),
      "prompt_mask": rep(arrays["attention_mask"]),
      "vision_feats": rep(arrays["vision_feats"]),
      "audio_feats": rep(arrays["audio_feats"]),
      "completion": rng.integers(5, 200, (n, length)).astype(np.int32),
      "completion_mask": np.ones((n, length), np.int32),
      "rewards": rng.uniform(0.0, 1.0, n).astype(np.float32),
      "old_logprobs": np.zeros((n, length), np.float32),
  }


def _logprobs(policy, params, arrays, lora=True) -> np.ndarray:
  return np.asarray(grpo.completion_logprobs(policy.model, params, arrays, 1.0, lora=lora)[0])


def _k3(logp: np.ndarray, ref: np.ndarray) -> float:
  d = ref - logp
  return float(np.mean(np.exp(d) - d - 1.0))


@pytest.mark.parametrize("trainable", ["lora", "full"])
def test_kl_to_the_cold_start_is_zero_at_step_one_and_grows(ctx, trainable):
  config = ctx.config.copy_and_resolve_references()
  config.model.llm.trainable = trainable
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  policy = policy_lib.build_policy(config, ctx.tokenizer, mesh)
  sft = _moved_sft_params(policy)
  arrays = mesh_lib.put_global_batch(_batch(ctx, config), mesh)
  # The cold start really moved: the base model (SFT adapters off) is far from it.
  sft_logp = _logprobs(policy, sft, arrays)
  assert _k3(sft_logp, _logprobs(policy, sft, arrays, lora=False)) > 1e-2

  rl = grpo.rl_start(policy, sft, config.grpo.beta, "float32", jax.random.PRNGKey(0))
  start = lora_lib.combine_params(rl.trainable, grpo.split_reference(rl.frozen)[0])
  # The RL phase starts at the SFT policy, and adapters off is the SFT policy too.
  np.testing.assert_allclose(_logprobs(policy, start, arrays), sft_logp, atol=2e-4)
  np.testing.assert_allclose(_logprobs(policy, start, arrays, lora=False), sft_logp, atol=2e-4)

  state, _, update, _ = grpo.make_grpo_step(
      policy, config, mesh, rl.trainable, rl.frozen, rl.t_sh, rl.f_sh
  )
  kls = []
  for _ in range(4):
    # The logged KL is the KL of the current policy to the SFT policy.
    current = lora_lib.combine_params(state.trainable, grpo.split_reference(rl.frozen)[0])
    expected = _k3(_logprobs(policy, current, arrays), sft_logp)
    state, metrics = update(state, rl.frozen, arrays)
    metrics = jax.device_get(metrics)
    kls.append(float(metrics["kl"]) / float(metrics["tokens"]))
    np.testing.assert_allclose(kls[-1], expected, rtol=2e-3, atol=1e-6)
  assert kls[0] <= 1e-3, kls
  assert kls[-1] > 10 * max(kls[0], 1e-5), kls


def test_rl_checkpoint_restores_with_its_merged_adapters(ctx, tmp_path):
  """A LoRA RL step directory alone gives the RL policy (cold-start adapters merged back in)."""
  config = ctx.config
  policy = ctx.policy
  sft = _moved_sft_params(policy)
  rl = grpo.rl_start(policy, sft, 0.0, "float32", jax.random.PRNGKey(0))
  assert rl.merged_lora is not None and grpo.KL_REFERENCE not in rl.frozen
  # Trained adapters of the RL phase (non-zero B), then a checkpoint as the GRPO loop saves it.
  trained = jax.tree_util.tree_map(lambda x: x + 0.05, rl.trainable)
  tx, _ = optim.sft_optimizer(config.train)
  state, _ = state_lib.init_state(trained, rl.t_sh, tx, config.seed, ctx.mesh)
  ckpt = checkpointing.Checkpointer(str(tmp_path), every_steps=1, keep=2)
  ckpt.save(3, state, meta={"frozen_source": policy.frozen_source}, merged_lora=rl.merged_lora)
  ckpt.close()
  arrays = mesh_lib.put_global_batch(_batch(ctx, config), ctx.mesh)
  expected = _logprobs(policy, lora_lib.combine_params(trained, rl.frozen), arrays)
  restored = state_lib.load_trained_params(ctx, str(tmp_path / "3"))
  np.testing.assert_allclose(_logprobs(policy, restored, arrays), expected, atol=2e-4)
