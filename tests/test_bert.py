"""BERT parity with transformers `BertModel`, and the packaged all-MiniLM-L6-v2 sentence embeddings."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import load_hf_params
from mer_jax.models.bert import BertModel
from mer_jax.models.bert import mean_pool_normalize
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _batch(vocab):
  ids = np.random.RandomState(0).randint(0, vocab, (2, 7))
  mask = np.ones((2, 7), np.int64)
  mask[1, 5:] = 0
  return ids, mask


@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_last_hidden_state_matches_transformers(tmp_path, scan):
  hf_dir, hf = fx.make_bert(str(tmp_path))
  ids, mask = _batch(128)
  types = np.zeros_like(ids)
  types[:, 4:] = 1
  with torch.no_grad():
    ref = hf(
        input_ids=torch.tensor(ids),
        attention_mask=torch.tensor(mask),
        token_type_ids=torch.tensor(types),
    )
  config = config_from_hf_dir(hf_dir, scan_layers=scan)
  out = BertModel(config).apply(
      load_hf_params(hf_dir, config=config), jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)
  )
  valid = mask.astype(bool)
  assert (
      fx.rel_max_diff(
          np.asarray(out["last_hidden_state"])[valid], ref.last_hidden_state.numpy()[valid]
      )
      <= 1e-4
  )
  assert fx.rel_max_diff(out["pooler_output"], ref.pooler_output.numpy()) <= 1e-4


def test_all_minilm_l6_v2_sentence_embeddings():
  minilm = fx.require_minilm()
  st = pytest.importorskip("sentence_transformers")
  model_dir = str(minilm.get_model_path())
  assert os.path.exists(os.path.join(model_dir, "model.safetensors"))
  sentences = [
      "The character looks happy and relaxed.",
      "angry",
      "She seems nervous, maybe embarrassed.",
  ]
  ref = st.SentenceTransformer(model_dir, device="cpu").encode(sentences, convert_to_numpy=True)

  from transformers import AutoTokenizer

  tok = AutoTokenizer.from_pretrained(model_dir)(sentences, padding=True, return_tensors="np")
  config = config_from_hf_dir(model_dir)
  assert (config.hidden_size, config.num_hidden_layers) == (384, 6)
  out = BertModel(config).apply(
      load_hf_params(model_dir, config=config),
      jnp.asarray(tok["input_ids"]),
      jnp.asarray(tok["attention_mask"]),
      jnp.asarray(tok["token_type_ids"]),
  )
  emb = np.asarray(
      mean_pool_normalize(out["last_hidden_state"], jnp.asarray(tok["attention_mask"]))
  )
  assert emb.shape == (3, 384)
  assert fx.rel_max_diff(emb, ref) <= 1e-4
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
