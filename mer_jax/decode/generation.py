"""Generation with the AffectGPT policy: prepare the decode weights, embed prompts once, sample.

`prepare` turns the trained params into a `Decoder` once per rollout (or evaluation):
the decode layout of `mer_jax/decode/layout.py` (LoRA merged, cast, weights resharded
for decoding) or the training layout as is. `Decoder.generate` runs one jitted program
per (rows, prompt bucket, sampling settings): the prompts' fused features are spliced in
once per prompt, the prompts prefilled once, and each sampled G times by the slot-refill
sampler (mer_jax/decode/sampler.py), so the encoders, the fusion and the prefill run B
times, not B*G times.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import numpy as np

from mer_jax.decode import layout as layout_lib
from mer_jax.decode import sampler as sampler_lib
from mer_jax.models import sharding as sharding_lib
from mer_jax.train import mesh as mesh_lib

DEVICE_KEYS = ("input_ids", "attention_mask", "vision_feats", "audio_feats")
OUTPUT_KEYS = ("tokens", "logprobs", "completion_mask", "lengths")


def _generate_fn(
    model,
    cfg: sampler_lib.SamplingConfig,
    repeat: int,
    lora: bool,
    mesh,
    rules=sharding_lib.DEFAULT_LOGICAL_AXIS_RULES,
    slots: int = 0,
):
  """The jitted generation program of one model and setting (cached: compiled once per shape)."""
  rules = tuple(tuple(r) for r in rules)
  key = (id(model), cfg, repeat, lora, mesh, rules, slots)
  if key not in _COMPILED:
    program = functools.partial(_generate, model, cfg=cfg, repeat=repeat, lora=lora, slots=slots)
    jitted = jax.jit(mesh_lib.with_activation_rules(program, mesh, rules))
    _COMPILED[key] = (model, mesh_lib.CompileTogether(jitted, "generate"))
  return _COMPILED[key][1]


_COMPILED: dict = {}
_DECODE_MODELS: dict = {}


def _generate(
    model,
    params,
    batch: Mapping[str, jax.Array],
    rng: jax.Array,
    *,
    cfg: sampler_lib.SamplingConfig,
    repeat: int,
    lora: bool,
    slots: int,
):
  embeds = model.apply(
      {"params": params},
      batch["input_ids"],
      batch["vision_feats"],
      batch["audio_feats"],
      method=model.embed_prompt,
  )

  def forward(params, **kw):
    return model.apply({"params": params}, lora=lora, method=model.decode, **kw)

  def make_cache(rows, length):
    return model.apply({"params": params}, rows, length, method=model.init_cache)

  return sampler_lib.sample(
      forward,
      make_cache,
      params,
      embeds,
      batch["attention_mask"],
      rng,
      cfg,
      repeat=repeat,
      slots=slots,
  )


@dataclasses.dataclass(frozen=True)
class Decoder:
  """Weights ready for decoding and the program settings that go with them (`prepare`)."""

  model: Any
  params: Any
  lora: bool
  mesh: Any
  rules: tuple
  slots: int = 0

  def generate(
      self,
      batch: Mapping[str, np.ndarray],
      rng: jax.Array,
      cfg: sampler_lib.SamplingConfig,
      *,
      repeat: int = 1,
  ) -> dict:
    """Samples completions for a left-padded prompt batch (this host's rows).

    Returns host numpy arrays for ALL rows of the global batch (every host gets them):
    `tokens`, `logprobs`, `completion_mask` `[B*repeat, max_new]`, `lengths` `[B*repeat]`;
    row `i*repeat + g` is the g-th sample of prompt i.
    """
    arrays = mesh_lib.put_global_batch({k: batch[k] for k in DEVICE_KEYS}, self.mesh)
    fn = _generate_fn(self.model, cfg, repeat, self.lora, self.mesh, self.rules, self.slots)
    out = fn(self.params, arrays, rng)
    return {k: mesh_lib.to_host(getattr(out, k)) for k in OUTPUT_KEYS}


def prepare(
    model,
    params,
    mesh,
    settings: layout_lib.DecodeSettings = layout_lib.TRAIN_LAYOUT,
    *,
    lora: bool = True,
    rules=sharding_lib.DEFAULT_LOGICAL_AXIS_RULES,
) -> Decoder:
  """The `Decoder` of trained `params` (`lora=False`: the base model, adapters dropped).

  `rules`: the logical-axis rules of training (config.mesh.logical_axis_rules); the
  decode layout derives its own (`layout.decode_rules`).
  """
  rules = tuple(tuple(r) for r in rules)
  if settings.layout == "train":
    return Decoder(model, params, lora, mesh, rules, settings.slots)
  if settings.layout not in layout_lib.LAYOUTS:
    raise ValueError(
        f"config.decode.layout must be one of {layout_lib.LAYOUTS}, got {settings.layout!r}"
    )
  key = (id(model), settings.dtype, settings.lora)
  if key not in _DECODE_MODELS:
    _DECODE_MODELS[key] = (model, layout_lib.decode_model(model, settings))
  decode_model = _DECODE_MODELS[key][1]
  merged = layout_lib.prepare_fn(model, settings, lora)(params)
  shardings = layout_lib.target_shardings(params, settings, layout_lib.scanned_layers(model))
  decode_params = layout_lib.reshard(merged, shardings)
  # Merged adapters: the decode model has none; kept adapters: they are applied unless base.
  use_lora = lora and settings.lora == "adapter"
  return Decoder(
      decode_model, decode_params, use_lora, mesh, layout_lib.decode_rules(rules), settings.slots
  )


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
    settings: layout_lib.DecodeSettings = layout_lib.TRAIN_LAYOUT,
) -> dict:
  """`prepare(...).generate(batch, rng, cfg, repeat=repeat)`: one batch, weights prepared for it."""
  decoder = prepare(model, params, mesh, settings, lora=lora, rules=rules)
  return decoder.generate(batch, rng, cfg, repeat=repeat)


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
