"""Reinforcement learning for AffectGPT-R1 / OPPO: rewards, advantages, losses.

- `advantages`: group-relative advantages on the [B, G] grid (registry by name).
- `losses`: GRPO clipped-ratio loss and the omni-perception KL as (sum, denominator).
- `rewards`: host-side reward registry (format, accuracy, alignment, dual, perception).
- `bradley_terry`: MM fit of Bradley-Terry strengths (perception reward).

Formulas and choices: docs/rl.md.
"""
