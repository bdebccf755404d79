"""AffectGPT: frozen CLIP/HuBERT features -> pre-fusion -> spliced into a LoRA Qwen2.

The policy (`AffectGPT`) holds only what is trained or needed to generate: the
pre-fusion (`fusion`) and the LLM (`llm`). The frozen encoders are separate modules
(`VisionEncoder`, `AudioEncoder`) whose outputs can be cached on disk once
(mer_jax/train/features.py), so training and RL read features, not pixels.

Splicing follows the released code: the prompt holds N copies of each placeholder token
(`<FrameHere>`/`<FaceHere>` -> video, `<AudioHere>` -> audio, `<MultiHere>` -> multi);
the k-th copy's embedding is replaced by the k-th fused token of that modality.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mer_jax.models import clip_vision
from mer_jax.models import fusion as fusion_lib
from mer_jax.models import hubert
from mer_jax.models import qwen2

Array = jax.Array

MODALITIES = ("video", "audio", "multi")


@dataclasses.dataclass(frozen=True)
class AffectGPTConfig:
  llm: qwen2.Qwen2Config
  fusion: fusion_lib.FusionConfig
  # (token id, modality) of every placeholder token in the tokenizer.
  placeholders: tuple[tuple[int, str], ...]


class AffectGPT(nn.Module):
  """The policy: `fusion` (trainable) + `llm` (frozen base + trainable LoRA)."""

  config: AffectGPTConfig

  def setup(self):
    self.fusion = fusion_lib.PreFusion(self.config.fusion)
    self.llm = qwen2.Qwen2ForCausalLM(self.config.llm)

  def fused_tokens(self, vision_feats: Array, audio_feats: Array) -> dict[str, Array]:
    """`[B, F, Dv]`, `[B, C, Da]` -> {modality: `[B, N_m, E]`}."""
    return self.fusion(vision_feats, audio_feats)

  def embed_prompt(self, input_ids: Array, vision_feats: Array, audio_feats: Array) -> Array:
    """Token embeddings `[B, T, E]` with every placeholder replaced by its fused token."""
    embeds = self.llm.embed(input_ids)
    tokens = self.fused_tokens(vision_feats, audio_feats)
    for modality in MODALITIES:
      ids = [tid for tid, m in self.config.placeholders if m == modality]
      if not ids:
        continue
      is_ph = jnp.isin(input_ids, jnp.asarray(ids, input_ids.dtype))
      occurrence = jnp.clip(jnp.cumsum(is_ph, axis=1) - 1, 0, tokens[modality].shape[1] - 1)
      fused = jnp.take_along_axis(
          tokens[modality].astype(embeds.dtype), occurrence[..., None], axis=1
      )
      embeds = jnp.where(is_ph[..., None], fused, embeds)
    return embeds

  def __call__(
      self,
      input_ids: Array,
      vision_feats: Array,
      audio_feats: Array,
      attention_mask: Array,
      *,
      positions: Array | None = None,
      lora: bool = True,
      deterministic: bool = True,
      return_hidden: bool = False,
  ):
    """Full-sequence forward: logits `[B, T, V]` (float32) for training / scoring.

    `positions` default `cumsum(attention_mask) - 1`; the released training forward uses
    `arange(T)` (Hugging Face's default), which differs only on masked positions.
    """
    embeds = self.embed_prompt(input_ids, vision_feats, audio_feats)
    out = self.llm(
        inputs_embeds=embeds,
        attention_mask=attention_mask,
        positions=positions,
        lora=lora,
        deterministic=deterministic,
        return_hidden=return_hidden,
    )
    return (out[0], out[2]) if return_hidden else out[0]

  def decode(
      self,
      input_ids: Array | None = None,
      *,
      inputs_embeds: Array | None = None,
      positions: Array,
      attention_mask: Array,
      cache: Any,
      lora: bool = True,
      logits_range: tuple[int, int] | None = None,
  ):
    """The LLM call the sampler drives (prefill with embeds, then token steps)."""
    return self.llm(
        input_ids,
        inputs_embeds=inputs_embeds,
        positions=positions,
        attention_mask=attention_mask,
        cache=cache,
        lora=lora,
        logits_range=logits_range,
    )

  def init_cache(self, batch: int, max_len: int, dtype: Any = None):
    return self.llm.init_cache(batch, max_len, dtype)


class VisionEncoder(nn.Module):
  """Frozen CLIP: frames `[B, F, 3, H, W]` -> projected image features `[B, F, P]`."""

  config: clip_vision.CLIPVisionConfig

  def setup(self):
    self.clip = clip_vision.CLIPVisionModelWithProjection(self.config)

  def __call__(self, frames: Array) -> Array:
    b, f = frames.shape[:2]
    feats = self.clip.get_image_features(frames.reshape((b * f,) + frames.shape[2:]))
    return feats.reshape(b, f, -1).astype(jnp.float32)


class AudioEncoder(nn.Module):
  """Frozen HuBERT: clips `[B, C, S]` -> mean over time of the mean of the last k layers `[B, C, E]`."""

  config: hubert.HubertConfig
  num_last_layers: int = 4

  def setup(self):
    self.hubert = hubert.HubertModel(self.config)

  def __call__(self, clips: Array) -> Array:
    b, c = clips.shape[:2]
    out = self.hubert(clips.reshape(b * c, -1), output_hidden_states=True)
    hidden = out["hidden_states"][-self.num_last_layers :].mean(axis=0)  # [B*C, T, E]
    return hidden.mean(axis=1).reshape(b, c, -1).astype(jnp.float32)


def placeholder_ids(tokenizer) -> tuple[tuple[int, str], ...]:
  """(id, modality) of the placeholder tokens the tokenizer knows."""
  from input_pipeline import prompts  # the placeholder strings live with the prompt builder

  pairs = [
      (prompts.FRAME_TOKEN, "video"),
      (prompts.FACE_TOKEN, "video"),
      (prompts.AUDIO_TOKEN, "audio"),
      (prompts.MULTI_TOKEN, "multi"),
  ]
  out = []
  for token, modality in pairs:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
      raise ValueError(
          f"tokenizer has no {token} token; add the placeholder tokens "
          "(input_pipeline.tokenization) before building the model"
      )
    out.append((int(tid), modality))
  return tuple(out)
