"""Cold-start supervised fine-tuning on a device mesh, with resumable Orbax checkpoints.

`run` (mode `sft`) trains on the coarse split (or the RL split, `train.split`), from
`checkpoint.init_from` when set, and evaluates on the held-out split.
`train_sft` is the reusable loop (the GRPO/OPPO main jobs call it for their cold start).
The same command rerun on the same workdir resumes from the latest complete checkpoint:
params, optimizer state, RNG and the data iterator position are restored exactly, and
metrics lines after that step are dropped before training continues.
"""

from __future__ import annotations

import dataclasses
import os
import time

from absl import logging
import jax
import numpy as np
from tqdm import tqdm

from input_pipeline import datasets
from mer_jax import run_io
from mer_jax.models import lora as lora_lib
from mer_jax.train import checkpointing
from mer_jax.train import context as context_lib
from mer_jax.train import evaluation
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import optimizer as optim
from mer_jax.train import state as state_lib
from mer_jax.train import train_step as ts

TRAIN_KEYS = ("input_ids", "attention_mask", "loss_mask", "vision_feats", "audio_feats")


def make_loss_fn(model):
  """Masked next-token cross-entropy of the answer tokens: (sum, count, aux)."""

  def loss_fn(trainable, frozen, batch, rng):
    params = lora_lib.combine_params(trainable, frozen)
    logits = model.apply(
        {"params": params},
        batch["input_ids"],
        batch["vision_feats"],
        batch["audio_feats"],
        batch["attention_mask"],
        deterministic=False,
        rngs={"dropout": rng},
    )
    loss_sum, count = ts.token_cross_entropy(logits, batch["input_ids"], batch["loss_mask"])
    return loss_sum, count, {}

  return loss_fn


def make_sft_step(policy, config, mesh):
  """(initial state, frozen params, jitted step) of SFT on `mesh` with explicit shardings."""
  tx, _ = optim.sft_optimizer(config.train)
  trainable, frozen, t_sh, f_sh = state_lib.split_trainable(policy)
  state, s_sh = state_lib.init_state(trainable, t_sh, tx, config.seed, mesh)
  return state, frozen, sft_step_fn(policy.model, config, mesh, s_sh, f_sh)


def sft_step_fn(model, config, mesh, s_sh, f_sh):
  """The jitted SFT step `(state, frozen, batch) -> (state, metrics)` from shardings alone."""
  tc = config.train
  tx, schedule = optim.sft_optimizer(tc)
  batch_sh = {
      k: mesh_lib.batch_sharding(mesh, 3 if k.endswith("feats") else 2, rows=config.data.batch_size)
      for k in TRAIN_KEYS
  }
  step = ts.make_train_step(make_loss_fn(model), tx, schedule, tc.grad_accum)
  jitted = jax.jit(
      mesh_lib.with_activation_rules(step, mesh, config.mesh.logical_axis_rules),
      in_shardings=(s_sh, f_sh, batch_sh),
      out_shardings=(s_sh, mesh_lib.replicated(mesh)),
      donate_argnums=(0,),
  )
  return mesh_lib.CompileTogether(jitted, "sft_step")


def drop_over_length(ctx: context_lib.RunContext, samples, phase: str) -> list:
  """`samples` without the over-length ones when `data.over_length='drop'` (counted in
  summary.json['data']['over_length_dropped'][phase]); all of them with 'cut'."""
  if ctx.config.data.get("over_length", "cut") != "drop":
    return list(samples)
  dropped = set(datasets.over_length_names(samples, ctx.config, ctx.tokenizer))
  kept = [s for s in samples if s["name"] not in dropped]
  if dropped:
    logging.warning(
        "%s: dropped %d of %d samples longer than data.max_length=%d (data.over_length=drop)",
        phase,
        len(dropped),
        len(samples),
        ctx.config.data.max_length,
    )
  if not kept:
    raise ValueError(
        f"every {phase} sample is longer than config.data.max_length="
        f"{ctx.config.data.max_length}; raise it or set config.data.over_length='cut'"
    )
  summary = run_io.read_json(os.path.join(ctx.workdir, "summary.json"), {}).get("data", {})
  counts = dict(summary.get("over_length_dropped", {}), **{phase: len(dropped)})
  ctx.writer.update_summary("data", {"over_length_dropped": counts})
  return kept


def train_sft(
    ctx: context_lib.RunContext,
    *,
    samples,
    ckpt_dir: str,
    metric_prefix: str = "train/",
) -> dict:
  """Trains `config.train.steps` steps (resuming from `ckpt_dir`); returns trained params + stats."""
  config, mesh, policy = ctx.config, ctx.mesh, ctx.policy
  tc = config.train
  samples = drop_over_length(ctx, samples, metric_prefix.rstrip("/"))
  state, frozen, step_fn = make_sft_step(policy, config, mesh)

  iterator = datasets.make_train_iterator(
      config,
      samples,
      ctx.tokenizer,
      jax.process_index(),
      jax.process_count(),
      rows=mesh_lib.process_rows(mesh, config.data.batch_size),
  )
  ckpt = checkpointing.Checkpointer(
      ckpt_dir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep
  )
  state, start = checkpointing.resume_or_start(ckpt, state, iterator, policy.frozen_fingerprint)
  if start:
    ctx.writer.truncate_metrics(start, prefix=metric_prefix)
    logging.info("resumed from %s/%d", ckpt_dir, start)

  mesh_lib.wait_for_processes(f"{metric_prefix}start")
  guard = checkpointing.PreemptionGuard()
  phase = metric_prefix.rstrip("/") or "train"
  bar = tqdm(
      total=tc.steps,
      initial=start,
      desc=phase,
      disable=not ctx.is_primary,
      dynamic_ncols=True,
  )
  last_metrics: dict = {}
  time_since, logged_step = time.time(), start
  step = start
  try:
    while step < tc.steps:
      batch = mesh_lib.common_length(next(iterator), ctx.tokenizer.pad_token_id, left_pad=False)
      arrays, _ = datasets.split_meta(batch)
      arrays = mesh_lib.put_global_batch({k: arrays[k] for k in TRAIN_KEYS}, mesh)
      with run_io.activity(f"{phase}: first step (compiling it)", enabled=step == start):
        state, metrics = step_fn(state, frozen, arrays)
      step += 1
      bar.update(1)
      if step % tc.log_every == 0 or step == tc.steps:
        metrics = jax.device_get(metrics)
        dt = time.time() - time_since
        record = {f"{metric_prefix}{k}": float(v) for k, v in metrics.items()}
        tokens_in = float(np.sum(batch["attention_mask"])) * jax.process_count()
        steps_done = step - logged_step
        record[f"{metric_prefix}step_time_s"] = dt / steps_done
        record[f"{metric_prefix}tokens_per_s"] = tokens_in * steps_done / max(dt, 1e-9)
        ctx.writer.write_metrics(step, record)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        last_metrics = record
        time_since, logged_step = time.time(), step
      checkpointing.save_when_due(
          ckpt, guard, step, tc.steps, state, iterator, policy.frozen_fingerprint
      )
  finally:
    bar.close()
    ckpt.close()
    guard.restore()
  params = lora_lib.combine_params(state.trainable, frozen)
  return {
      "params": params,
      "step": step,
      "last_metrics": last_metrics,
  }


def run(config, workdir: str, writer) -> dict:
  """`mode=sft`: train on `train.split` (from `checkpoint.init_from` when set), evaluate."""
  split = config.train.split
  ctx = context_lib.build_context(config, workdir, writer, roles=(split, "eval"))
  if config.checkpoint.init_from:
    params = state_lib.load_trained_params(ctx, config.checkpoint.init_from)
    ctx = dataclasses.replace(ctx, policy=dataclasses.replace(ctx.policy, params=params))
  ckpt_dir = os.path.join(workdir, "checkpoints")
  key = context_lib.phase_key(ctx.data_keys[split], config.checkpoint.init_from)
  context_lib.start_phase(ctx, "sft", key, ckpt_dir, "train/")
  result = train_sft(ctx, samples=ctx.samples[split], ckpt_dir=ckpt_dir)
  summary = {
      "steps": result["step"],
      "split": split,
      **{k.split("/", 1)[1]: v for k, v in result["last_metrics"].items()},
  }
  writer.update_summary("sft", summary)
  eval_result = evaluation.evaluate(
      ctx, result["params"], ctx.samples["eval"], workdir, max_samples=config.eval.num_samples
  )
  eval_result.update(
      evaluation.majority_baseline(
          ctx.samples[split], ctx.samples["eval"], config.eval.lexicon, config.eval.level
      )
  )
  writer.write_metrics(result["step"], {f"eval/{k}": v for k, v in eval_result.items()})
  writer.update_summary("eval", eval_result)
  return {"sft": summary, "eval": eval_result}
