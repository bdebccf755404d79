"""GRPO rewards: extraction, format, EW accuracy with length penalties, alignment, dual,
perception (Bradley-Terry over judge preferences), failure isolation, combination."""

import importlib.util
import logging
import math

import numpy as np
import pytest

from mer_jax import metrics
from mer_jax.rl import rewards


@pytest.fixture()
def cfg(repo_root):
  spec = importlib.util.spec_from_file_location("recipe_grpo", repo_root / "configs" / "grpo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config("test")
  assert c.eval.lexicon == "builtin"
  c.grpo.num_generations = 4
  return c


@pytest.fixture(autouse=True)
def absl_to_caplog():
  """absl's logger does not propagate by default once absl logging is initialized."""
  logger = logging.getLogger("absl")
  old = logger.propagate
  logger.propagate = True
  yield
  logger.propagate = old


def sample(name="s0", labels=("happy",), reason="", cues=None):
  s = {"name": name, "labels": list(labels), "reason": reason}
  if cues is not None:
    s["cues"] = cues
  return s


# ---------------------------------------------------------------- extraction and format
@pytest.mark.parametrize(
    "text,want",
    [
        ("<think>she smiles</think><answer>happy</answer>", 1),
        ("<think>a\nb</think>\n\n<answer>happy, sad</answer>", 1),
        ("  <think>x</think> <answer>y</answer>\n", 1),  # surrounding whitespace is allowed
        ("<think></think><answer></answer>", 1),
        ("<think>x</think><answer>y</answer> trailing", 0),
        ("prefix <think>x</think><answer>y</answer>", 0),
        ("<think>x</think>", 0),
        ("<answer>y</answer>", 0),
        ("<answer>y</answer><think>x</think>", 0),
        ("<think>x</think>words<answer>y</answer>", 0),
        ("<think>x</think><answer>y", 0),
        ("<think>x<think>y</think><answer>z</answer>", 0),  # nested think
        ("<think>x</think><answer>y</answer><answer>z</answer>", 0),  # two answers
        ("<think>x</think><answer>a <answer> b</answer>", 0),
        ("happy, sad", 0),
    ],
)
def test_format_reward(text, want):
  assert rewards.format_reward([text], [sample()], None).tolist() == [want]


@pytest.mark.parametrize(
    "text,answer,think",
    [
        ("<think>t</think><answer> happy, sad </answer>", "happy, sad", "t"),
        ("<think>t</think><answer>a</answer> more <answer>b</answer>", "b", "t"),
        ("<think>t</think><answer>happy, sa", "happy, sa", "t"),  # cut at max_new_tokens
        ("<think>t</think> happy", "happy", "t"),
        ("<think>still thinking", "", "still thinking"),
        ("<think>t <answer>happy</answer>", "happy", "t"),
        (
            "reasoning in the prompt's think</think><answer>sad</answer>",
            "sad",
            "reasoning in the prompt's think",
        ),
        ("['happy', 'sad']", "['happy', 'sad']", ""),  # answer-only model: the whole text
    ],
)
def test_extract_answer_and_think(text, answer, think):
  assert rewards.extract_answer(text) == answer
  assert rewards.extract_think(text) == think


# ---------------------------------------------------------------- length penalties
LOG = math.log


@pytest.mark.parametrize(
    "n,m,p1,p2,p3,p3s",
    [
        (0, 2, 1.0, 1.0, 1.0, 1.0),
        (1, 1, 1.0, 1.0, 1.0, 1.0),
        (2, 3, 1.0, 1.0, 1.0, 1.0),
        # m = 1: eq. 13 as printed gives log(1) = 0; shifted: log(m + 1) / log(n + 1)
        (2, 1, 1 / 2, 1 / 2, 0.0, LOG(2) / LOG(3)),
        (3, 1, 1 / 3, 1 / 3, 0.0, LOG(2) / LOG(4)),
        (5, 1, 1 / 5, 1 / 5, 0.0, LOG(2) / LOG(6)),
        (3, 2, 1 / 2, 2 / 3, LOG(2) / LOG(3), LOG(2) / LOG(3)),
        (4, 2, 1 / 3, 1 / 2, 1 / 2, 1 / 2),
        (5, 3, 1 / 3, 3 / 5, LOG(3) / LOG(5), LOG(3) / LOG(5)),
        (10, 4, 1 / 7, 2 / 5, LOG(4) / LOG(10), LOG(4) / LOG(10)),
    ],
)
def test_length_penalties_eq_11_to_13(n, m, p1, p2, p3, p3s):
  cases = (("none", 1.0), ("p1", p1), ("p2", p2), ("p3", p3), ("p3_shifted", p3s))
  for name, want in cases:
    got = rewards.length_penalty(name, np.array([n]), np.array([m]))
    assert got.dtype == np.float32 and float(got[0]) == pytest.approx(want, rel=1e-6), name


def test_length_penalty_orders_strength():
  n, m = (a.ravel() for a in np.meshgrid(np.arange(60), np.arange(1, 30)))
  p1, p2, p3 = (rewards.length_penalty(k, n, m) for k in ("p1", "p2", "p3_shifted"))
  exact = rewards.length_penalty("p3", n, m)
  np.testing.assert_array_equal(exact[m > 1], p3[m > 1])
  assert np.all(exact[(m == 1) & (n > 1)] == 0)
  assert np.all(p1 <= p2 + 1e-7)
  # P3 is the loosest except at (n, m) = (3, 2): P2 = 2/3 > P3 = log 2 / log 3.
  looser = p2 > p3 + 1e-7
  assert list(zip(n[looser], m[looser], strict=True)) == [(3, 2)]
  with pytest.raises(KeyError, match="p1, p2, p3"):
    rewards.length_penalty("p4", n, m)


# ---------------------------------------------------------------- EW rewards
ANSWERS = [
    "<think>x</think><answer>happy</answer>",
    "<think>x</think><answer>['happy', 'sad']</answer>",  # bracketed: both labels count
    "<think>x</think><answer>happy, joyful, glad, cheerful, content</answer>",
    "<think>x</think><answer>angry, angry, Angry</answer>",  # one distinct label
    "<think>x</think><answer>neutral</answer>",
    "no tags: worried, nervous",
]
GOLDS = [["happy"], ["happy", "sad"], ["happy", "calm"], ["angry"], ["happy"], ["anxious", "tense"]]


@pytest.mark.parametrize("lexicon", ["builtin", "official"])
@pytest.mark.parametrize("penalty", ["none", "p1", "p2", "p3", "p3_shifted"])
def test_accuracy_matches_reference_ew_times_penalty(cfg, request, lexicon, penalty):
  if lexicon == "official":
    cfg.eval.lexicon = f"official:{request.getfixturevalue('reference_dir') / 'emotion_wheel'}"
  cfg.grpo.length_penalty = penalty
  samples = [sample(f"s{i}", g) for i, g in enumerate(GOLDS)]
  got = rewards.accuracy_reward(ANSWERS, samples, cfg)
  lexicon = metrics.load_lexicon(cfg.eval.lexicon)
  for i, (text, gold) in enumerate(zip(ANSWERS, GOLDS, strict=True)):
    pred = metrics.parse_labels(rewards.extract_answer(text))
    ew = metrics.reference_reward(gold, pred, lexicon)
    pen = rewards.length_penalty(penalty, np.array([len(pred)]), np.array([len(gold)]))[0]
    assert got[i] == pytest.approx(ew * pen, rel=1e-5, abs=1e-7), (i, text)
  assert got[0] == pytest.approx(1.0) and got[1] == pytest.approx(1.0)
  assert got[3] == pytest.approx(1.0)  # duplicates do not count as extra labels
  assert got[4] == 0.0  # 'neutral' maps to nothing


def test_alignment_and_dual(cfg):
  cfg.grpo.length_penalty = "p2"
  completions = [
      "<think>She smiles and sounds happy.</think><answer>happy</answer>",
      "<think>She smiles and sounds happy.</think><answer>sad</answer>",
      "<think>Her voice is steady.</think><answer>happy</answer>",
      "<think>She looks happy, then sad, then angry and worried.</think><answer>happy</answer>",
  ]
  samples = [sample(f"s{i}", ["happy"]) for i in range(4)]
  scorer = rewards.ew_scorer(cfg.eval.lexicon)
  words = [
      metrics.extract_emotion_words(rewards.extract_think(c), scorer.lexicon) for c in completions
  ]
  assert "happy" in words[0] and not words[2]

  align = rewards.alignment_reward(completions, samples, cfg)
  want = scorer.jaccard(words, [["happy"], ["sad"], ["happy"], ["happy"]])
  np.testing.assert_allclose(align, want)
  assert align[0] == pytest.approx(1.0) and align[1] == 0.0 and align[2] == 0.0
  assert 0.0 < align[3] < 1.0

  dual = rewards.dual_reward(completions, samples, cfg)
  assert dual[0] == pytest.approx(1.0) and dual[2] == 0.0
  n4 = len(set(words[3]))
  assert dual[3] == pytest.approx(
      metrics.reference_reward(["happy"], words[3], scorer.lexicon) / n4, rel=1e-5
  )


# ---------------------------------------------------------------- perception
CUES = {
    "visual": ["smiles broadly", "raised eyebrows"],
    "audio": ["bright cheerful tone"],
    "emotion": ["happy"],
}


def test_cue_overlap_prefers_thinks_that_recover_cues(cfg):
  completions = [
      "<think>He speaks quietly.</think><answer>calm</answer>",
      "<think>He smiles broadly with raised eyebrows and a bright cheerful tone, so he is happy.</think>"
      "<answer>happy</answer>",
      "<think>Nothing is visible.</think><answer>sad</answer>",
      "<think>He smiles and his tone is cheerful.</think><answer>happy</answer>",
  ]
  samples = [sample("clip", ["happy"], cues=CUES)] * 4
  scores = [rewards.cue_overlap_score(rewards.extract_think(c), samples[0]) for c in completions]
  assert scores[1] > scores[3] > scores[0] >= scores[2] >= 0.0
  np.testing.assert_array_equal(rewards.perception_reward(completions, samples, cfg), [0, 1, 0, 1])


def test_cue_overlap_falls_back_to_reason_words():
  s = sample(reason="The man frowns and shouts; his voice trembles with anger.")
  assert (
      rewards.cue_overlap_score("He frowned and shouted angrily.", s)
      > rewards.cue_overlap_score("He is sitting at a table.", s)
      == 0.0
  )
  assert rewards.content_words("The voices trembled") == frozenset({"voic", "trembl"})


def test_perception_groups_ties_and_llm_judge(cfg, monkeypatch):
  same = ["<think>same words</think><answer>happy</answer>"] * 4
  group_b = [f"<think>{'long ' * k}</think><answer>x</answer>" for k in (1, 4, 2, 3)]
  samples = [sample("a", reason="same words")] * 4 + [sample("b", reason="r")] * 4
  judge = lambda reason, a, b: 1.0 if len(a) > len(b) else 0.0
  monkeypatch.setitem(rewards.JUDGES, "llm", rewards.pairwise_preferences(judge))
  cfg.grpo.judge = "llm"
  got = rewards.perception_reward(same + group_b, samples, cfg)
  np.testing.assert_array_equal(got, [0, 0, 0, 0, 0, 1, 0, 1])  # all tied -> no reward

  with pytest.raises(ValueError, match="mixes samples"):
    rewards.score_reward("perception", same, [sample("a")] * 3 + [sample("b")], cfg)
  with pytest.raises(ValueError, match="not a multiple of grpo.num_generations=4"):
    rewards.score_reward("perception", same[:3], [sample("a")] * 3, cfg)


def test_llm_judge_must_be_registered(cfg, monkeypatch):
  monkeypatch.delitem(rewards.JUDGES, "llm", raising=False)
  cfg.grpo.judge = "llm"
  cfg.grpo.rewards = {"perception": 1.0}
  with pytest.raises(KeyError, match="set_llm_judge"):
    rewards.combine_rewards(["<think>a</think>"] * 4, [sample()] * 4, cfg)


def test_raising_judge_zeroes_only_its_group_and_logs(cfg, monkeypatch, caplog):
  def judge(reason, a, b):
    if reason == "broken":
      raise RuntimeError("judge backend timeout")
    return 1.0 if len(a) > len(b) else 0.0

  monkeypatch.setitem(rewards.JUDGES, "llm", None)  # undone after the test
  rewards.set_llm_judge(judge)
  cfg.grpo.judge = "llm"
  completions = [f"<think>{'w ' * k}</think>" for k in (1, 2, 3, 4, 4, 3, 2, 1)]
  samples = [sample("good", reason="ok")] * 4 + [sample("bad_clip", reason="broken")] * 4
  with caplog.at_level(logging.WARNING):
    got = rewards.score_reward("perception", completions, samples, cfg)
  np.testing.assert_array_equal(got, [0, 0, 1, 1, 0, 0, 0, 0])
  assert "bad_clip" in caplog.text and "judge backend timeout" in caplog.text
  assert "sample good" not in caplog.text


# ---------------------------------------------------------------- failure isolation and combination
def test_raising_reward_scores_zero_for_that_sample_and_logs(cfg, monkeypatch, caplog):
  calls = []

  def flaky(completions, samples, cfg):
    calls.append(len(completions))
    if any(s["name"] == "poison" for s in samples):
      raise ValueError("cannot parse this one")
    return np.full(len(completions), 0.5)

  monkeypatch.setitem(rewards.REWARDS, "flaky", rewards.Reward("flaky", flaky))
  samples = [sample("a"), sample("poison"), sample("c")]
  with caplog.at_level(logging.WARNING):
    got = rewards.score_reward("flaky", ["x", "y", "z"], samples, cfg)
  np.testing.assert_array_equal(got, [0.5, 0.0, 0.5])
  assert calls == [3, 1, 1, 1]  # batch first, then per sample
  assert "poison" in caplog.text and "cannot parse this one" in caplog.text

  monkeypatch.setitem(
      rewards.REWARDS, "nan", rewards.Reward("nan", lambda c, s, g: np.array([1.0, np.nan, 2.0]))
  )
  with caplog.at_level(logging.WARNING):
    np.testing.assert_array_equal(
        rewards.score_reward("nan", ["x"] * 3, samples, cfg), [1.0, 0.0, 2.0]
    )
  assert "nan for sample poison" in caplog.text

  monkeypatch.setitem(rewards.REWARDS, "short", rewards.Reward("short", lambda c, s, g: np.ones(1)))
  with pytest.raises(ValueError, match="returned 1 scores for 3 completions"):
    rewards.score_reward("short", ["x"] * 3, samples, cfg)


def test_combine_rewards_weighted_sum(cfg):
  cfg.grpo.rewards = {"accuracy": 1.0, "format": 0.5, "alignment": 2.0}
  cfg.grpo.length_penalty = "p3_shifted"
  completions = [
      "<think>She is happy.</think><answer>happy, sad</answer>",
      "happy",
      "<think>x</think><answer>angry</answer>",
      "",
  ]
  samples = [sample("a", ["happy"])] * 2 + [sample("b", ["sad"])] * 2
  total, parts = rewards.combine_rewards(completions, samples, cfg)
  assert set(parts) == {"accuracy", "format", "alignment"}
  assert total.dtype == np.float32 and total.shape == (4,)
  np.testing.assert_allclose(
      total, parts["accuracy"] + 0.5 * parts["format"] + 2.0 * parts["alignment"], rtol=1e-6
  )
  np.testing.assert_array_equal(parts["format"], [1, 0, 1, 0])
  assert parts["accuracy"][1] == pytest.approx(1.0)  # answer-only text scores its labels
  assert parts["accuracy"][3] == 0.0
  assert parts["accuracy"][0] == pytest.approx(
      metrics.reference_reward(["happy"], ["happy", "sad"], cfg.eval.lexicon)
      * math.log(2)
      / math.log(3),
      rel=1e-5,
  )


def test_omni_is_registered_by_the_oppo_code_and_unknown_names_raise(cfg):
  import mer_jax.rl.omni  # noqa: F401 - registers OPPO's reward

  assert "omni" in rewards.REWARDS
  with pytest.raises(
      KeyError, match="registered: accuracy, alignment, dual, format, omni, perception"
  ):
    rewards.score_reward("acc", ["x"], [sample()], cfg)
