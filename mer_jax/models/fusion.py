"""AffectGPT pre-fusion: per-modality temporal fusion + the "multi" token, projected to the LLM.

Inputs are frozen-encoder features: video `[B, F, Dv]` (one CLIP image feature per frame)
and audio `[B, C, Da]` (one HuBERT feature per 2 s clip). Outputs are LLM-width token
embeddings per placeholder: `{"video": [B, Nv, H], "audio": [B, Na, H], "multi": [B, Nm, H]}`.

Variants (`fusion_type`), following the released AffectGPT model:
- `attention`: `s_t = Linear(d, 1)(h_t)` WITHOUT softmax, fused `= sum_t s_t h_t`, then
  `Linear(d, H)`. Multi token: time-means of the raw video and audio features, each through
  `Linear(d, D)` with `D = max(Dv, Da)`, concatenated, `Linear(2D, D)` then `Linear(D, 2)`
  (no activation, no softmax) give 2 weights for the weighted sum of the two D-vectors,
  then `Linear(D, H)`. The single fused vector is repeated for every placeholder copy.
- `mean`: time mean instead of the attention scores (multi token as in `attention`).
- `qformer`: learned queries (init N(0, 0.02)) through BERT-style layers with self- and
  cross-attention (AffectGPT paper eq. 3-4), learned temporal position embeddings added to
  the inputs (video 32, audio 8, multi 264 positions); multi attends to
  concat(Linear(video), Linear(audio)).
- `none`: no temporal fusion: every frame / clip feature becomes its own token; the multi
  tokens are the per-step multi projections of both modalities.

Initialisation (`init`): `torch` = the released code's nn.Linear defaults for every
projection (U(+-1/sqrt(fan_in)) kernel and bias) and nn.Embedding's N(0, 1) for the
Q-Former position embeddings; `normal` = N(0, 0.02) kernels and zero biases.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mer_jax.models import bert
from mer_jax.models import layers

Array = jax.Array

FUSION_TYPES = ("attention", "qformer", "mean", "none")
# Learned temporal position embeddings of the released Q-Formers.
QFORMER_POSITIONS = {"video": 32, "audio": 8, "multi": 264}


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  fusion_type: str
  llm_hidden: int
  tokens: dict  # {"video": Nv, "audio": Na, "multi": Nm}: placeholder copies in the prompt
  qformer_layers: int = 2
  qformer_hidden: int = 768
  qformer_heads: int = 12
  num_queries: dict = dataclasses.field(
      default_factory=lambda: {"video": 32, "audio": 8, "multi": 16}
  )
  dtype: str = "float32"
  param_dtype: str = "float32"
  # `torch`: the released nn.Linear / nn.Embedding default initialisations; `normal`:
  # N(0, 0.02) kernels, zero biases, N(0, 0.02) position embeddings.
  init: str = "normal"

  def __post_init__(self):
    if self.fusion_type not in FUSION_TYPES:
      raise ValueError(f"model.fusion.type must be one of {FUSION_TYPES}, got {self.fusion_type!r}")
    if self.init not in ("torch", "normal"):
      raise ValueError(f"model.fusion.init must be 'torch' or 'normal', got {self.init!r}")

  def qformer_bert_config(self) -> bert.BertConfig:
    return bert.BertConfig(
        vocab_size=1,
        hidden_size=self.qformer_hidden,
        num_hidden_layers=self.qformer_layers,
        num_attention_heads=self.qformer_heads,
        intermediate_size=4 * self.qformer_hidden,
        max_position_embeddings=1,
        type_vocab_size=1,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
        dtype=self.dtype,
        param_dtype=self.param_dtype,
    )

  def expected_tokens(self, num_frames: int, num_clips: int) -> dict:
    """How many embeddings each placeholder receives (prompts must hold as many copies)."""
    if self.fusion_type == "qformer":
      return dict(self.num_queries)
    if self.fusion_type == "none":
      return {"video": num_frames, "audio": num_clips, "multi": num_frames + num_clips}
    return dict(self.tokens)


def _dense(
    cfg: FusionConfig, features: int, axes, name: str, use_bias: bool = True
) -> layers.Dense:
  return layers.Dense(
      features,
      axes,
      use_bias=use_bias,
      dtype=jnp.dtype(cfg.dtype),
      param_dtype=jnp.dtype(cfg.param_dtype),
      torch_init=cfg.init == "torch",
      name=name,
  )


class QFormerLayer(nn.Module):
  """Query self-attention, cross-attention to the inputs, query feed-forward (post-LN BERT)."""

  config: bert.BertConfig

  @nn.compact
  def __call__(self, queries: Array, _: Any, inputs: Array):
    q_mask = jnp.ones(queries.shape[:2], bool)
    kv_mask = jnp.ones(inputs.shape[:2], bool)
    x = bert.BertAttention(self.config, name="attention")(queries, q_mask)
    x = bert.BertAttention(self.config, name="crossattention")(x, kv_mask, inputs)
    h = bert.BertIntermediate(self.config, name="intermediate_query")(x)
    x = bert.BertOutput(self.config, in_axis="mlp", name="output_query")(h, x)
    return x, None


class QFormer(nn.Module):
  """Learned queries attending to `inputs [B, S, Din]` -> `[B, num_queries, hidden]`."""

  config: bert.BertConfig
  num_queries: int
  num_positions: int
  position_init_std: float = 0.02  # 1.0 = torch nn.Embedding's default N(0, 1)

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    c = self.config
    if inputs.shape[1] > self.num_positions:
      raise ValueError(
          f"Q-Former input has {inputs.shape[1]} steps but only {self.num_positions} "
          "temporal position embeddings"
      )
    pos = self.param(
        "position_embedding",
        layers.partitioned(nn.initializers.normal(self.position_init_std), (None, "embed")),
        (self.num_positions, inputs.shape[-1]),
        c.jnp_param_dtype,
    )
    inputs = inputs + pos[None, : inputs.shape[1]].astype(inputs.dtype)
    query = self.param(
        "query_tokens",
        layers.partitioned(nn.initializers.normal(0.02), (None, "embed")),
        (self.num_queries, c.hidden_size),
        c.jnp_param_dtype,
    )
    x = jnp.broadcast_to(query[None].astype(c.jnp_dtype), (inputs.shape[0],) + query.shape)
    x = layers.LayerNorm(c.layer_norm_eps, c.jnp_dtype, c.jnp_param_dtype, name="LayerNorm")(x)
    for i in range(c.num_hidden_layers):
      x, _ = QFormerLayer(c, name=f"layer_{i}")(x, None, inputs)
    return x


def _temporal_attention(cfg: FusionConfig, h: Array, name: str) -> Array:
  """Released `*_attention_mlp`: unnormalized scores, `sum_t s_t h_t`. h [B, T, D] -> [B, D]."""
  scores = _dense(cfg, 1, ("embed", None), name)(h)  # [B, T, 1]
  return jnp.einsum("btd,bto->bd", h, scores)


class PreFusion(nn.Module):
  config: FusionConfig

  @nn.compact
  def __call__(self, video: Array, audio: Array) -> dict[str, Array]:
    """video `[B, F, Dv]`, audio `[B, C, Da]` -> LLM-width tokens per modality."""
    cfg = self.config
    h_llm = cfg.llm_hidden
    d_multi = max(video.shape[-1], audio.shape[-1])
    video = video.astype(jnp.dtype(cfg.dtype))
    audio = audio.astype(jnp.dtype(cfg.dtype))
    multi_video = _dense(cfg, d_multi, ("embed", "mlp"), "multi_video_embs")
    multi_audio = _dense(cfg, d_multi, ("embed", "mlp"), "multi_audio_embs")
    video_proj = _dense(cfg, h_llm, (None, "embed"), "video_llm_proj")
    audio_proj = _dense(cfg, h_llm, (None, "embed"), "audio_llm_proj")
    multi_proj = _dense(cfg, h_llm, (None, "embed"), "multi_llm_proj")

    if cfg.fusion_type == "qformer":
      qcfg = cfg.qformer_bert_config()
      std = 1.0 if cfg.init == "torch" else 0.02
      q = lambda name, n, key: QFormer(qcfg, n, QFORMER_POSITIONS[key], std, name=name)
      multi_in = jnp.concatenate([multi_video(video), multi_audio(audio)], axis=1)
      return {
          "video": video_proj(q("video_qformer", cfg.num_queries["video"], "video")(video)),
          "audio": audio_proj(q("audio_qformer", cfg.num_queries["audio"], "audio")(audio)),
          "multi": multi_proj(q("multi_qformer", cfg.num_queries["multi"], "multi")(multi_in)),
      }
    if cfg.fusion_type == "none":
      multi = jnp.concatenate([multi_video(video), multi_audio(audio)], axis=1)
      return {"video": video_proj(video), "audio": audio_proj(audio), "multi": multi_proj(multi)}

    if cfg.fusion_type == "attention":
      fused_video = _temporal_attention(cfg, video, "video_attention_mlp")
      fused_audio = _temporal_attention(cfg, audio, "audio_attention_mlp")
    else:  # mean
      fused_video, fused_audio = video.mean(axis=1), audio.mean(axis=1)
    v = multi_video(video.mean(axis=1))  # [B, D]
    a = multi_audio(audio.mean(axis=1))
    hidden = _dense(cfg, d_multi, ("mlp", "embed"), "attention_mlp")(
        jnp.concatenate([v, a], axis=-1)
    )
    weights = _dense(cfg, 2, ("embed", None), "fc_att")(hidden)  # [B, 2], no softmax (released)
    multi = weights[:, 0:1] * v + weights[:, 1:2] * a
    repeat = lambda x, key: jnp.repeat(x[:, None, :], cfg.tokens[key], axis=1)
    return {
        "video": repeat(video_proj(fused_video), "video"),
        "audio": repeat(audio_proj(fused_audio), "audio"),
        "multi": repeat(multi_proj(multi), "multi"),
    }
