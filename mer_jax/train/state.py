"""The trainable state of a policy: split, abstract shapes, creation on device, restore.

Shared below the loops that use it (SFT, evaluation, GRPO/OPPO, export, the planner), so
none of them imports another for it.
"""

from __future__ import annotations

from typing import Any

from absl import logging
from flax import traverse_util
import jax
import optax

from input_pipeline import files
from mer_jax.hf import affectgpt_release
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


def merge_adapters(base: dict, adapters: dict, scale: float, shardings: Any) -> dict:
  """`base` (no adapter leaves) with `adapters` merged into its kernels (W + scale * A B).

  The result keeps `base`'s layout, dtypes and the given shardings.
  """
  merge = lambda b, a: lora_lib.merge_lora(lora_lib.combine_params(b, a), scale)
  return jax.jit(merge, out_shardings=shardings)(base, adapters)


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
  """Policy params with the trainable part restored from a checkpoint.

  `step_dir` is one of our step directories, or a released AffectGPT `checkpoint_*.pth`
  (`load_released_params`). An RL checkpoint of a LoRA policy also holds the cold-start
  adapters that the run merged into the frozen weights (`merged_lora`); they are merged
  here the same way.
  """
  if affectgpt_release.is_released_checkpoint(step_dir):
    return load_released_params(ctx, step_dir)
  config = ctx.config
  step_dir = files.absolute(step_dir)
  tx, _ = optim.sft_optimizer(config.train)
  trainable, frozen, t_sh, f_sh = split_trainable(ctx.policy)
  state, _ = init_state(trainable, t_sh, tx, config.seed, ctx.mesh)
  restored, meta = checkpointing.restore_step(step_dir, checkpointing.abstract_like(state))
  merged = checkpointing.restore_merged_lora(
      step_dir, checkpointing.abstract_like(lora_lib.adapter_params(trainable))
  )
  checkpointing.check_frozen(meta, ctx.policy.frozen_fingerprint, step_dir)
  if merged is not None:
    frozen = merge_adapters(frozen, merged, ctx.policy.config.llm.lora_scale, f_sh)
  return lora_lib.combine_params(restored.trainable, frozen)


def load_released_params(ctx: context_lib.RunContext, path: str) -> dict:
  """Policy params whose fusion and LoRA leaves come from a released `.pth` checkpoint.

  The frozen weights stay those of `config.model.*.hf_dir`; the load report (epoch, fusion
  variant, dropped and unknown keys) goes to the log and `summary.json['init_from']`.
  """
  ckpt = affectgpt_release.read(path)
  fusion_type, rank = affectgpt_release.check_config(ckpt, ctx.config)
  flat = traverse_util.flatten_dict(ctx.policy.params)
  shardings = traverse_util.flatten_dict(ctx.policy.param_shardings)
  mask = traverse_util.flatten_dict(ctx.policy.trainable_mask())
  wanted = {p: tuple(v.shape) for p, v in flat.items() if mask[p]}
  loaded, report = affectgpt_release.trainable_from_release(
      ckpt, wanted, ctx.policy.config.llm.num_hidden_layers
  )
  report.fusion_type, report.lora_rank = fusion_type, rank
  for p, value in loaded.items():
    flat[p] = jax.device_put(value.astype(flat[p].dtype), shardings[p])
  logging.info(
      "init_from %s (epoch %s): %d tensors, fusion %s, LoRA rank %s; dropped %s; unknown %s",
      path,
      report.epoch,
      report.loaded_keys,
      report.fusion_type,
      report.lora_rank,
      report.dropped_keys,
      report.unknown_keys,
  )
  if report.unknown_keys:
    logging.warning(
        "init_from: %d unknown keys in %s were not used: %s",
        len(report.unknown_keys),
        path,
        report.unknown_keys,
    )
  if ctx.writer is not None:
    ctx.writer.update_summary("init_from", report.as_dict())
  return traverse_util.unflatten_dict(flat)
