"""Mode export_hf: a trained checkpoint -> transformers LLM + fusion weights + loader note."""

import importlib.util
import json
import re

from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file

from input_pipeline import datasets
from mer_jax import run_io
from mer_jax.hf import export
from mer_jax.models import qwen2
from mer_jax.train import context as context_lib
from mer_jax.train import sft

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _config(repo_root):
  spec = importlib.util.spec_from_file_location("sft_recipe", repo_root / "configs" / "sft.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("test")
  config.train.steps = 2
  config.train.peak_lr = 1e-2  # move the adapters visibly off zero in two steps
  config.data.synthmer.num_sft = 8
  config.data.synthmer.num_eval = 4
  return config


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


def test_export_hf_loads_in_transformers_with_our_logits(repo_root, tmp_path, monkeypatch):
  config = _config(repo_root)
  train_dir = tmp_path / "train"
  writer = run_io.RunWriter(str(train_dir), tensorboard=False)
  ctx = context_lib.build_context(config, str(train_dir), writer, roles=("sft",))
  trained = sft.train_sft(ctx, samples=ctx.samples["sft"], ckpt_dir=str(train_dir / "checkpoints"))[
      "params"
  ]
  writer.close()
  lora_b = [v for p, v in traverse_util.flatten_dict(trained["llm"]).items() if p[-1] == "lora_b"]
  assert max(float(jnp.max(jnp.abs(b))) for b in lora_b) > 1e-4  # there is an adapter to merge

  # Export on another mesh shape than training's (8-way fsdp): restore re-shards.
  export_config = config.copy_and_resolve_references()
  export_config.mode = "export_hf"
  export_config.checkpoint.init_from = str(train_dir / "checkpoints" / "2")
  export_config.mesh.data, export_config.mesh.fsdp, export_config.mesh.tensor = 2, 2, 2
  # Small shards: several files + the index, as transformers writes a large model.
  export_config.export_hf.max_shard_mb = 0.05
  gathered = []  # (bytes, shard files begun) of every value brought to the host
  host_value = export._host_value
  llm_files = lambda: len(list((tmp_path / "export" / "hf" / "llm").glob("model-*")))
  monkeypatch.setattr(
      export, "_host_value", lambda x: gathered.append((x.nbytes, llm_files())) or host_value(x)
  )
  out_dir = tmp_path / "export"
  writer = run_io.RunWriter(str(out_dir), tensorboard=False)
  summary = export.run(export_config, str(out_dir), writer)
  writer.close()
  hf_dir = out_dir / "hf"
  assert summary["dir"] == str(hf_dir)
  index = json.loads((hf_dir / "llm" / "model.safetensors.index.json").read_text())
  shards = sorted(set(index["weight_map"].values()))
  assert len(shards) >= 3 and shards == sorted(p.name for p in (hf_dir / "llm").glob("model-*"))
  assert not (hf_dir / "llm" / "model.safetensors").exists()
  # One HF tensor at a time is gathered (one layer of a scanned stack, never a whole
  # stack or the model), while its shard is being written.
  fusion_bytes = sum(v.nbytes for v in load_file(str(hf_dir / "fusion.safetensors")).values())
  assert sum(b for b, _ in gathered) == index["metadata"]["total_size"] + fusion_bytes
  assert len(gathered) == len(index["weight_map"]) + summary["fusion_tensors"]
  assert [n for _, n in gathered[: len(index["weight_map"])]] == sorted(
      n for _, n in gathered[: len(index["weight_map"])]
  )
  assert {n for _, n in gathered} == set(range(1, len(shards) + 1))

  # The LLM: transformers loads it (tokenizer too) and gives our logits, LoRA included.
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir / "llm"))
  # (transformers' Qwen2 tokenizer class may append its own <|endoftext|>; ours keep their ids)
  theirs_vocab = tokenizer.get_vocab()
  assert all(theirs_vocab.get(token) == i for token, i in ctx.tokenizer.get_vocab().items())
  text = "the speaker sounds tense and then relieved <AudioHere>"
  assert tokenizer(text)["input_ids"] == ctx.tokenizer(text)["input_ids"]
  ids = np.asarray([tokenizer(text)["input_ids"][:24]], np.int32)
  llm_cfg = ctx.policy.config.llm
  ours = qwen2.Qwen2ForCausalLM(llm_cfg).apply({"params": trained["llm"]}, jnp.asarray(ids))[0]
  base = qwen2.Qwen2ForCausalLM(llm_cfg).apply(
      {"params": trained["llm"]}, jnp.asarray(ids), lora=False
  )[0]
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(hf_dir / "llm"), dtype=torch.float32
  ).eval()
  with torch.no_grad():
    theirs = hf(input_ids=torch.tensor(ids, dtype=torch.long)).logits.numpy()
  assert _rel(theirs, ours) <= 1e-4
  assert _rel(base, ours) > 1e-3  # the comparison would see an unmerged adapter

  # Fusion weights: the trained values, flat keys.
  fusion = load_file(str(hf_dir / "fusion.safetensors"))
  flat = {
      ".".join(p): np.asarray(v) for p, v in traverse_util.flatten_dict(trained["fusion"]).items()
  }
  assert sorted(fusion) == sorted(flat)
  for key, value in flat.items():
    np.testing.assert_array_equal(fusion[key], value)

  # The loader note's recipe rebuilds the whole AffectGPT with the same logits.
  note = (hf_dir / "README.md").read_text()
  code = re.findall(r"```python\n(.*?)```", note, re.S)[1].replace('"hf/', f'"{hf_dir}/')
  namespace: dict = {}
  exec(code, namespace)  # noqa: S102 - the documented recipe, run as a user would
  samples = ctx.samples["sft"][:2]
  batch = datasets.make_batch(ctx.config, samples, ctx.tokenizer, prompt_only=False)
  args = [
      jnp.asarray(batch[k]) for k in ("input_ids", "vision_feats", "audio_feats", "attention_mask")
  ]
  rebuilt = namespace["model"].apply({"params": namespace["params"]}, *args)
  reference = ctx.policy.model.apply({"params": trained}, *args)
  assert _rel(rebuilt, reference) <= 1e-4
  meta = json.loads((hf_dir / "affectgpt.json").read_text())
  assert meta["lora_merged"] == {"rank": llm_cfg.lora_rank, "alpha": llm_cfg.lora_alpha}

  # transformers' generate stops at <|im_end|>: the ids are in both configs it reads.
  im_end = ctx.tokenizer.convert_tokens_to_ids("<|im_end|>")
  generation = transformers.GenerationConfig.from_pretrained(str(hf_dir / "llm"))
  assert hf.generation_config.eos_token_id == generation.eos_token_id
  assert im_end in generation.eos_token_id and generation.pad_token_id == im_end
  assert generation.bos_token_id == ctx.tokenizer.bos_token_id
  hf_config = transformers.AutoConfig.from_pretrained(str(hf_dir / "llm"))
  assert (hf_config.eos_token_id, hf_config.pad_token_id) == (im_end, im_end)
  # The demo's encoders are random: the export says so and how to rebuild them.
  assert meta["encoders"]["vision"] == {
      "random_init": {"arch": config.model.vision.arch.to_dict(), "seed": config.seed}
  }
  assert "random-init, NOT pretrained" in note
  assert jax.process_count() == 1
