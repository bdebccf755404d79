"""Pre-fusion: the attention variant equals a numpy transcription of the released formula."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.models import fusion

B, F, C, DV, DA, H = 3, 8, 8, 12, 16, 20


def _features(seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(B, F, DV)).astype(np.float32), rng.normal(size=(B, C, DA)).astype(
      np.float32
  )


def _init(cfg, video, audio):
  module = fusion.PreFusion(cfg)
  variables = module.init(jax.random.PRNGKey(0), jnp.asarray(video), jnp.asarray(audio))
  params = flax.linen.meta.unbox(variables["params"])
  # Non-zero biases, so a dropped bias term would show.
  params = jax.tree_util.tree_map_with_path(
      lambda path, x: x + 0.1 if path[-1].key == "bias" else x, params
  )
  return module, params


def _linear(p, x):
  return x @ np.asarray(p["kernel"]) + np.asarray(p["bias"])


def test_attention_fusion_matches_released_formula():
  video, audio = _features()
  cfg = fusion.FusionConfig("attention", llm_hidden=H, tokens={"video": 1, "audio": 2, "multi": 1})
  module, params = _init(cfg, video, audio)
  out = module.apply({"params": params}, jnp.asarray(video), jnp.asarray(audio))
  p = jax.tree_util.tree_map(np.asarray, params)

  # encode_video_attention: attention = mlp(h) [b,t,1]; fused = h^T @ attention (no softmax)
  att_v = _linear(p["video_attention_mlp"], video)  # [b, t, 1]
  fused_v = np.matmul(video.transpose(0, 2, 1), att_v)[..., 0]
  att_a = _linear(p["audio_attention_mlp"], audio)
  fused_a = np.matmul(audio.transpose(0, 2, 1), att_a)[..., 0]
  # encode_multi_attention
  v = _linear(p["multi_video_embs"], video.mean(1))
  a = _linear(p["multi_audio_embs"], audio.mean(1))
  att = _linear(p["fc_att"], _linear(p["attention_mlp"], np.concatenate([v, a], 1)))[
      :, :, None
  ]  # [b, 2, 1]
  multi = np.matmul(np.stack([v, a], axis=2), att)[..., 0]

  np.testing.assert_allclose(
      out["video"], _linear(p["video_llm_proj"], fused_v)[:, None], rtol=1e-5, atol=1e-5
  )
  expected_audio = np.repeat(_linear(p["audio_llm_proj"], fused_a)[:, None], 2, axis=1)
  np.testing.assert_allclose(out["audio"], expected_audio, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      out["multi"], _linear(p["multi_llm_proj"], multi)[:, None], rtol=1e-5, atol=1e-5
  )
  assert p["multi_video_embs"]["kernel"].shape == (DV, max(DV, DA))


def test_mean_and_none_shapes():
  video, audio = _features(1)
  for kind, expected in (
      ("mean", {"video": 1, "audio": 1, "multi": 1}),
      ("none", {"video": F, "audio": C, "multi": F + C}),
  ):
    cfg = fusion.FusionConfig(kind, llm_hidden=H, tokens={"video": 1, "audio": 1, "multi": 1})
    module, params = _init(cfg, video, audio)
    out = module.apply({"params": params}, jnp.asarray(video), jnp.asarray(audio))
    assert {k: v.shape[1] for k, v in out.items()} == expected == cfg.expected_tokens(F, C)
    assert all(v.shape == (B, expected[k], H) for k, v in out.items())
  np.testing.assert_allclose(
      out["video"],
      np.einsum("bfd,dh->bfh", video, params["video_llm_proj"]["kernel"])
      + params["video_llm_proj"]["bias"],
      rtol=1e-5,
      atol=1e-5,
  )


def test_qformer_shapes_queries_and_position_limits():
  video, audio = _features(2)
  queries = {"video": 4, "audio": 3, "multi": 5}
  cfg = fusion.FusionConfig(
      "qformer",
      llm_hidden=H,
      tokens={},
      qformer_layers=2,
      qformer_hidden=16,
      qformer_heads=4,
      num_queries=queries,
  )
  module, params = _init(cfg, video, audio)
  out = module.apply({"params": params}, jnp.asarray(video), jnp.asarray(audio))
  assert {k: v.shape for k, v in out.items()} == {k: (B, n, H) for k, n in queries.items()}
  q = params["video_qformer"]
  assert q["query_tokens"].shape == (4, 16) and q["position_embedding"].shape == (32, DV)
  assert "crossattention" in q["layer_0"] and "crossattention" in q["layer_1"]
  assert params["multi_qformer"]["position_embedding"].shape == (264, max(DV, DA))
  # Queries see the inputs: changing one frame changes the video tokens.
  video2 = video.copy()
  video2[:, 3] += 1.0
  out2 = module.apply({"params": params}, jnp.asarray(video2), jnp.asarray(audio))
  assert np.abs(np.asarray(out2["video"]) - np.asarray(out["video"])).max() > 1e-4
  np.testing.assert_allclose(out2["audio"], out["audio"], rtol=1e-6)
  with pytest.raises(ValueError, match="only 8 temporal position embeddings"):
    module.apply({"params": params}, jnp.asarray(video), jnp.zeros((B, 9, DA)))
