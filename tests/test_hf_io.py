"""HF checkpoint I/O: export reloads in transformers (merged LoRA), sharded index, bf16/fp16,
key errors, legacy weight-norm names, and loading onto an 8-device mesh."""

import json
import os
import shutil

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import export_hf
from mer_jax.hf import load_hf_params
from mer_jax.hf.safetensors_io import SafetensorsCheckpoint
from mer_jax.hf.safetensors_io import save_safetensors
from mer_jax.hf.safetensors_io import shard_checkpoint
from mer_jax.models import sharding as sharding_lib
from mer_jax.models.qwen2 import Qwen2ForCausalLM
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
  return fx.make_qwen2(str(tmp_path_factory.mktemp("qwen2")))[0]


def _ids():
  return np.random.RandomState(2).randint(0, 128, (2, 6))


def _qwen_logits(params, config, ids, **kw):
  apply = jax.jit(Qwen2ForCausalLM(config).apply, static_argnames=("lora",))
  return np.asarray(apply(params, jnp.asarray(ids), **kw)[0])


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_merged_lora_export_reloads_in_transformers(qwen_dir, tmp_path, scan):
  config = config_from_hf_dir(qwen_dir, scan_layers=scan, lora_rank=4, lora_alpha=8.0)
  params = load_hf_params(qwen_dir, config=config)
  flat = traverse_util.flatten_dict(params)
  assert any(p[-1] == "lora_b" for p in flat)
  # A trained-looking adapter: random B.
  flat = {
      p: (0.05 * jax.random.normal(jax.random.key(len(p)), v.shape) if p[-1] == "lora_b" else v)
      for p, v in flat.items()
  }
  params = traverse_util.unflatten_dict(flat)
  ids = _ids()
  ours = _qwen_logits(params, config, ids)
  assert np.max(np.abs(ours - _qwen_logits(params, config, ids, lora=False))) > 1e-3

  out = export_hf(params, config, str(tmp_path / "export"))
  with open(os.path.join(out, "config.json")) as f:
    written = json.load(f)
  assert written["architectures"] == ["Qwen2ForCausalLM"] and "lora_rank" not in written
  hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  with torch.no_grad():
    theirs = hf(input_ids=torch.tensor(ids)).logits.numpy()
  assert fx.rel_max_diff(ours, theirs) <= 1e-4


@pytest.mark.parametrize("kind", ["clip", "hubert_large", "hubert_base", "bert", "qwen2_tied"])
def test_export_reproduces_hf_state_dict(tmp_path, kind):
  makers = {
      "clip": lambda d: fx.make_clip_vision(d),
      "hubert_large": lambda d: fx.make_hubert(d, True),
      "hubert_base": lambda d: fx.make_hubert(d, False),
      "bert": lambda d: fx.make_bert(d),
      "qwen2_tied": lambda d: fx.make_qwen2(d, tie_word_embeddings=True),
  }
  src, hf = makers[kind](str(tmp_path / "src"))
  config = config_from_hf_dir(src, scan_layers=True)
  out = export_hf(load_hf_params(src, config=config), config, str(tmp_path / "out"))
  reloaded = type(hf).from_pretrained(out).eval()
  want = {k: v.numpy() for k, v in hf.state_dict().items()}
  got = {k: v.numpy() for k, v in reloaded.state_dict().items()}
  assert want.keys() == got.keys()
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_sharded_index_and_half_precision(qwen_dir, tmp_path):
  ckpt = SafetensorsCheckpoint(qwen_dir)
  tensors = {k: np.asarray(ckpt[k]) for k in ckpt.keys()}
  config = config_from_hf_dir(qwen_dir)
  ids = _ids()
  ref = _qwen_logits(load_hf_params(qwen_dir, config=config), config, ids)
  for dtype in (np.float32, np.float16, ml_dtypes.bfloat16):
    d = tmp_path / np.dtype(dtype).name
    d.mkdir()
    shutil.copy(os.path.join(qwen_dir, "config.json"), d)
    shard_checkpoint(
        {k: v.astype(dtype) for k, v in tensors.items()}, str(d), max_shard_bytes=20_000
    )
    assert len([f for f in os.listdir(d) if f.endswith(".safetensors")]) > 1
    params = load_hf_params(str(d), config=config)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    got = _qwen_logits(params, config, ids)
    tol = 1e-6 if dtype is np.float32 else 5e-2
    assert fx.rel_max_diff(got, ref) <= tol, np.dtype(dtype).name
  # transformers reads our sharded bf16 layout too.
  hf = transformers.AutoModelForCausalLM.from_pretrained(
      str(tmp_path / "bfloat16"), dtype=torch.float32
  )
  assert hf.model.embed_tokens.weight.shape == (128, 32)
  params16 = load_hf_params(str(tmp_path / "bfloat16"), config=config, dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params16))


def test_missing_and_unexpected_keys_are_listed(qwen_dir, tmp_path):
  ckpt = SafetensorsCheckpoint(qwen_dir)
  tensors = {k: np.asarray(ckpt[k]) for k in ckpt.keys() if k != "model.norm.weight"}
  tensors["model.extra.weight"] = np.zeros((2,), np.float32)
  save_safetensors(tensors, str(tmp_path / "model.safetensors"))
  shutil.copy(os.path.join(qwen_dir, "config.json"), tmp_path)
  with pytest.raises(ValueError, match=r"missing keys \(1\): \['model.norm.weight'\]") as err:
    load_hf_params(str(tmp_path))
  assert "model.extra.weight" in str(err.value)


def test_legacy_weight_norm_names(tmp_path):
  src, hf = fx.make_hubert(str(tmp_path / "src"), large=True)
  ckpt = SafetensorsCheckpoint(src)
  rename = {
      "parametrizations.weight.original0": "weight_g",
      "parametrizations.weight.original1": "weight_v",
  }
  tensors = {}
  for k in ckpt.keys():
    new = k
    for old, legacy in rename.items():
      new = new.replace(old, legacy)
    tensors["hubert." + new] = np.asarray(ckpt[k])  # as in a HubertForCTC checkpoint
  legacy = tmp_path / "legacy"
  legacy.mkdir()
  save_safetensors(tensors, str(legacy / "model.safetensors"))
  shutil.copy(os.path.join(src, "config.json"), legacy)
  a = load_hf_params(src)
  b = load_hf_params(str(legacy))
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_sharded_load_on_8_device_mesh(qwen_dir, scan):
  assert jax.device_count() == 8
  mesh = jax.make_mesh(
      (2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3
  )
  rules = sharding_lib.DEFAULT_LOGICAL_AXIS_RULES
  config = config_from_hf_dir(qwen_dir, scan_layers=scan, lora_rank=2)
  params = load_hf_params(qwen_dir, config=config, mesh=mesh, rules=rules)
  flat = traverse_util.flatten_dict(params)
  layer = "layers" if scan else "layers_0"
  q = flat[("params", "model", layer, "self_attn", "q_proj", "kernel")]
  spec = q.sharding.spec
  assert tuple(spec)[-2:] == ("fsdp", "tensor"), spec
  assert q.addressable_shards[0].data.size * 4 == q.size  # each device holds a quarter
  assert flat[
      ("params", "model", "embed_tokens", "embedding")
  ].sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")

  plain = load_hf_params(qwen_dir, config=config)
  ids = _ids()
  want = _qwen_logits(plain, config, ids)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    got = _qwen_logits(params, config, ids)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  jax.tree.map(
      lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), params, plain
  )


def test_key_map_and_sharding_rules():
  from mer_jax.hf import keymaps

  spec = keymaps.ARCHS["hubert"]
  assert (
      keymaps.hf_key(("model", "layers_3", "self_attn", "q_proj", "kernel"))
      == "model.layers.3.self_attn.q_proj.weight"
  )
  assert keymaps.hf_key(("encoder", "layer_norm", "scale")) == "encoder.layer_norm.weight"
  assert keymaps.hf_key_candidates(("encoder", "pos_conv_embed", "conv", "weight_g"), spec) == [
      "encoder.pos_conv_embed.conv.parametrizations.weight.original0",
      "encoder.pos_conv_embed.conv.weight_g",
  ]
  assert keymaps.unscanned_paths(("encoder", "layers", "attention", "q_proj", "bias"), spec, 2) == [
      ("encoder", "layers_0", "attention", "q_proj", "bias"),
      ("encoder", "layers_1", "attention", "q_proj", "bias"),
  ]
  assert keymaps.layout_perm(("conv", "kernel"), 3) == (2, 1, 0)
  conv = np.arange(24).reshape(4, 3, 2)  # torch [out, in, k]
  ours = conv.transpose(keymaps.layout_perm(("conv", "kernel"), 3))
  np.testing.assert_array_equal(keymaps.to_hf_layout(ours, ("conv", "kernel")), conv)

  mesh = jax.make_mesh(
      (2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(jax.sharding.AxisType.Auto,) * 3
  )
  s = sharding_lib.logical_to_sharding(("vocab", "embed"), (128, 32), mesh)
  assert s.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
  s = sharding_lib.logical_to_sharding(
      ("vocab", "embed"), (127, 32), mesh
  )  # 127 % 2 != 0: replicated
  assert s.spec == jax.sharding.PartitionSpec(None, "fsdp")
  s = sharding_lib.logical_to_sharding(("batch", "length", "act_embed"), (4, 8, 32), mesh)
  assert s.spec == jax.sharding.PartitionSpec(("data", "fsdp"), None, None)
