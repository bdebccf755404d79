"""Generation with the AffectGPT policy: embed prompts once, repeat, sample on the mesh.

One jitted program per (rows, prompt bucket, sampling settings): the prompts' fused
features are spliced in once per prompt and the embeddings repeated G times for GRPO,
so the encoders and the fusion run B times, not B*G times.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mer_jax.decode import sampler as sampler_lib
from mer_jax.models import sharding as sharding_lib
from mer_jax.train import mesh as mesh_lib

DEVICE_KEYS = ("input_ids", "attention_mask", "vision_feats", "audio_feats")


def _generate_fn(
    model,
    cfg: sampler_lib.SamplingConfig,
    repeat: int,
    lora: bool,
    mesh,
    rules=sharding_lib.DEFAULT_LOGICAL_AXIS_RULES,
):
  """The jitted generation program of one model and setting (cached: compiled once per shape)."""
  rules = tuple(tuple(r) for r in rules)
  key = (id(model), cfg, repeat, lora, mesh, rules)
  if key not in _COMPILED:
    program = functools.partial(_generate, model, cfg=cfg, repeat=repeat, lora=lora)
    _COMPILED[key] = jax.jit(mesh_lib.with_activation_rules(program, mesh, rules))
  return _COMPILED[key]


_COMPILED: dict = {}


def _generate(
    model,
    params,
    batch: Mapping[str, jax.Array],
    rng: jax.Array,
    *,
    cfg: sampler_lib.SamplingConfig,
    repeat: int,
    lora: bool,
):
  embeds = model.apply(
      {"params": params},
      batch["input_ids"],
      batch["vision_feats"],
      batch["audio_feats"],
      method=model.embed_prompt,
  )
  mask = batch["attention_mask"]
  if repeat > 1:
    embeds = jnp.repeat(embeds, repeat, axis=0)
    mask = jnp.repeat(mask, repeat, axis=0)
  n, p = mask.shape
  cache = model.apply({"params": params}, n, p + cfg.max_new_tokens, method=model.init_cache)

  def forward(params, **kw):
    return model.apply({"params": params}, lora=lora, method=model.decode, **kw)

  return sampler_lib.sample(forward, params, embeds, mask, cache, rng, cfg)


def generate(
    model,
    params,
    batch: Mapping[str, np.ndarray],
    rng: jax.Array,
    cfg: sampler_lib.SamplingConfig,
    mesh,
    *,
    repeat: int = 1,
    lora: bool = True,
    rules=sharding_lib.DEFAULT_LOGICAL_AXIS_RULES,
) -> dict:
  """Samples completions for a left-padded prompt batch (this host's rows).

  `rules`: the logical-axis rules of the activation constraints (config.mesh.logical_axis_rules).

  Returns host numpy arrays for ALL rows of the global batch (every host gets them):
  `tokens`, `logprobs`, `completion_mask` `[B*repeat, max_new]`, `lengths` `[B*repeat]`;
  row `i*repeat + g` is the g-th sample of prompt i.
  """
  arrays = mesh_lib.put_global_batch({k: batch[k] for k in DEVICE_KEYS}, mesh)
  out = _generate_fn(model, cfg, repeat, lora, mesh, rules)(params, arrays, rng)
  return {
      k: mesh_lib.to_host(getattr(out, k))
      for k in ("tokens", "logprobs", "completion_mask", "lengths")
  }


def decode_completions(
    tokenizer, tokens: np.ndarray, lengths: np.ndarray, stop_strings=()
) -> list[str]:
  """Detokenized completions (eos and padding dropped, cut after the first stop string)."""
  texts = tokenizer.batch_decode(
      [row[: int(n)].tolist() for row, n in zip(tokens, lengths, strict=True)],
      skip_special_tokens=True,
  )
  return [sampler_lib.truncate_at_stop(t, stop_strings) for t in texts]


def sampling_config(
    tokenizer,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    stop_strings=(),
) -> sampler_lib.SamplingConfig:
  return sampler_lib.SamplingConfig(
      max_new_tokens=int(max_new_tokens),
      temperature=float(temperature),
      top_p=float(top_p),
      top_k=int(top_k),
      eos_id=int(tokenizer.eos_token_id),
      pad_id=int(tokenizer.pad_token_id),
      stop_sequences=sampler_lib.stop_sequences_from_strings(tokenizer, stop_strings),
  )


def stop_strings_for(target: str) -> tuple[str, ...]:
  """Where a completion ends besides eos: after the answer tag, or at the released `###`."""
  return ("</answer>",) if target == "think_answer" else ("###",)
