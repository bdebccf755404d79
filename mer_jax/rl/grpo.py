"""AffectGPT-R1: cold-start SFT, then GRPO with emotion-wheel rewards; the main job.

One GRPO step (AffectGPT-R1 section 3.3):
  1. rollout: B prompts -> fused features once -> G samples each (jitted sampler, KV cache);
  2. rewards on the host: the `grpo.rewards` registry, weighted (accuracy x length penalty,
     format, ...); a reward failing on one sample scores that sample 0;
  3. update (one jitted step): group advantages on the [B, G] grid, clipped-ratio loss
     (optional k3 KL to the reference), exact (sum, denominator) accumulation, AdamW on
     the trainable subset; `num_iterations` > 1 reuses the rollout with stored old
     logprobs.

The reference policy of the KL term is the cold-start (SFT) policy (`rl_start`): the SFT
adapters are merged into the LLM weights and fresh adapters train, so "adapters off" is
the SFT policy without a second LLM copy; the trained non-adapter weights (fusion, and
the LLM under full fine-tuning) are kept at their SFT values in `frozen[KL_REFERENCE]`.

`run` (mode `grpo`) chains SFT (unless `grpo.init_checkpoint`), GRPO and the held-out
evaluation of both, resumably: rerunning the command continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time
from typing import Callable, Mapping

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from input_pipeline import datasets
from input_pipeline import files
from mer_jax import run_io
from mer_jax.decode import generation
from mer_jax.decode import layout as layout_lib
from mer_jax.models import lora as lora_lib
from mer_jax.rl import advantages as adv_lib
from mer_jax.rl import losses as losses_lib
from mer_jax.rl import rewards as rewards_lib
from mer_jax.train import checkpointing
from mer_jax.train import context as context_lib
from mer_jax.train import evaluation
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import optimizer as optim
from mer_jax.train import sft as sft_lib
from mer_jax.train import state as state_lib
from mer_jax.train import train_step as ts

UPDATE_KEYS = (
    "prompt_ids",
    "prompt_mask",
    "vision_feats",
    "audio_feats",
    "completion",
    "completion_mask",
    "rewards",
    "old_logprobs",
)
REWARD_FIELDS = ("name", "labels", "reason", "cues")
# Entry of the frozen params holding the cold-start values of the trained non-adapter
# weights (the KL reference); present only when `grpo.beta > 0`.
KL_REFERENCE = "kl_reference"


def completion_logits(
    model,
    params,
    batch: Mapping[str, jax.Array],
    temperature: float,
    *,
    lora: bool = True,
    deterministic: bool = True,
    rng: jax.Array | None = None,
) -> jax.Array:
  """Logits / T `[N, L, V]` of each completion token given the prompt and the tokens before it."""
  embed = lambda m, ids, v, a: m.embed_prompt(ids, v, a)
  prompt = model.apply(
      {"params": params},
      batch["prompt_ids"],
      batch["vision_feats"],
      batch["audio_feats"],
      method=embed,
  )
  completion = model.apply(
      {"params": params}, batch["completion"], method=lambda m, ids: m.llm.embed(ids)
  )
  embeds = jnp.concatenate([prompt, completion.astype(prompt.dtype)], axis=1)
  mask = jnp.concatenate([batch["prompt_mask"], batch["completion_mask"]], axis=1)
  rngs = {} if rng is None else {"dropout": rng}
  p, length = batch["prompt_ids"].shape[1], batch["completion"].shape[1]
  # Only the positions that predict completion tokens are projected to the vocabulary.
  logits, _ = model.apply(
      {"params": params},
      inputs_embeds=embeds,
      attention_mask=mask,
      lora=lora,
      deterministic=deterministic,
      rngs=rngs,
      logits_range=(p - 1, p + length - 1),
      method=lambda m, **kw: m.llm(**kw),
  )
  return logits / (temperature if temperature > 0 else 1.0)


def logprobs_and_entropy(logits: jax.Array, completion: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`[N, L, V]` completion logits -> log prob of each completion token and entropy, `[N, L]` each."""
  logp_all = jax.nn.log_softmax(logits, axis=-1)
  logp = jnp.take_along_axis(logp_all, completion[..., None], axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
  return logp, entropy


def completion_logprobs(
    model,
    params,
    batch: Mapping[str, jax.Array],
    temperature: float,
    *,
    lora: bool = True,
    deterministic: bool = True,
    rng: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Per-token log pi(completion | prompt) `[N, L]` and policy entropy `[N, L]`.

  Uses log_softmax(logits / T), the distribution the sampler drew from (T = 1 for greedy).
  """
  logits = completion_logits(
      model, params, batch, temperature, lora=lora, deterministic=deterministic, rng=rng
  )
  return logprobs_and_entropy(logits, batch["completion"])


@dataclasses.dataclass(frozen=True)
class Hooks:
  """Extension points of the GRPO job for its variants (OPPO); the defaults are plain GRPO.

  extra_loss: (params, micro-batch, completion logits [N, L, V], dropout rng, the GRPO
    loss's denominator of the micro-batch) -> (term added to the micro-batch's loss_sum,
    metric sums); inside the jitted update.
  extra_keys: per-row `[N, L]` arrays that `extra_update` adds to the update batch.
  extra_update: (texts, tokens [N, L], lengths [N], samples) -> ({key: [N, L]}, stats)
    on the host after the rewards (this process's rows).
  log_metrics: update metric sums (host floats) -> entries for the logged record.
  """

  extra_loss: Callable | None = None
  extra_keys: tuple[str, ...] = ()
  extra_update: Callable | None = None
  log_metrics: Callable | None = None


def make_grpo_loss_fn(model, g, extra_loss: Callable | None = None):
  """(trainable, frozen, micro-batch, rng) -> (loss_sum, denominator, metric sums)."""

  def loss_fn(trainable, frozen, batch, rng):
    frozen, reference = split_reference(frozen)
    params = lora_lib.combine_params(trainable, frozen)
    logits = completion_logits(model, params, batch, g.temperature, deterministic=False, rng=rng)
    logp, entropy = logprobs_and_entropy(logits, batch["completion"])
    ref = None
    if g.beta > 0:
      # The SFT policy: cold-start values of the trained weights, adapters off.
      ref_params = lora_lib.combine_params(params, reference)
      ref, _ = completion_logprobs(
          model, jax.lax.stop_gradient(ref_params), batch, g.temperature, lora=False
      )
      ref = jax.lax.stop_gradient(ref)
    old = batch["old_logprobs"] if g.num_iterations > 1 else None
    out = losses_lib.grpo_loss(
        logp,
        batch["advantages"],
        batch["completion_mask"],
        old,
        ref,
        jax.lax.stop_gradient(entropy),
        clip_eps=g.clip_eps,
        clip_eps_high=g.clip_eps_high,
        beta=batch["kl_beta"][:, None],
        max_len=float(g.max_new_tokens),
        loss_agg=g.loss_agg,
    )
    if extra_loss is None:
      return out.loss_sum, out.denominator, out.metrics
    term, metrics = extra_loss(params, batch, logits, rng, out.denominator)
    return out.loss_sum + term, out.denominator, {**out.metrics, **metrics}

  return loss_fn


def split_reference(frozen: dict) -> tuple[dict, dict]:
  """(frozen params of the policy, KL reference entries `{}` when there is none)."""
  rest = {k: v for k, v in frozen.items() if k != KL_REFERENCE}
  return rest, frozen.get(KL_REFERENCE, {})


def with_kl_reference(trainable, frozen, t_sh, f_sh, dtype: str) -> tuple[dict, dict]:
  """`frozen` (and its shardings) plus a copy of the non-adapter `trainable` leaves.

  The copy is cast to `dtype` (`model.frozen_dtype`); arrays become new buffers (the train
  state is donated), ShapeDtypeStructs (the memory planner) new structs.
  """
  adapters = lora_lib.trainable_mask(trainable)
  ref = lora_lib.split_params(trainable, adapters)[1]
  ref_sh = lora_lib.split_params(t_sh, adapters)[1]
  dt = jnp.dtype(dtype)
  cast = lambda x: dt if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype
  leaves = jax.tree_util.tree_leaves(ref)
  if leaves and isinstance(leaves[0], jax.ShapeDtypeStruct):
    ref = jax.tree_util.tree_map(
        lambda x, sh: jax.ShapeDtypeStruct(x.shape, cast(x), sharding=sh), ref, ref_sh
    )
  else:
    copy = lambda t: jax.tree_util.tree_map(lambda x: jnp.array(x, cast(x), copy=True), t)
    ref = jax.jit(copy, out_shardings=ref_sh)(ref)
  return {**frozen, KL_REFERENCE: ref}, {**f_sh, KL_REFERENCE: ref_sh}


@dataclasses.dataclass
class RLStart:
  """Params of the RL phase (`rl_start`); `frozen`/`f_sh` include the KL reference if any."""

  trainable: dict
  frozen: dict
  t_sh: dict
  f_sh: dict
  merged_lora: dict | None  # cold-start adapters inside `frozen` (LoRA), saved with checkpoints


def rl_start(policy, sft_params: dict, beta: float, frozen_dtype: str, rng: jax.Array) -> RLStart:
  """The RL phase's params, with the cold-start (SFT) policy as its reference.

  1. The SFT adapters are merged into the LLM kernels and fresh adapters (B = 0, so the
     policy is unchanged) are trained: adapters off is then the SFT policy
     (design.md section 3). With LoRA the merged kernels are frozen (no second LLM copy)
     and the SFT adapters are returned for the checkpoints, so that a step directory
     restores on its own (`state.load_trained_params`).
  2. With `beta > 0`, the trained non-adapter weights (fusion; with full fine-tuning the
     LLM too) are copied at their SFT values into `frozen[KL_REFERENCE]`.
  """
  mask = policy.trainable_mask()
  sh = policy.param_shardings
  without_adapters = lambda tree: lora_lib.split_params(tree, lora_lib.trainable_mask(tree))[1]
  sft_adapters = lora_lib.adapter_params(sft_params)
  merged = state_lib.merge_adapters(
      without_adapters(sft_params),
      sft_adapters,
      policy.config.llm.lora_scale,
      without_adapters(sh),
  )
  fresh = jax.jit(lora_lib.fresh_adapters, out_shardings=lora_lib.adapter_params(sh))(
      sft_adapters, rng
  )
  trainable, frozen = lora_lib.split_params(lora_lib.combine_params(merged, fresh), mask)
  t_sh, f_sh = lora_lib.split_params(sh, mask)
  if beta > 0:
    frozen, f_sh = with_kl_reference(trainable, frozen, t_sh, f_sh, frozen_dtype)
  return RLStart(trainable, frozen, t_sh, f_sh, None if policy.train_full_llm else sft_adapters)


def num_updates(g) -> int:
  """Optimizer updates of a GRPO run: `num_iterations` per step (the LR and KL schedules' T)."""
  return g.steps * g.num_iterations


def kl_beta(g, update: jax.Array) -> jax.Array:
  """The KL weight at optimizer update `update` (0-based) under `grpo.beta_schedule`.

  decay_to_quarter (the public OPPO recipe): beta * (1 - 0.75 t / (T / 2)) for the first
  half of the T = steps x num_iterations updates, then beta / 4.
  """
  beta = jnp.asarray(g.beta, jnp.float32)
  if g.get("beta_schedule", "constant") == "decay_to_quarter":
    half = max(num_updates(g) / 2.0, 1.0)
    return beta * (1.0 - 0.75 * jnp.minimum(update.astype(jnp.float32) / half, 1.0))
  return beta


def grpo_optimizer(g):
  """(optax optimizer, LR schedule) over the run's `num_updates`."""
  schedule = optim.learning_rate_schedule(
      steps=num_updates(g),
      init_lr=0.0 if g.warmup_steps else g.lr,
      peak_lr=g.lr,
      warmup_steps=g.warmup_steps,
      schedule=g.get("schedule", "constant"),
  )
  return (
      optim.make_optimizer(lr=schedule, weight_decay=g.weight_decay, grad_clip=g.grad_clip),
      schedule,
  )


def make_grpo_step(policy, config, mesh, trainable, frozen, t_sh, f_sh, hooks: Hooks = Hooks()):
  """(state, state shardings, jitted update step, jitted old-logprob fn)."""
  g = config.grpo
  tx, _ = grpo_optimizer(g)
  state, s_sh = state_lib.init_state(trainable, t_sh, tx, config.seed, mesh)
  update = grpo_update_fn(policy.model, config, mesh, s_sh, f_sh, hooks)
  logprobs = lambda params, b: completion_logprobs(policy.model, params, b, g.temperature)[0]
  # The old-policy pass runs in the update's micro-batches: its memory is that of one.
  old_fn = jax.jit(
      lambda params, batch: ts.map_micro_batches(lambda b: logprobs(params, b), batch, g.grad_accum)
  )
  return state, s_sh, update, mesh_lib.CompileTogether(old_fn, "grpo_old_logprobs")


def grpo_update_fn(model, config, mesh, s_sh, f_sh, hooks: Hooks = Hooks()):
  """The jitted GRPO update `(state, frozen, batch) -> (state, metrics)` with explicit shardings.

  Built from shardings only, so the memory planner (mer_jax/tools/plan.py) lowers it on
  abstract inputs.
  """
  g = config.grpo
  tx, schedule = grpo_optimizer(g)
  base = ts.make_train_step(
      make_grpo_loss_fn(model, g, hooks.extra_loss), tx, schedule, g.grad_accum
  )
  num_generations = g.num_generations

  def step(state, frozen, batch):
    grid = batch["rewards"].reshape(-1, num_generations)
    advantages = adv_lib.group_advantages(grid, g.scale_rewards).reshape(-1)
    inputs = {k: v for k, v in batch.items() if k != "rewards"}
    inputs["advantages"] = advantages
    beta = kl_beta(g, state.step)
    inputs["kl_beta"] = jnp.full(advantages.shape, beta)
    new_state, metrics = base(state, frozen, inputs)
    metrics["kl_beta"] = beta
    metrics["advantage_std"] = jnp.std(advantages)
    metrics["zero_variance_groups"] = jnp.mean(
        (jnp.max(grid, 1) == jnp.min(grid, 1)).astype(jnp.float32)
    )
    return new_state, metrics

  rows = config.grpo.prompts_per_step * num_generations
  batch_sh = {
      k: mesh_lib.batch_sharding(mesh, _ndim(k), rows=rows)
      for k in UPDATE_KEYS + tuple(hooks.extra_keys)
  }
  jitted = jax.jit(
      mesh_lib.with_activation_rules(step, mesh, config.mesh.logical_axis_rules),
      in_shardings=(s_sh, f_sh, batch_sh),
      out_shardings=(s_sh, mesh_lib.replicated(mesh)),
      donate_argnums=(0,),
  )
  return mesh_lib.CompileTogether(jitted, "grpo_update")


def _ndim(key: str) -> int:
  return {"vision_feats": 3, "audio_feats": 3, "rewards": 1}.get(key, 2)


def _local_rows(array: np.ndarray, mesh) -> np.ndarray:
  """This process's rows of a gathered batch: those its devices hold (`mesh_lib.process_rows`)."""
  return array[mesh_lib.process_rows(mesh, len(array))]


def rollout(
    ctx, params, batch: dict, step_rng, sampling, stops, extra_update: Callable | None = None
) -> dict:
  """Samples G completions per prompt, scores them; returns this process's update rows + stats."""
  g = ctx.config.grpo
  arrays, meta = datasets.split_meta(batch)
  out = generation.generate(
      ctx.policy.model,
      params,
      arrays,
      step_rng,
      sampling,
      ctx.mesh,
      repeat=g.num_generations,
      rules=ctx.config.mesh.logical_axis_rules,
      settings=layout_lib.settings_from_config(ctx.config),
  )
  tokens = _local_rows(out["tokens"], ctx.mesh)
  lengths = _local_rows(out["lengths"], ctx.mesh)
  cmask = _local_rows(out["completion_mask"], ctx.mesh)
  texts = generation.decode_completions(ctx.tokenizer, tokens, lengths, stops)
  samples = [
      {k: meta[k][i] for k in REWARD_FIELDS}
      for i in range(len(meta["name"]))
      for _ in range(g.num_generations)
  ]
  total, components = rewards_lib.combine_rewards(texts, samples, ctx.config)
  rep = lambda x: np.repeat(x, g.num_generations, axis=0)
  update = {
      "prompt_ids": rep(arrays["input_ids"]),
      "prompt_mask": rep(arrays["attention_mask"]),
      "vision_feats": rep(arrays["vision_feats"]),
      "audio_feats": rep(arrays["audio_feats"]),
      "completion": tokens,
      "completion_mask": cmask,
      "rewards": total,
      "old_logprobs": _local_rows(out["logprobs"], ctx.mesh),
  }
  # Statistics of the global batch: every process's rows (one collective).
  columns = {f"reward/{k}": v for k, v in components.items()}
  columns.update(
      reward=total,
      completion_length=lengths,
      # Completions cut at grpo.max_new_tokens: a cut <think> gets no format or
      # answer reward, so a high rate means the budget, not the policy, scores 0.
      truncation_rate=np.asarray(lengths) >= g.max_new_tokens,
      answer_labels=np.asarray([len(evaluation.predicted_labels(t)) for t in texts]),
  )
  if extra_update is not None:
    arrays_extra, stats_extra = extra_update(texts, tokens, lengths, samples)
    update.update(arrays_extra)
    # Per-row means over this process's rows; every process holds as many rows.
    columns.update({k: np.full(len(texts), v) for k, v in stats_extra.items()})
  columns = mesh_lib.gather_rows(columns)
  stats = {k: float(np.mean(v)) for k, v in columns.items() if k != "reward"}
  stats.update(
      reward_mean=float(np.mean(columns["reward"])), reward_std=float(np.std(columns["reward"]))
  )
  return {"update": update, "stats": stats, "texts": texts}


def train_grpo(
    ctx: context_lib.RunContext,
    init_params: dict,
    *,
    ckpt_dir: str,
    metric_prefix: str = "grpo/",
    hooks: Hooks = Hooks(),
) -> dict:
  """`config.grpo.steps` GRPO steps from `init_params` (resuming from `ckpt_dir`)."""
  config, mesh, policy = ctx.config, ctx.mesh, ctx.policy
  g = config.grpo
  notes = rewards_lib.reward_provenance(config)
  if notes:
    logging.warning("%s rewards: %s", metric_prefix.rstrip("/"), notes)
    ctx.writer.update_summary(metric_prefix.rstrip("/"), notes)
  rl = rl_start(
      policy, init_params, g.beta, config.model.frozen_dtype, jax.random.PRNGKey(config.seed + 2)
  )
  frozen = rl.frozen
  state, _, update, old_fn = make_grpo_step(
      policy, config, mesh, rl.trainable, frozen, rl.t_sh, rl.f_sh, hooks
  )
  policy_params = lambda trainable: lora_lib.combine_params(trainable, split_reference(frozen)[0])

  prompt_config = config.copy_and_resolve_references()
  prompt_config.data.batch_size = g.prompts_per_step
  prompts = datasets.make_train_iterator(
      prompt_config,
      ctx.samples["rl"],
      ctx.tokenizer,
      jax.process_index(),
      jax.process_count(),
      prompt_only=True,
      question="labels",
      rows=mesh_lib.process_rows(mesh, g.prompts_per_step),
  )
  ckpt = checkpointing.Checkpointer(
      ckpt_dir, every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep
  )
  state, start = checkpointing.resume_or_start(ckpt, state, prompts, policy.frozen_fingerprint)
  if start:
    ctx.writer.truncate_metrics(start, prefix=metric_prefix)
    logging.info("GRPO resumed from %s/%d", ckpt_dir, start)

  stops = generation.stop_strings_for(config.data.target)
  sampling = generation.sampling_config(
      ctx.tokenizer,
      max_new_tokens=g.max_new_tokens,
      temperature=g.temperature,
      top_p=g.top_p,
      top_k=g.top_k,
      stop_strings=tuple(g.stop_strings) or stops,
  )
  base_rng = jax.random.PRNGKey(config.seed + 1)
  guard = checkpointing.PreemptionGuard()
  phase = metric_prefix.rstrip("/")
  bar = tqdm(
      total=g.steps,
      initial=start,
      desc=phase,
      disable=not ctx.is_primary,
      dynamic_ncols=True,
  )
  step, last = start, {}
  try:
    while step < g.steps:
      t0 = time.time()
      batch = mesh_lib.common_length(next(prompts), ctx.tokenizer.pad_token_id, left_pad=True)
      params = policy_params(state.trainable)
      first = step == start
      with run_io.activity(f"{phase}: first rollout (compiling the sampler)", enabled=first):
        ro = rollout(
            ctx,
            params,
            batch,
            jax.random.fold_in(base_rng, step),
            sampling,
            stops,
            hooks.extra_update,
        )
      t_rollout = time.time() - t0
      arrays = mesh_lib.put_global_batch(ro["update"], mesh)
      with run_io.activity(f"{phase}: first update (compiling it)", enabled=first):
        if g.num_iterations > 1:
          arrays["old_logprobs"] = old_fn(params, arrays)
        for _ in range(g.num_iterations):
          state, metrics = update(state, frozen, arrays)
      step += 1
      bar.update(1)
      if step % g.log_every == 0 or step == g.steps:
        metrics = jax.device_get(metrics)
        tokens = max(float(metrics.pop("tokens")), 1.0)
        record = {
            "loss": float(metrics["loss"]),
            "grad_norm": float(metrics["grad_norm"]),
            "lr": float(metrics["lr"]),
            "advantage_std": float(metrics["advantage_std"]),
            "zero_variance_groups": float(metrics["zero_variance_groups"]),
            "clip_fraction": (float(metrics["clip_low"]) + float(metrics["clip_high"])) / tokens,
            "kl": float(metrics["kl"]) / tokens,
            "kl_beta": float(metrics["kl_beta"]),
            "entropy": float(metrics["entropy"]) / tokens,
            "ratio": float(metrics["ratio"]) / tokens,
            "rollout_s": t_rollout,
            "step_time_s": time.time() - t0,
            **ro["stats"],
        }
        if hooks.log_metrics is not None:
          record.update(hooks.log_metrics(metrics))
        record = {f"{metric_prefix}{k}": v for k, v in record.items()}
        ctx.writer.write_metrics(step, record)
        bar.set_postfix(
            reward=f"{ro['stats']['reward_mean']:.3f}",
            length=f"{ro['stats']['completion_length']:.0f}",
        )
        last = record
      checkpointing.save_when_due(
          ckpt, guard, step, g.steps, state, prompts, policy.frozen_fingerprint, rl.merged_lora
      )
  finally:
    bar.close()
    ckpt.close()
    guard.restore()
  return {
      "params": policy_params(state.trainable),
      "step": step,
      "last_metrics": last,
  }


def plot_curves(workdir: str, prefix: str = "grpo/") -> str | None:
  """PNG of the reward and completion-length curves of the RL phase."""
  records = [r for r in run_io.read_metrics(workdir) if f"{prefix}reward_mean" in r]
  if not records:
    return None
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  steps = [r["step"] for r in records]
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  axes[0].plot(steps, [r[f"{prefix}reward_mean"] for r in records], label="total")
  for key in sorted(k for k in records[0] if k.startswith(f"{prefix}reward/")):
    axes[0].plot(steps, [r[key] for r in records], label=key.split("/")[-1], alpha=0.7)
  axes[0].set_title("reward")
  axes[0].legend(fontsize=7)
  axes[1].plot(steps, [r[f"{prefix}completion_length"] for r in records])
  axes[1].set_title("completion length (tokens)")
  axes[2].plot(steps, [r[f"{prefix}answer_labels"] for r in records])
  axes[2].set_title("labels in the answer")
  for ax in axes:
    ax.set_xlabel("step")
  fig.tight_layout()
  path = os.path.join(workdir, "grpo_curves.png")
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  plt.close(fig)
  files.write_bytes(path, png.getvalue())
  return path


def cold_start(ctx, workdir: str) -> tuple[dict, int, str]:
  """(params, steps, phase key) of the SFT policy GRPO starts from: `grpo.init_checkpoint`,
  or SFT trained here."""
  config = ctx.config
  if config.grpo.init_checkpoint:
    params = state_lib.load_trained_params(ctx, config.grpo.init_checkpoint)
    return params, 0, context_lib.phase_key(config.grpo.init_checkpoint)
  ckpt_dir = os.path.join(workdir, "sft", "checkpoints")
  key = context_lib.phase_key(ctx.data_keys["sft"])
  context_lib.start_phase(ctx, "sft", key, ckpt_dir, "sft/")
  result = sft_lib.train_sft(
      ctx, samples=ctx.samples["sft"], ckpt_dir=ckpt_dir, metric_prefix="sft/"
  )
  return result["params"], result["step"], key


def rl_phase(ctx, workdir: str, phase: str, sft_key: str, sft_steps: int) -> tuple[str, str]:
  """(checkpoint directory, phase key) of the RL phase after the cold start (start_phase)."""
  ckpt_dir = os.path.join(workdir, phase, "checkpoints")
  key = context_lib.phase_key(sft_key, sft_steps, ctx.data_keys["rl"])
  context_lib.start_phase(ctx, phase, key, ckpt_dir, f"{phase}/")
  return ckpt_dir, key


def evaluate_phase(ctx, params, workdir: str, name: str, step: int, key: str) -> dict:
  """Held-out evaluation of one phase's policy, cached in summary.json across resumes.

  The cache holds for the same policy (phase `key`, `step`), evaluation data and settings.
  """
  eval_settings = run_io.config_dict(ctx.config.eval)
  eval_key = context_lib.phase_key(key, step, ctx.data_keys["eval"], eval_settings)
  done = run_io.read_json(os.path.join(workdir, "summary.json"), {}).get(name, {})
  if "ew_f1" in done and done.get("eval_key") == eval_key:
    return done
  result = evaluation.evaluate(
      ctx,
      params,
      ctx.samples["eval"],
      os.path.join(workdir, name),
      max_samples=ctx.config.eval.num_samples,
      desc=f"eval {name}",
  )
  ctx.writer.truncate_metrics(0, prefix=f"eval_{name}/")  # an earlier evaluation's line
  ctx.writer.write_metrics(step, {f"eval_{name}/{k}": v for k, v in result.items()})
  result.update(eval_step=step, eval_key=eval_key)
  ctx.writer.update_summary(name, result)
  return result


def run(config, workdir: str, writer, phase: str = "grpo") -> dict:
  """Mode `grpo`: SFT cold start -> GRPO -> evaluation of both (summary keys `sft`, `grpo`)."""
  ctx = context_lib.build_context(config, workdir, writer, roles=("sft", "rl", "eval"))
  sft_params, sft_steps, sft_key = cold_start(ctx, workdir)
  sft_result = evaluate_phase(ctx, sft_params, workdir, "sft", sft_steps, sft_key)
  writer.update_summary(
      "sft",
      evaluation.majority_baseline(
          ctx.samples["sft"], ctx.samples["eval"], config.eval.lexicon, config.eval.level
      ),
  )
  ckpt_dir, key = rl_phase(ctx, workdir, phase, sft_key, sft_steps)
  result = train_grpo(ctx, sft_params, ckpt_dir=ckpt_dir, metric_prefix=f"{phase}/")
  final = evaluate_phase(ctx, result["params"], workdir, phase, result["step"], key)
  if ctx.is_primary:
    path = plot_curves(workdir, prefix=f"{phase}/")
    writer.update_summary(
        phase,
        {
            "curves_png": path,
            "steps": result["step"],
            "train_reward_last": result["last_metrics"].get(f"{phase}/reward_mean"),
        },
    )
  return {"sft": sft_result, phase: final}
