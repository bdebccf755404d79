"""Builds the AffectGPT policy and its frozen encoders from a run config, sharded on a mesh.

Architectures come from `config.model.{llm,vision,audio}`: a Hugging Face checkpoint
(`hf_dir`, weights loaded straight into their shardings), a packaged config.json
(`arch_file`, random weights) or an inline `arch` dict (tiny demo/test models, random
weights from `config.seed`). Trainable = LoRA leaves + everything under `fusion`; the
rest is frozen and kept in `config.model.frozen_dtype`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from absl import logging
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from input_pipeline import features as features_lib
from mer_jax.hf import loader as hf_loader
from mer_jax.hf import safetensors_io
from mer_jax.models import affectgpt
from mer_jax.models import clip_vision
from mer_jax.models import fusion as fusion_lib
from mer_jax.models import hubert
from mer_jax.models import lora as lora_lib
from mer_jax.models import qwen2
from mer_jax.models import sharding as sharding_lib

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LORA_TARGET_NAMES = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}


@dataclasses.dataclass
class Policy:
  """Everything a trainer needs to run the policy and its frozen encoders."""

  model: affectgpt.AffectGPT
  params: dict  # {'fusion': ..., 'llm': ...} unboxed, sharded
  param_shardings: dict  # NamedShardings like `params`
  frozen_source: dict  # where the frozen weights come from (recorded in exports)
  frozen_fingerprint: dict  # what they are (`frozen_fingerprint`; checked on resume)
  train_full_llm: bool = False  # config.model.llm.trainable == 'full'

  @property
  def config(self) -> affectgpt.AffectGPTConfig:
    return self.model.config

  def trainable_mask(self) -> dict:
    return trainable_mask(self.params, self.train_full_llm)


def trainable_mask(params: dict, full_llm: bool = False) -> dict:
  """LoRA leaves and the whole pre-fusion train (and every LLM weight with `full_llm`)."""
  trained = ("fusion", "llm") if full_llm else ("fusion",)
  return lora_lib.trainable_mask(params, lambda path: path[0] in trained)


def _arch(section, name: str) -> tuple[dict, str]:
  """(HF config dict, source description) of `config.model.<name>`."""
  if section.hf_dir:
    with open(os.path.join(section.hf_dir, "config.json")) as f:
      return json.load(f), section.hf_dir
  if section.arch_file:
    path = section.arch_file
    if not os.path.isabs(path) and not os.path.exists(path):
      path = os.path.join(_PACKAGE_ROOT, path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"config.model.{name}.arch_file: {section.arch_file!r} not found")
    with open(path) as f:
      return json.load(f), f"random:{os.path.basename(path)}"
  return dict(section.arch), "random:inline"


def build_model_configs(
    config, vocab_size: int, placeholders
) -> tuple[affectgpt.AffectGPTConfig, clip_vision.CLIPVisionConfig, hubert.HubertConfig]:
  m = config.model
  runtime = dict(
      dtype=m.dtype,
      param_dtype=m.param_dtype,
      scan_layers=m.scan_layers,
      remat_policy=m.remat_policy,
  )
  llm_dict, _ = _arch(m.llm, "llm")
  if not llm_dict.get("vocab_size"):
    llm_dict["vocab_size"] = vocab_size
  if vocab_size > llm_dict["vocab_size"]:
    raise ValueError(
        f"the tokenizer has {vocab_size} tokens but the LLM vocabulary is "
        f"{llm_dict['vocab_size']} (config.model.llm)"
    )
  targets = tuple(LORA_TARGET_NAMES[t] for t in m.lora.targets)
  llm_cfg = qwen2.Qwen2Config.from_hf_dict(
      llm_dict,
      lora_rank=m.lora.rank,
      lora_alpha=float(m.lora.alpha),
      lora_dropout=float(m.lora.dropout),
      lora_targets=targets,
      **runtime,
  )
  vision_cfg, audio_cfg = encoder_configs(config)
  f = m.fusion
  fusion_cfg = fusion_lib.FusionConfig(
      fusion_type=f.type,
      llm_hidden=llm_cfg.hidden_size,
      tokens=dict(config.data.tokens_per_modality),
      qformer_layers=f.qformer_layers,
      qformer_hidden=f.qformer_hidden,
      qformer_heads=f.qformer_heads,
      num_queries=dict(f.num_queries),
      init=f.get("init", "normal"),
      dtype=m.dtype,
      param_dtype=m.param_dtype,
  )
  expected = fusion_cfg.expected_tokens(config.data.num_frames, config.data.num_audio_clips)
  if expected != dict(config.data.tokens_per_modality):
    raise ValueError(
        f"config.data.tokens_per_modality={dict(config.data.tokens_per_modality)} but fusion "
        f"{f.type!r} produces {expected} tokens per placeholder; set them equal"
    )
  return (
      affectgpt.AffectGPTConfig(llm=llm_cfg, fusion=fusion_cfg, placeholders=placeholders),
      vision_cfg,
      audio_cfg,
  )


def encoder_configs(config) -> tuple[clip_vision.CLIPVisionConfig, hubert.HubertConfig]:
  """Configs of the frozen vision and audio encoders (`config.model.vision/audio`)."""
  m = config.model
  frozen_runtime = dict(dtype=m.dtype, param_dtype=m.frozen_dtype)
  vision_cfg = clip_vision.CLIPVisionConfig.from_hf_dict(
      _arch(m.vision, "vision")[0], **frozen_runtime
  )
  audio_cfg = hubert.HubertConfig.from_hf_dict(_arch(m.audio, "audio")[0], **frozen_runtime)
  return vision_cfg, audio_cfg


def weights_fingerprint(config, name: str) -> dict:
  """Identity of the frozen weights of `config.model.<name>`, independent of their path.

  A Hugging Face checkpoint is identified by its content (`checkpoint_fingerprint`), so a
  run moves between clusters with the weights at another path; random weights by their
  architecture and the seed.
  """
  section = config.model[name]
  if section.hf_dir:
    return {"weights": safetensors_io.checkpoint_fingerprint(section.hf_dir)}
  arch, _ = _arch(section, name)
  return {"random": features_lib.fingerprint_key(arch), "seed": int(config.seed)}


def frozen_fingerprint(config) -> dict:
  """`weights_fingerprint` of the LLM and both encoders (checked when a checkpoint resumes)."""
  return {name: weights_fingerprint(config, name) for name in ("llm", "vision", "audio")}


def _rngs(config) -> dict:
  names = ("llm", "fusion", "vision", "audio")
  return dict(zip(names, jax.random.split(jax.random.PRNGKey(config.seed), 4), strict=True))


@dataclasses.dataclass
class Encoders:
  """The frozen vision and audio encoders with their params (on the mesh they were built on)."""

  vision: affectgpt.VisionEncoder
  audio: affectgpt.AudioEncoder
  params: dict  # {'vision': {'clip': ...}, 'audio': {'hubert': ...}}


def build_encoders(config, mesh: Mesh) -> Encoders:
  """CLIP and HuBERT (from `hf_dir`, or random from the seed) in `config.model.frozen_dtype`."""
  rules = tuple(tuple(r) for r in config.mesh.logical_axis_rules)
  m = config.model
  vision_cfg, audio_cfg = encoder_configs(config)
  rngs = _rngs(config)
  vision = affectgpt.VisionEncoder(vision_cfg)
  audio = affectgpt.AudioEncoder(audio_cfg, num_last_layers=m.audio.num_last_layers)
  params = {
      "vision": _encoder_params(
          vision,
          m.vision,
          "vision",
          clip_vision.CLIPVisionModelWithProjection,
          mesh,
          rules,
          rngs["vision"],
          jnp.zeros((1, 1, 3, vision_cfg.image_size, vision_cfg.image_size)),
      ),
      "audio": _encoder_params(
          audio,
          m.audio,
          "audio",
          hubert.HubertModel,
          mesh,
          rules,
          rngs["audio"],
          jnp.zeros((1, 1, int(config.data.audio_clip_seconds * config.data.sample_rate))),
      ),
  }
  return Encoders(vision=vision, audio=audio, params=_cast(params, m.frozen_dtype))


def _sharded_init(
    module: nn.Module, mesh: Mesh, rules, rng, *args, method=None
) -> tuple[dict, dict]:
  """Random init placed directly into logical shardings: (params, shardings)."""
  init = lambda r: module.init(r, *args, method=method)
  abstract = jax.eval_shape(init, rng)
  shardings = sharding_lib.logical_shardings(abstract, mesh, rules)
  params = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
  return params["params"], shardings["params"]


def _cast(tree: Any, dtype: str) -> Any:
  dt = jnp.dtype(dtype)
  return jax.tree_util.tree_map(
      lambda x: x.astype(dt) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
  )


def build_policy(config, tokenizer, mesh: Mesh) -> Policy:
  """The policy (LLM + pre-fusion) with weights loaded or initialized on `mesh`.

  The frozen encoders are not part of it: they run once, in the features pass
  (`build_encoders`, mer_jax/train/features.py).
  """
  rules = tuple(tuple(r) for r in config.mesh.logical_axis_rules)
  placeholders = affectgpt.placeholder_ids(tokenizer)
  model_cfg, vision_cfg, audio_cfg = build_model_configs(config, len(tokenizer), placeholders)
  model = affectgpt.AffectGPT(model_cfg)
  rngs = _rngs(config)
  m = config.model

  f, c = config.data.num_frames, config.data.num_audio_clips
  dv, da = vision_cfg.projection_dim, audio_cfg.hidden_size
  fusion_module = fusion_lib.PreFusion(model_cfg.fusion)
  fusion_params, fusion_sh = _sharded_init(
      fusion_module, mesh, rules, rngs["fusion"], jnp.zeros((1, f, dv)), jnp.zeros((1, c, da))
  )
  _, llm_source = _arch(m.llm, "llm")
  if m.llm.hf_dir:
    logging.info("loading LLM weights from %s", m.llm.hf_dir)
    llm_params = hf_loader.load_hf_params(
        m.llm.hf_dir,
        qwen2.Qwen2ForCausalLM,
        model_cfg.llm,
        mesh=mesh,
        rules=rules,
        rng=rngs["llm"],
    )["params"]
    llm_abstract = jax.eval_shape(
        lambda r: qwen2.Qwen2ForCausalLM(model_cfg.llm).init(r, jnp.zeros((1, 1), jnp.int32)),
        rngs["llm"],
    )
    llm_sh = sharding_lib.logical_shardings(llm_abstract, mesh, rules)["params"]
  else:
    llm_params, llm_sh = _sharded_init(
        qwen2.Qwen2ForCausalLM(model_cfg.llm),
        mesh,
        rules,
        rngs["llm"],
        jnp.zeros((1, 1), jnp.int32),
    )
  params = {"fusion": fusion_params, "llm": llm_params}
  shardings = {"fusion": fusion_sh, "llm": llm_sh}
  full_llm = m.llm.trainable == "full"
  mask = trainable_mask(params, full_llm)
  trainable, frozen = lora_lib.split_params(params, mask)
  params = lora_lib.combine_params(trainable, _cast(frozen, m.frozen_dtype))
  frozen_source = {
      "llm": llm_source,
      "seed": int(config.seed),
      "vision": _arch(m.vision, "vision")[1],
      "audio": _arch(m.audio, "audio")[1],
  }
  return Policy(
      model=model,
      params=params,
      param_shardings=shardings,
      frozen_source=frozen_source,
      frozen_fingerprint=frozen_fingerprint(config),
      train_full_llm=full_llm,
  )


def _encoder_params(module, section, name, hf_cls, mesh, rules, rng, dummy):
  if section.hf_dir:
    logging.info("loading %s encoder weights from %s", name, section.hf_dir)
    loaded = hf_loader.load_hf_params(section.hf_dir, hf_cls, module.config, mesh=mesh, rules=rules)
    return {"clip" if name == "vision" else "hubert": loaded["params"]}
  params, _ = _sharded_init(module, mesh, rules, rng, dummy)
  return params


def count_params(tree: Any) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def describe(policy: Policy) -> dict:
  """Parameter counts for logs and summaries."""
  flat = traverse_util.flatten_dict(policy.params)
  mask = traverse_util.flatten_dict(policy.trainable_mask())
  return {
      "llm": sum(v.size for p, v in flat.items() if p[0] == "llm" and not lora_lib.is_lora_path(p)),
      "fusion": sum(v.size for p, v in flat.items() if p[0] == "fusion"),
      "lora": sum(v.size for p, v in flat.items() if lora_lib.is_lora_path(p)),
      "trainable": sum(v.size for p, v in flat.items() if mask[p]),
  }
