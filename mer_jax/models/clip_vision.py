"""CLIP vision tower with projection (HF `CLIPVisionModelWithProjection`).

AffectGPT uses `get_image_features`: the projected, post-layernormed CLS token, one
`[projection_dim]` vector per frame. Pixel values arrive NCHW as from the HF processor.
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
class CLIPVisionConfig(layers.HFConfig):
  MODEL_TYPE = "clip_vision_model"
  ARCHITECTURES = ("CLIPVisionModelWithProjection",)

  hidden_size: int = 768
  intermediate_size: int = 3072
  projection_dim: int = 512
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  num_channels: int = 3
  image_size: int = 224
  patch_size: int = 32
  hidden_act: str = "quick_gelu"
  layer_norm_eps: float = 1e-5
  initializer_range: float = 0.02
  dtype: str = "float32"
  param_dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"

  @classmethod
  def _normalize_hf(cls, d: dict[str, Any]) -> dict[str, Any]:
    if "vision_config" in d:  # a full CLIPModel config.json (openai/clip-vit-large-patch14)
      return {**d["vision_config"], "projection_dim": d.get("projection_dim", cls.projection_dim)}
    return d

  @property
  def num_positions(self) -> int:
    return (self.image_size // self.patch_size) ** 2 + 1


class PatchEmbedding(nn.Module):
  """Conv2d with kernel = stride = patch, no bias, as one einsum. kernel `[p, p, C, E]`."""

  config: CLIPVisionConfig

  @nn.compact
  def __call__(self, pixel_values: Array) -> Array:
    """pixel_values: `[B, C, H, W]` -> `[B, (H/p)(W/p), E]` (row-major patches)."""
    c = self.config
    p = c.patch_size
    kernel = self.param(
        "kernel",
        layers.partitioned(
            layers.default_kernel_init(c.initializer_range), ("conv", "conv", "conv", "embed")
        ),
        (p, p, c.num_channels, c.hidden_size),
        c.jnp_param_dtype,
    )
    b, ch, h, w = pixel_values.shape
    patches = pixel_values.astype(c.jnp_dtype).reshape(b, ch, h // p, p, w // p, p)
    out = jnp.einsum("bcyixj,ijce->byxe", patches, kernel.astype(c.jnp_dtype))
    return out.reshape(b, (h // p) * (w // p), c.hidden_size)


class CLIPVisionEmbeddings(nn.Module):
  """class token + patch embedding + learned absolute positions."""

  config: CLIPVisionConfig

  @nn.compact
  def __call__(self, pixel_values: Array) -> Array:
    """pixel_values: `[B, C, H, W]` -> `[B, 1 + (H/p)(W/p), E]`."""
    c = self.config
    class_embedding = self.param(
        "class_embedding",
        layers.partitioned(layers.default_kernel_init(c.initializer_range), ("embed",)),
        (c.hidden_size,),
        c.jnp_param_dtype,
    )
    patches = PatchEmbedding(c, name="patch_embedding")(pixel_values)
    cls_tok = jnp.broadcast_to(
        class_embedding.astype(c.jnp_dtype), (patches.shape[0], 1, c.hidden_size)
    )
    x = jnp.concatenate([cls_tok, patches], axis=1)
    positions = layers.Embed(
        c.num_positions,
        c.hidden_size,
        axes=(None, "embed"),
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
        init_stddev=c.initializer_range,
        name="position_embedding",
    )
    return x + positions(jnp.arange(c.num_positions))[None]


class CLIPVisionTransformer(nn.Module):
  """HF `vision_model`: embeddings, pre_layrnorm (sic), encoder, post_layernorm on CLS."""

  config: CLIPVisionConfig

  def setup(self):
    c = self.config
    kw = dict(dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)
    self.embeddings = CLIPVisionEmbeddings(c)
    self.pre_layrnorm = layers.LayerNorm(c.layer_norm_eps, **kw)
    self.encoder = CLIPEncoder(c)
    self.post_layernorm = layers.LayerNorm(c.layer_norm_eps, **kw)

  def __call__(self, pixel_values: Array) -> tuple[Array, Array]:
    """Returns (last_hidden_state `[B, 1+N, E]`, pooled `[B, E]`)."""
    x = self.pre_layrnorm(self.embeddings(pixel_values))
    x = self.encoder(x)
    return x, self.post_layernorm(x[:, 0])


class CLIPEncoder(nn.Module):
  config: CLIPVisionConfig

  def setup(self):
    c = self.config
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
        pre_norm=True,
        names=layers.CLIP_NAMES,
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
    )

  def __call__(self, x: Array) -> Array:
    x, _ = layers.run_stack(self.layers, x, None, None, False)
    return x


class CLIPVisionModelWithProjection(nn.Module):
  """`__call__(pixel_values [B, C, H, W])` -> dict with `image_embeds [B, P]`
  (= HF `get_image_features`), `last_hidden_state [B, 1+N, E]`, `pooler_output [B, E]`."""

  config: CLIPVisionConfig

  def setup(self):
    c = self.config
    self.vision_model = CLIPVisionTransformer(c)
    self.visual_projection = layers.Dense(
        c.projection_dim,
        ("embed", "mlp"),
        use_bias=False,
        dtype=c.jnp_dtype,
        param_dtype=c.jnp_param_dtype,
    )

  def __call__(self, pixel_values: Array) -> dict[str, Array]:
    last, pooled = self.vision_model(pixel_values)
    return {
        "image_embeds": self.visual_projection(pooled),
        "last_hidden_state": last,
        "pooler_output": pooled,
    }

  def get_image_features(self, pixel_values: Array) -> Array:
    """`[B, C, H, W] -> [B, projection_dim]` (projected pooled CLS)."""
    return self(pixel_values)["image_embeds"]

  @staticmethod
  def dummy_inputs(config: CLIPVisionConfig) -> dict[str, Array]:
    s = config.image_size
    return {"pixel_values": jnp.zeros((1, config.num_channels, s, s), jnp.float32)}
