"""OPPO cue sets, clauses and character-span -> token mapping."""

import numpy as np
import pytest

from input_pipeline import synthmer
from mer_jax.rl import cues
from tests import hf_fixtures


def test_rules_extractor_recovers_synthmer_cue_sets(repo_root):
  import importlib.util

  spec = importlib.util.spec_from_file_location("oppo_recipe", repo_root / "configs" / "oppo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  settings = synthmer.settings(module.get_config("test"))
  exact = total = 0
  for i in range(60):
    clip = synthmer.generate_clip(settings, "eval", i)
    got = cues.extract_cues_rules(clip["reason"])
    assert not set(got["visual"]) & set(got["audio"])
    for kind in cues.CUE_SETS:
      for cue in clip["cues"][kind]:
        total += 1
        if cue in got[kind]:
          exact += 1
        else:  # a gold cue joining two statements may come out as its two halves
          assert kind != "emotion" and any(part in cue for part in got[kind]), (kind, cue, got)
  assert exact / total > 0.85


def test_rules_extractor_on_free_text():
  text = (
      "The woman looks down and her eyes are red. Her voice is shaky, and she speaks slowly. "
      "The sad eyes and the trembling voice suggest grief. Therefore, her emotional state is sad."
  )
  got = cues.extract_cues_rules(text)
  assert got["visual"] == ["The woman looks down", "her eyes are red"]
  assert got["audio"] == ["Her voice is shaky", "she speaks slowly"]
  assert got["emotion"] == ["the sad eyes and the trembling voice suggest grief"]


def test_llm_extractor_interface():
  seen = []

  def fake_llm(prompt):
    seen.append(prompt)
    return 'Sure: {"visual_cues": ["furrowed brows"], "audio_cues": ["loud voice", ],}'

  with pytest.raises(ValueError, match="set_llm_extractor"):
    cues.extract_cues("x", "llm")
  cues.set_llm_extractor(fake_llm)
  try:
    got = cues.extract_cues(
        "His brows are furrowed. His voice is loud, which suggests anger.", "llm"
    )
  finally:
    cues.set_llm_extractor(None)
  assert seen[0].startswith(cues.EXTRACTION_PROMPT) and seen[0].endswith("which suggests anger.")
  assert got == {
      "visual": ["furrowed brows"],
      "audio": ["loud voice"],
      "emotion": ["his voice is loud, which suggests anger"],
  }
  # A sample's own cues win over extraction.
  given = {"visual": ["a"], "audio": [], "emotion": ["b"]}
  assert cues.sample_cues({"cues": given, "reason": "In the audio, his voice is loud."}) == given
  assert cues.sample_cues({"cues": None, "reason": "In the audio, his voice is loud."})[
      "audio"
  ] == ["his voice is loud"]


def test_think_clauses_and_spans():
  text = 'x<think>In the video, she smiles; her "voice" is calm.\nSo: happy!</think><answer>happy</answer>'
  got = cues.think_clauses(text)
  assert [c for _, _, c in got] == [
      "In the video",
      "she smiles",
      'her "voice" is calm',
      "So",
      "happy",
  ]
  assert all(text[s:e] == c for s, e, c in got)
  assert cues.think_span("<answer>a</answer>") == (0, 0)
  unclosed = "<think>his brows are furrowed, he shouts"
  assert [c for *_, c in cues.think_clauses(unclosed)] == ["his brows are furrowed", "he shouts"]


class _CharTokenizer:
  """Token i -> a fixed piece; 0 is special (dropped when skipping special tokens)."""

  PIECES = {
      0: "",
      1: "<think>",
      2: "his",
      3: " brows",
      4: " are",
      5: " furrowed",
      6: ",",
      7: " he",
      8: " shouts",
      9: "</think>",
  }

  def batch_decode(self, seqs, skip_special_tokens=True):
    return ["".join(self.PIECES[t] for t in s) for s in seqs]


def test_token_offsets_and_clause_mask():
  tok = _CharTokenizer()
  tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
  text = tok.batch_decode([tokens])[0]
  offsets = cues.token_char_offsets(tok, tokens)
  assert [text[s:e] for s, e in offsets] == [tok.PIECES[t] for t in tokens]
  clauses = cues.think_clauses(text)
  assert [c for *_, c in clauses] == ["his brows are furrowed", "he shouts"]
  mask = cues.clause_token_mask(offsets, [clauses[1][:2]], 12)
  np.testing.assert_array_equal(mask, [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0])
  mask = cues.clause_token_mask(offsets, [clauses[0][:2]], 12)
  np.testing.assert_array_equal(mask, [0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])


def test_token_offsets_with_a_real_bpe_tokenizer():
  from transformers import AutoTokenizer

  from mer_jax.rl import embeddings

  hf_fixtures.require_minilm()
  tok = AutoTokenizer.from_pretrained(embeddings.minilm_dir())
  text = "her voice trembles, and she looks pale"
  ids = tok(text, add_special_tokens=False)["input_ids"]
  offsets = cues.token_char_offsets(tok, ids)
  decoded = tok.decode(ids)
  assert decoded == text
  assert offsets[-1, 1] == len(decoded) and np.all(offsets[1:, 0] == offsets[:-1, 1])
  span = decoded.index("she looks pale")
  mask = cues.clause_token_mask(offsets, [(span, len(decoded))], len(ids))
  assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "she looks pale"
