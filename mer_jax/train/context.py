"""What every mode sets up first: mesh, tokenizer, data splits with their features, policy."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from absl import logging
import jax

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
  samples: dict  # role ('sft' | 'rl' | 'eval') -> list of sample dicts (text; no media)

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
  )
