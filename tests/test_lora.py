"""LoRA: zero-init B is the base model, adapters off, merge / unmerge, masks, dropout, targets."""

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.models import lora as lora_lib
from mer_jax.models.qwen2 import Qwen2Config
from mer_jax.models.qwen2 import Qwen2ForCausalLM
from tests import hf_fixtures as fx

ARCH = dict(fx.TINY_QWEN2)


def _model(scan=False, **lora):
  cfg = Qwen2Config.from_hf_dict(ARCH, scan_layers=scan, lora_rank=4, lora_alpha=8.0, **lora)
  model = Qwen2ForCausalLM(cfg)
  params = nn.unbox(model.init(jax.random.key(0), **model.dummy_inputs(cfg)))
  return cfg, model, params


def _ids():
  return jnp.asarray(np.random.RandomState(1).randint(0, ARCH["vocab_size"], (2, 6)))


def _randomize_b(params, seed=3):
  flat = traverse_util.flatten_dict(params)
  keys = jax.random.split(jax.random.key(seed), len(flat))
  flat = {
      p: (0.1 * jax.random.normal(k, v.shape) if p[-1] == "lora_b" else v)
      for (p, v), k in zip(flat.items(), keys, strict=True)
  }
  return traverse_util.unflatten_dict(flat)


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_zero_b_equals_base_and_adapters_off(scan):
  cfg, model, params = _model(scan)
  flat = traverse_util.flatten_dict(params)
  lora_leaves = [p for p in flat if lora_lib.is_lora_path(p)]
  # 7 adapted modules per layer, two leaves each.
  assert len(lora_leaves) == 14 * (1 if scan else cfg.num_hidden_layers)
  assert all(not np.any(flat[p]) for p in lora_leaves if p[-1] == "lora_b")
  a = flat[next(p for p in lora_leaves if p[-1] == "lora_a")]
  assert np.std(np.asarray(a)) > 0 and np.max(np.abs(a)) <= 1 / np.sqrt(cfg.hidden_size) + 1e-6

  ids = _ids()
  on, _ = model.apply(params, ids)
  off, _ = model.apply(params, ids, lora=False)
  np.testing.assert_array_equal(np.asarray(on), np.asarray(off))
  base_cfg = Qwen2Config.from_hf_dict(ARCH, scan_layers=scan)
  base_params = lora_lib.merge_lora(params, cfg.lora_scale)
  base, _ = Qwen2ForCausalLM(base_cfg).apply(base_params, ids)
  np.testing.assert_allclose(np.asarray(base), np.asarray(on), atol=1e-6)


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_merge_unmerge(scan):
  cfg, model, params = _model(scan)
  params = _randomize_b(params)
  ids = _ids()
  adapted, _ = model.apply(params, ids)
  off, _ = model.apply(params, ids, lora=False)
  assert np.max(np.abs(np.asarray(adapted) - np.asarray(off))) > 1e-3

  merged = lora_lib.merge_lora(params, cfg.lora_scale)
  assert not any(lora_lib.is_lora_path(p) for p in traverse_util.flatten_dict(merged))
  base_model = Qwen2ForCausalLM(Qwen2Config.from_hf_dict(ARCH, scan_layers=scan))
  np.testing.assert_allclose(
      np.asarray(base_model.apply(merged, ids)[0]), np.asarray(adapted), atol=1e-5
  )

  kept = lora_lib.merge_lora(params, cfg.lora_scale, keep_adapters=True)
  np.testing.assert_allclose(
      np.asarray(model.apply(kept, ids, lora=False)[0]), np.asarray(adapted), atol=1e-5
  )
  restored = lora_lib.unmerge_lora(kept, cfg.lora_scale)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), restored, params)


def test_manual_lora_math():
  """One adapted Dense against W x + b + (alpha/r) x A B by hand."""
  from mer_jax.models.layers import Dense

  dense = Dense(5, ("embed", "mlp"), lora_rank=2, lora_alpha=6.0)
  x = jax.random.normal(jax.random.key(0), (3, 4))
  p = _randomize_b(nn.unbox(dense.init(jax.random.key(1), x)))["params"]
  want = x @ p["kernel"] + p["bias"] + 3.0 * (x @ p["lora_a"] @ p["lora_b"])
  np.testing.assert_allclose(np.asarray(dense.apply({"params": p}, x)), np.asarray(want), atol=1e-5)


def test_trainable_mask_and_split():
  cfg, _, params = _model()
  mask = lora_lib.trainable_mask(params)
  flat_mask = traverse_util.flatten_dict(mask)
  assert {p[-1] for p, m in flat_mask.items() if m} == {"lora_a", "lora_b"}
  assert not flat_mask[("params", "model", "embed_tokens", "embedding")]
  extra = lora_lib.trainable_mask(params, predicate=lambda p: "lm_head" in p)
  assert traverse_util.flatten_dict(extra)[("params", "lm_head", "kernel")]
  trainable, frozen = lora_lib.split_params(params, mask)
  assert lora_lib.count_lora_params(trainable) == sum(x.size for x in jax.tree.leaves(trainable))
  assert lora_lib.count_lora_params(frozen) == 0
  jax.tree.map(np.testing.assert_array_equal, lora_lib.combine_params(trainable, frozen), params)


def test_dropout_only_when_not_deterministic_and_targets():
  cfg, model, params = _model(lora_dropout=0.5, lora_targets=("q", "v"))
  flat = traverse_util.flatten_dict(params)
  adapted = {p[-2] for p in flat if p[-1] == "lora_a"}
  assert adapted == {"q_proj", "v_proj"}
  params = _randomize_b(params)
  ids = _ids()
  det, _ = model.apply(params, ids)
  drop, _ = model.apply(params, ids, deterministic=False, rngs={"dropout": jax.random.key(5)})
  assert np.max(np.abs(np.asarray(det) - np.asarray(drop))) > 1e-4
  off_a, _ = model.apply(params, ids, lora=False)
  off_b, _ = model.apply(
      params, ids, lora=False, deterministic=False, rngs={"dropout": jax.random.key(5)}
  )
  np.testing.assert_array_equal(np.asarray(off_a), np.asarray(off_b))
