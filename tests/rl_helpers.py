"""Helpers of the RL job tests (test_grpo, test_oppo, test_kl_reference)."""

from flax import traverse_util


def sharpened(params, factor: float = 10.0):
  """`params` with kernels and embeddings scaled: the random-init tiny LLM is near-uniform
  (KLs ~1e-7, log-probs all near -log V); a sharpened one makes peaked distributions, so
  a wrong position, temperature or masked modality cannot agree by accident."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict(
      {k: v * factor if k[-1] in ("kernel", "embedding") else v for k, v in flat.items()}
  )


def small_grpo_config(recipe, generations: int, beta: float):
  """configs/grpo.py:test with 8 SFT / 8 RL / 4 eval SynthMER clips, 2 prompts of
  `generations` completions a step and KL weight `beta`."""
  config = recipe("grpo", "test")
  config.data.synthmer.num_sft = 8
  config.data.synthmer.num_rl = 8
  config.data.synthmer.num_eval = 4
  config.grpo.prompts_per_step = 2
  config.grpo.num_generations = generations
  config.grpo.beta = beta
  return config
