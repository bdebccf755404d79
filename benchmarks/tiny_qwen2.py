"""The tiny random Qwen2 the side-by-side benchmarks share: built with transformers, saved as a
Hugging Face checkpoint (safetensors) that mer_jax, transformers and tunix all load."""

from __future__ import annotations

import os
import statistics


def build(out_dir: str, *, layers: int, hidden: int, vocab: int, heads: int = 8, kv_heads: int = 2):
  """Saves a seeded random `Qwen2ForCausalLM` to `out_dir`; returns the torch model."""
  import torch
  import transformers

  torch.manual_seed(0)
  cfg = transformers.Qwen2Config(
      vocab_size=vocab,
      hidden_size=hidden,
      intermediate_size=2 * hidden,
      num_hidden_layers=layers,
      num_attention_heads=heads,
      num_key_value_heads=kv_heads,
      max_position_embeddings=4096,
      tie_word_embeddings=False,
  )
  model = transformers.Qwen2ForCausalLM(cfg).eval()
  model.save_pretrained(out_dir)
  return model


def load_ours(hf_dir: str):
  """(mer_jax Qwen2ForCausalLM, params) of a checkpoint from `build`, layers unrolled as the
  decode layout runs them (mer_jax/decode/layout.py)."""
  from mer_jax.hf import loader
  from mer_jax.models import qwen2

  config = loader.config_from_hf_dir(hf_dir, scan_layers=False)
  params = loader.load_hf_params(hf_dir, qwen2.Qwen2ForCausalLM, config)["params"]
  return qwen2.Qwen2ForCausalLM(config), params


def machine() -> str:
  """One line on how loaded this machine is (the benchmarks share 2 cores with other work)."""
  load = os.getloadavg()
  return f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min)"


def median(xs) -> float:
  return float(statistics.median(xs))
