"""The tunix half of benchmarks/bench_rollout.py; runs in a Python that has `google-tunix`.

    <tunix python> benchmarks/tunix_side.py sample|grpo SPEC.json OUT.json

SPEC.json (written by bench_rollout.py): the Hugging Face checkpoint directory of the tiny
Qwen2, its config, the prompts as token ids, lengths, repeats. OUT.json: timings in
seconds (first call = compile + run; then the steady-state runs).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402


class IdTokenizer:
  """Token ids written as text ('12 57 3'): the prompts stay exactly the given ids."""

  def __init__(self, eos: int, pad: int = 0):
    self._eos, self._pad = eos, pad

  def encode(self, text, **kw):
    return [int(t) for t in text.split()]

  def decode(self, ids, **kw):
    return " ".join(str(int(i)) for i in ids)

  def bos_id(self):
    return 0  # falsy: tunix adds no bos

  def eos_id(self):
    return self._eos

  def pad_id(self):
    return self._pad


def _model(spec, mesh=None):
  from tunix.models.qwen2 import model as model_lib
  from tunix.models.qwen2 import params as params_lib

  c = spec["config"]
  config = model_lib.ModelConfig(
      num_layers=c["num_hidden_layers"],
      vocab_size=c["vocab_size"],
      embed_dim=c["hidden_size"],
      hidden_dim=c["intermediate_size"],
      num_heads=c["num_attention_heads"],
      head_dim=c["hidden_size"] // c["num_attention_heads"],
      num_kv_heads=c["num_key_value_heads"],
      rope_theta=int(c.get("rope_theta", 10000)),
      norm_eps=c["rms_norm_eps"],
      use_tied_embedding=False,
  )
  return params_lib.create_model_from_safe_tensors(spec["hf_dir"], config, mesh=mesh), config


def run_sample(spec) -> dict:
  from tunix.generate import sampler as sampler_lib

  model, config = _model(spec)
  cache = sampler_lib.CacheConfig(
      cache_size=spec["prompt_len"] + spec["new_tokens"],
      num_layers=config.num_layers,
      num_kv_heads=config.num_kv_heads,
      head_dim=config.head_dim,
  )
  sampler = sampler_lib.Sampler(model, IdTokenizer(eos=spec["eos"]), cache)
  prompts = [" ".join(map(str, p)) for p in spec["prompts"]]
  call = lambda: sampler(
      prompts,
      max_generation_steps=spec["new_tokens"],
      max_prompt_length=spec["prompt_len"],
      temperature=0.0,
      eos_tokens=[spec["eos"]],
      pad_output=True,
  )
  t0 = time.perf_counter()
  out = call()
  first = time.perf_counter() - t0
  times = []
  for _ in range(spec["repeats"]):
    t0 = time.perf_counter()
    out = call()
    times.append(time.perf_counter() - t0)
  tokens = [[int(t) for t in text.split()] for text in out.text]
  return {"first_s": first, "times_s": times, "tokens": tokens}


def run_grpo(spec) -> dict:
  """GRPO steps of tunix's learner (vanilla rollout, no KL), full fine-tuning, on the tiny model."""
  import optax
  from tunix.rl import rl_cluster as rl_cluster_lib
  from tunix.rl.grpo import grpo_learner
  from tunix.rl.rollout import base_rollout

  auto = (jax.sharding.AxisType.Auto,) * 2
  mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), axis_types=auto)
  model, config = _model(spec, mesh)
  stamps = []

  def reward(prompts, completions, **kw):
    stamps.append(time.perf_counter())  # once per step: step boundaries
    # the same reward as bench_grpo_step.reward: completion tokens mod 5
    sizes = [len(c.split()) if isinstance(c, str) else len(c) for c in completions]
    return [float(n % 5) / 4.0 for n in sizes]

  training = rl_cluster_lib.RLTrainingConfig(
      actor_optimizer=optax.adamw(1e-4),
      eval_every_n_steps=10**9,
      max_steps=spec["steps"],
  )
  rollout = base_rollout.RolloutConfig(
      max_tokens_to_generate=spec["new_tokens"],
      max_prompt_length=spec["prompt_len"],
      kv_cache_size=spec["prompt_len"] + spec["new_tokens"] + 8,
      temperature=1.0,
      top_p=1.0,
      eos_tokens=[spec["eos"]],
  )
  cluster = rl_cluster_lib.RLCluster(
      actor=model,
      reference=None,
      tokenizer=IdTokenizer(eos=spec["eos"]),
      cluster_config=rl_cluster_lib.ClusterConfig(
          role_to_mesh={
              rl_cluster_lib.Role.ACTOR: mesh,
              rl_cluster_lib.Role.REFERENCE: mesh,
              rl_cluster_lib.Role.ROLLOUT: mesh,
          },
          rollout_engine="vanilla",
          training_config=training,
          rollout_config=rollout,
      ),
  )
  learner = grpo_learner.GRPOLearner(
      rl_cluster=cluster,
      reward_fns=[reward],
      algo_config=grpo_learner.GRPOConfig(
          num_generations=spec["num_generations"], num_iterations=1, beta=0.0, epsilon=0.2
      ),
  )
  prompts = [" ".join(map(str, p)) for p in spec["prompts"][: spec["prompts_per_step"]]]
  data = [{"prompts": np.asarray(prompts)} for _ in range(spec["steps"] + 1)]  # one array leaf
  t0 = time.perf_counter()
  learner.train(data)
  total = time.perf_counter() - t0
  return {"total_s": total, "reward_stamps": [s - t0 for s in stamps]}


if __name__ == "__main__":
  mode, spec_path, out_path = sys.argv[1:4]
  with open(spec_path) as f:
    spec = json.load(f)
  result = {"sample": run_sample, "grpo": run_grpo}[mode](spec)
  result["jax"] = jax.__version__
  result["devices"] = str(jax.devices()[0].platform)
  with open(out_path, "w") as f:
    json.dump(result, f)
