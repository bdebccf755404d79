"""The trainable state of a policy: split, abstract shapes, creation on device, restore.

Shared below the loops that use it (SFT, evaluation, GRPO/OPPO, export, the planner), so
none of them imports another for it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import optax

from mer_jax.models import lora as lora_lib
from mer_jax.train import checkpointing
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import optimizer as optim
from mer_jax.train import train_step as ts


def split_trainable(policy) -> tuple[dict, dict, dict, dict]:
  """(trainable, frozen, trainable shardings, frozen shardings)."""
  mask = policy.trainable_mask()
  trainable, frozen = lora_lib.split_params(policy.params, mask)
  t_sh, f_sh = lora_lib.split_params(policy.param_shardings, mask)
  return trainable, frozen, t_sh, f_sh


def abstract_state(trainable, t_sh, tx, seed: int, mesh) -> tuple[ts.TrainState, Any]:
  """(ShapeDtypeStructs, shardings) of the train state of `trainable` (arrays or abstract).

  Optimizer moments take their params' shardings; counts, step and rng are replicated.
  (Left to XLA, freshly zeroed moments come out replicated: every device would hold all.)
  """
  rep = mesh_lib.replicated(mesh)
  abstract = jax.eval_shape(lambda t: ts.init_train_state(t, tx, seed), trainable)
  opt_sh = optax.tree_map_params(
      tx, lambda _, sh: sh, abstract.opt_state, t_sh, transform_non_params=lambda _: rep
  )
  return abstract, ts.TrainState(step=rep, trainable=t_sh, opt_state=opt_sh, rng=rep)


def init_state(trainable, t_sh, tx, seed: int, mesh) -> tuple[ts.TrainState, Any]:
  """The train state created on device in its shardings, and those shardings."""
  _, s_sh = abstract_state(trainable, t_sh, tx, seed, mesh)
  state = jax.jit(
      lambda t: ts.init_train_state(t, tx, seed), in_shardings=(t_sh,), out_shardings=s_sh
  )(trainable)
  return state, s_sh


def load_trained_params(ctx: context_lib.RunContext, step_dir: str) -> dict:
  """Policy params with the trainable part restored from a checkpoint step directory."""
  config = ctx.config
  step_dir = os.path.abspath(step_dir.rstrip("/"))
  parent, name = os.path.split(step_dir)
  if not name.isdigit():
    raise ValueError(
        f"{step_dir}: expected a checkpoint step directory such as .../checkpoints/300"
    )
  tx, _ = optim.sft_optimizer(config.train)
  trainable, frozen, t_sh, _ = split_trainable(ctx.policy)
  state, _ = init_state(trainable, t_sh, tx, config.seed, ctx.mesh)
  ckpt = checkpointing.Checkpointer(parent, every_steps=0, keep=1000)
  try:
    restored, meta = ckpt.restore(int(name), checkpointing.abstract_like(state))
  except Exception as e:  # noqa: BLE001 - a clear message instead of an Orbax stack trace
    raise ValueError(f"cannot restore {step_dir}: {e}") from e
  finally:
    ckpt.close()
  checkpointing.check_frozen_source(meta, ctx.policy.frozen_source, step_dir)
  return lora_lib.combine_params(restored.trainable, frozen)
