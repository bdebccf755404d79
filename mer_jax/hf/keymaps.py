"""Per-architecture maps between our param paths and HF safetensors keys.

Our module names mirror the HF state dict, so one rule covers almost every leaf:
`a/layers_3/q_proj/kernel` <-> `a.layers.3.q_proj.weight` (list index `_i` -> `.i`,
`kernel|scale|embedding` -> `weight`), with a layout permutation for kernels
(Dense `[in, out]` vs torch `[out, in]`, Conv `[*k, in, out]` vs `[out, in, *k]`).
Scanned stacks (`layers` without an index, leading `[L]` axis) map to the L per-layer
keys. Each spec adds the few exceptions of its architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable

import numpy as np

from mer_jax.models import bert
from mer_jax.models import clip_vision
from mer_jax.models import hubert
from mer_jax.models import qwen2

Path = tuple[str, ...]

_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "embedding": "weight"}
_KERNEL_PERMS = {2: (1, 0), 3: (2, 1, 0), 4: (2, 3, 1, 0)}


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """How one architecture maps onto HF checkpoints.

  stack_names: attribute names of layer stacks (scanned: one path component, no index).
  prefixes: HF key prefixes tried in order (e.g. `hubert.` in a `HubertForCTC` checkpoint).
  aliases: HF key suffix -> alternative suffixes (first one is what we export).
  ignore: regexes of checkpoint keys that are fine to leave unused.
  """

  name: str
  config_cls: type
  model_cls: type
  architectures: tuple[str, ...]
  model_types: tuple[str, ...]
  stack_names: tuple[str, ...]
  prefixes: tuple[str, ...] = ("",)
  aliases: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
  ignore: tuple[str, ...] = ()
  ignore_for_config: Callable[[Any], tuple[str, ...]] = lambda config: ()

  def ignored(self, key: str, config: Any) -> bool:
    return any(re.search(p, key) for p in self.ignore + self.ignore_for_config(config))


ARCHS: dict[str, ArchSpec] = {
    "qwen2": ArchSpec(
        "qwen2",
        qwen2.Qwen2Config,
        qwen2.Qwen2ForCausalLM,
        ("Qwen2ForCausalLM",),
        ("qwen2",),
        stack_names=("layers",),
        ignore=(r"rotary_emb\.inv_freq$",),
        ignore_for_config=lambda c: (r"^lm_head\.weight$",) if c.tie_word_embeddings else (),
    ),
    # Qwen3-Embedding: the decoder alone (`Qwen3Model` keys without `model.`; a
    # `Qwen3ForCausalLM` checkpoint's `model.` keys too, its LM head unused).
    "qwen3": ArchSpec(
        "qwen3",
        qwen2.Qwen3Config,
        qwen2.Qwen3Model,
        ("Qwen3Model", "Qwen3ForCausalLM"),
        ("qwen3",),
        stack_names=("layers",),
        prefixes=("", "model."),
        ignore=(r"rotary_emb\.inv_freq$", r"^lm_head\.weight$"),
    ),
    "clip_vision": ArchSpec(
        "clip_vision",
        clip_vision.CLIPVisionConfig,
        clip_vision.CLIPVisionModelWithProjection,
        ("CLIPVisionModelWithProjection",),
        ("clip_vision_model", "clip"),
        stack_names=("layers",),
        ignore=(r"^text_model\.", r"^text_projection\.", r"^logit_scale$", r"position_ids$"),
    ),
    "hubert": ArchSpec(
        "hubert",
        hubert.HubertConfig,
        hubert.HubertModel,
        ("HubertModel",),
        ("hubert",),
        stack_names=("layers",),
        prefixes=("", "hubert."),
        aliases={
            "conv.weight_g": ("conv.parametrizations.weight.original0", "conv.weight_g"),
            "conv.weight_v": ("conv.parametrizations.weight.original1", "conv.weight_v"),
        },
        ignore=(r"^(lm_head|projector|classifier|final_proj|label_embs_concat)", r"layer_weights$"),
    ),
    "bert": ArchSpec(
        "bert",
        bert.BertConfig,
        bert.BertModel,
        ("BertModel",),
        ("bert",),
        stack_names=("layer",),
        prefixes=("", "bert."),
        ignore=(r"position_ids$", r"^cls\."),
    ),
}


def spec_for_model(model_cls: type) -> ArchSpec:
  for spec in ARCHS.values():
    if spec.model_cls is model_cls:
      return spec
  raise KeyError(f"no HF key map for {model_cls.__name__}")


def spec_for_config(config: Any) -> ArchSpec:
  for spec in ARCHS.values():  # exact type: Qwen3Config subclasses Qwen2Config
    if type(config) is spec.config_cls:
      return spec
  for spec in ARCHS.values():
    if isinstance(config, spec.config_cls):
      return spec
  raise KeyError(f"no HF key map for {type(config).__name__}")


def read_hf_config(hf_dir: str) -> dict[str, Any]:
  with open(os.path.join(hf_dir, "config.json")) as f:
    return json.load(f)


def spec_for_hf_dict(d: dict[str, Any]) -> ArchSpec:
  model_type = d.get("model_type")
  for spec in ARCHS.values():
    if model_type in spec.model_types:
      return spec
  raise ValueError(
      f"unsupported model_type {model_type!r}; known: "
      f"{sorted(t for s in ARCHS.values() for t in s.model_types)}"
  )


def unscanned_paths(path: Path, spec: ArchSpec, num_layers: int | None) -> list[Path] | None:
  """The per-layer paths of a scanned leaf, or None when `path` is not scanned."""
  for i, part in enumerate(path):
    if part in spec.stack_names:
      return [path[:i] + (f"{part}_{n}",) + path[i + 1 :] for n in range(num_layers)]
  return None


def hf_key(path: Path) -> str:
  """`('model', 'layers_0', 'self_attn', 'q_proj', 'kernel')` -> `model.layers.0.self_attn.q_proj.weight`."""
  parts = []
  for part in path[:-1]:
    m = re.fullmatch(r"(.+)_(\d+)", part)
    parts.extend([m[1], m[2]] if m else [part])
  parts.append(_LEAF_NAMES.get(path[-1], path[-1]))
  return ".".join(parts)


def hf_key_candidates(path: Path, spec: ArchSpec) -> list[str]:
  """HF keys that may hold this (unscanned) leaf, preferred (export) spelling first."""
  key = hf_key(path)
  for suffix, alternatives in spec.aliases.items():
    if key.endswith(suffix):
      stem = key[: -len(suffix)]
      return [stem + alt for alt in alternatives]
  return [key]


def layout_perm(path: Path, ndim: int) -> tuple[int, ...]:
  """`ours = hf.transpose(perm)` for a leaf (ndim without any scan axis)."""
  if path[-1] == "kernel":
    return _KERNEL_PERMS[ndim]
  return tuple(range(ndim))


def to_hf_layout(arr: np.ndarray, path: Path) -> np.ndarray:
  return np.transpose(arr, np.argsort(layout_perm(path, arr.ndim)))
