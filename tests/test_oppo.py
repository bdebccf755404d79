"""OPPO: routing matrix and omni reward on hand-made embeddings, masked KL on the real policy.

The OPPO update against a reference forward (the omni KL of routed tokens, its sign, its
gradient), and each completion scored against its own sample. Resume after SIGKILL and
2 processes == 1 process: tests/test_multihost.py.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.rl import omni
from tests import hf_fixtures
from tests import rl_helpers


def _unit(*rows):
  x = np.asarray(rows, np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_routing_matrix_and_reward_by_hand():
  # 3-d "embeddings": visual cue along x, audio cue along y, emotion cue along z.
  cues = {"visual": _unit([1, 0, 0]), "audio": _unit([0, 1, 0]), "emotion": _unit([0, 0, 1])}
  clauses = _unit([1, 0, 0], [0.6, 0.8, 0], [0, 0.3, 0.4])  # cos to (x, y, z) below
  m = omni.routing_matrix(cues["visual"], clauses)
  np.testing.assert_allclose(m, [[1.0, 0.6, 0.0]], atol=1e-6)
  # delta = 0.5: s = max(M - 0.5, 0) / 0.5 with M(visual) = 1, M(audio) = 0.8, M(emotion) = 0.8
  np.testing.assert_allclose(
      omni.hit_scores(omni.routing_matrix(cues["audio"], clauses), 0.5), [0.6], atol=1e-6
  )
  assert omni.omni_reward_value(cues, clauses, 0.5) == pytest.approx(1.0 + 0.6 + 0.6, abs=1e-5)
  # Eq. 4 averages within a set: a second, uncovered visual cue halves the visual term.
  cues2 = dict(cues, visual=_unit([1, 0, 0], [0, 0, 1]))
  assert omni.omni_reward_value(cues2, clauses, 0.5) == pytest.approx(
      0.5 * (1.0 + 0.6) + 0.6 + 0.6, abs=1e-5
  )
  # Empty cue set adds nothing; no clauses score 0.
  assert omni.omni_reward_value(dict(cues, audio=np.zeros((0, 3))), clauses, 0.5) == pytest.approx(
      1.6, abs=1e-5
  )
  assert omni.omni_reward_value(cues, np.zeros((0, 3), np.float32), 0.5) == 0.0
  # Eq. 9: clause 0 -> visual (cos 1), clause 1 -> audio (0.8 > 0.6), clause 2 -> audio at 0.6 > 0.5,
  # but with delta 0.65 clause 2 is dropped.
  assert omni.route_clauses(cues, clauses, 0.5) == ["video", "audio", "audio"]
  assert omni.route_clauses(cues, clauses, 0.65) == ["video", "audio", None]
  assert omni.route_clauses({"visual": cues["visual"]}, clauses, 0.5) == ["video", "video", None]


def test_omni_reward_registered_on_real_embeddings():
  hf_fixtures.require_minilm()
  from mer_jax.rl import rewards

  sample = {
      "name": "s",
      "cues": {
          "visual": ["the corners of her mouth turn up into a smile"],
          "audio": ["her voice is high-pitched and lively"],
          "emotion": ["the facial expression and the voice all suggest happiness"],
      },
  }
  good = (
      "<think>In the video, the corners of her mouth turn up into a smile. In the audio, her voice is "
      "high-pitched and lively. The facial expression and the voice all suggest happiness.</think>"
      "<answer>happy</answer>"
  )
  partial = "<think>In the video, her mouth turns up into a smile.</think><answer>happy</answer>"
  cfg = {"oppo": {"delta": 0.5, "embedding_model": "minilm", "cue_extractor": "rules"}}
  scores = rewards.score_reward(
      "omni", [good, partial, "<answer>happy</answer>"], [sample] * 3, cfg
  )
  assert scores[0] == pytest.approx(3.0, abs=1e-4)
  assert 0.3 < scores[1] < 1.0 and scores[2] == 0.0


class _WordTokenizer:

  def __init__(self, words):
    self.words = words

  def batch_decode(self, seqs, skip_special_tokens=True):
    return ["".join(self.words[t] for t in s) for s in seqs]


def test_routed_token_weights_map_clauses_to_tokens():
  hf_fixtures.require_minilm()
  words = [
      "<think>",
      "her",
      " brows",
      " are",
      " furrowed",
      ",",
      " her",
      " voice",
      " is",
      " loud",
      ",",
      " so",
      " angry",
      "</think>",
  ]
  tok = _WordTokenizer(words)
  tokens = np.arange(len(words))[None]
  text = tok.batch_decode(tokens)[0]
  sample = {
      "cues": {
          "visual": ["her brows are furrowed"],
          "audio": ["her voice is loud and harsh"],
          "emotion": ["anger"],
      }
  }
  cfg = {"oppo": {"delta": 0.5, "embedding_model": "minilm", "cue_extractor": "rules"}}
  arrays, stats = omni.routed_token_weights(
      tok, [text], np.pad(tokens, ((0, 0), (0, 2))), np.array([len(words)]), [sample], cfg
  )
  np.testing.assert_array_equal(arrays["omni_weights_video"][0], [0, 1, 1, 1, 1] + [0] * 11)
  np.testing.assert_array_equal(arrays["omni_weights_audio"][0], [0] * 6 + [1, 1, 1, 1] + [0] * 6)
  assert stats["omni/routed_clauses_video"] == 1 and stats["omni/clauses"] == 3


def test_modality_keep_mask():
  keep = np.asarray(omni.modality_keep_mask(jax.random.PRNGKey(0), (5, 10), 0.7))
  np.testing.assert_array_equal(keep.sum(1), [3] * 5)
  assert len({tuple(r) for r in keep}) > 1  # positions differ per row
  assert np.all(np.asarray(omni.modality_keep_mask(jax.random.PRNGKey(0), (2, 4), 0.0)) == 1)


@pytest.fixture(scope="module")
def ctx(recipe, run_context, tmp_path_factory):
  config = recipe("oppo", "test")
  config.data.synthmer.num_sft = 4
  config.data.synthmer.num_rl = 4
  config.data.synthmer.num_eval = 2
  workdir = tmp_path_factory.mktemp("oppo_ctx")
  with run_context(config, workdir, roles=("rl",)) as ctx:
    yield ctx


def _batch(ctx, n=2, length=6):
  from input_pipeline import datasets

  config = ctx.config.copy_and_resolve_references()
  config.data.batch_size = n
  it = datasets.make_train_iterator(
      config, ctx.samples["rl"], ctx.tokenizer, prompt_only=True, question="labels"
  )
  arrays, _ = datasets.split_meta(next(it))
  rng = np.random.default_rng(0)
  return {
      "prompt_ids": arrays["input_ids"],
      "prompt_mask": arrays["attention_mask"],
      "vision_feats": arrays["vision_feats"],
      "audio_feats": arrays["audio_feats"],
      "completion": rng.integers(5, 200, (n, length)).astype(np.int32),
      "completion_mask": np.ones((n, length), np.int32),
  }


def test_masked_kl_zero_without_masking_and_only_on_routed_tokens(ctx):
  from mer_jax.rl import grpo

  model, g = ctx.policy.model, ctx.config.grpo
  params = rl_helpers.sharpened(ctx.policy.params)  # masking a modality visibly moves it
  batch = {k: jnp.asarray(v) for k, v in _batch(ctx).items()}
  logits = grpo.completion_logits(model, params, batch, g.temperature)
  ones = jnp.ones(batch["completion"].shape, jnp.float32)
  routed = jnp.zeros_like(ones).at[0, 2:4].set(1.0)
  rng = jax.random.PRNGKey(3)

  def run(rho, video, audio, scope="routed"):
    o = ctx.config.oppo.copy_and_resolve_references()
    o.rho, o.loss_scope, o.loss_beta = rho, scope, 0.5
    b = dict(batch, omni_weights_video=video, omni_weights_audio=audio)
    return jax.device_get(omni.make_omni_loss(model, g, o)(params, b, logits, rng))

  term, m = run(0.0, ones, ones)
  assert term == 0.0 and m["omni_kl_video"] == 0.0 and m["omni_kl_audio"] == 0.0
  term, m = run(1.0, routed, jnp.zeros_like(ones))
  assert m["omni_kl_video"] > 0 and m["omni_kl_audio"] == 0 and m["omni_tokens_video"] == 2
  assert term == pytest.approx(-0.5 * m["omni_kl_video"], rel=1e-6)
  # The routed sum is the per-token KL of exactly those tokens (video fully masked here).
  masked = omni.masked_batch(batch, "video", jnp.zeros(batch["vision_feats"].shape[:2]))
  per_token = np.asarray(
      omni.losses_lib.token_kl(logits, grpo.completion_logits(model, params, masked, g.temperature))
  )
  assert np.all(per_token > 0)
  assert m["omni_kl_video"] == pytest.approx(per_token[0, 2:4].sum(), rel=1e-4)
  # PAPO scope: every completion token of both modalities.
  _, papo = run(1.0, jnp.zeros_like(ones), jnp.zeros_like(ones), scope="all")
  assert (
      papo["omni_kl_video"] == pytest.approx(per_token.sum(), rel=1e-4)
      and papo["omni_tokens_audio"] == ones.sum()
  )


def test_omni_reward_and_routing_stay_with_their_own_sample():
  """Each completion is scored and routed against its own sample's cues, in batch order."""
  hf_fixtures.require_minilm()
  from mer_jax.rl import rewards

  a = {
      "name": "a",
      "cues": {
          "visual": ["her brows are furrowed"],
          "audio": ["her voice is loud and harsh"],
          "emotion": ["anger"],
      },
  }
  b = {
      "name": "b",
      "cues": {
          "visual": ["the corners of his mouth turn up into a smile"],
          "audio": ["his voice is high-pitched and lively"],
          "emotion": ["happiness"],
      },
  }
  text_a = (
      "<think>her brows are furrowed, her voice is loud and harsh</think><answer>angry</answer>"
  )
  text_b = "<think>the corners of his mouth turn up into a smile</think><answer>happy</answer>"
  cfg = {"oppo": {"delta": 0.5, "embedding_model": "minilm", "cue_extractor": "rules"}}
  alone = [rewards.score_reward("omni", [t], [s], cfg)[0] for t, s in ((text_a, a), (text_b, b))]
  batch = rewards.score_reward("omni", [text_a, text_b, text_b, text_a], [a, b, b, a], cfg)
  np.testing.assert_allclose(batch, [alone[0], alone[1], alone[1], alone[0]], atol=1e-5)
  swapped = rewards.score_reward("omni", [text_a, text_b], [b, a], cfg)
  assert np.all(swapped < np.asarray(alone) - 0.3)  # the cues of another clip do not match

  words = text_a.split(" "), text_b.split(" ")
  vocab = sorted({w for ws in words for w in ws})
  tok = _WordTokenizer([w + " " for w in vocab])
  ids = [[vocab.index(w) for w in ws] for ws in words]
  length = max(map(len, ids))
  tokens = np.asarray([r + [0] * (length - len(r)) for r in ids])
  lengths = np.asarray([len(r) for r in ids])
  texts = tok.batch_decode([r[:n] for r, n in zip(tokens, lengths, strict=True)])
  arrays, _ = omni.routed_token_weights(tok, texts, tokens, lengths, [a, b], cfg)
  # Row a routes a visual and an audio clause; row b only a visual one (no audio clause).
  assert arrays["omni_weights_video"][0].sum() > 0 and arrays["omni_weights_audio"][0].sum() > 0
  assert arrays["omni_weights_video"][1].sum() > 0 and arrays["omni_weights_audio"][1].sum() == 0
  flipped, _ = omni.routed_token_weights(tok, texts[::-1], tokens[::-1], lengths[::-1], [b, a], cfg)
  np.testing.assert_array_equal(flipped["omni_weights_audio"], arrays["omni_weights_audio"][::-1])


def _full_forward_logits(model, params, batch, temperature):
  """Completion logits from the whole `[N, P + L, V]` forward (no `logits_range`), sliced here."""
  prompt = model.apply(
      {"params": params},
      batch["prompt_ids"],
      batch["vision_feats"],
      batch["audio_feats"],
      method=lambda m, i, v, a: m.embed_prompt(i, v, a),
  )
  completion = model.apply(
      {"params": params}, batch["completion"], method=lambda m, ids: m.llm.embed(ids)
  )
  logits, _ = model.apply(
      {"params": params},
      inputs_embeds=jnp.concatenate([prompt, completion], axis=1),
      attention_mask=jnp.concatenate([batch["prompt_mask"], batch["completion_mask"]], axis=1),
      method=lambda m, **kw: m.llm(**kw),
  )
  p, length = batch["prompt_ids"].shape[1], batch["completion"].shape[1]
  return logits[:, p - 1 : p + length - 1] / temperature


def test_oppo_update_maximizes_the_masked_kl_of_routed_tokens(ctx):
  """OPPO's loss term equals the KL of a reference forward and an update increases it."""
  from mer_jax.models import lora as lora_lib
  from mer_jax.rl import grpo
  from mer_jax.rl import oppo
  from mer_jax.train import mesh as mesh_lib
  from mer_jax.train import policy as policy_lib
  from mer_jax.train import state as state_lib

  config = ctx.config.copy_and_resolve_references()
  config.oppo.rho = 1.0  # mask every position: the masked input is deterministic
  config.oppo.loss_beta = 0.5
  config.oppo.loss_scope = "routed"
  config.grpo.prompts_per_step = 1
  config.grpo.num_generations = 2
  config.grpo.lr = 1e-3
  octx = dataclasses.replace(ctx, config=config)
  hooks = oppo.make_hooks(octx)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  policy = policy_lib.build_policy(config, ctx.tokenizer, mesh)
  params = rl_helpers.sharpened(policy.params)
  trainable, frozen, t_sh, f_sh = state_lib.split_trainable(
      dataclasses.replace(policy, params=params)
  )
  state, _, update, _ = grpo.make_grpo_step(
      policy, config, mesh, trainable, frozen, t_sh, f_sh, hooks
  )
  batch = _batch(ctx)
  n, length = batch["completion"].shape
  video = np.zeros((n, length), np.float32)
  audio = np.zeros((n, length), np.float32)
  video[0, 1:4] = 1.0
  audio[1, 2:5] = 1.0
  batch.update(
      rewards=np.asarray([0.3, 0.3], np.float32),  # one group, equal rewards: no GRPO gradient
      old_logprobs=np.zeros((n, length), np.float32),
      omni_weights_video=video,
      omni_weights_audio=audio,
  )
  arrays = mesh_lib.put_global_batch(batch, mesh)
  model, t = policy.model, config.grpo.temperature

  @jax.jit
  def token_kls(p):
    full = _full_forward_logits(model, p, arrays, t)
    return [
        omni.losses_lib.token_kl(
            full, _full_forward_logits(model, p, dict(arrays, **{k: arrays[k] * 0}), t)
        )
        for k in ("vision_feats", "audio_feats")
    ]

  def reference_kls(p):
    return [
        float(np.sum(np.asarray(kl) * w))
        for kl, w in zip(token_kls(p), (video, audio), strict=True)
    ]

  want = reference_kls(params)
  assert min(want) > 1e-4
  state, metrics = update(state, frozen, arrays)
  got = [float(metrics["omni_kl_video"]), float(metrics["omni_kl_audio"])]
  np.testing.assert_allclose(got, want, rtol=2e-3)
  assert float(metrics["omni_tokens_video"]) == 3 and float(metrics["omni_tokens_audio"]) == 3
  tokens = float(np.sum(batch["completion_mask"]))
  assert float(metrics["loss"]) == pytest.approx(-0.5 * sum(want) / tokens, rel=2e-3)
  assert float(metrics["grad_norm"]) > 0
  state, _ = update(state, frozen, arrays)
  after = reference_kls(lora_lib.combine_params(state.trainable, frozen))
  assert sum(after) > sum(want)
