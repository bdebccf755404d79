"""eval.decoding=official: the released sampling settings, stop words, truncation, post-processing."""

import json

import affectgpt_fixtures as fx
import numpy as np
import pytest

from input_pipeline import tokenization
from mer_jax.train import evaluation


@pytest.fixture(scope="module")
def tokenizer():
  from transformers import AutoTokenizer

  return tokenization._prepare_hf(AutoTokenizer.from_pretrained(str(fx.REF_DIR / "tokenizer")))


def _ids(tok, text):
  return tok(text, add_special_tokens=False)["input_ids"]


def test_official_settings(recipe, tokenizer, tmp_path):
  (tmp_path / "generation_config.json").write_text(json.dumps({"top_k": 20, "top_p": 0.8}))
  c = recipe("eval", "test")
  c.eval.decoding = "official"
  c.model.llm.hf_dir = str(tmp_path)
  dec = evaluation.decoding(c, tokenizer)
  s = dec.sampling
  assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens) == (1.0, 0.9, 20, 1200)
  assert dec.keep_prompt_tokens == 800 and dec.official
  eos = tokenizer.eos_token_id
  assert s.eos_id == eos
  three = _ids(tokenizer, "###")
  assert len(three) == 1 and (three[0],) in s.stop_sequences and (eos,) in s.stop_sequences
  two, one = _ids(tokenizer, "a##")[1], _ids(tokenizer, "a#")[1]
  assert (two, one) in s.stop_sequences and (one, two) in s.stop_sequences
  (tmp_path / "generation_config.json").write_text("{}")
  assert evaluation.decoding(c, tokenizer).sampling.top_k == 50  # transformers' default
  c.eval.decoding = "greedy"
  g = evaluation.decoding(c, tokenizer)
  assert g.sampling.temperature == 0.0 and g.keep_prompt_tokens == 0 and not g.official


def test_released_response_post_processing(tokenizer):
  eos = tokenizer.eos_token_id
  ids = _ids(tokenizer, "The character's emotional state is happy, sad.###") + [eos]
  assert tokenization.official_response(tokenizer, ids) == (
      "The character's emotional state is happy, sad."
  )
  # rsplit on the LAST ###, then what follows the last 'Assistant:'.
  ids = _ids(tokenizer, " ###Assistant: calm ### more###") + [eos]
  assert tokenization.official_response(tokenizer, ids) == "calm ### more"
  # text after eos is dropped; a leading bos is skipped
  ids = [tokenizer.bos_token_id] + _ids(tokenizer, " sad ") + [eos] + _ids(tokenizer, "happy")
  assert tokenization.official_response(tokenizer, ids) == "sad"


def test_prompt_truncation_keeps_the_last_tokens():
  ids = np.arange(12).reshape(2, 6)
  mask = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
  out = evaluation.keep_last_prompt_tokens({"input_ids": ids, "attention_mask": mask, "x": 1}, 4)
  np.testing.assert_array_equal(out["input_ids"], ids[:, 2:])
  np.testing.assert_array_equal(out["attention_mask"], mask[:, 2:])
  assert out["x"] == 1
  same = {"input_ids": ids, "attention_mask": mask}
  assert evaluation.keep_last_prompt_tokens(same, 0) is same
