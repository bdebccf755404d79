"""HuBERT parity with transformers `HubertModel`: Base (group norm, post-norm) and Large (stable layer norm)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import load_hf_params
from mer_jax.models.hubert import HubertModel
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=[False, True], ids=["base", "large"])
def ckpt(request, tmp_path_factory):
  out, hf = fx.make_hubert(str(tmp_path_factory.mktemp("hubert")), large=request.param)
  wave = np.random.RandomState(0).randn(2, 1600).astype(np.float32)
  with torch.no_grad():
    ref = hf(input_values=torch.tensor(wave), output_hidden_states=True)
  return out, wave, ref, request.param


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_hidden_states_match_transformers(ckpt, scan):
  hf_dir, wave, ref, large = ckpt
  config = config_from_hf_dir(hf_dir, scan_layers=scan)
  assert config.do_stable_layer_norm == large
  params = load_hf_params(hf_dir, config=config)
  apply = jax.jit(HubertModel(config).apply, static_argnames="output_hidden_states")
  out = apply(params, jnp.asarray(wave), output_hidden_states=True)
  last = ref.last_hidden_state.numpy()
  assert out["last_hidden_state"].shape == last.shape
  assert fx.rel_max_diff(out["last_hidden_state"], last) <= 1e-4
  hidden = out["hidden_states"]
  assert hidden.shape[0] == config.num_hidden_layers + 1 == len(ref.hidden_states)
  for i in range(config.num_hidden_layers):
    assert fx.rel_max_diff(hidden[i], ref.hidden_states[i].numpy()) <= 1e-4, i
  # The last entry is the final output (layer-normed in Large), as transformers 4.x
  # (AffectGPT's release) returns it; transformers 5.x returns it before that norm.
  np.testing.assert_array_equal(np.asarray(hidden[-1]), np.asarray(out["last_hidden_state"]))
  plain = apply(params, jnp.asarray(wave))
  assert "hidden_states" not in plain
  np.testing.assert_allclose(
      np.asarray(plain["last_hidden_state"]), np.asarray(out["last_hidden_state"]), atol=1e-6
  )


def test_attention_mask_matches_transformers(ckpt):
  hf_dir, wave, _, _ = ckpt
  import transformers

  hf = transformers.HubertModel.from_pretrained(hf_dir).eval()
  config = config_from_hf_dir(hf_dir)
  params = load_hf_params(hf_dir, config=config)
  sample_mask = np.ones(wave.shape, np.int64)
  sample_mask[1, 1000:] = 0
  with torch.no_grad():
    ref = hf(
        input_values=torch.tensor(wave), attention_mask=torch.tensor(sample_mask)
    ).last_hidden_state.numpy()
  frame_mask = hf._get_feature_vector_attention_mask(
      ref.shape[1], torch.tensor(sample_mask)
  ).numpy()
  out = HubertModel(config).apply(params, jnp.asarray(wave), attention_mask=jnp.asarray(frame_mask))
  valid = frame_mask.astype(bool)
  assert fx.rel_max_diff(np.asarray(out["last_hidden_state"])[valid], ref[valid]) <= 1e-4
