"""Qwen2 / Qwen2.5 causal LM (HF `Qwen2ForCausalLM`) with LoRA, KV cache and scanned layers,
and the Qwen3 layout of the same decoder (HF `Qwen3Model`, for Qwen3-Embedding).

Module names mirror the HF state dict (`model.layers.{i}.self_attn.q_proj`, ...), so the
key map in `mer_jax/hf/` is mechanical. Shapes: B batch, T query length, S key slots
(T without a cache, `max_len` with one), E hidden, H/K query/kv heads, D head dim, V vocab.

Qwen3 differs from Qwen2 in three places, all config-driven here: no q/k/v biases
(`attention_bias`), an RMSNorm over the head dim on every query and key head before
RoPE (`q_norm`, `k_norm`), and an explicit `head_dim`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mer_jax.models import layers
from mer_jax.models import lora as lora_lib

Array = jax.Array
Cache = dict[str, Array]


@dataclasses.dataclass(frozen=True)
class Qwen2Config(layers.HFConfig):
  MODEL_TYPE = "qwen2"
  ARCHITECTURES = ("Qwen2ForCausalLM",)

  vocab_size: int = 151936
  hidden_size: int = 4096
  intermediate_size: int = 22016
  num_hidden_layers: int = 32
  num_attention_heads: int = 32
  num_key_value_heads: int = 32
  hidden_act: str = "silu"
  max_position_embeddings: int = 32768
  initializer_range: float = 0.02
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  tie_word_embeddings: bool = False
  bos_token_id: int | None = None
  eos_token_id: int | None = None
  # Runtime (not written to config.json).
  dtype: str = "float32"
  param_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"
  lora_rank: int = 0
  lora_alpha: float = 32.0
  lora_dropout: float = 0.0
  lora_targets: tuple[str, ...] = lora_lib.DEFAULT_TARGETS

  QK_NORM: ClassVar[bool] = False  # Qwen3: RMSNorm on each query/key head before RoPE

  @property
  def head_dim(self) -> int:
    return self.hidden_size // self.num_attention_heads

  @property
  def qkv_bias(self) -> bool:
    return True

  @classmethod
  def _normalize_hf(cls, d: dict[str, Any]) -> dict[str, Any]:
    # transformers >= 5 writes `rope_parameters`; older configs (the released Qwen2.5) `rope_theta`.
    rope = d.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
      raise ValueError(f"unsupported rope_parameters {rope}")
    if "rope_theta" in rope and "rope_theta" not in d:
      d["rope_theta"] = rope["rope_theta"]
    if d.get("use_sliding_window"):
      raise ValueError("Qwen2 sliding-window attention is not supported")
    return d

  def to_hf_dict(self) -> dict[str, Any]:
    d = super().to_hf_dict()
    d["rope_parameters"] = {"rope_type": "default", "rope_theta": self.rope_theta}
    d["use_sliding_window"] = False
    return d


@dataclasses.dataclass(frozen=True)
class Qwen3Config(Qwen2Config):
  """HF `Qwen3Config` (Qwen3-Embedding uses its decoder, `Qwen3Model`)."""

  MODEL_TYPE = "qwen3"
  ARCHITECTURES = ("Qwen3ForCausalLM",)
  QK_NORM = True

  vocab_size: int = 151669
  hidden_size: int = 1024
  intermediate_size: int = 3072
  num_hidden_layers: int = 28
  num_attention_heads: int = 16
  num_key_value_heads: int = 8
  head_dim: int = 128  # a field in Qwen3 (hidden_size / heads need not equal it)
  max_position_embeddings: int = 32768
  rope_theta: float = 1000000.0
  tie_word_embeddings: bool = True
  attention_bias: bool = False

  @property
  def qkv_bias(self) -> bool:
    return self.attention_bias


def _dense(config: Qwen2Config, name: str, features: int, axes, use_bias: bool) -> layers.Dense:
  targets = lora_lib.normalize_targets(config.lora_targets)
  rank = config.lora_rank if name in targets else 0
  return layers.Dense(
      features,
      axes,
      use_bias=use_bias,
      dtype=config.jnp_dtype,
      param_dtype=config.jnp_param_dtype,
      kernel_init=layers.default_kernel_init(config.initializer_range),
      lora_rank=rank,
      lora_alpha=config.lora_alpha,
      lora_dropout=config.lora_dropout,
      name=name,
  )


def _write_cache(cache: Array, new: Array, index: Array) -> Array:
  """Writes `new` `[B, T, K, D]` into `cache` `[B, S, K, D]` at slot `index` (scalar or per row `[B]`)."""
  new = new.astype(cache.dtype)
  if jnp.ndim(index) == 0:
    return jax.lax.dynamic_update_slice(cache, new, (0, index, 0, 0))
  write = lambda c, n, i: jax.lax.dynamic_update_slice(c, n, (i, 0, 0))
  return jax.vmap(write)(cache, new, index)


class Qwen2Attention(nn.Module):
  config: Qwen2Config

  @nn.compact
  def __call__(
      self,
      x: Array,
      layer_cache: tuple[Array, Array] | None,
      positions: Array,
      mask: Array,
      cache_index: Array | None,
      use_lora: bool,
      deterministic: bool,
  ):
    """x: `[B, T, E]`; layer_cache: (k, v) `[B, S, K, D]` or None; positions `[B, T]`;
    mask: bool `[B, T, S]`. Returns (`[B, T, E]`, updated (k, v) or None)."""
    c = self.config
    h, kv, d = c.num_attention_heads, c.num_key_value_heads, c.head_dim
    call = dict(use_lora=use_lora, deterministic=deterministic)
    q = _dense(c, "q_proj", h * d, ("embed", "heads"), c.qkv_bias)(x, **call)
    k = _dense(c, "k_proj", kv * d, ("embed", "kv_heads"), c.qkv_bias)(x, **call)
    v = _dense(c, "v_proj", kv * d, ("embed", "kv_heads"), c.qkv_bias)(x, **call)
    b, t = x.shape[:2]
    q = nn.with_logical_constraint(
        q.reshape(b, t, h, d), ("batch", "length", "act_heads", "head_dim")
    )
    k = nn.with_logical_constraint(
        k.reshape(b, t, kv, d), ("batch", "length", "act_kv", "head_dim")
    )
    v = nn.with_logical_constraint(
        v.reshape(b, t, kv, d), ("batch", "length", "act_kv", "head_dim")
    )
    if c.QK_NORM:
      norm = lambda name: layers.RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype, name=name)
      q, k = norm("q_norm")(q), norm("k_norm")(k)
    q = layers.rotary_embedding(q, positions, c.rope_theta)
    k = layers.rotary_embedding(k, positions, c.rope_theta)
    new_cache = None
    if layer_cache is not None:
      k = _write_cache(layer_cache[0], k, cache_index)
      v = _write_cache(layer_cache[1], v, cache_index)
      new_cache = (k, v)
      k, v = k.astype(q.dtype), v.astype(q.dtype)
    out = layers.dot_product_attention(q, k, v, mask).reshape(b, t, h * d)
    return _dense(c, "o_proj", c.hidden_size, ("heads", "embed"), False)(out, **call), new_cache


class Qwen2MLP(nn.Module):
  config: Qwen2Config

  @nn.compact
  def __call__(self, x: Array, use_lora: bool, deterministic: bool) -> Array:
    c = self.config
    call = dict(use_lora=use_lora, deterministic=deterministic)
    gate = _dense(c, "gate_proj", c.intermediate_size, ("embed", "mlp"), False)(x, **call)
    up = _dense(c, "up_proj", c.intermediate_size, ("embed", "mlp"), False)(x, **call)
    hidden = nn.with_logical_constraint(
        layers.activation(c.hidden_act)(gate) * up, ("batch", "length", "act_mlp")
    )
    return _dense(c, "down_proj", c.hidden_size, ("mlp", "embed"), False)(hidden, **call)


class Qwen2DecoderLayer(nn.Module):
  """Pre-norm block; scan body signature `(carry, xs, *broadcast) -> (carry, ys)`."""

  config: Qwen2Config

  @nn.compact
  def __call__(
      self,
      x: Array,
      layer_cache,
      positions: Array,
      mask: Array,
      cache_index,
      use_lora: bool,
      deterministic: bool,
  ):
    c = self.config
    norm = lambda name: layers.RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype, name=name)
    attn_out, new_cache = Qwen2Attention(c, name="self_attn")(
        norm("input_layernorm")(x),
        layer_cache,
        positions,
        mask,
        cache_index,
        use_lora,
        deterministic,
    )
    x = x + attn_out
    x = x + Qwen2MLP(c, name="mlp")(norm("post_attention_layernorm")(x), use_lora, deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "act_embed")), new_cache


class Qwen2Model(nn.Module):
  """Embeddings + decoder stack + final norm (HF `model.`)."""

  config: Qwen2Config

  def setup(self):
    c = self.config
    self.embed_tokens = layers.Embed(
        c.vocab_size,
        c.hidden_size,
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
        init_stddev=c.initializer_range,
    )
    self.layers = layers.make_stack(
        Qwen2DecoderLayer,
        c.num_hidden_layers,
        scan=c.scan_layers,
        remat=c.remat_policy,
        in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
        static_argnums=(6, 7),
        config=c,
    )
    self.norm = layers.RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype)

  def __call__(
      self,
      inputs_embeds: Array,
      positions: Array,
      mask: Array,
      cache: Cache | None,
      use_lora: bool,
      deterministic: bool,
  ):
    xs = None if cache is None else (cache["k"], cache["v"])
    index = None if cache is None else cache["index"]
    x = nn.with_logical_constraint(inputs_embeds, ("batch", "length", "act_embed"))
    x, kv = layers.run_stack(self.layers, x, xs, positions, mask, index, use_lora, deterministic)
    new_cache = None
    if cache is not None:
      new_cache = {"k": kv[0], "v": kv[1], "index": cache["index"] + inputs_embeds.shape[1]}
    return self.norm(x), new_cache


class Qwen3Model(Qwen2Model):
  """HF `Qwen3Model` (the decoder without LM head): last hidden states of token batches.

  Params `embed_tokens/`, `layers/`, `norm/` (HF `embed_tokens.weight`, ...; a
  `Qwen3ForCausalLM` checkpoint's `model.` keys load too). Works with either config.
  """

  def __call__(self, input_ids: Array, attention_mask: Array | None = None) -> Array:  # type: ignore[override]
    """`[B, T]` ids (+ `[B, T]` mask, 1 = real token) -> `[B, T, E]` final-norm hidden states.

    Positions are `arange(T)` as in HF without `position_ids`; RoPE is relative, so
    left and right padding give the same states for the real tokens.
    """
    b, t = input_ids.shape
    attention_mask = jnp.ones((b, t), jnp.int32) if attention_mask is None else attention_mask
    slots = jnp.arange(t)
    mask = (slots[None, :] <= slots[:, None])[None] & (attention_mask[:, None, :] > 0)
    positions = jnp.broadcast_to(slots[None], (b, t))
    hidden, _ = super().__call__(self.embed_tokens(input_ids), positions, mask, None, False, True)
    return hidden

  @staticmethod
  def dummy_inputs(config: Qwen2Config) -> dict[str, Array]:
    return {"input_ids": jnp.zeros((1, 1), jnp.int32)}


def last_token_pool_normalize(hidden: Array, attention_mask: Array) -> Array:
  """Qwen3-Embedding pooling: the state of each row's last real token, L2-normalised.

  hidden `[B, T, E]`, attention_mask `[B, T]` (right- or left-padded) -> `[B, E]` float32.
  """
  t = attention_mask.shape[1]
  last = t - 1 - jnp.argmax(jnp.flip(attention_mask, axis=1) > 0, axis=1)
  pooled = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0].astype(jnp.float32)
  return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


class Qwen2ForCausalLM(nn.Module):
  """HF `Qwen2ForCausalLM`. Params: `model/...` and, when untied, `lm_head/kernel [E, V]`."""

  config: Qwen2Config

  def setup(self):
    c = self.config
    self.model = Qwen2Model(c)
    if not c.tie_word_embeddings:
      self.lm_head = layers.Dense(
          c.vocab_size,
          ("embed", "vocab"),
          use_bias=False,
          dtype=c.jnp_dtype,
          param_dtype=c.jnp_param_dtype,
          kernel_init=layers.default_kernel_init(c.initializer_range),
      )

  def embed(self, input_ids: Array) -> Array:
    """Token embeddings `[B, T] int -> [B, T, E]` (splice multimodal features into these)."""
    return self.model.embed_tokens(input_ids)

  def __call__(
      self,
      input_ids: Array | None = None,
      *,
      inputs_embeds: Array | None = None,
      positions: Array | None = None,
      attention_mask: Array | None = None,
      cache: Cache | None = None,
      lora: bool = True,
      deterministic: bool = True,
      return_hidden: bool = False,
      logits_range: tuple[int, int] | None = None,
  ):
    """Causal LM forward (prefill, full sequence, or a decode step with T=1).

    Args:
      input_ids: `[B, T]` int, or None when `inputs_embeds` `[B, T, E]` is given.
      positions: `[B, T]` int RoPE positions; for left padding `cumsum(mask) - 1`.
        Default (no cache only): derived from `attention_mask` that way.
      attention_mask: `[B, S]` (1 = real token) over the key slots: the T inputs without
        a cache, all `max_len` cache slots with one. Default: all ones (no cache only).
      cache: from `init_cache`; the T new keys/values are written at `cache['index']`,
        query t sits in slot `index + t` and attends causally to slots `<= index + t`.
        The index is a scalar or one per row (`[B]` int: rows at different steps).
      lora: False runs the frozen base (adapters skipped).
      deterministic: False enables LoRA dropout (needs the `dropout` rng).
      return_hidden: also return the final-norm hidden states `[B, T, E]`.
      logits_range: static `(start, stop)`: project only positions `start:stop` to the
        vocabulary (logits `[B, stop - start, V]`), e.g. the completion of a
        prompt + completion forward; saves the `[B, T, V]` logits of the prompt.

    Returns:
      `(logits [B, T, V] float32, new_cache)` (new_cache None without a cache), or
      `(logits, new_cache, hidden)` with `return_hidden`.
    """
    if inputs_embeds is None:
      inputs_embeds = self.embed(input_ids)
    b, t = inputs_embeds.shape[:2]
    if cache is None:
      attention_mask = jnp.ones((b, t), jnp.int32) if attention_mask is None else attention_mask
      if positions is None:
        positions = jnp.maximum(jnp.cumsum(attention_mask, axis=-1) - 1, 0)
      query_slots = jnp.arange(t)
    else:
      if positions is None or attention_mask is None:
        raise ValueError("with a cache, pass positions [B, T] and attention_mask [B, max_len]")
      # A scalar index (all rows at the same slot) or one per row `[B]` (slot refill).
      query_slots = jnp.asarray(cache["index"])[..., None] + jnp.arange(t)
    key_slots = jnp.arange(attention_mask.shape[-1])
    causal = key_slots <= query_slots[..., None]  # [T, S] or [B, T, S]
    mask = causal & (attention_mask[:, None, :] > 0)  # [B, T, S]
    hidden, new_cache = self.model(inputs_embeds, positions, mask, cache, lora, deterministic)
    projected = hidden
    if logits_range is not None:
      projected = nn.with_logical_constraint(
          hidden[:, logits_range[0] : logits_range[1]], ("batch", "length", "act_embed")
      )
    if self.config.tie_word_embeddings:
      logits = self.model.embed_tokens.attend(projected)
    else:
      logits = self.lm_head(projected)
    logits = nn.with_logical_constraint(
        logits.astype(jnp.float32), ("batch", "length", "act_vocab")
    )
    if return_hidden:
      return logits, new_cache, hidden
    return logits, new_cache

  def init_cache(self, batch: int, max_len: int, dtype: Any = None) -> Cache:
    """Empty KV cache: `k`, `v` `[L, B, max_len, K, D]` (layer l's cache is `k[l]`), `index` int32 []."""
    c = self.config
    shape = (c.num_hidden_layers, batch, max_len, c.num_key_value_heads, c.head_dim)
    dtype = c.jnp_dtype if dtype is None else dtype
    return {
        "k": jnp.zeros(shape, dtype),
        "v": jnp.zeros(shape, dtype),
        "index": jnp.zeros((), jnp.int32),
    }

  @staticmethod
  def dummy_inputs(config: Qwen2Config) -> dict[str, Array]:
    """Smallest inputs for `init` / `eval_shape`."""
    return {"input_ids": jnp.zeros((1, 1), jnp.int32)}


CACHE_LOGICAL_AXES = ("layers", "batch", "length", "act_kv", "head_dim")
