"""Helpers of the RL job tests (tests/test_grpo.py, tests/test_oppo.py)."""

from flax import traverse_util


def sharpened(params, factor: float = 10.0):
  """`params` with kernels and embeddings scaled: the random-init tiny LLM is near-uniform
  (KLs ~1e-7, log-probs all near -log V); a sharpened one makes peaked distributions, so
  a wrong position, temperature or masked modality cannot agree by accident."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(
      {k: v * factor if k[-1] in ("kernel", "embedding") else v for k, v in flat.items()}
  )
