"""Qwen2 parity with transformers (tied/untied, left padding, scan/no-scan), KV cache decoding."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import load_hf_params
from mer_jax.models.qwen2 import Qwen2Config
from mer_jax.models.qwen2 import Qwen2ForCausalLM
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

TOL = 1e-4


def _batch(seed=0, b=3, t=9, vocab=128):
  """Left-padded batch: row i has i*2 pad slots."""
  rng = np.random.RandomState(seed)
  ids = rng.randint(0, vocab, (b, t))
  mask = np.ones((b, t), np.int32)
  for i in range(b):
    mask[i, : 2 * i] = 0
  positions = np.maximum(np.cumsum(mask, -1) - 1, 0)
  return ids, mask, positions


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def ckpt(request, tmp_path_factory):
  out, hf = fx.make_qwen2(str(tmp_path_factory.mktemp("qwen2")), tie_word_embeddings=request.param)
  ids, mask, pos = _batch()
  with torch.no_grad():
    ref = hf(
        input_ids=torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        position_ids=torch.tensor(pos),
    ).logits.numpy()
  return out, ref


def _forward(hf_dir, **runtime):
  config = config_from_hf_dir(hf_dir, **runtime)
  params = load_hf_params(hf_dir, config=config)
  ids, mask, pos = _batch()
  logits, cache = jax.jit(Qwen2ForCausalLM(config).apply)(
      params, jnp.asarray(ids), positions=jnp.asarray(pos), attention_mask=jnp.asarray(mask)
  )
  assert cache is None and logits.dtype == jnp.float32
  return np.asarray(logits), mask.astype(bool)


@pytest.mark.parametrize(
    "runtime",
    [
        dict(scan_layers=False),
        dict(scan_layers=True, remat_policy="full"),
        dict(scan_layers=True, remat_policy="dots"),
    ],
    ids=["loop", "scan-full", "scan-dots"],
)
def test_logits_match_transformers(ckpt, runtime):
  hf_dir, ref = ckpt
  logits, valid = _forward(hf_dir, **runtime)
  assert logits.shape == ref.shape
  assert fx.rel_max_diff(logits[valid], ref[valid]) <= TOL


def test_scan_and_loop_identical(ckpt):
  loop, valid = _forward(ckpt[0], scan_layers=False)
  scan, _ = _forward(ckpt[0], scan_layers=True)
  np.testing.assert_allclose(scan[valid], loop[valid], rtol=0, atol=1e-6)


def test_inputs_embeds_equals_input_ids(ckpt):
  config = config_from_hf_dir(ckpt[0])
  params = load_hf_params(ckpt[0], config=config)
  model = Qwen2ForCausalLM(config)
  ids, mask, pos = _batch()
  embeds = model.apply(params, jnp.asarray(ids), method=Qwen2ForCausalLM.embed)
  a, _ = model.apply(params, jnp.asarray(ids), positions=pos, attention_mask=mask)
  b, _, hidden = model.apply(
      params, inputs_embeds=embeds, positions=pos, attention_mask=mask, return_hidden=True
  )
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert hidden.shape == (*ids.shape, config.hidden_size)


def test_logits_range_matches_transformers_slice(ckpt):
  """logits_range projects only positions start:stop; they equal transformers' logits there."""
  hf_dir, ref = ckpt
  config = config_from_hf_dir(hf_dir)
  params = load_hf_params(hf_dir, config=config)
  ids, mask, pos = _batch()
  part, _ = Qwen2ForCausalLM(config).apply(
      params, jnp.asarray(ids), positions=pos, attention_mask=mask, logits_range=(4, 8)
  )
  assert part.shape == (ids.shape[0], 4, config.vocab_size)
  valid = mask[:, 4:8].astype(bool)
  assert fx.rel_max_diff(np.asarray(part)[valid], ref[:, 4:8][valid]) <= TOL


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_kv_cache_decoding_equals_full_forward(ckpt, scan):
  """Prefill 5 tokens of a left-padded batch, then decode 4 single steps."""
  config = config_from_hf_dir(ckpt[0], scan_layers=scan)
  params = load_hf_params(ckpt[0], config=config)
  model = Qwen2ForCausalLM(config)
  ids, mask, pos = _batch()
  full, _ = model.apply(params, jnp.asarray(ids), positions=pos, attention_mask=mask)

  b, t = ids.shape
  max_len, prefill = 12, 5
  cache = model.init_cache(b, max_len, jnp.float32)
  assert cache["k"].shape == (
      config.num_hidden_layers,
      b,
      max_len,
      config.num_key_value_heads,
      config.head_dim,
  )
  slot_mask = np.zeros((b, max_len), np.int32)
  slot_mask[:, :t] = mask
  step = jax.jit(model.apply)
  logits, cache = step(
      params,
      jnp.asarray(ids[:, :prefill]),
      positions=pos[:, :prefill],
      attention_mask=slot_mask,
      cache=cache,
  )
  got = [np.asarray(logits)]
  for i in range(prefill, t):
    logits, cache = step(
        params,
        jnp.asarray(ids[:, i : i + 1]),
        positions=pos[:, i : i + 1],
        attention_mask=slot_mask,
        cache=cache,
    )
    got.append(np.asarray(logits))
  assert int(cache["index"]) == t
  got = np.concatenate(got, axis=1)
  valid = mask.astype(bool)
  np.testing.assert_allclose(got[valid], np.asarray(full)[valid], rtol=0, atol=1e-5)


def test_config_roundtrip_and_transformers_reads_it(tmp_path):
  import transformers

  config = Qwen2Config.from_hf_dict(
      {**fx.TINY_QWEN2, "rope_theta": 1e6, "unknown_key": 1}, scan_layers=True
  )
  assert config.rope_theta == 1e6 and config.scan_layers
  d = config.to_hf_dict()
  assert "scan_layers" not in d and "dtype" not in d and d["model_type"] == "qwen2"
  assert Qwen2Config.from_hf_dict(d) == dataclasses.replace(config, scan_layers=False)
  hf = transformers.Qwen2Config.from_dict(d)
  assert hf.rope_parameters["rope_theta"] == 1e6 and hf.num_key_value_heads == 2
  with pytest.raises(ValueError, match="remat_policy"):
    Qwen2Config(remat_policy="some")


def test_bfloat16_compute_with_bfloat16_cache(ckpt):
  """bf16 activations (fp32 params, fp32 logits) stay close to fp32 and decode with a bf16 cache."""
  hf_dir, ref = ckpt
  config = config_from_hf_dir(hf_dir, dtype="bfloat16")
  params = load_hf_params(hf_dir, config=config)
  model = Qwen2ForCausalLM(config)
  ids, mask, pos = _batch()
  logits, _ = model.apply(params, jnp.asarray(ids), positions=pos, attention_mask=mask)
  assert logits.dtype == jnp.float32
  valid = mask.astype(bool)
  assert fx.rel_max_diff(np.asarray(logits)[valid], ref[valid]) <= 5e-2
  cache = model.init_cache(ids.shape[0], ids.shape[1])
  assert cache["k"].dtype == jnp.bfloat16
  step, cache = model.apply(
      params, jnp.asarray(ids), positions=pos, attention_mask=mask, cache=cache
  )
  assert fx.rel_max_diff(np.asarray(step)[valid], np.asarray(logits)[valid]) <= 1e-2
