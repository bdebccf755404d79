"""Group-relative advantages on the [B, G] reward grid (AffectGPT-R1 eq. 1).

Rewards of the G completions of one prompt form a row of the [B, G] grid. The
estimators are chosen by name (`ADVANTAGE_ESTIMATORS`):

- `grpo`: (r - mean_group) / (std_group + eps), std with ddof=1 (as TRL and tunix).
- `dr_grpo`: r - mean_group (Dr. GRPO: no std division, config `grpo.scale_rewards=False`).

A group whose rewards are all equal gets exactly 0 advantage (not a rounding residue
of `r - mean`), so it contributes exactly zero policy gradient.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from mer_jax.rl import Registry

AdvantageFn = Callable[[jax.Array], jax.Array]
# name -> fn(rewards [B, G]) -> advantages [B, G]
ADVANTAGE_ESTIMATORS = Registry("advantage estimator")


def estimator_name(scale_rewards: bool) -> str:
  """The estimator that config `grpo.scale_rewards` selects."""
  return "grpo" if scale_rewards else "dr_grpo"


@functools.partial(jax.jit, static_argnames=("scale_rewards",))
def group_advantages(
    rewards: jax.Array, scale_rewards: bool = True, eps: float = 1e-4
) -> jax.Array:
  """Advantages of a [B, G] reward grid: row-centred, optionally divided by the row std.

  Args:
    rewards: [B, G] total reward of completion g of prompt b.
    scale_rewards: divide by (std_group + eps) (paper eq. 1); False only centres.
    eps: added to the std so near-constant groups stay finite.
  Returns:
    [B, G] float32 advantages; rows with zero variance are exactly 0.
  """
  r = jnp.asarray(rewards, jnp.float32)
  if r.ndim != 2:
    raise ValueError(f"rewards must be [B, G], got shape {r.shape}")
  g = r.shape[1]
  centred = r - r.mean(axis=1, keepdims=True)
  if scale_rewards:
    var = jnp.sum(centred * centred, axis=1, keepdims=True) / max(g - 1, 1)
    centred = centred / (jnp.sqrt(var) + eps)
  constant = jnp.max(r, axis=1, keepdims=True) == jnp.min(r, axis=1, keepdims=True)
  return jnp.where(constant, 0.0, centred)


ADVANTAGE_ESTIMATORS.register("grpo", functools.partial(group_advantages, scale_rewards=True))
ADVANTAGE_ESTIMATORS.register("dr_grpo", functools.partial(group_advantages, scale_rewards=False))


def compute_advantages(rewards: jax.Array, num_generations: int, name: str = "grpo") -> jax.Array:
  """Flat rewards [B * G] (prompt-major: the G completions of a prompt are adjacent)
  -> flat advantages [B * G] with the estimator `name`."""
  r = jnp.asarray(rewards, jnp.float32)
  if r.ndim != 1 or r.shape[0] % num_generations:
    raise ValueError(f"rewards must be flat [B * G] with G={num_generations}, got shape {r.shape}")
  grid = r.reshape(-1, num_generations)
  return ADVANTAGE_ESTIMATORS[name](grid).reshape(-1)
