"""Host-side GRPO rewards by name (AffectGPT-R1 section 3.3.2-3.3.3).

Config `grpo.rewards` maps reward names to weights; `combine_rewards` returns the
weighted sum and every component. A reward is `fn(completions, samples, cfg)`:

- completions: list[str], N decoded completions (special tokens removed);
- samples: list[dict], samples[i] the gold data of completion i (`name`, `labels`
  list[str], `reason` str, optional `cues` {visual, audio, emotion}); the caller repeats
  each prompt's sample G = `grpo.num_generations` times, adjacent (prompt-major);
- cfg: the run config (reads `grpo.length_penalty`, `grpo.judge`,
  `grpo.num_generations`, `eval.lexicon`);
- returns float32 [N].

Registered: `format`, `accuracy`, `alignment`, `dual`, `perception`. The config also
knows `omni`, OPPO's reward, which the OPPO code registers.

A reward that raises is retried per sample (per group for `perception`); a sample
whose retry raises too is logged with its name and scores 0, so one bad sample never
stops a run. Formulas and choices: docs/rl.md.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from typing import Any, Callable, Mapping, Protocol, Sequence

from absl import logging
import numpy as np

from mer_jax import metrics
from mer_jax.rl import Registry
from mer_jax.rl import bradley_terry

RewardFn = Callable[[Sequence[str], Sequence[Mapping], Any], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Reward:
  """A registered reward; `group_level` rewards score the G completions of a prompt
  jointly, so their unit of failure is a whole group."""

  name: str
  fn: RewardFn
  group_level: bool = False


# The config validator also knows `omni`, which the OPPO code registers.
REWARDS = Registry(
    "reward", hints={"omni": "OPPO's omni-perception reward, registered by the OPPO code"}
)


def register_reward(name: str, group_level: bool = False) -> Callable[[RewardFn], RewardFn]:
  """Decorator registering a reward function under `name`."""

  def register(fn: RewardFn) -> RewardFn:
    REWARDS.register(name, Reward(name, fn, group_level))
    return fn

  return register


def _option(cfg: Any, dotted: str, default: Any) -> Any:
  """cfg.a.b for ConfigDicts and plain dicts; `default` where a level is missing."""
  node = cfg
  for part in dotted.split("."):
    if isinstance(node, Mapping) or hasattr(node, "keys"):
      if part not in node:
        return default
      node = node[part]
    elif hasattr(node, part):
      node = getattr(node, part)
    else:
      return default
  return node


# ------------------------------------------------------------------ text extraction
_TAG_RE = re.compile(r"</?(?:think|answer)>")
_FORMAT_RE = re.compile(
    r"<think>(?:(?!</?(?:think|answer)>).)*</think>\s*<answer>(?:(?!</?(?:think|answer)>).)*</answer>",
    re.DOTALL,
)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def extract_answer(text: str) -> str:
  """The answer part o^a of a completion, stripped.

  The last closed `<answer>...</answer>`; else the text after the last `<answer>`
  (cut at max_new_tokens); else, with think tags but no answer tag, the text after the
  last `</think>` ('' when the think is unclosed); else (no tags at all: an
  answer-only model) the whole text.
  """
  closed = _ANSWER_RE.findall(text)
  if closed:
    return closed[-1].strip()
  if "<answer>" in text:
    return _TAG_RE.sub("", text.rsplit("<answer>", 1)[1]).strip()
  if "</think>" in text:
    return _TAG_RE.sub("", text.rsplit("</think>", 1)[1]).strip()
  if "<think>" in text:
    return ""
  return text.strip()


def extract_think(text: str) -> str:
  """The thinking part o^t of a completion, stripped.

  The last closed `<think>...</think>`; else the text after an unclosed `<think>` up
  to `<answer>`; else, with `</think>` but no `<think>` (a template that puts `<think>`
  in the prompt), the text before `</think>`; else ''.
  """
  closed = _THINK_RE.findall(text)
  if closed:
    return closed[-1].strip()
  if "<think>" in text:
    return text.rsplit("<think>", 1)[1].split("<answer>", 1)[0].strip()
  if "</think>" in text:
    return text.split("</think>", 1)[0].strip()
  return ""


# ------------------------------------------------------------------ length penalties
PenaltyFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# name -> fn(n, m) -> float32 penalty; every entry is 1 where n <= m.
LENGTH_PENALTIES = Registry("length penalty")


def _penalty(name: str) -> Callable[[PenaltyFn], PenaltyFn]:
  def register(fn: PenaltyFn) -> PenaltyFn:
    def penalty(n, m):
      n = np.asarray(n, np.float64)
      m = np.asarray(m, np.float64)
      with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n <= m, 1.0, fn(n, m)).astype(np.float32)

    return LENGTH_PENALTIES.register(name, penalty)

  return register


@_penalty("none")
def _no_penalty(n, m):
  return np.ones_like(n)


@_penalty("p1")
def _p1(n, m):  # AffectGPT-R1 eq. 11
  return 1.0 / (n - m + 1.0)


@_penalty("p2")
def _p2(n, m):  # AffectGPT-R1 eq. 12
  return m / n


@_penalty("p3")
def _p3(n, m):  # AffectGPT-R1 eq. 13 as printed: log(1) = 0 for any over-prediction at m = 1
  return np.log(m) / np.log(n)


@_penalty("p3_shifted")
def _p3_shifted(n, m):
  # Ours: eq. 13, except that m = 1 uses log(m + 1) / log(n + 1) (the eq. 13 value at
  # m + 1, n + 1), so one extra label is penalized, not zeroed.
  return np.where(m > 1, np.log(m) / np.log(n), np.log(m + 1.0) / np.log(n + 1.0))


def length_penalty(name: str, n: np.ndarray, m: np.ndarray) -> np.ndarray:
  """Penalty `name` (none | p1 | p2 | p3 | p3_shifted) for n predicted and m gold labels
  (deduplicated)."""
  return LENGTH_PENALTIES[name](n, m)


# ------------------------------------------------------------------ EW helpers
@functools.lru_cache(maxsize=4)
def ew_scorer(lexicon_spec: str = "builtin") -> metrics.EWRewardScorer:
  """One cached EW reward scorer per lexicon spec (`eval.lexicon`)."""
  return metrics.EWRewardScorer(metrics.load_lexicon(lexicon_spec))


def _scorer(cfg) -> metrics.EWRewardScorer:
  return ew_scorer(_option(cfg, "eval.lexicon", "builtin"))


def _gold(samples: Sequence[Mapping]) -> list[list[str]]:
  return [metrics.parse_labels(s["labels"]) for s in samples]


def _answer_labels(completions: Sequence[str]) -> list[list[str]]:
  return [metrics.parse_labels(extract_answer(c)) for c in completions]


def _think_words(completions: Sequence[str], scorer: metrics.EWRewardScorer) -> list[list[str]]:
  """Emotion words e^t of each think text, deduplicated in order."""
  return [
      list(dict.fromkeys(metrics.extract_emotion_words(extract_think(c), scorer.lexicon)))
      for c in completions
  ]


def _penalized_ew(gold: list[list[str]], pred: list[list[str]], scorer, cfg) -> np.ndarray:
  """P_k(pred, gold) * EW(pred, gold) (AffectGPT-R1 eq. 14-15)."""
  n = np.array([len(p) for p in pred])
  m = np.array([len(g) for g in gold])
  penalty = length_penalty(_option(cfg, "grpo.length_penalty", "none"), n, m)
  return scorer.reward(gold, pred) * penalty


# ------------------------------------------------------------------ rewards
@register_reward("format")
def format_reward(completions, samples, cfg) -> np.ndarray:
  """1 if the completion is exactly one think block then one answer block (eq. 6).

  Surrounding whitespace is allowed; the blocks may not contain think/answer tags, so
  a repeated or nested block scores 0.
  """
  del samples, cfg
  return np.array([_FORMAT_RE.fullmatch(c.strip()) is not None for c in completions], np.float32)


@register_reward("accuracy")
def accuracy_reward(completions, samples, cfg) -> np.ndarray:
  """EW(answer labels, gold) times the length penalty (eq. 7, 11-14)."""
  return _penalized_ew(_gold(samples), _answer_labels(completions), _scorer(cfg), cfg)


@register_reward("alignment")
def alignment_reward(completions, samples, cfg) -> np.ndarray:
  """Jaccard of the think's emotion words and the answer labels per wheel, mean of 5 (eq. 8, 21-22)."""
  del samples
  scorer = _scorer(cfg)
  return scorer.jaccard(_think_words(completions, scorer), _answer_labels(completions))


@register_reward("dual")
def dual_reward(completions, samples, cfg) -> np.ndarray:
  """EW(think emotion words, gold) times the length penalty (eq. 9, 15)."""
  scorer = _scorer(cfg)
  return _penalized_ew(_gold(samples), _think_words(completions, scorer), scorer, cfg)


# ------------------------------------------------------------------ perception judges
class LLMJudge(Protocol):
  """A pairwise judge: probability that think_a describes the clip better than think_b,
  given the gold reasoning text (AffectGPT-R1 3.3.2, after EmoPrefer)."""

  def __call__(self, reason: str, think_a: str, think_b: str) -> float:
    ...


# (gold sample, G think texts) -> [G, G] preferences, p[i, j] = P(i beats j).
PreferenceFn = Callable[[Mapping, Sequence[str]], np.ndarray]
JUDGES = Registry(
    "perception judge", hints={"llm": "call mer_jax.rl.rewards.set_llm_judge(judge) first"}
)


def pairwise_preferences(judge: LLMJudge) -> PreferenceFn:
  """Turns a pairwise `LLMJudge` into a group preference function.

  Each pair is judged in both orders and averaged, P(i beats j) =
  (judge(i, j) + 1 - judge(j, i)) / 2, so a judge's position bias cancels: G(G-1)
  calls per group.
  """

  def preferences(sample: Mapping, thinks: Sequence[str]) -> np.ndarray:
    g = len(thinks)
    prefs = np.zeros((g, g))
    reason = sample.get("reason", "") or ""
    for i, j in itertools.combinations(range(g), 2):
      ij = float(np.clip(judge(reason, thinks[i], thinks[j]), 0.0, 1.0))
      ji = float(np.clip(judge(reason, thinks[j], thinks[i]), 0.0, 1.0))
      prefs[i, j] = (ij + 1.0 - ji) / 2
      prefs[j, i] = 1.0 - prefs[i, j]
    return prefs

  return preferences


def set_llm_judge(judge: LLMJudge) -> None:
  """Makes `grpo.judge = 'llm'` use `judge` (call before training; replaces an earlier one)."""
  JUDGES["llm"] = pairwise_preferences(judge)


_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself
yourselves may might seems seem appears appear shows show indicating indicates suggests
suggest person character video audio scene clip
""".split())
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_SUFFIXES = ("ingly", "edly", "ing", "ed", "ly", "es", "s")


def _stem(word: str) -> str:
  for suffix in _SUFFIXES:
    if word.endswith(suffix) and len(word) - len(suffix) >= 3:
      return word[: -len(suffix)]
  return word


def content_words(text: str) -> frozenset[str]:
  """Lowercased, lightly stemmed words of `text` without English stopwords."""
  return frozenset(_stem(w) for w in _WORD_RE.findall(text.lower()) if w not in _STOPWORDS)


def _reference_phrases(sample: Mapping) -> list[frozenset[str]]:
  """Content-word sets of the gold cues (visual, audio, emotion), or of the reason."""
  phrases: list[str] = []
  for value in (sample.get("cues") or {}).values():
    phrases.extend([value] if isinstance(value, str) else list(value or ()))
  if not phrases:
    phrases = [sample.get("reason", "") or ""]
  return [s for s in map(content_words, phrases) if s]


def cue_overlap_score(think: str, sample: Mapping) -> float:
  """F1 of cue recall (mean fraction of each reference phrase's words in the think)
  and precision (fraction of the think's words found in any reference phrase)."""
  refs = _reference_phrases(sample)
  words = content_words(think)
  if not refs or not words:
    return 0.0
  recall = float(np.mean([len(words & r) / len(r) for r in refs]))
  precision = len(words & frozenset().union(*refs)) / len(words)
  return 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)


def cue_overlap_preferences(sample: Mapping, thinks: Sequence[str]) -> np.ndarray:
  """The default judge: the think with the higher `cue_overlap_score` wins, ties 0.5."""
  s = np.array([cue_overlap_score(t, sample) for t in thinks])
  return np.where(s[:, None] > s[None, :], 1.0, np.where(s[:, None] == s[None, :], 0.5, 0.0))


JUDGES.register("cue_overlap", cue_overlap_preferences)
JUDGE_NOTES = {
    "cue_overlap": "cue_overlap (heuristic: content-word overlap of each think text with the "
    "gold reasoning; not the paper's MLLM judge)",
    "llm": "llm (the judge given to set_llm_judge)",
}


def reward_provenance(cfg) -> dict[str, str]:
  """What a run's reward numbers rest on where that is not the paper's component."""
  weights = _option(cfg, "grpo.rewards", {}) or {}
  if "perception" not in weights:
    return {}
  judge = _option(cfg, "grpo.judge", "cue_overlap")
  return {"perception_judge": JUDGE_NOTES.get(judge, judge)}


def group_size(samples: Sequence[Mapping], cfg) -> int:
  """G = `grpo.num_generations`, after checking that `samples` come in adjacent groups
  of G copies of one sample (a caller bug otherwise: raises ValueError)."""
  g = int(_option(cfg, "grpo.num_generations", 0))
  if g < 1 or len(samples) % g:
    raise ValueError(f"{len(samples)} samples is not a multiple of grpo.num_generations={g}")
  for start in range(0, len(samples), g):
    names = {str(s.get("name")) for s in samples[start : start + g]}
    if len(names) > 1:
      raise ValueError(
          f"a group of {g} adjacent completions mixes samples {sorted(names)}; "
          "repeat each prompt's sample G times, prompt-major"
      )
  return g


@register_reward("perception", group_level=True)
def perception_reward(completions, samples, cfg) -> np.ndarray:
  """1 for the top 50% of each group by Bradley-Terry strength of the judge's pairwise
  preferences between think texts, else 0 (eq. 10; ties at the boundary get 0)."""
  g = group_size(samples, cfg)
  judge = JUDGES[_option(cfg, "grpo.judge", "cue_overlap")]
  thinks = [extract_think(c) for c in completions]
  wins = []
  for start in range(0, len(completions), g):
    prefs = np.asarray(judge(samples[start], thinks[start : start + g]), np.float64)
    wins.append(prefs * (1.0 - np.eye(g)))
  scores = bradley_terry.bradley_terry_scores(np.stack(wins))
  return bradley_terry.top_half(scores).reshape(-1)


# ------------------------------------------------------------------ combining
def validate_rewards(cfg) -> dict[str, float]:
  """The `grpo.rewards` weights, after checking every name and the judge resolve."""
  weights = dict(_option(cfg, "grpo.rewards", {}))
  if not weights:
    raise ValueError("config.grpo.rewards must name at least one reward")
  for name in weights:
    if name not in REWARDS:
      raise REWARDS.unknown(name)
  judge = _option(cfg, "grpo.judge", "cue_overlap")
  if "perception" in weights and judge not in JUDGES:
    raise JUDGES.unknown(judge)
  return {k: float(v) for k, v in weights.items()}


def _sample_name(sample: Mapping) -> str:
  return str(sample.get("name", "<unnamed>"))


def _as_scores(values, n: int, name: str) -> np.ndarray:
  out = np.array(values, np.float32).reshape(-1)
  if out.shape[0] != n:
    raise ValueError(f"reward {name!r} returned {out.shape[0]} scores for {n} completions")
  return out


def _score_per_unit(reward: Reward, completions, samples, cfg) -> np.ndarray:
  """The per-sample (per-group) fallback: units that raise are logged and score 0."""
  n = len(completions)
  unit = group_size(samples, cfg) if reward.group_level else 1
  scores = np.zeros(n, np.float32)
  for start in range(0, n, unit):
    part = slice(start, min(start + unit, n))
    try:
      values = reward.fn(completions[part], samples[part], cfg)
    except Exception:  # pylint: disable=broad-except
      logging.exception(
          "reward %r failed for sample %s; it scores 0", reward.name, _sample_name(samples[start])
      )
      continue
    scores[part] = _as_scores(values, part.stop - part.start, reward.name)
  return scores


def score_reward(
    name: str, completions: Sequence[str], samples: Sequence[Mapping], cfg
) -> np.ndarray:
  """Reward `name` of every completion [N] float32.

  If the batch call raises, the reward is retried per sample (per group for
  group-level rewards); a unit that raises again is logged with its sample name and
  scores 0, as does a non-finite score. Bugs raise: a wrong number of scores, or a
  group-level reward on samples not grouped by prompt.
  """
  reward = REWARDS[name]
  n = len(completions)
  if reward.group_level:
    group_size(samples, cfg)
  try:
    values = reward.fn(completions, samples, cfg)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning(
        "reward %r failed on the batch (%s: %s); scoring per %s",
        name,
        type(e).__name__,
        e,
        "group" if reward.group_level else "sample",
    )
    scores = _score_per_unit(reward, completions, samples, cfg)
  else:
    scores = _as_scores(values, n, name)
  bad = ~np.isfinite(scores)
  for i in np.flatnonzero(bad):
    logging.error(
        "reward %r gave %s for sample %s; it scores 0", name, scores[i], _sample_name(samples[i])
    )
  scores[bad] = 0.0
  return scores


def combine_rewards(
    completions: Sequence[str], samples: Sequence[Mapping], cfg
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Weighted sum of the `grpo.rewards` components.

  Returns:
    (total float32 [N], {name: float32 [N] unweighted component}).
  """
  if len(completions) != len(samples):
    raise ValueError(f"{len(completions)} completions but {len(samples)} samples")
  completions, samples = list(completions), list(samples)
  weights = validate_rewards(cfg)
  components = {name: score_reward(name, completions, samples, cfg) for name in weights}
  total = np.zeros(len(completions), np.float32)
  for name, weight in weights.items():
    total += np.float32(weight) * components[name]
  return total, components
