"""Run our Flax model on a Hugging Face checkpoint, in fp32.

    python -m mer_jax.tools.hf_forward --hf-dir DIR --input X.npy --output Y.npy

The architecture comes from `DIR/config.json`:
  qwen2            int ids `[B, T]`            -> logits `[B, T, V]`
  clip (vision)    pixel values `[B, 3, H, W]` -> projected image embeddings `[B, P]`
  hubert           raw waveform `[B, N]`       -> last hidden state `[B, T', E]`
  bert             int ids `[B, T]`            -> last hidden state `[B, T, E]`
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import keymaps
from mer_jax.hf import load_hf_params

# spec name -> (input dtype, apply(model, params, x) -> output array)
_RUNNERS: dict[str, tuple[Any, Callable]] = {
    "qwen2": (np.int32, lambda m, p, x: m.apply(p, x)[0]),
    "clip_vision": (np.float32, lambda m, p, x: m.apply(p, x)["image_embeds"]),
    "hubert": (np.float32, lambda m, p, x: m.apply(p, x)["last_hidden_state"]),
    "bert": (np.int32, lambda m, p, x: m.apply(p, x)["last_hidden_state"]),
}


def hf_forward(hf_dir: str, x: np.ndarray) -> np.ndarray:
  """Loads `hf_dir` into our model (fp32) and returns its output on `x` (see module doc)."""
  config = config_from_hf_dir(hf_dir, dtype="float32", param_dtype="float32")
  spec = keymaps.spec_for_config(config)
  in_dtype, run = _RUNNERS[spec.name]
  params = load_hf_params(hf_dir, config=config)
  model = spec.model_cls(config)
  out = jax.jit(lambda p, inp: run(model, p, inp))(params, jnp.asarray(x.astype(in_dtype)))
  return np.asarray(out, np.float32)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
      "--hf-dir", required=True, help="HF checkpoint directory (config.json + safetensors)"
  )
  parser.add_argument("--input", required=True, help=".npy input (ids, pixels or waveform)")
  parser.add_argument("--output", required=True, help=".npy file to write the output to")
  args = parser.parse_args(argv)
  out = hf_forward(args.hf_dir, np.load(args.input))
  np.save(args.output, out)
  print(f"{args.output}: {out.dtype}{list(out.shape)}", file=sys.stderr)


if __name__ == "__main__":
  main()
