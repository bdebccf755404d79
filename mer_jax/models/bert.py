"""BERT encoder (HF `BertModel`): all-MiniLM-L6-v2 sentence embeddings, Q-Former blocks.

Post-norm blocks with absolute position + token type embeddings. `mean_pool_normalize`
turns the last hidden state into sentence-transformers embeddings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mer_jax.models import layers

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class BertConfig(layers.HFConfig):
  MODEL_TYPE = "bert"
  ARCHITECTURES = ("BertModel",)

  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  pad_token_id: int = 0
  initializer_range: float = 0.02
  position_embedding_type: str = "absolute"
  add_pooling_layer: bool = True
  dtype: str = "float32"
  param_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"

  RUNTIME_FIELDS = layers.HFConfig.RUNTIME_FIELDS | {"add_pooling_layer"}

  def __post_init__(self):
    super().__post_init__()
    if self.position_embedding_type != "absolute":
      raise ValueError("only position_embedding_type='absolute' is supported")


def _dense(c: BertConfig, features: int, axes, name: str) -> layers.Dense:
  return layers.Dense(
      features,
      axes,
      dtype=c.jnp_dtype,
      param_dtype=c.jnp_param_dtype,
      kernel_init=layers.default_kernel_init(c.initializer_range),
      name=name,
  )


def _norm(c: BertConfig) -> layers.LayerNorm:
  return layers.LayerNorm(c.layer_norm_eps, c.jnp_dtype, c.jnp_param_dtype, name="LayerNorm")


class BertEmbeddings(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array, position_ids: Array) -> Array:
    c = self.config
    embed = lambda n, axes, name: layers.Embed(
        n, c.hidden_size, axes, c.jnp_dtype, c.jnp_param_dtype, c.initializer_range, name=name
    )
    x = (
        embed(c.vocab_size, ("vocab", "embed"), "word_embeddings")(input_ids)
        + embed(c.type_vocab_size, (None, "embed"), "token_type_embeddings")(token_type_ids)
        + embed(c.max_position_embeddings, (None, "embed"), "position_embeddings")(position_ids)
    )
    return _norm(c)(x)


class BertSelfAttention(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, kv: Array | None = None) -> Array:
    """x `[B, T, E]`, kv `[B, S, E']` (cross attention) or None, mask bool `[B, S]`."""
    c = self.config
    kv = x if kv is None else kv
    h = c.num_attention_heads
    d = c.hidden_size // h
    split = lambda y: y.reshape(*y.shape[:2], h, d)
    q = split(_dense(c, c.hidden_size, ("embed", "heads"), "query")(x))
    k = split(_dense(c, c.hidden_size, ("embed", "heads"), "key")(kv))
    v = split(_dense(c, c.hidden_size, ("embed", "heads"), "value")(kv))
    return layers.dot_product_attention(q, k, v, mask[:, None, :]).reshape(x.shape)


class BertOutput(nn.Module):
  """`LayerNorm(residual + dense(h))` (HF BertSelfOutput / BertOutput)."""

  config: BertConfig
  in_axis: str = "heads"

  @nn.compact
  def __call__(self, h: Array, residual: Array) -> Array:
    c = self.config
    return _norm(c)(residual + _dense(c, c.hidden_size, (self.in_axis, "embed"), "dense")(h))


class BertAttention(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, mask: Array, kv: Array | None = None) -> Array:
    h = BertSelfAttention(self.config, name="self")(x, mask, kv)
    return BertOutput(self.config, name="output")(h, x)


class BertIntermediate(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    return layers.activation(c.hidden_act)(
        _dense(c, c.intermediate_size, ("embed", "mlp"), "dense")(x)
    )


class BertLayer(nn.Module):
  """Scan body `(x, None, mask) -> (x, None)`."""

  config: BertConfig

  @nn.compact
  def __call__(self, x: Array, _: Any, mask: Array):
    x = BertAttention(self.config, name="attention")(x, mask)
    x = BertOutput(self.config, in_axis="mlp", name="output")(
        BertIntermediate(self.config, name="intermediate")(x), x
    )
    return nn.with_logical_constraint(x, ("batch", "length", "act_embed")), None


class BertEncoder(nn.Module):
  config: BertConfig

  def setup(self):
    c = self.config
    self.layer = layers.make_stack(
        BertLayer,
        c.num_hidden_layers,
        scan=c.scan_layers,
        remat=c.remat_policy,
        in_axes=(0, nn.broadcast),
        config=c,
    )

  def __call__(self, x: Array, mask: Array) -> Array:
    return layers.run_stack(self.layer, x, None, mask)[0]


class BertPooler(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    return jnp.tanh(_dense(c, c.hidden_size, ("embed", "mlp"), "dense")(x[:, 0]))


class BertModel(nn.Module):
  """`__call__(input_ids [B, T], attention_mask=None, token_type_ids=None)` -> dict with
  `last_hidden_state [B, T, E]` and (with the pooling layer) `pooler_output [B, E]`."""

  config: BertConfig

  def setup(self):
    c = self.config
    self.embeddings = BertEmbeddings(c)
    self.encoder = BertEncoder(c)
    if c.add_pooling_layer:
      self.pooler = BertPooler(c)

  def __call__(
      self,
      input_ids: Array,
      attention_mask: Array | None = None,
      token_type_ids: Array | None = None,
      position_ids: Array | None = None,
  ) -> dict[str, Array]:
    b, t = input_ids.shape
    attention_mask = jnp.ones((b, t), bool) if attention_mask is None else attention_mask > 0
    token_type_ids = jnp.zeros((b, t), jnp.int32) if token_type_ids is None else token_type_ids
    position_ids = jnp.broadcast_to(jnp.arange(t), (b, t)) if position_ids is None else position_ids
    x = self.encoder(self.embeddings(input_ids, token_type_ids, position_ids), attention_mask)
    out = {"last_hidden_state": x}
    if self.config.add_pooling_layer:
      out["pooler_output"] = self.pooler(x)
    return out

  @staticmethod
  def dummy_inputs(config: BertConfig) -> dict[str, Array]:
    return {"input_ids": jnp.zeros((1, 1), jnp.int32)}


def mean_pool_normalize(last_hidden_state: Array, attention_mask: Array) -> Array:
  """sentence-transformers Pooling(mean) + Normalize: `[B, T, E], [B, T] -> [B, E]` unit rows."""
  m = attention_mask.astype(jnp.float32)[..., None]
  pooled = jnp.sum(last_hidden_state.astype(jnp.float32) * m, axis=1) / jnp.maximum(
      jnp.sum(m, axis=1), 1e-9
  )
  return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
