"""Export our params to a HF checkpoint directory that `transformers` loads.

LoRA is merged first (`W + alpha/r * A @ B`), scanned stacks are split into per-layer
keys, kernels go back to the torch layout, and `config.json` gets the right
`architectures` / `model_type`.

`run` is mode `export_hf`: the policy of any SFT/GRPO/OPPO checkpoint step
(`config.checkpoint.init_from`) becomes

  <workdir>/hf/llm/               merged LLM: config.json, safetensors, tokenizer
                                  (`transformers.AutoModelForCausalLM.from_pretrained`)
  <workdir>/hf/fusion.safetensors pre-fusion/projection weights, flat keys (`a.b.kernel`)
  <workdir>/hf/affectgpt.json     what else rebuilds AffectGPT: fusion settings, placeholder
                                  ids, media settings, where the frozen encoders came from
  <workdir>/hf/README.md          the loader note
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

from absl import logging
from etils import epath
from flax import traverse_util
import jax
import numpy as np

from input_pipeline import files
from mer_jax.hf import keymaps
from mer_jax.hf.safetensors_io import LazyTensor
from mer_jax.hf.safetensors_io import save_safetensors
from mer_jax.hf.safetensors_io import write_checkpoint
from mer_jax.models import lora as lora_lib

Params = dict[str, Any]


def hf_tensors(params: Params, config: Any, dtype: Any = None) -> list[LazyTensor]:
  """Our params (`{'params': ...}` or the inner dict) -> the HF tensors (torch layout), lazily.

  Each tensor is made when fetched, from the part of the params it needs: one layer of a
  scanned stack (sliced on the devices, then gathered), LoRA merged into that kernel only.
  Every process must fetch the same tensors in the same order (gathers are collective).
  """
  spec = keymaps.spec_for_config(config)
  flat = traverse_util.flatten_dict(params.get("params", params))
  scale = config.lora_scale
  tensors = []
  for path, value in flat.items():
    if lora_lib.is_lora_path(path):
      continue
    dt = np.dtype(dtype if dtype is not None else value.dtype)
    layer_paths = keymaps.unscanned_paths(path, spec, value.shape[0] if value.ndim else None)
    layers = enumerate(layer_paths) if layer_paths is not None else [(None, path)]
    for layer, p in layers:
      shape = value.shape if layer is None else value.shape[1:]
      perm = np.argsort(keymaps.layout_perm(p, len(shape)))
      tensors.append(
          LazyTensor(
              keymaps.hf_key_candidates(p, spec)[0],
              tuple(int(shape[i]) for i in perm),
              dt,
              functools.partial(_fetch, flat, path, layer, p, scale, dt),
          )
      )
  return tensors


def _fetch(flat: dict, path: tuple, layer: int | None, hf_path: tuple, scale: float, dtype):
  """One HF tensor of `hf_tensors`: layer `layer` of leaf `path` (LoRA merged), on the host."""
  pick = (lambda x: x) if layer is None else (lambda x: x[layer])
  value = pick(flat[path])
  mod = path[:-1]
  if path[-1] == "kernel" and mod + ("lora_a",) in flat:
    value = lora_lib.merged_kernel(
        value, pick(flat[mod + ("lora_a",)]), pick(flat[mod + ("lora_b",)]), scale
    )
  return np.ascontiguousarray(keymaps.to_hf_layout(_host_value(value).astype(dtype), hf_path))


def _host_value(x: Any) -> np.ndarray:
  """The full value of a parameter on this host (gathered from the others when sharded across hosts)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(jax.device_get(x))


def export_hf(
    params: Params,
    config: Any,
    out_dir: str,
    arch: str | None = None,
    dtype: Any = None,
    max_shard_bytes: int | None = None,
) -> str:
  """Writes `out_dir/model.safetensors` (or shards + index) and `config.json`.

  arch: key of `mer_jax.hf.keymaps.ARCHS` (checked against `config`); dtype: cast every
  tensor (e.g. `ml_dtypes.bfloat16`), default keeps the param dtype; max_shard_bytes:
  split into shards of at most this size (None: one file). Returns out_dir.
  """
  spec = keymaps.spec_for_config(config)
  if arch is not None and arch != spec.name:
    raise ValueError(f"arch {arch!r} does not match config type {type(config).__name__}")
  tensors = hf_tensors(params, config, dtype)
  write_checkpoint(tensors, out_dir, max_shard_bytes)
  hf_config = config.to_hf_dict()
  hf_config["dtype"] = str(tensors[0].dtype)
  files.write_json(os.path.join(out_dir, "config.json"), hf_config, indent=2)
  return out_dir


_LOADER_NOTE = """# AffectGPT exported by mer-jax

Exported from `{checkpoint}` (LoRA rank {rank}, alpha {alpha}, merged into the weights).

| file | holds |
|---|---|
| `llm/` | the LLM with LoRA merged: a `transformers` Qwen2 checkpoint and its tokenizer (placeholder tokens included) |
| `fusion.safetensors` | the trained pre-fusion and projections (`{fusion_type}` fusion), flat keys = our Flax param paths joined by `.` |
| `affectgpt.json` | fusion settings, placeholder token ids, media settings, the frozen encoders' sources |

The LLM alone (text in, text out):

```python
import transformers
tok = transformers.AutoTokenizer.from_pretrained("hf/llm")
llm = transformers.AutoModelForCausalLM.from_pretrained("hf/llm")
```

`llm.generate` stops at the eos ids of `llm/generation_config.json` ({eos_tokens}); mer-jax
also ends an answer at {stop_strings}: pass `stop_strings=[...], tokenizer=tok` to `generate`
for the same completions.

The whole model in mer-jax (video/audio features in):

```python
import json
from flax import traverse_util
from safetensors.numpy import load_file
from mer_jax.hf import config_from_hf_dir, load_hf_params
from mer_jax.models import affectgpt, fusion, qwen2

meta = json.load(open("hf/affectgpt.json"))
llm_cfg = config_from_hf_dir("hf/llm")
llm = load_hf_params("hf/llm", qwen2.Qwen2ForCausalLM, llm_cfg)["params"]
flat = load_file("hf/fusion.safetensors")
fused = traverse_util.unflatten_dict({{tuple(k.split(".")): v for k, v in flat.items()}})
config = affectgpt.AffectGPTConfig(llm=llm_cfg, fusion=fusion.FusionConfig(**meta["fusion"]),
                                   placeholders=tuple(map(tuple, meta["placeholders"])))
model = affectgpt.AffectGPT(config)
params = {{"llm": llm, "fusion": fused}}
# model.apply({{"params": params}}, input_ids, vision_feats, audio_feats, attention_mask)
```

`vision_feats` `[B, {num_frames}, Dv]` and `audio_feats` `[B, {num_audio_clips}, Da]` come from the frozen
encoders, unchanged by training: vision {vision}, audio {audio} (mean of the last
{num_last_layers} HuBERT layers; `mer_jax.models.affectgpt.VisionEncoder` / `AudioEncoder`).
Prompts are built by `input_pipeline.prompts.build_prompt` with the settings in `affectgpt.json`.
"""


def checkpoint_run_dir(step_dir: str) -> str | None:
  """The run directory above a checkpoint step dir that holds its tokenizer (synthmer runs)."""
  d = os.path.dirname(files.absolute(step_dir))  # local or gs://
  while d and d != os.path.dirname(d):
    if epath.Path(d, "tokenizer", "tokenizer.json").exists():
      return d
    d = os.path.dirname(d)
  return None


def run(config, workdir: str, writer) -> dict:
  """Mode `export_hf`: the checkpoint in `config.checkpoint.init_from` -> `<workdir>/hf/`."""
  from input_pipeline import tokenization
  from mer_jax.decode import generation
  from mer_jax.models import affectgpt
  from mer_jax.train import context as context_lib
  from mer_jax.train import mesh as mesh_lib
  from mer_jax.train import policy as policy_lib
  from mer_jax.train import state as state_lib

  step_dir = config.checkpoint.init_from  # required by config_lib.validate in this mode
  mesh = mesh_lib.make_mesh(config.mesh)
  # A generated (synthmer) tokenizer lives in the training run's workdir: reuse it.
  tokenizer_dir = checkpoint_run_dir(step_dir) if config.data.tokenizer == "synthmer" else None
  tokenizer = tokenization.get_tokenizer(config, tokenizer_dir or workdir)
  # The encoders too: their sources are part of the checkpoint's identity (checked on restore).
  policy = policy_lib.build_policy(config, tokenizer, mesh)
  ctx = context_lib.RunContext(
      config=config,
      workdir=workdir,
      writer=writer,
      mesh=mesh,
      tokenizer=tokenizer,
      policy=policy,
      samples={},
  )
  params = state_lib.load_trained_params(ctx, step_dir)
  llm_cfg = policy.config.llm
  out = os.path.join(workdir, "hf")
  llm_dir = os.path.join(out, "llm")
  # Every process takes part in gathering sharded weights, one tensor at a time; process 0
  # writes them, shard by shard.
  tensors = hf_tensors(params["llm"], llm_cfg)
  max_shard_bytes = int(float(config.export_hf.max_shard_mb) * 2**20)
  written = write_checkpoint(tensors, llm_dir, max_shard_bytes, write=ctx.is_primary)
  fusion = {
      ".".join(p): _host_value(v) for p, v in traverse_util.flatten_dict(params["fusion"]).items()
  }
  summary = {
      "dir": out,
      "llm_files": written,
      "llm_tensors": len(tensors),
      "fusion_tensors": len(fusion),
      "llm_params": int(sum(np.prod(t.shape, dtype=np.int64) for t in tensors)),
      "fusion_params": int(sum(t.size for t in fusion.values())),
  }
  if not ctx.is_primary:
    return summary
  token_ids = special_token_ids(tokenizer)
  hf_config = dict(
      llm_cfg.to_hf_dict(),
      dtype=str(tensors[0].dtype),
      bos_token_id=token_ids["bos_token_id"],
      eos_token_id=token_ids["eos_token_id"][0],
      pad_token_id=token_ids["pad_token_id"],
  )
  files.write_json(os.path.join(llm_dir, "config.json"), hf_config, indent=2)
  # `generate` stops at any of these eos ids (<|im_end|> first, then <|endoftext|>).
  files.write_json(
      os.path.join(llm_dir, "generation_config.json"), dict(token_ids, do_sample=False), indent=2
  )
  files.write_files(llm_dir, tokenizer.save_pretrained)
  save_safetensors(fusion, os.path.join(out, "fusion.safetensors"))
  d = config.data
  fusion_cfg = dataclasses.asdict(policy.config.fusion)
  meta = {
      "checkpoint": files.absolute(step_dir),
      "llm": "llm",
      "fusion_weights": "fusion.safetensors",
      "fusion": fusion_cfg,
      "placeholders": [list(p) for p in affectgpt.placeholder_ids(tokenizer)],
      "lora_merged": {"rank": llm_cfg.lora_rank, "alpha": llm_cfg.lora_alpha},
      "data": {
          k: d[k]
          for k in (
              "num_frames",
              "num_audio_clips",
              "audio_clip_seconds",
              "sample_rate",
              "image_size",
              "face_or_frame",
              "question",
              "target",
          )
      },
      "tokens_per_modality": dict(d.tokens_per_modality),
      "encoders": {
          **{
              part: _encoder_source(config.model[part], config.seed) for part in ("vision", "audio")
          },
          "audio_num_last_layers": int(config.model.audio.num_last_layers),
      },
  }
  random = [p for p in ("vision", "audio") if not config.model[p].hf_dir]
  if random:
    logging.warning(
        "export_hf: the %s encoder(s) are random-init (no model.<part>.hf_dir): the export "
        "names their architecture and seed, not pretrained weights",
        " and ".join(random),
    )
  files.write_json(os.path.join(out, "affectgpt.json"), meta, indent=2)
  files.write_text(
      os.path.join(out, "README.md"),
      _LOADER_NOTE.format(
          checkpoint=meta["checkpoint"],
          rank=llm_cfg.lora_rank,
          alpha=llm_cfg.lora_alpha,
          fusion_type=fusion_cfg["fusion_type"],
          num_frames=d.num_frames,
          num_audio_clips=d.num_audio_clips,
          vision=_describe_encoder(meta["encoders"]["vision"]),
          audio=_describe_encoder(meta["encoders"]["audio"]),
          num_last_layers=config.model.audio.num_last_layers,
          eos_tokens=", ".join(
              f"`{tokenizer.convert_ids_to_tokens(i)}`" for i in token_ids["eos_token_id"]
          ),
          stop_strings=" or ".join(f"`{s}`" for s in generation.stop_strings_for(d.target)),
      ),
  )
  writer.update_summary("export_hf", summary)
  logging.info("export_hf: wrote %s (LLM in %s)", out, llm_dir)
  return summary


def special_token_ids(tokenizer) -> dict:
  """bos/eos/pad ids for the exported config.json and generation_config.json.

  eos is a list: the tokenizer's eos (<|im_end|>, where the chat turn and our answers end)
  and <|endoftext|> when the vocabulary has it, as in Qwen2.5-Instruct's generation config.
  """
  eos = [int(tokenizer.eos_token_id)]
  endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
  if isinstance(endoftext, int) and endoftext != tokenizer.unk_token_id and endoftext not in eos:
    eos.append(int(endoftext))
  return {
      "bos_token_id": int(tokenizer.bos_token_id),
      "eos_token_id": eos,
      "pad_token_id": int(tokenizer.pad_token_id),
  }


def _encoder_source(section, seed: int) -> dict:
  """Where a frozen encoder's weights come from: its HF directory, or random init (arch, seed)."""
  if section.hf_dir:
    return {"hf_dir": files.absolute(section.hf_dir)}
  arch = section.arch_file or section.arch.to_dict()
  return {"random_init": {"arch": arch, "seed": int(seed)}}


def _describe_encoder(source: dict) -> str:
  if "hf_dir" in source:
    return f"`{source['hf_dir']}`"
  return (
      "random-init, NOT pretrained (the demo's; architecture and seed in `affectgpt.json`, "
      "rebuilt by `mer_jax.train.policy.build_policy` with that config)"
  )
