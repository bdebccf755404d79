"""Released AffectGPT checkpoint key map: placement, transposes, variants, errors."""

import ml_collections
import numpy as np
import pytest

from mer_jax.hf import affectgpt_release as rel


class _T:
  """A stand-in for torch_pickle.LazyTensor."""

  def __init__(self, a):
    self.a, self.shape = np.asarray(a, np.float32), np.shape(a)

  def numpy(self):
    return self.a


def _ckpt(tensors, config=None):
  return rel.ReleasedCheckpoint("ckpt.pth", {k: _T(v) for k, v in tensors.items()}, config or {}, 3)


def _lora_key(i, mod, proj, ab):
  return f"llama_model.base_model.model.model.layers.{i}.{mod}.{proj}.lora_{ab}.default.weight"


def _config(fusion="attention", rank=4, alpha=32.0):
  return ml_collections.ConfigDict(
      {
          "model": {"fusion": {"type": fusion}, "lora": {"rank": rank, "alpha": alpha}},
          "data": {"tokens_per_modality": {"multi": 1, "audio": 1, "video": 1}},
      }
  )


def test_attention_release_maps_onto_scanned_lora_and_fusion():
  rng = np.random.default_rng(0)
  r, d, L = 4, 6, 2
  t = {}
  for i in range(L):
    t[_lora_key(i, "self_attn", "q_proj", "A")] = rng.normal(size=(r, d)).astype(np.float32)
    t[_lora_key(i, "self_attn", "q_proj", "B")] = rng.normal(size=(d, r)).astype(np.float32)
  t["affectgpt_proj.weight"] = rng.normal(size=(d, 5)).astype(np.float32)  # [out=llm, in=vision]
  t["affectgpt_proj.bias"] = rng.normal(size=(d,)).astype(np.float32)
  t["fc_att.weight"] = rng.normal(size=(2, 7)).astype(np.float32)
  t["image_llama_proj.weight"] = rng.normal(size=(d, 5)).astype(np.float32)
  t["video_Qformer.stray"] = rng.normal(size=(1,)).astype(np.float32)
  shapes = {
      ("llm", "model", "layers", "self_attn", "q_proj", "lora_a"): (L, d, r),
      ("llm", "model", "layers", "self_attn", "q_proj", "lora_b"): (L, r, d),
      ("fusion", "video_llm_proj", "kernel"): (5, d),
      ("fusion", "video_llm_proj", "bias"): (d,),
      ("fusion", "fc_att", "kernel"): (7, 2),
  }
  out, report = rel.trainable_from_release(_ckpt(t), shapes, L)
  a = out[("llm", "model", "layers", "self_attn", "q_proj", "lora_a")]
  for i in range(L):
    np.testing.assert_array_equal(a[i], t[_lora_key(i, "self_attn", "q_proj", "A")].T)
    np.testing.assert_array_equal(
        out[("llm", "model", "layers", "self_attn", "q_proj", "lora_b")][i],
        t[_lora_key(i, "self_attn", "q_proj", "B")].T,
    )
  np.testing.assert_array_equal(
      out[("fusion", "video_llm_proj", "kernel")], t["affectgpt_proj.weight"].T
  )
  np.testing.assert_array_equal(out[("fusion", "fc_att", "kernel")], t["fc_att.weight"].T)
  assert report.dropped_keys == ["image_llama_proj.weight"]
  assert report.unknown_keys == ["video_Qformer.stray"]
  assert report.loaded_keys == 2 * L * 1 + 3 and report.epoch == 3
  # Unscanned layers read one key each.
  out2, _ = rel.trainable_from_release(
      _ckpt(t), {("llm", "model", "layers_1", "self_attn", "q_proj", "lora_a"): (d, r)}, L
  )
  np.testing.assert_array_equal(
      out2[("llm", "model", "layers_1", "self_attn", "q_proj", "lora_a")],
      t[_lora_key(1, "self_attn", "q_proj", "A")].T,
  )


def test_qformer_release_keys():
  q = ("fusion", "video_qformer")
  assert rel.released_keys(q + ("query_tokens",), 2)[0] == ["video_query_tokens"]
  assert rel.released_keys(q + ("position_embedding",), 2)[0] == [
      "video_frame_position_embedding.weight"
  ]
  assert rel.released_keys(("fusion", "audio_qformer", "LayerNorm", "scale"), 2)[0] == [
      "audio_Qformer.bert.embeddings.LayerNorm.weight"
  ]
  keys, transform = rel.released_keys(
      ("fusion", "multi_qformer", "layer_1", "crossattention", "self", "key", "kernel"), 2
  )
  assert keys == ["multi_Qformer.bert.encoder.layer.1.crossattention.self.key.weight"]
  np.testing.assert_array_equal(transform(np.ones((3, 2))), np.ones((2, 3)))
  keys, _ = rel.released_keys(
      ("fusion", "video_qformer", "layer_0", "output_query", "LayerNorm", "bias"), 2
  )
  assert keys == ["video_Qformer.bert.encoder.layer.0.output_query.LayerNorm.bias"]
  tokens = np.arange(12.0).reshape(1, 3, 4)
  out, _ = rel.trainable_from_release(
      _ckpt({"video_query_tokens": tokens}), {q + ("query_tokens",): (3, 4)}, 2
  )
  np.testing.assert_array_equal(out[q + ("query_tokens",)], tokens[0])


def test_variant_rank_and_missing_keys_are_named():
  assert (
      rel.fusion_type(
          ["video_attention_mlp.weight", "audio_attention_mlp.weight", "attention_mlp.weight"]
      )
      == "attention"
  )
  assert rel.fusion_type(["video_Qformer.x", "audio_Qformer.x", "multi_Qformer.x"]) == "qformer"
  assert (
      rel.fusion_type(["affectgpt_proj.weight", "audio_llama_proj.weight", "attention_mlp.weight"])
      == "mean"
  )
  with pytest.raises(ValueError, match="mixes fusion variants"):
    rel.fusion_type(["video_Qformer.x", "audio_attention_mlp.w", "attention_mlp.w"])
  t = {
      "video_attention_mlp.weight": np.ones((1, 3)),
      "audio_attention_mlp.weight": np.ones((1, 3)),
      "attention_mlp.weight": np.ones((3, 6)),
      _lora_key(0, "mlp", "up_proj", "A"): np.ones((16, 3)),
  }
  with pytest.raises(ValueError, match="config.model.fusion.type=qformer"[:20]):
    rel.check_config(_ckpt(t), _config("qformer", 16))
  with pytest.raises(ValueError, match="config.model.lora.rank=16"):
    rel.check_config(_ckpt(t), _config("attention", 8))
  with pytest.raises(ValueError, match="lora.alpha=32"):
    rel.check_config(_ckpt(t), _config("attention", 16, alpha=16.0))
  with pytest.raises(ValueError, match="num_video_query_token=2"):
    rel.check_config(_ckpt(t, {"model": {"num_video_query_token": 2}}), _config("attention", 16))
  assert rel.check_config(_ckpt(t), _config("attention", 16)) == ("attention", 16)
  with pytest.raises(ValueError, match="1 weights the model needs.*multi_llama_proj.bias"):
    rel.trainable_from_release(_ckpt(t), {("fusion", "multi_llm_proj", "bias"): (3,)}, 1)
  with pytest.raises(ValueError, match="gives shape"):
    rel.trainable_from_release(_ckpt(t), {("fusion", "video_attention_mlp", "kernel"): (4, 1)}, 1)
