"""OPPO (mode `oppo`): the GRPO job with the omni-perception reward and loss, plus MEP.

    cold start (SFT or grpo.init_checkpoint) -> eval + MEP of the SFT policy
    -> OPPO-GRPO -> eval + MEP of the OPPO policy

On top of `mer_jax.rl.grpo`: reward `omni` with weight `oppo.alpha` joins
`grpo.rewards` (eq. 5); the rollout adds the routed-token weights of each completion
(eq. 9) to the update batch; the jitted update adds `-oppo.loss_beta * KL` of the
video- and audio-masked forwards (eq. 6-11; `oppo.loss_scope='all'` = PAPO). Cue
embeddings of the rl and eval splits are computed once and cached on disk. summary.json:
`sft` and `oppo`, each with `ew_f1` (and the other eval figures) and `mep`
{utilization_recall, faithfulness_video, faithfulness_audio, ...}. Resumable like GRPO.
"""

from __future__ import annotations

import os

from absl import logging
from etils import epath

from mer_jax.rl import grpo
from mer_jax.rl import mep
from mer_jax.rl import omni
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib

PHASE = "oppo"


def with_omni_reward(config):
  """The run config with `grpo.rewards['omni'] = oppo.alpha` (OPPO eq. 5)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    rewards = dict(config.grpo.rewards)
    rewards["omni"] = float(config.oppo.alpha)
    config.grpo.rewards = rewards
  return config


def make_hooks(ctx) -> grpo.Hooks:
  """GRPO extension points of OPPO (omni loss in the update, routed-token weights)."""
  config = ctx.config
  o = config.oppo
  if o.loss_beta <= 0:
    return grpo.Hooks()
  extra_update = None
  keys = ()
  if o.loss_scope == "routed":
    keys = tuple(omni.WEIGHT_KEYS.values())
    extra_update = lambda texts, tokens, lengths, samples: omni.routed_token_weights(
        ctx.tokenizer, texts, tokens, lengths, samples, config
    )
  return grpo.Hooks(
      extra_loss=omni.make_omni_loss(ctx.policy.model, config.grpo, o),
      extra_keys=keys,
      extra_update=extra_update,
      log_metrics=omni.log_metrics,
  )


def evaluate_with_mep(ctx, params, workdir: str, name: str, step: int, key: str) -> dict:
  """`grpo.evaluate_phase` + the MEP diagnostics of the same policy (cached in summary.json
  with the evaluation)."""
  result = dict(grpo.evaluate_phase(ctx, params, workdir, name, step, key))
  if "mep" not in result:
    # MEP reads the completions from predictions.csv, which process 0 writes.
    mesh_lib.wait_for_processes(f"predictions_{name}")
    result["mep"] = mep.evaluate_mep(
        ctx,
        params,
        ctx.samples["eval"][: ctx.config.eval.num_samples or None],
        os.path.join(workdir, name, "predictions.csv"),
    )
    ctx.writer.truncate_metrics(0, prefix=f"mep_{name}/")  # an earlier evaluation's line
    ctx.writer.write_metrics(step, {f"mep_{name}/{k}": v for k, v in result["mep"].items()})
    ctx.writer.update_summary(name, {"mep": result["mep"]})
    logging.info("MEP %s: %s", name, result["mep"])
  return result


def run(config, workdir: str, writer) -> dict:
  """Mode `oppo`: SFT cold start -> OPPO-GRPO -> evaluation + MEP of both (summary `sft`, `oppo`)."""
  config = with_omni_reward(config)
  ctx = context_lib.build_context(config, workdir, writer, roles=("sft", "rl", "eval"))
  # Next to the features directories (local or gs://), shared by runs like them.
  cache_dir = str(epath.Path(ctx.config.data.features_dir).parent / "cue_embeddings")
  embedder = omni.sentence_embedder(ctx.config).description
  logging.info("OPPO sentence embedder: %s", embedder)
  writer.update_summary(PHASE, {"embedder": embedder})
  for role in ("rl", "eval"):
    n = omni.precompute_cue_embeddings(
        ctx.samples[role], ctx.config, cache_dir, f"{config.data.source}-{role}"
    )
    logging.info("OPPO: %d distinct cues in the %s split", n, role)
  sft_params, sft_steps, sft_key = grpo.cold_start(ctx, workdir)
  sft_result = evaluate_with_mep(ctx, sft_params, workdir, "sft", sft_steps, sft_key)
  ckpt_dir, key = grpo.rl_phase(ctx, workdir, PHASE, sft_key, sft_steps)
  result = grpo.train_grpo(
      ctx, sft_params, ckpt_dir=ckpt_dir, metric_prefix=f"{PHASE}/", hooks=make_hooks(ctx)
  )
  final = evaluate_with_mep(ctx, result["params"], workdir, PHASE, result["step"], key)
  if ctx.is_primary:
    path = grpo.plot_curves(workdir, prefix=f"{PHASE}/")
    writer.update_summary(
        PHASE,
        {
            "curves_png": path,
            "steps": result["step"],
            "train_reward_last": result["last_metrics"].get(f"{PHASE}/reward_mean"),
        },
    )
  return {"sft": sft_result, PHASE: final}
