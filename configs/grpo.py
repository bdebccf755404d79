"""AffectGPT-R1: cold-start SFT, then GRPO with emotion-wheel rewards. The main job.

    python -m mer_jax.main --config=configs/grpo.py[:demo|test|paper] --workdir=W

Without `grpo.init_checkpoint` it first runs the cold-start SFT of `configs/sft.py`
(section `train`) on the coarse split, then GRPO on the clean RL split, then evaluates
both checkpoints on the held-out split (summary.json keys `sft` and `grpo`).
Section docs: configs/common.py; the `grpo` section is documented here.
"""

import ml_collections

from configs import common


def grpo_config(preset: str) -> ml_collections.ConfigDict:
  g = ml_collections.ConfigDict()
  paper = preset == "paper"
  g.init_checkpoint = ""  # cold-start checkpoint; '' = run SFT first (required for paper)
  g.steps = 1000 if paper else (120 if preset == "demo" else 2)
  g.prompts_per_step = 1 if paper else (8 if preset == "demo" else 2)  # B: prompts per step
  g.num_generations = 4  # G: completions per prompt (paper default; >= 4 is enough)
  g.num_iterations = 1  # mu: policy updates per rollout (old logprobs stored)
  # Micro-batches over the rollout rows for the update and the old-logprob pass (memory
  # of both bounded by rows / grad_accum; gradients summed exactly).
  g.grad_accum = 1
  # AffectGPT-R1: 1e-5 (LoRA). Demo (full tiny LLM): 1e-4, chosen on the validation split
  # over 3e-4 (EW F1 0.836 vs 0.814; 1e-3 collapsed the think text to empty in 40 steps
  # on generator v2, docs/training.md).
  g.lr = 1e-5 if paper else 1e-4
  g.warmup_steps = 0
  g.schedule = "constant"  # constant | linear (to 0 at grpo.steps: the HF Trainer default)
  g.weight_decay = 0.05
  g.grad_clip = 1.0
  # Sampling (rollouts).
  g.temperature = 1.0
  g.top_p = 1.0
  g.top_k = 0  # 0 = off
  g.max_new_tokens = 1024 if paper else (160 if preset == "demo" else 16)
  g.stop_strings = ("</answer>",)
  # Objective (AffectGPT-R1 eq. 1-5).
  g.clip_eps = 0.2
  g.clip_eps_high = 0.0  # > 0: asymmetric upper clip (DAPO); 0 = same as clip_eps
  # KL weight to the reference = the cold-start (SFT) policy; 0 = no KL (paper default).
  g.beta = 0.0
  # constant | decay_to_quarter (the public OPPO recipe: beta falls linearly to beta / 4
  # over the first half of the updates, then stays there).
  g.beta_schedule = "constant"
  g.kl_estimator = "k3"
  g.loss_agg = "token_mean"  # token_mean | seq_mean_token_mean | seq_mean_token_sum_norm
  g.scale_rewards = True  # divide group-centred rewards by the group std (paper eq. 1)
  # Rewards: name -> weight (registry in mer_jax/rl/rewards.py).
  g.rewards = {"accuracy": 1.0, "format": 1.0}
  # none | p1 | p2 | p3 | p3_shifted (AffectGPT-R1 eq. 11-13). p3 is eq. 13 as printed:
  # log(m) / log(n), 0 for any over-prediction when m = 1; p3_shifted uses
  # log(m + 1) / log(n + 1) when m = 1 (ours; the demo's measured setting).
  g.length_penalty = "p3" if paper else "p3_shifted"
  # Perception reward judge: cue_overlap (a heuristic: content-word overlap with the gold
  # reasoning, NOT the paper's MLLM judge; its logs say so) | llm (pluggable).
  g.judge = "cue_overlap"
  g.log_every = 1 if preset == "test" else 5
  return g


def get_config(arg=None):
  preset = common.parse_preset(arg)
  c = common.base_config(preset, mode="grpo")
  c.grpo = grpo_config(preset)
  return c
