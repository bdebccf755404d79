"""Qwen3 decoder (Qwen3-Embedding's layout) vs transformers, and the Qwen3 sentence embedder.

References: transformers `Qwen3Model` / `Qwen3ForCausalLM` on tiny random configs, and the
official Qwen3-Embedding recipe written out here with transformers (left padding, state
of the last token, L2 norm, `Instruct: ...\\nQuery: ...` on queries).
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.hf import config_from_hf_dir
from mer_jax.hf import load_hf_params
from mer_jax.models import qwen2
from mer_jax.rl import embeddings
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _batch():
  ids = np.random.RandomState(0).randint(0, 128, (3, 9))
  mask = np.ones((3, 9), np.int64)
  mask[1, 6:] = 0
  mask[2, 3:] = 0
  return ids, mask


@pytest.mark.parametrize("causal_lm", [False, True], ids=["Qwen3Model", "Qwen3ForCausalLM"])
@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_hidden_states_match_transformers(tmp_path, causal_lm, scan):
  hf_dir, hf = fx.make_qwen3(str(tmp_path), causal_lm=causal_lm)
  ids, mask = _batch()
  base = hf.model if causal_lm else hf
  with torch.no_grad():
    ref = base(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
  config = config_from_hf_dir(hf_dir, scan_layers=scan)
  assert isinstance(config, qwen2.Qwen3Config) and config.head_dim == 16
  params = load_hf_params(hf_dir, config=config)
  assert "q_norm" in params["params"]["layers"]["self_attn"] if scan else True
  ours = qwen2.Qwen3Model(config).apply(params, jnp.asarray(ids), jnp.asarray(mask))
  valid = mask.astype(bool)
  assert fx.rel_max_diff(np.asarray(ours)[valid], ref.numpy()[valid]) <= 1e-4


def test_last_token_pooling_equals_the_official_left_padded_recipe(tmp_path):
  hf_dir, hf = fx.make_qwen3(str(tmp_path))
  ids, mask = _batch()
  # Official usage: left padding, the last position's state, L2 norm.
  lengths = mask.sum(1)
  left_ids = np.zeros_like(ids)
  left_mask = np.zeros_like(mask)
  for i, n in enumerate(lengths):
    left_ids[i, -n:] = ids[i, :n]
    left_mask[i, -n:] = 1
  with torch.no_grad():
    out = hf(input_ids=torch.tensor(left_ids), attention_mask=torch.tensor(left_mask))
  ref = torch.nn.functional.normalize(out.last_hidden_state[:, -1], p=2, dim=1).numpy()
  config = config_from_hf_dir(hf_dir)
  hidden = qwen2.Qwen3Model(config).apply(load_hf_params(hf_dir, config=config), ids, mask)
  ours = np.asarray(qwen2.last_token_pool_normalize(hidden, jnp.asarray(mask)))
  np.testing.assert_allclose(ours, ref, atol=2e-5)


def _embedding_dir(tmp_path) -> str:
  """A tiny Qwen3-Embedding-like checkpoint: random Qwen3Model + a byte-level BPE tokenizer."""
  from input_pipeline import tokenization

  tokenizer = tokenization.build_synthmer_tokenizer()
  hf_dir, _ = fx.make_qwen3(str(tmp_path / "qwen3-embedding"), vocab_size=len(tokenizer) + 8)
  tokenizer.save_pretrained(hf_dir)
  return hf_dir


def test_qwen3_sentence_embedder_equals_the_official_recipe(tmp_path):
  hf_dir = _embedding_dir(tmp_path)
  instruction = (
      "Given a clause query, calculate the similarity between this clause and the key clue."
  )
  clauses = ["her voice trembles", "she smiles", "eyes look down a loud harsh tone"]
  cues = ["his brows are furrowed", "a loud harsh tone"]

  tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
  tokenizer.padding_side = "left"
  model = transformers.AutoModel.from_pretrained(hf_dir, attn_implementation="eager").eval()

  def official(texts):
    batch = tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
      hidden = model(**batch).last_hidden_state[:, -1]
    return torch.nn.functional.normalize(hidden, p=2, dim=1).numpy()

  embedder = embeddings.SentenceEmbedder(hf_dir, instruction=instruction)
  ours_q = embedder.encode(clauses, query=True)
  ours_d = embedder.encode(cues)
  np.testing.assert_allclose(
      ours_q, official([f"Instruct: {instruction}\nQuery: {c}" for c in clauses]), atol=2e-5
  )
  np.testing.assert_allclose(ours_d, official(cues), atol=2e-5)
  # The instruction changes the query embedding (a wrong prefix would not pass above).
  assert not np.allclose(embedder.encode(clauses[:1]), ours_q[:1], atol=1e-3)
  assert embedder.description.startswith("qwen3:qwen3-embedding (last-token pooling")
  assert os.path.basename(hf_dir) in embedder.description


def test_minilm_embedder_says_what_it_is():
  fx.require_minilm()
  e = embeddings.get_embedder("minilm", "an instruction BERT ignores")
  assert e.description == "bert:all-MiniLM-L6-v2 (mean pooling)"
  np.testing.assert_array_equal(e.encode(["she smiles"], query=True), e.encode(["she smiles"]))
