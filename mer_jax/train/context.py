"""What every mode sets up first: mesh, tokenizer, data splits, policy, feature cache."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from absl import logging
import jax

from input_pipeline import readers
from input_pipeline import tokenization
from mer_jax import config_lib
from mer_jax import run_io
from mer_jax.train import features as features_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib

# Which split plays which role, per data source.
SPLITS = {
    "synthmer": {"sft": "sft", "rl": "rl", "eval": "eval"},
    "released": {"sft": "train", "rl": "train", "eval": "eval"},
}


@dataclasses.dataclass
class RunContext:
  config: Any  # the run config, with data.feature_cache_dir pointing at the cache
  workdir: str
  writer: run_io.RunWriter
  mesh: Any
  tokenizer: Any
  policy: policy_lib.Policy
  samples: dict  # role ('sft' | 'rl' | 'eval') -> list of sample dicts

  @property
  def is_primary(self) -> bool:
    return jax.process_index() == 0


def build_context(
    config, workdir: str, writer: run_io.RunWriter, roles=("sft", "eval")
) -> RunContext:
  """Loads the data of `roles`, builds the policy and caches encoder features."""
  t0 = time.time()
  mesh = mesh_lib.make_mesh(config.mesh)
  tokenizer = tokenization.get_tokenizer(config, workdir)
  splits = {}
  for role in roles:
    with run_io.activity(f"data: loading the {role} split ({config.data.source})"):
      splits[role] = readers.load_split(config, SPLITS[config.data.source][role])
    logging.info(
        "data: %s split has %d samples (%d skipped)",
        role,
        len(splits[role][0]),
        len(splits[role][1]),
    )
    if not splits[role][0]:
      raise config_lib.ConfigError(
          f"the {role} split has no usable samples (config.data.source "
          f"{config.data.source!r}); see summary.json['data']['skipped']"
      )
  writer.update_summary("data", readers.data_summary(**splits))
  samples = {role: s for role, (s, _) in splits.items()}

  with run_io.activity("building the policy and its frozen encoders"):
    policy = policy_lib.build_policy(config, tokenizer, mesh)
  logging.info("policy parameters: %s", policy_lib.describe(policy))
  mesh_lib.wait_for_processes("policy_built")
  cache_dir = features_lib.feature_dir(config, policy)
  seen = set()
  unique = [
      s for role in roles for s in samples[role] if not (s["name"] in seen or seen.add(s["name"]))
  ]
  features_lib.precompute_features(
      config, policy, unique, cache_dir, show_progress=jax.process_index() == 0
  )
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data.feature_cache_dir = cache_dir
  # Media are no longer needed once features are cached: free them.
  samples = {
      role: [{k: v for k, v in s.items() if k not in ("frames", "audio")} for s in ss]
      for role, ss in samples.items()
  }
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
