"""Memory planner: AOT-compiled real steps on abstract inputs (the GRPO test preset on 8 fake devices)."""

import importlib.util
import math

from flax import traverse_util
import jax
import numpy as np
import pytest

from mer_jax.tools import plan
from mer_jax.train import mesh as mesh_lib

VOCAB = 1287  # the synthmer tokenizer's size (the test preset takes it from the tokenizer)


def _config(repo_root):
  spec = importlib.util.spec_from_file_location("grpo_recipe", repo_root / "configs" / "grpo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("test")
  config.model.llm.arch.vocab_size = VOCAB
  config.grpo.prompts_per_step = 4  # 16 update rows: every one of 8 devices gets its own
  return config


def test_parse_mesh():
  assert plan.parse_mesh("data:8,fsdp:8") == {"data": 8, "fsdp": 8, "tensor": 1}
  assert plan._device_count(["x", "--mesh=data:4,fsdp:16,tensor:1"]) == 64
  with pytest.raises(ValueError, match="bad entry"):
    plan.parse_mesh("model:8")


def test_fsdp_shards_the_params_and_data_replicates_them(repo_root):
  config = _config(repo_root)
  replicated = plan.abstract_policy(config, mesh_lib.make_mesh({"data": 8, "fsdp": 1, "tensor": 1}))
  sharded = plan.abstract_policy(config, mesh_lib.make_mesh({"data": 1, "fsdp": 8, "tensor": 1}))
  leaves = jax.tree_util.tree_leaves((replicated["trainable"], replicated["frozen"]))
  total = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in leaves)
  assert plan._shard_bytes((replicated["trainable"], replicated["frozen"])) == total
  assert plan._shard_bytes((sharded["trainable"], sharded["frozen"])) < total / 2


def test_grpo_update_and_sampler_plan(repo_root):
  config = _config(repo_root)
  result = plan.plan(config, {"data": 2, "fsdp": 4, "tensor": 1}, prompt_len=128)
  assert result["step"] == "grpo_update" and result["devices"] == 8 and result["rows"] == 16
  assert result["per_device_bytes"] == (
      result["argument_bytes"]
      + result["output_bytes"]
      + result["temp_bytes"]
      - result["alias_bytes"]
  )
  # The state is donated: its buffers alias the outputs.
  assert (
      result["alias_bytes"]
      >= result["trainable_bytes_per_device"] + result["opt_state_bytes_per_device"]
  )
  assert (
      result["argument_bytes"]
      >= result["param_bytes_per_device"] + result["opt_state_bytes_per_device"]
  )
  # Forward + backward of a fully trained LLM: about 6 x params x tokens (plus attention),
  # where the token embedding is a gather and the LM head sees only completion positions.
  policy = plan.abstract_policy(config, mesh_lib.make_mesh({"data": 1, "fsdp": 8, "tensor": 1}))
  sizes = {
      "/".join(p): math.prod(x.shape)
      for p, x in traverse_util.flatten_dict({**policy["trainable"], **policy["frozen"]}).items()
      if p[0] == "llm"
  }
  vocab_params = sum(n for k, n in sizes.items() if "embed_tokens" in k or "lm_head" in k)
  head_params = max(n for k, n in sizes.items() if "embed_tokens" in k or "lm_head" in k)
  body_params = sum(sizes.values()) - vocab_params
  completion_tokens = result["rows"] * config.grpo.max_new_tokens
  expected = 6 * (body_params * result["tokens_per_step"] + head_params * completion_tokens)
  ratio = result["flops_per_step"] / expected
  assert 0.9 <= ratio <= 3.0, ratio
  assert result["flops_per_step"] == pytest.approx(8 * result["flops_per_device"])
  decode = result["decode"]
  assert decode["rows"] == 16 and decode["cache_tokens"] == 128 + config.grpo.max_new_tokens
  assert 0 < decode["per_device_bytes"] and decode["flops_per_token"] > 0
  # One token for 16 rows: about 2 x body params x 16 matmul FLOPs plus the LM head.
  assert 1.0 <= decode["flops_per_token"] / (2 * (body_params + head_params) * 16) <= 2.0


def test_decode_layout_removes_the_per_token_weight_gathers(repo_root):
  config = _config(repo_root)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 8, "tensor": 1})
  policy = plan.abstract_policy(config, mesh)
  llm_bytes = sum(
      math.prod(x.shape) * np.dtype(x.dtype).itemsize
      for p, x in traverse_util.flatten_dict(policy["frozen"]).items()
      if p[0] == "llm"
  )
  per_token = {}
  for layout in ("train", "replicated"):
    config.decode.layout = layout
    per_token[layout] = plan.plan_decode(config, mesh, policy, 64)
  train, ours = per_token["train"], per_token["replicated"]
  # fsdp decoding gathers (nearly) every LLM weight for every token; the decode layout none.
  assert train["collective_bytes_per_token"] >= 0.8 * llm_bytes * 7 / 8
  assert ours["collective_bytes_per_token"] < 0.01 * train["collective_bytes_per_token"]
  assert ours["reshard_bytes_per_device"] >= 0.8 * llm_bytes * 7 / 8
  assert train["reshard_bytes_per_device"] == 0
  assert ours["param_bytes_per_device"] > train["param_bytes_per_device"]
