"""What every mode sets up first: mesh, tokenizer, data splits with their features, policy."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from absl import logging
from etils import epath
import jax

from input_pipeline import features as input_features
from input_pipeline import tokenization
from mer_jax import config_lib
from mer_jax import run_io
from mer_jax.train import features as features_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib


@dataclasses.dataclass
class RunContext:
  config: Any  # the run config, with data.features_dir pointing at the features directory
  workdir: str
  writer: run_io.RunWriter
  mesh: Any
  tokenizer: Any
  policy: policy_lib.Policy
  # role ('sft' | 'rl' | 'eval') -> list of sample dicts (text; no media); 'eval' holds
  # the validation split with eval.split='validation' (features_lib.split_of)
  samples: dict
  # role -> `features.data_key` of its samples: what phase caches are keyed by.
  data_keys: dict = dataclasses.field(default_factory=dict)

  @property
  def is_primary(self) -> bool:
    return jax.process_index() == 0


def build_context(
    config, workdir: str, writer: run_io.RunWriter, roles=("sft", "eval")
) -> RunContext:
  """Reads the text of `roles`, makes sure their features exist, then builds the policy.

  Media are opened only by a features pass, for clips the features do not cover yet
  (mer_jax/train/features.py); the frozen encoders are loaded only then, and freed before
  the policy is built.
  """
  t0 = time.time()
  mesh = mesh_lib.make_mesh(config.mesh)
  tokenizer = tokenization.get_tokenizer(config, workdir)
  if "rl" in roles and config.data.source == "released" and not config.data.rl_labels_csv:
    logging.warning(
        "config.data.rl_labels_csv is empty: the RL phase reads the cold-start labels "
        "(data.labels_csv); the papers' RL split is another data set (MER2025-OV)"
    )
  features_dir, samples, data_summary = features_lib.prepare(config, roles)
  writer.update_summary("data", data_summary)
  for role in roles:
    if not samples[role]:
      raise config_lib.ConfigError(
          f"the {role} split has no usable samples (config.data.source "
          f"{config.data.source!r}); see summary.json['data']['skipped']"
      )

  with run_io.activity("building the policy"):
    policy = policy_lib.build_policy(config, tokenizer, mesh)
  logging.info("policy parameters: %s", policy_lib.describe(policy))
  mesh_lib.wait_for_processes("policy_built")
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.features_dir = features_dir
  logging.info("setup took %.1fs", time.time() - t0)
  return RunContext(
      config=config,
      workdir=workdir,
      writer=writer,
      mesh=mesh,
      tokenizer=tokenizer,
      policy=policy,
      samples=samples,
      data_keys=data_summary["keys"],
  )


def phase_key(*parts) -> str:
  """16 hex digits naming what a phase's results depend on (data keys, its start, settings)."""
  return input_features.fingerprint_key({"parts": parts})


def start_phase(ctx: RunContext, phase: str, key: str, ckpt_dir: str, metric_prefix: str) -> None:
  """Lets `phase` resume only checkpoints made from the same `key` (phase_key).

  Run config changes are refused before this (main.py), but a rerun in the same workdir
  may still see other data files or media, or another cold start (`train.steps` grew
  under a GRPO run). Then the phase's checkpoints are moved to `<ckpt_dir>.stale-<old
  key>`, its metrics lines dropped, and it starts over (warned). The key is kept in
  summary.json['phase_keys'].
  """
  summary = run_io.read_json(os.path.join(ctx.workdir, "summary.json"), {})
  old = summary.get("phase_keys", {}).get(phase)
  if old not in (None, key):
    logging.warning(
        "%s: its data or cold start changed since this workdir's last launch (key %s -> %s): "
        "it starts over; its checkpoints move to %s.stale-%s",
        phase,
        old,
        key,
        ckpt_dir,
        old,
    )
    if ctx.is_primary:
      checkpoints = epath.Path(ckpt_dir)  # local or gs://
      if checkpoints.is_dir():
        checkpoints.rename(f"{ckpt_dir}.stale-{old}")
      ctx.writer.truncate_metrics(0, prefix=metric_prefix)
  mesh_lib.wait_for_processes(f"start_{phase}")
  ctx.writer.update_summary("phase_keys", {phase: key})
