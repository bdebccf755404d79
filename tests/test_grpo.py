"""The GRPO job on the real policy, each part against a reference outside the code under test.

- The sampler's log-probs of its own completions equal the update's (T = 1 and 0.7).
- Each reward is attached to the completion it scored (a text-dependent test reward).
- An update raises the log-prob of positive-advantage completions and lowers the others;
  with beta > 0 the k3 KL to the adapters-off reference is in the loss and pulls toward it.
- Sharded == single device; zero-variance groups give no gradient.
Resume after SIGKILL and 2 processes == 1 process: tests/test_multihost.py.
"""

import dataclasses

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline import datasets
from mer_jax import run_io
from mer_jax.decode import generation
from mer_jax.models import lora as lora_lib
from mer_jax.rl import advantages as adv_lib
from mer_jax.rl import grpo
from mer_jax.rl import losses as losses_lib
from mer_jax.rl import rewards as rewards_lib
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib
from mer_jax.train import state as state_lib
from tests import rl_helpers
from tests.run_hooks import text_hash_reward

G = 4
TEXT_REWARD = "test_text_hash"


if TEXT_REWARD not in rewards_lib.REWARDS:
  rewards_lib.register_reward(TEXT_REWARD)(text_hash_reward)


def _config(recipe):
  return rl_helpers.small_grpo_config(recipe, G, beta=0.0)


@pytest.fixture(scope="module")
def ctx(recipe, run_context, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("grpo_ctx")
  with run_context(_config(recipe), workdir, roles=("rl", "eval")) as ctx:
    yield ctx


def _prompt_batch(ctx):
  config = ctx.config.copy_and_resolve_references()
  config.data.batch_size = config.grpo.prompts_per_step
  it = datasets.make_train_iterator(
      config, ctx.samples["rl"], ctx.tokenizer, prompt_only=True, question="labels"
  )
  return next(it)


def _update_batch(ctx, rewards):
  """A rollout-shaped batch with fixed random completions (no sampling noise)."""
  arrays, _ = datasets.split_meta(_prompt_batch(ctx))
  rng = np.random.default_rng(0)
  n, length = len(rewards), ctx.config.grpo.max_new_tokens
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
  trainable, frozen, t_sh, f_sh = state_lib.split_trainable(policy)
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


def _single_mesh():
  return mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])


def _rollout(ctx, params, temperature, rewards=None, seed=0):
  config = ctx.config.copy_and_resolve_references()
  config.grpo.temperature = temperature
  if rewards is not None:
    config.grpo.rewards = rewards
  ctx = dataclasses.replace(ctx, config=config)
  stops = generation.stop_strings_for(config.data.target)
  sampling = generation.sampling_config(
      ctx.tokenizer,
      max_new_tokens=config.grpo.max_new_tokens,
      temperature=temperature,
      stop_strings=stops,
  )
  batch = _prompt_batch(ctx)
  return batch, grpo.rollout(ctx, params, batch, jax.random.PRNGKey(seed), sampling, stops)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logprobs_equal_update_logprobs(ctx, temperature):
  params = rl_helpers.sharpened(ctx.policy.params)
  _, ro = _rollout(ctx, params, temperature)
  update = ro["update"]
  mask = update["completion_mask"].astype(bool)
  assert mask.sum() > 2 * len(mask)  # completions longer than one token
  arrays = mesh_lib.put_global_batch(update, ctx.mesh)
  logp = np.asarray(_logprobs_fn(ctx.policy.model, temperature)(params, arrays))
  sampled = update["old_logprobs"]
  # A peaked policy: the log-probs are far from uniform, so a wrong position or
  # temperature cannot agree by accident.
  assert np.std(sampled[mask]) > 0.5
  np.testing.assert_allclose(logp[mask], sampled[mask], atol=2e-4)


def test_rollout_rewards_follow_their_completions(ctx):
  batch, ro = _rollout(ctx, ctx.policy.params, 1.0, rewards={TEXT_REWARD: 1.0}, seed=3)
  update, meta = ro["update"], batch["meta"]
  names = meta["name"]
  assert len(set(names)) == len(names)
  tokens, cmask = update["completion"], update["completion_mask"]
  lengths = cmask.sum(1)
  texts = generation.decode_completions(
      ctx.tokenizer, tokens, lengths, generation.stop_strings_for(ctx.config.data.target)
  )
  assert len(set(texts)) == len(texts)  # every completion differs: a swap would show
  for i, text in enumerate(texts):
    # The prompt of row i identifies its sample; its reward must be the one of its own text.
    (prompt,) = [
        j
        for j in range(len(names))
        if np.array_equal(update["prompt_ids"][i], batch["input_ids"][j])
        and np.array_equal(update["vision_feats"][i], batch["vision_feats"][j])
    ]
    assert prompt == i // G  # the G completions of a prompt are adjacent (the [B, G] grid)
    want = text_hash_reward([text], [{"name": names[prompt]}], None)[0]
    assert update["rewards"][i] == pytest.approx(want, abs=1e-6), (i, text)
  assert ro["stats"]["reward_mean"] == pytest.approx(float(np.mean(update["rewards"])), abs=1e-6)


def _logprobs_fn(model, temperature):
  """Jitted per-token `grpo.completion_logprobs` (params, batch) -> [N, L] (one compile)."""
  return jax.jit(lambda p, b: grpo.completion_logprobs(model, p, b, temperature)[0])


def _seq_logprobs(logprobs_fn, params, arrays):
  return np.asarray(jnp.sum(logprobs_fn(params, arrays) * arrays["completion_mask"], axis=1))


def test_update_moves_log_probs_with_the_advantage_sign(ctx):
  rewards = [1.0, 0.0, 0.2, 0.0, 0.0, 0.9, 1.0, 0.1]
  batch = _update_batch(ctx, rewards)
  advantages = np.asarray(adv_lib.group_advantages(np.reshape(rewards, (-1, G)))).reshape(-1)
  mesh = _single_mesh()
  policy = policy_lib.build_policy(ctx.config, ctx.tokenizer, mesh)
  trainable, frozen, t_sh, f_sh = state_lib.split_trainable(policy)
  state, _, update, _ = grpo.make_grpo_step(policy, ctx.config, mesh, trainable, frozen, t_sh, f_sh)
  arrays = mesh_lib.put_global_batch(batch, mesh)
  logprobs_fn = _logprobs_fn(policy.model, ctx.config.grpo.temperature)
  before = _seq_logprobs(logprobs_fn, policy.params, arrays)
  state, metrics = update(state, frozen, arrays)
  after = _seq_logprobs(logprobs_fn, lora_lib.combine_params(state.trainable, frozen), arrays)
  delta = after - before
  assert np.all(np.sign(delta) == np.sign(advantages)), (delta, advantages)
  assert float(metrics["kl"]) == 0.0  # beta = 0: no reference forward


def _moved(params, scale, seed):
  """`params` with every LoRA B matrix set off zero (adapters that change the policy)."""
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(
      {
          k: v + scale * rng.standard_normal(v.shape).astype(v.dtype) if k[-1] == "lora_b" else v
          for k, v in flat.items()
      }
  )


@pytest.mark.parametrize("trainable", ["full", "lora"])
def test_kl_term_is_in_the_loss_and_pulls_toward_the_sft_policy(ctx, trainable):
  config = ctx.config.copy_and_resolve_references()
  config.model.llm.trainable = trainable
  config.grpo.beta = 0.5
  config.grpo.lr = 1e-3
  mesh = _single_mesh()
  policy = policy_lib.build_policy(config, ctx.tokenizer, mesh)
  # A cold start whose adapters are not the identity, then an RL policy moved off it.
  sft_params = _moved(policy.params, 0.3, seed=0)
  rl = grpo.rl_start(policy, sft_params, 0.5, config.model.frozen_dtype, jax.random.PRNGKey(2))
  trainable_params = _moved(rl.trainable, 0.3, seed=1)
  state, _, update, _ = grpo.make_grpo_step(
      policy, config, mesh, trainable_params, rl.frozen, rl.t_sh, rl.f_sh
  )
  # Equal rewards in every group: zero advantages, so the KL is the whole loss.
  batch = _update_batch(ctx, [0.5] * G + [0.1] * G)
  arrays = mesh_lib.put_global_batch(batch, mesh)
  logprobs_fn = _logprobs_fn(policy.model, config.grpo.temperature)
  # The reference: the SFT policy itself (its adapters on), computed without the job's
  # merged kernels or reference copies.
  ref = logprobs_fn(sft_params, arrays)

  def kl_mean(trainable_now):
    params = lora_lib.combine_params(trainable_now, grpo.split_reference(rl.frozen)[0])
    k3 = np.asarray(losses_lib.k3_kl(logprobs_fn(params, arrays), ref))
    mask = batch["completion_mask"]
    return float(np.sum(k3 * mask) / np.sum(mask))

  assert kl_mean(rl.trainable) == pytest.approx(0.0, abs=1e-6)  # RL starts at the reference
  want = kl_mean(trainable_params)
  assert want > 1e-3
  state, metrics = update(state, rl.frozen, arrays)
  assert float(metrics["kl"]) / float(metrics["tokens"]) == pytest.approx(want, rel=1e-3)
  assert float(metrics["loss"]) == pytest.approx(0.5 * want, rel=1e-3)
  assert float(metrics["grad_norm"]) > 0
  state, _ = update(state, rl.frozen, arrays)
  assert kl_mean(state.trainable) < want


def test_phase_caches_are_keyed_by_their_data_and_start(recipe, tmp_path, monkeypatch):
  """A rerun never reuses a phase's evaluation or checkpoints made from other data or
  another cold start (context.start_phase, grpo.evaluate_phase, features.data_key)."""
  from input_pipeline import features as input_features
  from mer_jax.train import evaluation
  from mer_jax.train import features as features_lib

  workdir = str(tmp_path)
  writer = run_io.RunWriter(workdir, tensorboard=False)
  keys = {"sft": "s", "rl": "r", "eval": "e"}
  ctx = context_lib.RunContext(
      _config(recipe), workdir, writer, None, None, None, {"eval": []}, data_keys=keys
  )
  calls = []
  monkeypatch.setattr(
      evaluation, "evaluate", lambda *a, **kw: calls.append(a[3]) or {"ew_f1": len(calls) / 10}
  )
  assert grpo.evaluate_phase(ctx, None, workdir, "sft", 4, "k")["ew_f1"] == 0.1
  assert grpo.evaluate_phase(ctx, None, workdir, "sft", 4, "k")["ew_f1"] == 0.1  # cached
  ctx.data_keys["eval"] = "e2"  # other held-out clips, gold or features
  assert grpo.evaluate_phase(ctx, None, workdir, "sft", 4, "k")["ew_f1"] == 0.2
  assert grpo.evaluate_phase(ctx, None, workdir, "sft", 5, "k")["ew_f1"] == 0.3  # other step
  assert grpo.evaluate_phase(ctx, None, workdir, "sft", 5, "k2")["ew_f1"] == 0.4  # other start
  # One evaluation line: the latest.
  lines = [r for r in run_io.read_metrics(workdir) if "eval_sft/ew_f1" in r]
  assert [(r["step"], r["eval_sft/ew_f1"]) for r in lines] == [(5, 0.4)]

  ckpt = tmp_path / "grpo" / "checkpoints"
  (ckpt / "2").mkdir(parents=True)
  ckpt_dir, key = grpo.rl_phase(ctx, workdir, "grpo", "k", 4)
  assert ckpt_dir == str(ckpt)
  writer.write_metrics(1, {"grpo/loss": 1.0})
  writer.write_metrics(2, {"grpo/loss": 2.0, "sft/loss": 0.5})
  assert grpo.rl_phase(ctx, workdir, "grpo", "k", 4) == (ckpt_dir, key)
  assert (ckpt / "2").is_dir()  # same data and cold start: resumed
  ctx.data_keys["rl"] = "r2"
  _, new_key = grpo.rl_phase(ctx, workdir, "grpo", "k", 4)
  assert not ckpt.exists() and (tmp_path / "grpo" / f"checkpoints.stale-{key}" / "2").is_dir()
  assert [r for r in run_io.read_metrics(workdir) if "grpo/loss" in r] == []
  assert run_io.read_json(f"{workdir}/summary.json")["phase_keys"]["grpo"] == new_key
  assert grpo.rl_phase(ctx, workdir, "grpo", "k", 5)[1] != new_key  # another cold start
  writer.close()

  # The data key follows every clip's text, gold and features entry.
  manifest = input_features.Manifest({}, {"a": {"media": {"audio": [1, 2]}}}, {}, {})
  sample = {"name": "a", "labels": ["happy"], "reason": "r", "subtitle": "s"}
  base = features_lib.data_key("/f/k1", [sample], manifest)
  assert features_lib.data_key("/f/k1", [sample], manifest) == base
  for changed in ({"labels": ["sad"]}, {"reason": "q"}, {"subtitle": "t"}):
    assert features_lib.data_key("/f/k1", [dict(sample, **changed)], manifest) != base
  assert features_lib.data_key("/f/k2", [sample], manifest) != base
  moved = input_features.Manifest({}, {"a": {"media": {"audio": [1, 3]}}}, {}, {})
  assert features_lib.data_key("/f/k1", [sample], moved) != base
