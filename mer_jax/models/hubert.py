"""HuBERT (HF `HubertModel`): Base (`group` conv norm, post-norm encoder) and Large
(`layer` conv norm, `do_stable_layer_norm` pre-norm encoder).

Audio features in AffectGPT average the last 4 hidden layers: call with
`output_hidden_states=True` and read `hidden_states` (HF semantics, see `__call__`).
Activations are channels-last `[B, T, C]` throughout.
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
class HubertConfig(layers.HFConfig):
  MODEL_TYPE = "hubert"
  ARCHITECTURES = ("HubertModel",)

  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  layer_norm_eps: float = 1e-5
  feat_extract_norm: str = "group"
  feat_extract_activation: str = "gelu"
  feat_proj_layer_norm: bool = True
  conv_dim: tuple[int, ...] = (512, 512, 512, 512, 512, 512, 512)
  conv_stride: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
  conv_kernel: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
  conv_bias: bool = False
  num_conv_pos_embeddings: int = 128
  num_conv_pos_embedding_groups: int = 16
  conv_pos_batch_norm: bool = False
  do_stable_layer_norm: bool = False
  mask_time_prob: float = 0.05
  mask_feature_prob: float = 0.0
  initializer_range: float = 0.02
  dtype: str = "float32"
  param_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"

  def __post_init__(self):
    super().__post_init__()
    if self.feat_extract_norm not in ("group", "layer"):
      raise ValueError(
          f"feat_extract_norm must be 'group' or 'layer', got {self.feat_extract_norm!r}"
      )
    if self.conv_pos_batch_norm:
      raise ValueError("conv_pos_batch_norm=True is not supported")

  @property
  def has_masked_spec_embed(self) -> bool:
    return self.mask_time_prob > 0.0 or self.mask_feature_prob > 0.0


def _conv1d(
    x: Array, kernel: Array, stride: int = 1, padding: Any = "VALID", groups: int = 1
) -> Array:
  """x `[B, T, Cin]`, kernel `[K, Cin/groups, Cout]` -> `[B, T', Cout]`.

  A grouped conv runs as `groups` ordinary convs on channel slices: XLA:CPU's grouped
  convolution is ~10x slower than that (the positional conv dominated HuBERT on CPU);
  on GPU/TPU both lower to the same kind of kernels.
  """
  conv = lambda xs, ks: jax.lax.conv_general_dilated(
      xs,
      ks,
      window_strides=(stride,),
      padding=padding,
      dimension_numbers=("NWC", "WIO", "NWC"),
      preferred_element_type=jnp.float32,
  )
  if groups == 1:
    return conv(x, kernel).astype(x.dtype)
  xs = jnp.split(x, groups, axis=-1)
  ks = jnp.split(kernel, groups, axis=-1)
  return jnp.concatenate([conv(a, b) for a, b in zip(xs, ks, strict=True)], axis=-1).astype(x.dtype)


class Conv1D(nn.Module):
  """torch `nn.Conv1d` in channels-last layout. kernel `[K, Cin/groups, Cout]`."""

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  groups: int = 1
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """x: `[B, T, Cin]` -> `[B, (T + 2 pad - K) // stride + 1, Cout]`."""
    kernel = self.param(
        "kernel",
        layers.partitioned(nn.initializers.he_normal(), ("conv", None, "embed")),
        (self.kernel_size, x.shape[-1] // self.groups, self.features),
        self.param_dtype,
    )
    return self._conv(x, kernel)

  def _conv(self, x: Array, kernel: Array) -> Array:
    y = _conv1d(
        x.astype(self.dtype),
        kernel.astype(self.dtype),
        self.stride,
        [(self.padding, self.padding)],
        self.groups,
    )
    if self.use_bias:
      bias = self.param(
          "bias",
          layers.partitioned(nn.initializers.zeros, ("embed",)),
          (self.features,),
          self.param_dtype,
      )
      y = y + bias.astype(self.dtype)
    return y


class WeightNormConv1D(Conv1D):
  """Conv1D with torch `weight_norm(dim=2)`: `w = g * v / ||v||`, norm over all but the
  kernel axis. Params stay in the HF layout: `weight_g [1, 1, K]`, `weight_v [Cout, Cin/g, K]`."""

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k, cin = self.kernel_size, x.shape[-1] // self.groups
    g = self.param(
        "weight_g",
        layers.partitioned(nn.initializers.ones, (None, None, "conv")),
        (1, 1, k),
        self.param_dtype,
    )
    v = self.param(
        "weight_v",
        layers.partitioned(
            nn.initializers.he_normal(in_axis=1, out_axis=0), ("embed", None, "conv")
        ),
        (self.features, cin, k),
        self.param_dtype,
    )
    v32 = v.astype(jnp.float32)
    w = g.astype(jnp.float32) * v32 / jnp.sqrt(jnp.sum(v32 * v32, axis=(0, 1), keepdims=True))
    return self._conv(x, jnp.transpose(w, (2, 1, 0)))


class HubertConvLayer(nn.Module):
  """Feature-encoder conv `i`: conv -> norm (`layer` | `group` on layer 0 | none) -> act."""

  config: HubertConfig
  layer_id: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c, i = self.config, self.layer_id
    kw = dict(dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)
    x = Conv1D(
        c.conv_dim[i], c.conv_kernel[i], c.conv_stride[i], use_bias=c.conv_bias, name="conv", **kw
    )(x)
    if c.feat_extract_norm == "layer":
      x = layers.LayerNorm(1e-5, name="layer_norm", **kw)(x)
    elif i == 0:
      x = layers.LayerNorm(1e-5, name="layer_norm", stats_axis=1, **kw)(x)  # GroupNorm(C, C)
    return layers.activation(c.feat_extract_activation)(x)


class HubertFeatureEncoder(nn.Module):
  config: HubertConfig

  def setup(self):
    self.conv_layers = [HubertConvLayer(self.config, i) for i in range(len(self.config.conv_dim))]

  def __call__(self, input_values: Array) -> Array:
    """Raw waveform `[B, N]` -> conv features `[B, T, conv_dim[-1]]`."""
    x = input_values[:, :, None]
    for conv in self.conv_layers:
      x = conv(x)
    return x


class HubertFeatureProjection(nn.Module):
  config: HubertConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    kw = dict(dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)
    if c.feat_proj_layer_norm:
      x = layers.LayerNorm(c.layer_norm_eps, name="layer_norm", **kw)(x)
    return layers.Dense(c.hidden_size, ("conv", "embed"), name="projection", **kw)(x)


class HubertPositionalConvEmbedding(nn.Module):
  config: HubertConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    k = c.num_conv_pos_embeddings
    y = WeightNormConv1D(
        c.hidden_size,
        k,
        padding=k // 2,
        groups=c.num_conv_pos_embedding_groups,
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
        name="conv",
    )(x)
    y = y[:, : x.shape[1]]  # HubertSamePadLayer drops the extra frame of an even kernel
    return layers.activation(c.feat_extract_activation)(y)


class HubertEncoder(nn.Module):
  """`pos_conv_embed`, `layer_norm` (before the layers in Base, after them in Large), layers."""

  config: HubertConfig

  def setup(self):
    c = self.config
    self.pos_conv_embed = HubertPositionalConvEmbedding(c)
    self.layer_norm = layers.LayerNorm(c.layer_norm_eps, c.jnp_dtype, c.jnp_param_dtype)
    self.layers = layers.make_stack(
        layers.EncoderLayer,
        c.num_hidden_layers,
        scan=c.scan_layers,
        remat=c.remat_policy,
        in_axes=(0, nn.broadcast, nn.broadcast),
        static_argnums=(4,),
        num_heads=c.num_attention_heads,
        intermediate_size=c.intermediate_size,
        act=c.hidden_act,
        eps=c.layer_norm_eps,
        pre_norm=c.do_stable_layer_norm,
        names=layers.HUBERT_NAMES,
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
    )

  def __call__(self, x: Array, mask: Array | None, collect: bool):
    stable = self.config.do_stable_layer_norm
    x = x + self.pos_conv_embed(x)
    if not stable:
      x = self.layer_norm(x)
    first = x
    x, per_layer = layers.run_stack(self.layers, x, None, mask, collect)
    if stable:
      x = self.layer_norm(x)
    return x, first, per_layer


class HubertModel(nn.Module):
  """HF `HubertModel` (inference: no SpecAugment masking; `masked_spec_embed` kept for I/O)."""

  config: HubertConfig

  def setup(self):
    c = self.config
    self.feature_extractor = HubertFeatureEncoder(c)
    self.feature_projection = HubertFeatureProjection(c)
    self.encoder = HubertEncoder(c)
    if c.has_masked_spec_embed:
      self.masked_spec_embed = self.param(
          "masked_spec_embed",
          layers.partitioned(nn.initializers.uniform(1.0), ("embed",)),
          (c.hidden_size,),
          c.jnp_param_dtype,
      )

  def __call__(
      self,
      input_values: Array,
      attention_mask: Array | None = None,
      output_hidden_states: bool = False,
  ) -> dict[str, Array]:
    """input_values: raw 16 kHz waveform `[B, N]` (already feature-extractor normalized).

    attention_mask: optional `[B, T]` bool over the *conv frames*. Returns a dict with
    `last_hidden_state [B, T, E]` and, with `output_hidden_states`, `hidden_states`
    `[L + 1, B, T, E]` in HF order: encoder input (after the positional conv; also after
    the layer norm in Base), then each layer's output; in Large the last entry is the
    final-layer-normed output, as in HF.
    """
    feats = self.feature_extractor(input_values)
    x = self.feature_projection(feats)
    if attention_mask is not None:
      x = jnp.where(attention_mask[..., None], x, 0.0)
    last, first, per_layer = self.encoder(x, attention_mask, output_hidden_states)
    out = {"last_hidden_state": last, "extract_features": feats}
    if output_hidden_states:
      out["hidden_states"] = jnp.concatenate([first[None], per_layer[:-1], last[None]], axis=0)
    return out

  @staticmethod
  def dummy_inputs(config: HubertConfig) -> dict[str, Array]:
    n = 1
    for k, s in zip(reversed(config.conv_kernel), reversed(config.conv_stride), strict=True):
      n = (n - 1) * s + k
    return {"input_values": jnp.zeros((1, n), jnp.float32)}
