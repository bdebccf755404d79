r"""Memory and FLOPs of the real train steps on a mesh, before renting it.

    python -m mer_jax.tools.plan --config=configs/grpo.py:paper --mesh=data:8,fsdp:8,tensor:1 [--json]

Builds the configured model from shapes only (no weights: `jax.eval_shape`, shardings
from the logical-axis rules), then ahead-of-time lowers and compiles, for a mesh of
that many fake CPU devices (set before JAX starts), the GRPO update step exactly as
`mer_jax.rl.grpo.grpo_update_fn` jits it, and the rollout program as
`mer_jax.decode.generation` runs it (weights in the `config.decode` layout, prompt
embedding, prefill, the KV-cache `while_loop` decode). XLA's memory analysis of the
compiled per-device program gives the bytes one chip needs; the compiled HLO, walked
with loop trip counts (mer_jax/tools/hlo.py), the matmul FLOPs and collective bytes.
Recipes without a `grpo` section (SFT) plan the SFT step instead of the GRPO update.

With `--json` the last line is

    {"per_device_bytes": ..., "per_device_bytes_bf16": ..., "flops_per_step": ...,
     "param_bytes_per_device": ..., "notes": [...], "decode": {...}, ...}

for the train step, the rollout under "decode" (`collective_bytes_per_token`,
`flops_per_token`, `reshard_bytes_per_device`, ...; docs/performance.md).
`per_device_bytes` = arguments + outputs + temporaries - donated (aliased) buffers;
`per_device_bytes_bf16` leaves out the f32 weight copies the CPU backend makes of bf16
weights (`notes` says when); `flops_per_step` sums all devices.
Any config field can be overridden (`--config.grpo.prompts_per_step=16`).
"""

from __future__ import annotations

import os
import sys


def _device_count(argv) -> int:
  """Product of the `--mesh=axis:size,...` sizes on the command line (before absl parses it)."""
  spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--mesh=")), None)
  if spec is None and "--mesh" in argv:
    spec = argv[argv.index("--mesh") + 1]
  sizes = parse_mesh(spec or "data:1,fsdp:1,tensor:1")
  return sizes["data"] * sizes["fsdp"] * sizes["tensor"]


def parse_mesh(spec: str) -> dict[str, int]:
  """'data:8,fsdp:8,tensor:1' -> {'data': 8, 'fsdp': 8, 'tensor': 1} (missing axes are 1)."""
  sizes = {"data": 1, "fsdp": 1, "tensor": 1}
  for part in filter(None, spec.split(",")):
    name, _, size = part.partition(":")
    if name not in sizes or not size.isdigit() or int(size) < 1:
      raise ValueError(
          f"--mesh: bad entry {part!r}; expected axis:size with axis in data, fsdp, tensor"
      )
    sizes[name] = int(size)
  return sizes


if __name__ == "__main__":
  # The fake CPU devices must exist before JAX initializes its backend.
  os.environ["JAX_PLATFORMS"] = "cpu"
  flags_env = [
      f
      for f in os.environ.get("XLA_FLAGS", "").split()
      if not f.startswith("--xla_force_host_platform_device_count")
  ]
  os.environ["XLA_FLAGS"] = " ".join(
      flags_env + [f"--xla_force_host_platform_device_count={_device_count(sys.argv)}"]
  )

import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from flax import traverse_util  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402

from mer_jax.decode import generation  # noqa: E402
from mer_jax.decode import layout as layout_lib  # noqa: E402
from mer_jax.decode import sampler as sampler_lib  # noqa: E402
from mer_jax.models import affectgpt  # noqa: E402
from mer_jax.models import fusion as fusion_lib  # noqa: E402
from mer_jax.models import lora as lora_lib  # noqa: E402
from mer_jax.models import qwen2  # noqa: E402
from mer_jax.models import sharding as sharding_lib  # noqa: E402
from mer_jax.rl import grpo  # noqa: E402
from mer_jax.tools import hlo  # noqa: E402
from mer_jax.train import mesh as mesh_lib  # noqa: E402
from mer_jax.train import optimizer as optim  # noqa: E402
from mer_jax.train import policy as policy_lib  # noqa: E402
from mer_jax.train import sft  # noqa: E402
from mer_jax.train import state as state_lib  # noqa: E402

_FLAGS: dict = {}


def _define_flags() -> None:
  """Command-line flags, defined only when this module runs as a program, so tests can
  import it next to other tools that define --config."""
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", None, "Run config, e.g. configs/grpo.py:paper."
  )
  _FLAGS["mesh"] = flags.DEFINE_string(
      "mesh", "data:1,fsdp:1,tensor:1", "Mesh sizes, e.g. data:8,fsdp:8,tensor:1."
  )
  _FLAGS["json"] = flags.DEFINE_bool(
      "json", False, "Print the result as one JSON line (the last line of output)."
  )
  _FLAGS["decode"] = flags.DEFINE_bool(
      "decode", True, "Also plan the sampler program (GRPO configs)."
  )
  _FLAGS["prompt_len"] = flags.DEFINE_integer(
      "prompt_len", 0, "Prompt tokens per row (0 = config.data.max_length)."
  )


GiB = 1 << 30


def _with_sharding(tree: Any, shardings: Any, dtype_of=None) -> Any:
  """ShapeDtypeStructs of `tree` carrying `shardings` (and `dtype_of(path, leaf)` when given)."""
  return jax.tree_util.tree_map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
  )


def _shard_bytes(tree: Any) -> int:
  """Bytes one device holds of a pytree of sharded ShapeDtypeStructs (the largest shard)."""
  total = 0
  for x in jax.tree_util.tree_leaves(tree):
    shape = x.sharding.shard_shape(x.shape) if x.sharding is not None else x.shape
    total += math.prod(shape) * np.dtype(x.dtype).itemsize
  return total


def abstract_policy(config, mesh) -> dict:
  """Abstract (weightless) policy params, split and typed as the trainers hold them.

  Returns dict with `model`, `trainable`, `frozen` (sharded ShapeDtypeStructs) and their
  shardings `t_sh`, `f_sh`.
  """
  rules = tuple(tuple(r) for r in config.mesh.logical_axis_rules)
  llm_arch, _ = policy_lib._arch(config.model.llm, "llm")
  vocab = int(llm_arch.get("vocab_size") or 0)
  if not vocab:
    raise ValueError(
        "config.model.llm has no vocab_size (the demo/test presets take it from the tokenizer); "
        "pass --config.model.llm.arch.vocab_size=N"
    )
  # Placeholder ids only select rows of the embedding: any valid ids give the same program.
  placeholders = tuple(
      (vocab - 4 + i, m) for i, m in enumerate(("video", "video", "audio", "multi"))
  )
  model_cfg, vision_cfg, audio_cfg = policy_lib.build_model_configs(config, vocab, placeholders)
  model = affectgpt.AffectGPT(model_cfg)
  f, c = config.data.num_frames, config.data.num_audio_clips
  rng = jax.random.key(0)
  fusion = jax.eval_shape(
      fusion_lib.PreFusion(model_cfg.fusion).init,
      rng,
      jnp.zeros((1, f, vision_cfg.projection_dim)),
      jnp.zeros((1, c, audio_cfg.hidden_size)),
  )
  llm = jax.eval_shape(
      qwen2.Qwen2ForCausalLM(model_cfg.llm).init, rng, jnp.zeros((1, 1), jnp.int32)
  )
  boxed = {"fusion": fusion["params"], "llm": llm["params"]}
  shardings = sharding_lib.logical_shardings(boxed, mesh, rules)
  params = nn.unbox(boxed)
  mask = policy_lib.trainable_mask(params, config.model.llm.trainable == "full")
  trainable, frozen = lora_lib.split_params(params, mask)
  t_sh, f_sh = lora_lib.split_params(shardings, mask)
  frozen_dtype = jnp.dtype(config.model.frozen_dtype)
  frozen = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(
          x.shape, frozen_dtype if jnp.issubdtype(x.dtype, jnp.floating) else x.dtype
      ),
      frozen,
  )
  return {
      "model": model,
      "vision": vision_cfg,
      "audio": audio_cfg,
      "trainable": _with_sharding(trainable, t_sh),
      "frozen": _with_sharding(frozen, f_sh),
      "t_sh": t_sh,
      "f_sh": f_sh,
  }


def abstract_state(trainable, t_sh, tx, seed: int, mesh):
  """The train state's ShapeDtypeStructs with the shardings `state.init_state` gives it on device."""
  state, s_sh = state_lib.abstract_state(trainable, t_sh, tx, seed, mesh)
  return _with_sharding(state, s_sh), s_sh


def _batch(mesh, rows: int, arrays: dict) -> dict:
  """Sharded ShapeDtypeStructs of a batch: name -> (shape, dtype), rows leading."""
  return {
      k: jax.ShapeDtypeStruct(
          shape, dtype, sharding=mesh_lib.batch_sharding(mesh, len(shape), rows=rows)
      )
      for k, (shape, dtype) in arrays.items()
  }


BF16_NOTE = (
    "CPU compilation models bf16 matmuls as f32: it converts their operands, and holds an "
    "f32 copy of every bf16 weight stack ({gib:.2f} GiB per device, counted in "
    "per_device_bytes); per_device_bytes_bf16 leaves those copies out (what a TPU/GPU "
    "compile, which keeps bf16, would hold)"
)


def _analyse(compiled, devices: int) -> dict:
  """XLA's memory analysis plus loop-aware FLOPs and collective bytes (mer_jax/tools/hlo.py)."""
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  text = compiled.as_text()
  stats = hlo.analyse(text, devices)
  per_device = (
      mem.argument_size_in_bytes
      + mem.output_size_in_bytes
      + mem.temp_size_in_bytes
      - mem.alias_size_in_bytes
  )
  out = {
      "per_device_bytes": int(per_device),
      "per_device_gib": round(per_device / GiB, 3),
      "argument_bytes": int(mem.argument_size_in_bytes),
      "output_bytes": int(mem.output_size_in_bytes),
      "temp_bytes": int(mem.temp_size_in_bytes),
      "alias_bytes": int(mem.alias_size_in_bytes),
      # matmul FLOPs with every loop body times its trip count (hlo.py); XLA's own
      # count (all ops, each loop body once) for reference.
      "flops_per_device": stats["flops"],
      "flops_per_step": stats["flops"] * devices,
      "xla_flops_per_device": float((cost or {}).get("flops", 0.0)),
      "collective_bytes_per_device": stats["collective_bytes"],
      "loops": stats["loops"],
      "notes": [],
  }
  upcast = hlo.upcast_parameter_bytes(text)
  out["cpu_f32_weight_copies_bytes"] = upcast
  out["per_device_bytes_bf16"] = int(per_device - upcast)
  out["per_device_bf16_gib"] = round((per_device - upcast) / GiB, 3)
  if upcast:
    out["notes"].append(BF16_NOTE.format(gib=upcast / GiB))
  return out


def plan_train_step(config, mesh, policy: dict, prompt_len: int) -> dict:
  """Lowers + compiles the GRPO update (or the SFT step) on abstract inputs; its analysis."""
  d = config.data
  f, c = d.num_frames, d.num_audio_clips
  dv, da = policy["vision"].projection_dim, policy["audio"].hidden_size
  if "grpo" in config:
    g = config.grpo
    rows = g.prompts_per_step * g.num_generations
    tx, _ = grpo.grpo_optimizer(g)
    state, s_sh = abstract_state(policy["trainable"], policy["t_sh"], tx, config.seed, mesh)
    if g.beta > 0:  # the KL reference's copy of the trained non-adapter weights
      frozen, f_sh = grpo.with_kl_reference(
          policy["trainable"],
          policy["frozen"],
          policy["t_sh"],
          policy["f_sh"],
          config.model.frozen_dtype,
      )
      policy = {**policy, "frozen": frozen, "f_sh": f_sh}
    step = grpo.grpo_update_fn(policy["model"], config, mesh, s_sh, policy["f_sh"])
    length = g.max_new_tokens
    batch = _batch(
        mesh,
        rows,
        {
            "prompt_ids": ((rows, prompt_len), jnp.int32),
            "prompt_mask": ((rows, prompt_len), jnp.int32),
            "vision_feats": ((rows, f, dv), jnp.float32),
            "audio_feats": ((rows, c, da), jnp.float32),
            "completion": ((rows, length), jnp.int32),
            "completion_mask": ((rows, length), jnp.int32),
            "rewards": ((rows,), jnp.float32),
            "old_logprobs": ((rows, length), jnp.float32),
        },
    )
    tokens = rows * (prompt_len + length)
  else:
    rows = d.batch_size
    tx, _ = optim.sft_optimizer(config.train)
    state, s_sh = abstract_state(policy["trainable"], policy["t_sh"], tx, config.seed, mesh)
    step = sft.sft_step_fn(policy["model"], config, mesh, s_sh, policy["f_sh"])
    batch = _batch(
        mesh,
        rows,
        {
            "input_ids": ((rows, prompt_len), jnp.int32),
            "attention_mask": ((rows, prompt_len), jnp.int32),
            "loss_mask": ((rows, prompt_len), jnp.float32),
            "vision_feats": ((rows, f, dv), jnp.float32),
            "audio_feats": ((rows, c, da), jnp.float32),
        },
    )
    tokens = rows * prompt_len
  t0 = time.time()
  lowered = step.lower(state, policy["frozen"], batch)
  out = _analyse(lowered.compile(), mesh.size)
  del out["loops"]  # every loop of a train step has a known trip count
  out.update(
      rows=rows,
      tokens_per_step=tokens,
      compile_s=round(time.time() - t0, 1),
      param_bytes_per_device=_shard_bytes((policy["trainable"], policy["frozen"])),
      trainable_bytes_per_device=_shard_bytes(policy["trainable"]),
      frozen_bytes_per_device=_shard_bytes(policy["frozen"]),
      opt_state_bytes_per_device=_shard_bytes(state.opt_state),
  )
  return out


def plan_decode(config, mesh, policy: dict, prompt_len: int) -> dict:
  """Lowers + compiles the rollout (weights in the decode layout, prefill, decode loop).

  `collective_bytes_per_token`: bytes one device moves through the collectives of one
  iteration of the decode `while_loop` (one new token for every row decoding);
  `reshard_bytes_per_device`: what the once-per-rollout move of the weights from the
  training layout to the decode layout gathers onto one device.
  """
  g = config.grpo
  d = config.data
  settings = layout_lib.settings_from_config(config)
  cfg = sampler_lib.SamplingConfig(
      max_new_tokens=int(g.max_new_tokens),
      temperature=float(g.temperature),
      top_p=float(g.top_p),
      top_k=int(g.top_k),
      eos_id=0,
      pad_id=0,
      stop_sequences=(),
  )
  rows = g.prompts_per_step
  params = lora_lib.combine_params(policy["trainable"], policy["frozen"])
  model, rules = policy["model"], tuple(tuple(r) for r in config.mesh.logical_axis_rules)
  lora, reshard = True, 0
  if settings.layout == "replicated":
    shardings = layout_lib.target_shardings(params, settings, layout_lib.scanned_layers(model))
    merged = jax.eval_shape(layout_lib.prepare_fn(model, settings, True), params)
    decode_params = _with_sharding(merged, shardings)
    reshard = _reshard_bytes(merged, params, shardings)
    params, rules = decode_params, layout_lib.decode_rules(rules)
    model, lora = layout_lib.decode_model(model, settings), settings.lora == "adapter"
  batch = _batch(
      mesh,
      rows,
      {
          "input_ids": ((rows, prompt_len), jnp.int32),
          "attention_mask": ((rows, prompt_len), jnp.int32),
          "vision_feats": ((rows, d.num_frames, policy["vision"].projection_dim), jnp.float32),
          "audio_feats": ((rows, d.num_audio_clips, policy["audio"].hidden_size), jnp.float32),
      },
  )
  fn = generation._generate_fn(model, cfg, g.num_generations, lora, mesh, rules, settings.slots)
  t0 = time.time()
  lowered = fn.lower(params, batch, jax.random.key(0))
  out = _analyse(lowered.compile(), mesh.size)
  loop = max(out.pop("loops"), key=lambda c: c["flops"])
  out.update(
      layout=settings.layout,
      rows=rows * g.num_generations,
      slots=settings.slots or rows * g.num_generations,
      cache_tokens=prompt_len + g.max_new_tokens,
      collective_bytes_per_token=loop["collective_bytes"],
      collectives_per_token=loop["collectives"],
      flops_per_token=loop["flops"] * mesh.size,
      flops_prefill=out.pop("flops_per_step"),
      param_bytes_per_device=_shard_bytes(params),
      reshard_bytes_per_device=reshard,
      compile_s=round(time.time() - t0, 1),
  )
  out["collective_bytes_outside_loop"] = out.pop("collective_bytes_per_device")
  return out


def _reshard_bytes(merged, params, shardings) -> int:
  """Bytes one device receives when `merged` moves from the training to the decode shardings.

  An unrolled layer `layers_{i}` holds 1/L of the training stack `layers` it came from.
  """
  flat_train = traverse_util.flatten_dict(params)
  flat_target = traverse_util.flatten_dict(shardings)
  total = 0
  for path, x in traverse_util.flatten_dict(merged).items():
    source = tuple("layers" if p.startswith("layers_") else p for p in path)
    train = flat_train[source]
    layers = train.shape[0] if source != path else 1
    have = math.prod(train.sharding.shard_shape(train.shape)) / layers
    want = math.prod(flat_target[path].shard_shape(x.shape))
    total += max(want - have, 0) * np.dtype(x.dtype).itemsize
  return int(total)


def plan(config, mesh_sizes: dict[str, int], *, decode: bool = True, prompt_len: int = 0) -> dict:
  """The planner's result for `config` on a mesh of `mesh_sizes` (uses the first devices)."""
  devices = mesh_sizes["data"] * mesh_sizes["fsdp"] * mesh_sizes["tensor"]
  if devices > jax.device_count():
    raise ValueError(f"--mesh needs {devices} devices but JAX has {jax.device_count()}")
  mesh = mesh_lib.make_mesh(mesh_sizes, jax.devices()[:devices])
  prompt_len = prompt_len or int(config.data.max_length)
  policy = abstract_policy(config, mesh)
  result = {
      "mesh": dict(mesh_sizes),
      "devices": devices,
      "prompt_len": prompt_len,
      "step": "grpo_update" if "grpo" in config else "sft_step",
      "remat_policy": config.model.remat_policy,
      "frozen_dtype": config.model.frozen_dtype,
  }
  result.update(plan_train_step(config, mesh, policy, prompt_len))
  if decode and "grpo" in config:
    result["decode"] = plan_decode(config, mesh, policy, prompt_len)
  return result


def main(argv):
  del argv
  result = plan(
      _FLAGS["config"].value,
      parse_mesh(_FLAGS["mesh"].value),
      decode=_FLAGS["decode"].value,
      prompt_len=_FLAGS["prompt_len"].value,
  )
  print(
      f"{result['step']} on {result['mesh']}: {result['per_device_gib']:.2f} GiB per device "
      f"({result['per_device_bf16_gib']:.2f} without CPU f32 weight copies) "
      f"(params {result['param_bytes_per_device'] / GiB:.2f}, optimizer "
      f"{result['opt_state_bytes_per_device'] / GiB:.2f}, temporaries {result['temp_bytes'] / GiB:.2f}), "
      f"{result['flops_per_step'] / 1e12:.1f} TFLOP per step; compiled in {result['compile_s']}s"
  )
  if "decode" in result:
    dec = result["decode"]
    print(
        f"sampler ({dec['layout']} layout, {dec['rows']} rows in {dec['slots']} slots, "
        f"{dec['cache_tokens']}-token KV cache): {dec['per_device_gib']:.2f} GiB per device "
        f"({dec['per_device_bf16_gib']:.2f} without CPU f32 weight copies) "
        f"(weights {dec['param_bytes_per_device'] / GiB:.2f}), collectives "
        f"{dec['collective_bytes_per_token'] / GiB:.3f} GiB per device per token, "
        f"{dec['flops_per_token'] / 1e12:.3f} TFLOP per token, prefill "
        f"{dec['flops_prefill'] / 1e12:.2f} TFLOP, weight reshard "
        f"{dec['reshard_bytes_per_device'] / GiB:.2f} GiB per device per rollout; "
        f"compiled in {dec['compile_s']}s"
    )
  for note in sorted(set(result["notes"] + result.get("decode", {}).get("notes", []))):
    print(f"note: {note}")
  if _FLAGS["json"].value:
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
  _define_flags()
  flags.mark_flag_as_required("config")
  app.run(main)
