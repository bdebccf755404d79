"""Released AffectGPT checkpoints (`checkpoint_*.pth` of MERTools) -> our trainable params.

The official runner saves `torch.save({'model': <trainable tensors>, 'optimizer', 'config',
'scaler', 'epoch'})`. `model` holds the LoRA adapters of every LLM layer and the pre-fusion
layers, keyed by the official module names; `mer_jax.hf.torch_pickle` reads it without
torch. The map (design.md section 2b, item 12):

| released key | ours (under `params`) |
|---|---|
| `llama_model.base_model.model.model.layers.{i}.{mod}.{proj}.lora_A.default.weight` `[r, in]` | `llm/model/layers/{mod}/{proj}/lora_a` `[L, in, r]` (stacked when scanned) |
| `...lora_B.default.weight` `[out, r]` | `.../lora_b` `[L, r, out]` |
| `affectgpt_proj`, `audio_llama_proj`, `multi_llama_proj` (Linear) | `fusion/{video,audio,multi}_llm_proj` |
| `video_attention_mlp`, `audio_attention_mlp`, `multi_video_embs`, `multi_audio_embs`, `attention_mlp`, `fc_att` | `fusion/<same name>` |
| `{video,audio,multi}_Qformer.bert.embeddings.LayerNorm` | `fusion/{m}_qformer/LayerNorm` |
| `{m}_Qformer.bert.encoder.layer.{i}.<attention/crossattention/intermediate_query/output_query ...>` | `fusion/{m}_qformer/layer_{i}/...` |
| `{m}_query_tokens` `[1, n, h]` | `fusion/{m}_qformer/query_tokens` `[n, h]` |
| `video_frame_position_embedding`, `audio_position_embedding`, `multi_position_embedding` | `fusion/{m}_qformer/position_embedding` |

torch Linear weights are `[out, in]`, ours `[in, out]`. `image_llama_proj` (the image branch,
unused by the face/frame prompts) is dropped. Any other key is unknown: it is listed in the
log and the run summary (the official loader, `load_state_dict(strict=False)`, ignores such
keys silently). A key our model needs but the file lacks is an error, as is a checkpoint
whose fusion variant or LoRA rank differs from the run config (named in the message).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable

from flax import traverse_util
import numpy as np

from mer_jax.hf import keymaps
from mer_jax.hf import torch_pickle

LORA_PREFIX = "llama_model.base_model.model."
OFFICIAL_LORA_ALPHA = 32.0  # hard-coded in the released AffectGPT.__init__
# Our fusion Dense name -> the released module name (the rest keep their names).
_RELEASED_DENSE = {
    "video_llm_proj": "affectgpt_proj",
    "audio_llm_proj": "audio_llama_proj",
    "multi_llm_proj": "multi_llama_proj",
}
# Our Q-Former module -> (released Q-Former, query tokens, temporal position embedding).
_RELEASED_QFORMER = {
    "video_qformer": ("video_Qformer", "video_query_tokens", "video_frame_position_embedding"),
    "audio_qformer": ("audio_Qformer", "audio_query_tokens", "audio_position_embedding"),
    "multi_qformer": ("multi_Qformer", "multi_query_tokens", "multi_position_embedding"),
}
DROPPED = (r"^image_llama_proj\.",)

Transform = Callable[[np.ndarray], np.ndarray]
_T = lambda x: x.T
_SAME = lambda x: x


def is_released_checkpoint(path: str) -> bool:
  """True for a `.pth` file (a released AffectGPT checkpoint), False for our step dirs."""
  return bool(path) and os.path.isfile(path) and path.endswith((".pth", ".pt"))


@dataclasses.dataclass
class ReleasedCheckpoint:
  """The `model` tensors of a released checkpoint and its training config (if saved)."""

  path: str
  tensors: dict[str, Any]  # key -> torch_pickle.LazyTensor
  config: dict
  epoch: Any


def read(path: str) -> ReleasedCheckpoint:
  """Reads a released checkpoint; one-line `TorchFileError` for anything else."""
  obj = torch_pickle.load(path)
  if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
    raise torch_pickle.TorchFileError(
        f"{path}: not an AffectGPT checkpoint (expected a dict with a 'model' state dict)"
    )
  tensors = {str(k): v for k, v in obj["model"].items() if isinstance(v, torch_pickle.LazyTensor)}
  config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
  return ReleasedCheckpoint(path, tensors, config, obj.get("epoch"))


def fusion_type(keys) -> str:
  """Our `model.fusion.type` of a released checkpoint, from which modules it holds."""
  has = lambda prefix: any(k.startswith(prefix) for k in keys)
  video = (
      "qformer" if has("video_Qformer.") else "attention" if has("video_attention_mlp.") else "mean"
  )
  audio = (
      "qformer" if has("audio_Qformer.") else "attention" if has("audio_attention_mlp.") else "mean"
  )
  multi = "qformer" if has("multi_Qformer.") else "attention" if has("attention_mlp.") else "none"
  combos = {
      ("attention", "attention", "attention"): "attention",
      ("qformer", "qformer", "qformer"): "qformer",
      ("mean", "mean", "attention"): "mean",
  }
  if (video, audio, multi) not in combos:
    raise ValueError(
        f"released checkpoint mixes fusion variants (video {video}, audio {audio}, multi "
        f"{multi}); mer-jax supports all-attention, all-qformer and mean+attention"
    )
  return combos[(video, audio, multi)]


def lora_rank(keys_shapes: dict[str, tuple]) -> int | None:
  ranks = {s[0] for k, s in keys_shapes.items() if k.endswith("lora_A.default.weight")}
  if len(ranks) > 1:
    raise ValueError(f"released checkpoint has LoRA adapters of several ranks {sorted(ranks)}")
  return ranks.pop() if ranks else None


def released_keys(path: tuple[str, ...], num_layers: int) -> tuple[list[str], Transform] | None:
  """(released keys, transform to our layout) of one of our trainable leaves, or None.

  `path` excludes the `params` collection; a scanned LoRA leaf maps to `num_layers` keys
  whose transformed values are stacked on a leading axis.
  """
  leaf = path[-1]
  if path[0] == "fusion":
    module, rest = path[1], path[2:]
    if module in _RELEASED_QFORMER:
      qformer, query, position = _RELEASED_QFORMER[module]
      if rest == ("query_tokens",):
        return [query], lambda x: x.reshape(x.shape[-2:])
      if rest == ("position_embedding",):
        return [f"{position}.weight"], _SAME
      if rest[0] == "LayerNorm":
        return [f"{qformer}.bert.embeddings.{keymaps.hf_key(rest)}"], _SAME
      return [f"{qformer}.bert.encoder.{keymaps.hf_key(rest)}"], _T if leaf == "kernel" else _SAME
    name = _RELEASED_DENSE.get(module, module)
    return [f"{name}.{keymaps.hf_key(rest)}"], _T if leaf == "kernel" else _SAME
  if path[0] == "llm" and leaf in ("lora_a", "lora_b"):
    suffix = "lora_A" if leaf == "lora_a" else "lora_B"
    spec = keymaps.ARCHS["qwen2"]
    per_layer = keymaps.unscanned_paths(path[1:], spec, num_layers) or [path[1:]]
    keys = [f"{LORA_PREFIX}{keymaps.hf_key(p[:-1] + (suffix,))}.default.weight" for p in per_layer]
    return keys, _T
  return None


@dataclasses.dataclass
class LoadReport:
  """What a released checkpoint provided (for the log and `summary.json['init_from']`)."""

  path: str
  epoch: Any
  loaded_keys: int
  dropped_keys: list[str]
  unknown_keys: list[str]
  fusion_type: str = ""  # filled in from `check_config`
  lora_rank: int | None = None

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def check_config(ckpt: ReleasedCheckpoint, config) -> tuple[str, int | None]:
  """Refuses a run config that does not fit the checkpoint; names the field to change."""
  shapes = {k: v.shape for k, v in ckpt.tensors.items()}
  ftype = fusion_type(shapes)
  if config.model.fusion.type != ftype:
    raise ValueError(
        f"{ckpt.path} holds {ftype!r} fusion weights but config.model.fusion.type="
        f"{config.model.fusion.type!r}; set --config.model.fusion.type={ftype}"
    )
  rank = lora_rank(shapes)
  if rank is not None and rank != config.model.lora.rank:
    raise ValueError(
        f"{ckpt.path} holds LoRA rank {rank} adapters but config.model.lora.rank="
        f"{config.model.lora.rank}; set --config.model.lora.rank={rank}"
    )
  if rank is not None and float(config.model.lora.alpha) != OFFICIAL_LORA_ALPHA:
    raise ValueError(
        f"released AffectGPT adapters use lora_alpha={OFFICIAL_LORA_ALPHA:g}, but "
        f"config.model.lora.alpha={config.model.lora.alpha}; set --config.model.lora.alpha=32"
    )
  model_cfg = ckpt.config.get("model") if isinstance(ckpt.config.get("model"), dict) else {}
  tokens = dict(config.data.tokens_per_modality)
  for ours, theirs in (("video", "video"), ("audio", "audio"), ("multi", "multi")):
    n = model_cfg.get(f"num_{theirs}_query_token")
    if ftype != "qformer" and isinstance(n, int) and n != tokens[ours]:
      raise ValueError(
          f"{ckpt.path} was trained with num_{theirs}_query_token={n} but "
          f"config.data.tokens_per_modality.{ours}={tokens[ours]}; set them equal"
      )
  return ftype, rank


def trainable_from_release(
    ckpt: ReleasedCheckpoint, trainable_shapes: dict[tuple, tuple], num_layers: int
) -> tuple[dict[tuple, np.ndarray], LoadReport]:
  """Our trainable leaves (fusion + LoRA) from a released checkpoint.

  Args:
    ckpt: from `read`.
    trainable_shapes: flat path (without `params`) -> shape of each trainable leaf of the
      policy; leaves the release cannot hold (e.g. a fully trained LLM) are left out by
      the caller.
    num_layers: LLM layers (a scanned LoRA leaf stacks that many released tensors).

  Returns the flat numpy leaves (float32) and the load report. Raises ValueError listing
  every missing key, or the first shape mismatch.
  """
  used, missing, out = set(), [], {}
  for path, shape in trainable_shapes.items():
    mapped = released_keys(path, num_layers)
    if mapped is None:
      continue
    keys, transform = mapped
    absent = [k for k in keys if k not in ckpt.tensors]
    if absent:
      missing.extend(absent)
      continue
    values = [transform(ckpt.tensors[k].numpy().astype(np.float32)) for k in keys]
    value = np.stack(values) if len(keys) > 1 or len(shape) == values[0].ndim + 1 else values[0]
    if value.shape != tuple(shape):
      raise ValueError(
          f"{ckpt.path}: {keys[0]} gives shape {value.shape} for {'/'.join(path)}, "
          f"expected {tuple(shape)} (are config.model.*.hf_dir the weights this "
          "checkpoint was trained on?)"
      )
    used.update(keys)
    out[path] = value
  if missing:
    shown = missing[:8] + (["..."] if len(missing) > 8 else [])
    raise ValueError(
        f"{ckpt.path}: {len(missing)} weights the model needs are not in the checkpoint: {shown}"
    )
  rest = sorted(set(ckpt.tensors) - used)
  dropped = [k for k in rest if any(re.search(p, k) for p in DROPPED)]
  unknown = [k for k in rest if k not in dropped]
  report = LoadReport(
      path=os.path.abspath(ckpt.path),
      epoch=ckpt.epoch,
      loaded_keys=len(used),
      dropped_keys=dropped,
      unknown_keys=unknown,
  )
  return out, report


def flat_shapes(tree: dict) -> dict[tuple, tuple]:
  return {p: tuple(v.shape) for p, v in traverse_util.flatten_dict(tree).items()}
