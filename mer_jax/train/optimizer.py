"""AdamW with the released AffectGPT schedule, decay masks and the trainable subset.

Schedule (AffectGPT's LinearWarmupCosineLRScheduler with min_lr == init_lr): linear warmup
from `init_lr` to `peak_lr` over `warmup_steps`, then constant (`schedule=constant`),
cosine down to `min_lr` at `steps` (`schedule=cosine`) or linear down to `min_lr` at
`steps` (`schedule=linear`, the Hugging Face Trainer default that the public OPPO code uses). Weight decay is masked off 1-D
params, biases and norm scales, as in the released optimizer parameter groups.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

_NO_DECAY_NAMES = ("bias", "norm", "ln", "layernorm", "layer_norm", "scale")


def learning_rate_schedule(
    *,
    steps: int,
    init_lr: float,
    peak_lr: float,
    warmup_steps: int,
    schedule: str = "constant",
    min_lr: float = 0.0,
) -> optax.Schedule:
  warmup = optax.linear_schedule(init_lr, peak_lr, max(warmup_steps, 1))
  if schedule == "constant":
    after = optax.constant_schedule(peak_lr)
  elif schedule == "cosine":
    decay_steps = max(steps - warmup_steps, 1)
    after = optax.cosine_decay_schedule(
        peak_lr, decay_steps, alpha=min_lr / peak_lr if peak_lr else 0.0
    )
  elif schedule == "linear":
    after = optax.linear_schedule(peak_lr, min_lr, max(steps - warmup_steps, 1))
  else:
    raise ValueError(f"unknown schedule {schedule!r}")
  if warmup_steps <= 0:
    return after
  return optax.join_schedules([warmup, after], [warmup_steps])


def _path_names(path) -> list[str]:
  return [str(getattr(k, "key", getattr(k, "name", k))).lower() for k in path]


def decay_mask(params: Any) -> Any:
  """True where weight decay applies: >= 2-D weights that are not biases or norms."""

  def decays(path, leaf):
    names = _path_names(path)
    last = names[-1] if names else ""
    return (
        leaf.ndim >= 2
        and not any(n in last for n in _NO_DECAY_NAMES)
        and not any("norm" in n for n in names)
    )

  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(
    *,
    lr: optax.Schedule | float,
    weight_decay: float,
    b1: float = 0.9,
    b2: float = 0.999,
    grad_clip: float = 0.0,
) -> optax.GradientTransformation:
  """AdamW (+ optional global-norm clipping) over the trainable params it is given."""
  parts = []
  if grad_clip and grad_clip > 0:
    parts.append(optax.clip_by_global_norm(grad_clip))
  parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=1e-8, weight_decay=weight_decay, mask=decay_mask))
  return optax.chain(*parts)


def sft_optimizer(train_config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer and schedule of `config.train`."""
  schedule = learning_rate_schedule(
      steps=train_config.steps,
      init_lr=train_config.init_lr,
      peak_lr=train_config.peak_lr,
      warmup_steps=train_config.warmup_steps,
      schedule=train_config.schedule,
      min_lr=train_config.min_lr,
  )
  tx = make_optimizer(
      lr=schedule,
      weight_decay=train_config.weight_decay,
      b1=train_config.b1,
      b2=train_config.b2,
      grad_clip=train_config.grad_clip,
  )
  return tx, schedule
