"""MEP diagnostics: cue-recall utilization and masked-probe faithfulness (answerers stubbed)."""

import types

import numpy as np

from mer_jax.rl import mep
from tests import hf_fixtures

hf_fixtures.require_minilm()

CFG = {
    "oppo": {
        "embedding_model": "minilm",
        "utilization_threshold": 0.6,
        "cue_extractor": "rules",
        "probe_answerer": "reasoning",
    }
}
SAMPLE = {
    "name": "a",
    "cues": {
        "visual": ["his brows are furrowed and pulled down", "his face is flushed red"],
        "audio": ["his voice is loud and harsh", "there is a long pause before he answers"],
        "emotion": ["the face and the voice all suggest anger"],
    },
    "probes": [
        {
            "modality": "visual",
            "question": "Are the person's brows furrowed and pulled down in the video?",
            "answer": "yes",
        },
        {"modality": "visual", "question": "Does the person smile in the video?", "answer": "no"},
        {"modality": "audio", "question": "Is the voice loud and harsh?", "answer": "yes"},
    ],
}


def test_cue_recall_threshold():
  cues = np.eye(3, dtype=np.float32)[:2]
  clauses = np.asarray([[0.7, 0.71414, 0.0]], np.float32)
  np.testing.assert_array_equal(mep.cue_recall(cues, clauses, 0.6), [True, True])
  np.testing.assert_array_equal(mep.cue_recall(cues, clauses, 0.705), [False, True])
  np.testing.assert_array_equal(
      mep.cue_recall(cues, np.zeros((0, 3), np.float32), 0.6), [False, False]
  )


def test_utilization_recall():
  text = (
      "<think>In the video, his brows are furrowed and pulled down. In the audio, his voice is loud and harsh. "
      "The weather is nice.</think><answer>angry</answer>"
  )
  got = mep.utilization({"a": text, "b": "<think>x</think>"}, [SAMPLE], CFG)
  assert got["utilization_recall"] == 0.5 and got["num_cues"] == 4
  assert got["recall_visual"] == 0.5 and got["recall_audio"] == 0.5 and got["recall_emotion"] == 0.0
  assert (
      mep.utilization({"a": "<answer>angry</answer>"}, [SAMPLE], CFG)["utilization_recall"] == 0.0
  )


def test_parse_yes_no_and_probe_evidence():
  assert mep.parse_yes_no("<think>hmm</think><answer>Yes, it does.</answer>") == "yes"
  assert mep.parse_yes_no("No. The video is blank.") == "no"
  assert mep.parse_yes_no("<answer>angry</answer>") == ""
  from mer_jax.rl import embeddings

  e = embeddings.get_embedder("minilm")
  assert (
      mep.probe_evidence(SAMPLE["probes"][0], SAMPLE, e, "rules")
      == "his brows are furrowed and pulled down"
  )
  assert (
      mep.probe_evidence(SAMPLE["probes"][2], SAMPLE, e, "rules") == "his voice is loud and harsh"
  )


def test_faithfulness_counts_masked_refusals(monkeypatch):
  said = "<think>His brows are furrowed and pulled down, and his voice is loud and harsh.</think><answer>angry</answer>"
  silent = "<think>The subtitle sounds hostile.</think><answer>angry</answer>"
  calls = []

  def fake_generate(ctx, params, samples, questions, mask, max_new_tokens):
    calls.append(mask)
    # Video masked: the policy still states the visual evidence (hallucination); audio masked: it does not.
    return [said if mask == "video" else silent for _ in samples]

  monkeypatch.setattr(mep, "generate_texts", fake_generate)
  ctx = types.SimpleNamespace(
      config=types.SimpleNamespace(eval=types.SimpleNamespace(max_new_tokens=8))
  )
  got = mep.faithfulness(ctx, None, [SAMPLE], CFG, unmasked={"a": said})
  assert calls == ["video", "audio"]  # the unmasked answers come from the given completions
  assert got["probes_video"] == 1 and got["probes_audio"] == 1  # only probes about present evidence
  assert got["faithfulness_video"] == 0.0 and got["faithfulness_audio"] == 1.0
  assert got["video_unmasked_yes"] == 1.0 and got["audio_unmasked_yes"] == 1.0

  monkeypatch.setattr(
      mep, "generate_texts", lambda *a: ["<answer>yes</answer>" if a[4] else "no" for _ in a[2]]
  )
  got = mep.faithfulness(ctx, None, [SAMPLE], {"oppo": dict(CFG["oppo"], probe_answerer="ask")})
  assert got["faithfulness_video"] == 0.0 and got["video_unmasked_yes"] == 0.0
