"""Building blocks shared by the model zoo: configs, norms, rotary, attention, layer stacks.

Every parameter is created with `nn.with_logical_partitioning` using the axis vocabulary of
docs/architecture.md; modules never name mesh axes. Linear layers keep the flax layout
(`kernel [in, out]`), the HF key maps in `mer_jax/hf/` transpose on the way in and out.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mer_jax.models import lora as lora_lib

Array = jax.Array
Axes = tuple[str | None, ...]

REMAT_POLICIES = ("none", "full", "dots")


# ----------------------------------------------------------------------------- configs


@dataclasses.dataclass(frozen=True)
class HFConfig:
  """Base of the architecture configs: HF `config.json` field names plus runtime fields.

  Subclasses list their HF fields as dataclass fields and name the runtime-only ones in
  `RUNTIME_FIELDS` (never written to config.json).
  """

  MODEL_TYPE: ClassVar[str] = ""
  ARCHITECTURES: ClassVar[tuple[str, ...]] = ()
  RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset(
      {
          "dtype",
          "param_dtype",
          "scan_layers",
          "remat_policy",
          "lora_rank",
          "lora_alpha",
          "lora_dropout",
          "lora_targets",
      }
  )

  def __post_init__(self):
    if getattr(self, "remat_policy", "none") not in REMAT_POLICIES:
      raise ValueError(f"remat_policy must be one of {REMAT_POLICIES}, got {self.remat_policy!r}")

  @classmethod
  def from_hf_dict(cls, d: dict[str, Any], **runtime: Any):
    """Builds the config from a HF config.json dict; unknown keys are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in cls._normalize_hf(dict(d)).items()
        if k in names and k not in cls.RUNTIME_FIELDS
    }
    bad = set(runtime) - names
    if bad:
      raise TypeError(f"{cls.__name__}: unknown runtime fields {sorted(bad)}")
    return cls(**kwargs, **runtime)

  @classmethod
  def _normalize_hf(cls, d: dict[str, Any]) -> dict[str, Any]:
    return d

  def to_hf_dict(self) -> dict[str, Any]:
    """The HF config.json dict (architecture fields only, with `model_type`)."""
    d = {
        f.name: getattr(self, f.name)
        for f in dataclasses.fields(self)
        if f.name not in self.RUNTIME_FIELDS
    }
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    d["model_type"] = self.MODEL_TYPE
    d["architectures"] = list(self.ARCHITECTURES)
    return d

  @property
  def jnp_dtype(self):
    return jnp.dtype(getattr(self, "dtype", "float32"))

  @property
  def jnp_param_dtype(self):
    return jnp.dtype(getattr(self, "param_dtype", "float32"))

  @property
  def lora_scale(self) -> float:
    rank = getattr(self, "lora_rank", 0)
    return getattr(self, "lora_alpha", 0.0) / rank if rank else 0.0


# ----------------------------------------------------------------------------- params


def partitioned(init: Callable, axes: Axes) -> Callable:
  return nn.with_logical_partitioning(init, axes)


def default_kernel_init(stddev: float = 0.02) -> Callable:
  return nn.initializers.normal(stddev)


def torch_uniform_init(bound: float) -> Callable:
  """U(-bound, bound): torch `nn.Linear`'s weight and bias initialisation at 1/sqrt(fan_in)."""

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def activation(name: str) -> Callable[[Array], Array]:
  """HF `ACT2FN` names used by the zoo."""
  fns = {
      "silu": jax.nn.silu,
      "swish": jax.nn.silu,
      "gelu": lambda x: jax.nn.gelu(x, approximate=False),
      "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
      "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
      "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
      "relu": jax.nn.relu,
  }
  if name not in fns:
    raise ValueError(f"unsupported activation {name!r}; known: {sorted(fns)}")
  return fns[name]


class Dense(nn.Module):
  """Linear layer `y = x @ kernel + bias` with logical axes and an optional LoRA adapter.

  kernel: `[in, out]` with logical axes `axes`; LoRA `lora_a [in, r]`, `lora_b [r, out]`
  (zero-init), `y += dropout(x) @ lora_a @ lora_b * alpha / r` when `use_lora`.
  `torch_init`: kernel and bias as torch `nn.Linear` initialises them, U(+-1/sqrt(in))
  (kaiming-uniform with a = sqrt(5)); else `kernel_init` and a zero bias.
  """

  features: int
  axes: Axes
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Callable = default_kernel_init()
  lora_rank: int = 0
  lora_alpha: float = 0.0
  lora_dropout: float = 0.0
  torch_init: bool = False

  @nn.compact
  def __call__(self, x: Array, *, use_lora: bool = True, deterministic: bool = True) -> Array:
    bound = 1.0 / float(x.shape[-1]) ** 0.5
    kernel = self.param(
        "kernel",
        partitioned(torch_uniform_init(bound) if self.torch_init else self.kernel_init, self.axes),
        (x.shape[-1], self.features),
        self.param_dtype,
    )
    y = jnp.einsum("...i,io->...o", x.astype(self.dtype), kernel.astype(self.dtype))
    if self.lora_rank:
      y = y + lora_lib.lora_delta(
          self,
          x,
          self.features,
          rank=self.lora_rank,
          alpha=self.lora_alpha,
          dropout=self.lora_dropout,
          axes=self.axes,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          enabled=use_lora,
          deterministic=deterministic,
      )
    if self.use_bias:
      bias = self.param(
          "bias",
          partitioned(
              torch_uniform_init(bound) if self.torch_init else nn.initializers.zeros,
              self.axes[-1:],
          ),
          (self.features,),
          self.param_dtype,
      )
      y = y + bias.astype(self.dtype)
    return y


class RMSNorm(nn.Module):
  """HF Qwen2RMSNorm: fp32 statistics, `weight * x_normed.astype(input dtype)`."""

  eps: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param(
        "scale", partitioned(nn.initializers.ones, ("norm",)), (x.shape[-1],), self.param_dtype
    )
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return scale.astype(self.dtype) * x32.astype(self.dtype)


class LayerNorm(nn.Module):
  """LayerNorm with fp32 statistics; params `scale`, `bias` `[C]` on the `norm` axis.

  `stats_axis=1` on `[B, T, C]` normalizes each channel over time instead, which is torch
  `GroupNorm(num_groups=C, num_channels=C)` (HuBERT-Base's first conv layer).
  """

  eps: float = 1e-5
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  stats_axis: int = -1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    feat = (x.shape[-1],)
    scale = self.param(
        "scale", partitioned(nn.initializers.ones, ("norm",)), feat, self.param_dtype
    )
    bias = self.param("bias", partitioned(nn.initializers.zeros, ("norm",)), feat, self.param_dtype)
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=self.stats_axis, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=self.stats_axis, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(self.dtype)


class Embed(nn.Module):
  """Token embedding table `embedding [num, features]` (axes `vocab, embed`)."""

  num_embeddings: int
  features: int
  axes: Axes = ("vocab", "embed")
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  init_stddev: float = 0.02

  def setup(self):
    self.embedding = self.param(
        "embedding",
        partitioned(nn.initializers.normal(self.init_stddev), self.axes),
        (self.num_embeddings, self.features),
        self.param_dtype,
    )

  def __call__(self, ids: Array) -> Array:
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, x: Array) -> Array:
    """Tied output projection `x @ embedding.T`: `[..., features] -> [..., num]`."""
    return jnp.einsum("...e,ve->...v", x, self.embedding.astype(self.dtype))


# ----------------------------------------------------------------------------- attention


def rotary_embedding(x: Array, positions: Array, theta: float) -> Array:
  """HF rotate-half RoPE. x: `[B, T, H, D]`, positions: `[B, T]` int."""
  head_dim = x.shape[-1]
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, D/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
  cos, sin = jnp.cos(emb), jnp.sin(emb)
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([-x2, x1], axis=-1)
  return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


def dot_product_attention(
    q: Array,
    k: Array,
    v: Array,
    mask: Array | None = None,
    scale: float | None = None,
    implementation: str | None = None,
) -> Array:
  """Multi-head / grouped-query attention with fp32 logits and softmax.

  q: `[B, T, H, D]`; k, v: `[B, S, K, D]` with H % K == 0 (GQA groups share a kv head);
  mask: bool, broadcastable to `[B, T, S]` (True = attend). Returns `[B, T, H, D]`.
  `jax.nn.dot_product_attention` (equal to our einsum reference in fp32); `implementation`
  ('xla' | 'cudnn'; None is XLA in jax 0.10) is the switch for fused kernels.
  """
  if mask is not None:
    mask = mask[:, None]  # [B, 1, T, S]: same for every head
  return jax.nn.dot_product_attention(
      q, k, v, mask=mask, scale=scale, implementation=implementation
  )


class SelfAttention(nn.Module):
  """Bidirectional multi-head self attention with q/k/v/out projections (CLIP, HuBERT).

  Names follow HF (`q_proj`, `k_proj`, `v_proj`, `out_proj`). x: `[B, T, E]`,
  mask: bool `[B, T]` over keys or None.
  """

  num_heads: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    e = x.shape[-1]
    hd = e // self.num_heads
    dense = lambda name, axes: Dense(
        e, axes, dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )
    split = lambda y: y.reshape(*y.shape[:2], self.num_heads, hd)
    q = split(dense("q_proj", ("embed", "heads"))(x))
    k = split(dense("k_proj", ("embed", "heads"))(x))
    v = split(dense("v_proj", ("embed", "heads"))(x))
    key_mask = None if mask is None else mask[:, None, :]
    out = dot_product_attention(q, k, v, key_mask).reshape(x.shape)
    return dense("out_proj", ("heads", "embed"))(out)


# ----------------------------------------------------------------------------- layer stacks


def remat_policy(name: str):
  return {"full": None, "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable}[name]


def make_stack(
    layer_cls: type[nn.Module],
    num_layers: int,
    *,
    scan: bool,
    remat: str,
    in_axes: Sequence[Any],
    static_argnums: Sequence[int] = (),
    **layer_kwargs: Any,
) -> nn.Module | list[nn.Module]:
  """Builds the layer stack in a parent's `setup` (assign it to the HF list name).

  The layer's signature is `__call__(carry, xs, *broadcast) -> (carry, ys)`; `in_axes`
  gives the scan axis of each argument after `carry` (`0` = per layer, `nn.broadcast`);
  `static_argnums` marks Python-valued arguments (counting `self` as 0, as `nn.remat`
  does). With `scan` one module holds params stacked on a leading `layers` axis, remat'd
  with the named policy; otherwise a list, which flax names `<attr>_0 ... <attr>_{n-1}`
  (the HF `<attr>.{i}` layout).
  """
  cls = layer_cls
  if remat != "none":
    cls = nn.remat(
        layer_cls,
        policy=remat_policy(remat),
        prevent_cse=not scan,
        static_argnums=tuple(static_argnums),
    )
  if scan:
    cls = nn.scan(
        cls,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=tuple(in_axes),
        length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    return cls(**layer_kwargs)
  return [cls(**layer_kwargs) for _ in range(num_layers)]


def run_stack(layers: nn.Module | list[nn.Module], carry: Any, xs: Any, *broadcast: Any):
  """Runs a stack from `make_stack`. xs: pytree with a leading `[num_layers]` axis or None.

  Returns `(carry, ys)`, ys stacked along a leading layer axis in both layouts.
  """
  if not isinstance(layers, (list, tuple)):
    return layers(carry, xs, *broadcast)
  ys = []
  for i, layer in enumerate(layers):
    xs_i = None if xs is None else jax.tree.map(operator.itemgetter(i), xs)
    carry, y = layer(carry, xs_i, *broadcast)
    ys.append(y)
  return carry, jax.tree.map(lambda *a: jnp.stack(a), *ys)


# ----------------------------------------------------------------------------- encoder block


@dataclasses.dataclass(frozen=True)
class EncoderNames:
  """HF submodule names of a bidirectional encoder block."""

  attention: str
  norm1: str
  norm2: str
  ffn: str
  fc_in: str
  fc_out: str


CLIP_NAMES = EncoderNames("self_attn", "layer_norm1", "layer_norm2", "mlp", "fc1", "fc2")
HUBERT_NAMES = EncoderNames(
    "attention",
    "layer_norm",
    "final_layer_norm",
    "feed_forward",
    "intermediate_dense",
    "output_dense",
)


class FeedForward(nn.Module):
  """`fc_out(act(fc_in(x)))`: `[B, T, E] -> [B, T, E]`."""

  intermediate_size: int
  act: str
  names: EncoderNames
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    h = Dense(self.intermediate_size, ("embed", "mlp"), name=self.names.fc_in, **kw)(x)
    h = nn.with_logical_constraint(activation(self.act)(h), ("batch", "length", "act_mlp"))
    return Dense(x.shape[-1], ("mlp", "embed"), name=self.names.fc_out, **kw)(h)


class EncoderLayer(nn.Module):
  """Bidirectional transformer block: pre-norm (CLIP, HuBERT-Large) or post-norm (HuBERT-Base).

  Scan body: `(x [B, T, E], None, mask [B, T] bool | None, collect: bool) -> (x, x | None)`;
  `collect` stacks every layer's output (HF `output_hidden_states`).
  """

  num_heads: int
  intermediate_size: int
  act: str
  eps: float
  pre_norm: bool
  names: EncoderNames
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, _: Any, mask: Array | None, collect: bool):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    n = self.names
    attn = SelfAttention(self.num_heads, name=n.attention, **kw)
    ffn = FeedForward(self.intermediate_size, self.act, n, name=n.ffn, **kw)
    norm1 = LayerNorm(self.eps, name=n.norm1, **kw)
    norm2 = LayerNorm(self.eps, name=n.norm2, **kw)
    if self.pre_norm:
      x = x + attn(norm1(x), mask)
      x = x + ffn(norm2(x))
    else:
      x = norm1(x + attn(x, mask))
      x = norm2(x + ffn(x))
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
    return x, (x if collect else None)
