"""OPPO cue sets and clauses: what the reasoning says, per modality, with character spans.

- Cue sets (OPPO 3.1): {visual, audio, emotion} phrases of a gold reasoning text. A
  sample that carries `cues` (synthmer) uses them; otherwise they are extracted from
  its `reason` by `oppo.cue_extractor`: `rules` (deterministic, below) or `llm` (a
  callable registered with `set_llm_extractor`, given the appendix D prompt).
- Clauses (OPPO eq. 1): the generated `<think>` text split at punctuation, each with its
  character span in the completion, so routed clauses can be mapped to tokens
  (`token_char_offsets` + `clause_token_mask`).

Rules extractor, in the spirit of the appendix D prompt: sentences are split at
`.!?` + space; a sentence opening with "In the video/audio/text," gives its modality
to all of its phrases (phrases split at `;` and at "and" + a new subject); a sentence
with an inference marker (suggest, reveal, show, although, ...) is one emotion cue;
the final "Therefore, ... emotional state is ..." label sentence is not a cue; other
phrases are typed by the appendix D keywords (face, eyes, posture, ... -> visual;
voice, tone, speech, ... -> audio) and dropped when they match neither.
"""

from __future__ import annotations

import json
import re
from typing import Callable, Mapping, Sequence

import numpy as np

from mer_jax.rl import rewards as rewards_lib

CUE_SETS = ("visual", "audio", "emotion")

# OPPO appendix D, verbatim (the LLM extractor's prompt; the reasoning text is appended).
EXTRACTION_PROMPT = """You are an expert linguistic annotator for a Multimodal Emotion Recognition dataset.

Task: Analyze the provided 'Reasoning Text' (the content inside <think> tags). Your goal is to extract the **multimodal evidence** the model used to reach the conclusion.

Extraction Rules:

1. **Visual Cues:** Extract specific phrases describing facial expressions, body language, or scene details mentioned in the text.
 - Examples: "eyes closed", "serious expression", "looking down", "furrowed brows", "clenched fists"
 - Keywords to look for: "expression", "face", "body", "posture", "gesture", "looking", "eyes", "video clues"
2. **Audio Cues:** Extract specific phrases describing voice quality, tone, speed, or volume.
 - Examples: "shaky voice", "aggressive tone", "fast speaking speed", "trembling voice", "loud volume"
 - Keywords to look for: "voice", "tone", "audio", "sound", "speaking", "speech"

Output Format (JSON):

```
{
  "visual_cues": ["phrase 1", "phrase 2"],
  "audio_cues": ["phrase 1", "phrase 2"],
}
```

Important:

- Extract short, semantically complete phrases (2-6 words), not full sentences.
- Do not hallucinate. Only extract what is explicitly written in the input text.
- If a category is missing in the text, leave the list empty.

Reasoning Text: """

_VISUAL_WORDS = (
    "expression",
    "face",
    "facial",
    "body",
    "posture",
    "gesture",
    "looking",
    "look",
    "eye",
    "brow",
    "mouth",
    "smile",
    "smiling",
    "frown",
    "lip",
    "glare",
    "stare",
    "gaze",
    "head",
    "hand",
    "fist",
    "nose",
    "cheek",
    "forehead",
    "tear",
    "video",
    "frame",
    "scene",
    "nod",
    "shrug",
)
_AUDIO_WORDS = (
    "voice",
    "tone",
    "audio",
    "sound",
    "speak",
    "speech",
    "pitch",
    "volume",
    "loud",
    "intonation",
    "rhythm",
    "tempo",
    "laugh",
    "sigh",
    "shout",
    "exclaim",
    "whisper",
    "stutter",
    "cry",
    "sob",
)
_INFERENCE = re.compile(
    r"\b(suggest\w*|indicat\w*|reveal\w*|reflect\w*|shows?|showing|impl\w*|although|"
    r"therefore|because|means|hint\w*|so)\b"
)
_HEADER = re.compile(
    r"^\s*(?:in|from)\s+the\s+(video|visual\w*|image\w*|frames?|audio|voice|speech|text|subtitles?)"
    r"\s*(?:,|:)\s*",
    re.I,
)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PHRASE_SPLIT = re.compile(r"\s*;\s*|,?\s+and\s+(?=(?:his|her|their|he|she|they|the)\b)", re.I)
_CLAUSE_RE = re.compile(r"[^.!?;,:\n]+")


def _header_modality(word: str) -> str | None:
  word = word.lower()
  if word.startswith(("vid", "vis", "imag", "frame")):
    return "visual"
  if word.startswith(("aud", "voi", "spee")):
    return "audio"
  return None  # text / subtitle evidence is not an OPPO cue set


def _words(text: str) -> list[str]:
  return re.findall(r"[a-z]+", text.lower())


def _has(words: Sequence[str], stems: Sequence[str]) -> bool:
  return any(w.startswith(s) for w in words for s in stems)


def extract_cues_rules(reason: str) -> dict[str, list[str]]:
  """Deterministic {visual, audio, emotion} cue phrases of a reasoning text (module doc)."""
  out: dict[str, list[str]] = {k: [] for k in CUE_SETS}
  for sentence in _SENTENCE_SPLIT.split(reason.strip()):
    sentence = sentence.strip().rstrip(".!?").strip()
    if not sentence:
      continue
    lowered = sentence.lower()
    if "emotional state is" in lowered or lowered.startswith("therefore"):
      continue  # the conclusion restates the labels; it is no evidence
    header = _HEADER.match(sentence)
    if header:
      kind = _header_modality(header.group(1))
      if kind is None:
        continue
      phrases = [
          p.strip() for p in _PHRASE_SPLIT.split(sentence[header.end() :]) if p and p.strip()
      ]
      out[kind] += [p for p in phrases if len(_words(p)) >= 2]
      continue
    if _INFERENCE.search(lowered):
      out["emotion"].append(sentence[0].lower() + sentence[1:])
      continue
    for phrase in _PHRASE_SPLIT.split(sentence):
      words = _words(phrase or "")
      if len(words) < 2:
        continue
      visual, audio = _has(words, _VISUAL_WORDS), _has(words, _AUDIO_WORDS)
      if visual != audio:
        out["visual" if visual else "audio"].append(phrase.strip())
  return {k: list(dict.fromkeys(v)) for k, v in out.items()}


LLMExtractor = Callable[[str], str]  # prompt -> the model's reply (JSON as in appendix D)
_LLM: list[LLMExtractor] = []


def set_llm_extractor(fn: LLMExtractor | None) -> None:
  """Registers the callable used by `oppo.cue_extractor = 'llm'` (None unregisters)."""
  _LLM.clear()
  if fn is not None:
    _LLM.append(fn)


def parse_llm_cues(reply: str) -> dict[str, list[str]]:
  """The appendix D JSON reply -> {visual, audio, emotion} (emotion: optional `emotion_cues`)."""
  match = re.search(r"\{.*\}", reply, re.DOTALL)
  if not match:
    raise ValueError(f"no JSON object in the extractor reply: {reply[:200]!r}")
  data = json.loads(
      re.sub(r",\s*([}\]])", r"\1", match.group(0))
  )  # the prompt's example has a trailing comma
  return {
      k: [str(x).strip() for x in data.get(f"{k}_cues", []) if str(x).strip()] for k in CUE_SETS
  }


def extract_cues(reason: str, method: str = "rules") -> dict[str, list[str]]:
  """Cue sets of one reasoning text with `oppo.cue_extractor`."""
  if method == "rules":
    return extract_cues_rules(reason)
  if method == "llm":
    if not _LLM:
      raise ValueError(
          "oppo.cue_extractor='llm' needs a callable registered with "
          "mer_jax.rl.cues.set_llm_extractor(fn)"
      )
    cues = parse_llm_cues(_LLM[0](EXTRACTION_PROMPT + reason))
    if not cues["emotion"]:  # appendix D asks for visual/audio only; inferences come from the rules
      cues["emotion"] = extract_cues_rules(reason)["emotion"]
    return cues
  raise ValueError(f"unknown cue extractor {method!r} (rules | llm)")


def sample_cues(sample: Mapping, method: str = "rules") -> dict[str, list[str]]:
  """A sample's gold cue sets: its own `cues` when present, else extracted from `reason`."""
  given = sample.get("cues")
  if given and any(given.get(k) for k in CUE_SETS):
    return {k: [str(c) for c in given.get(k, [])] for k in CUE_SETS}
  return extract_cues(str(sample.get("reason") or ""), method)


# ------------------------------------------------------------------ clauses and spans
def think_span(text: str) -> tuple[int, int]:
  """Character span of `rewards.extract_think(text)` inside `text` ((0, 0) when empty)."""
  think = rewards_lib.extract_think(text)
  if not think:
    return 0, 0
  closed = list(re.finditer(r"<think>(.*?)</think>", text, re.DOTALL))
  if closed:
    start = closed[-1].start(1)
  elif "<think>" in text:
    start = text.rindex("<think>") + len("<think>")
  else:
    start = 0
  start = text.index(think, start)
  return start, start + len(think)


def split_clauses(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int, str]]:
  """Punctuation-split clauses of `text[start:end]`: [(char start, char end, clause)].

  Split at `. ! ? ; , :` and newlines (OPPO 3.1 "punctuation-based splitting"); spans
  are stripped of whitespace and quotes; clauses without a letter are dropped.
  """
  end = len(text) if end is None else end
  out = []
  for m in _CLAUSE_RE.finditer(text, start, end):
    s, e = m.span()
    while s < e and (text[s].isspace() or text[s] in "\"'"):
      s += 1
    while e > s and (text[e - 1].isspace() or text[e - 1] in "\"'"):
      e -= 1
    if re.search(r"[A-Za-z]", text[s:e]):
      out.append((s, e, text[s:e]))
  return out


def think_clauses(text: str) -> list[tuple[int, int, str]]:
  """Clauses of a completion's `<think>` part, spans relative to the whole completion."""
  s, e = think_span(text)
  return split_clauses(text, s, e) if e > s else []


def token_char_offsets(tokenizer, tokens: Sequence[int]) -> np.ndarray:
  """`[n, 2]` character span of each token in `decode(tokens)` (skip_special_tokens=True).

  Incremental decoding: token i covers `[len(decode(t[:i])), len(decode(t[:i+1])))`,
  which is right for byte-level BPE pieces and WordPiece alike; prefix lengths are made
  non-decreasing (a partial UTF-8 character decodes to one replacement char, and the
  token that completes it then owns the character). Special tokens get empty spans.
  """
  tokens = [int(t) for t in tokens]
  if not tokens:
    return np.zeros((0, 2), np.int64)
  prefixes = tokenizer.batch_decode(
      [tokens[: i + 1] for i in range(len(tokens))], skip_special_tokens=True
  )
  full = len(prefixes[-1])
  ends = np.minimum(np.maximum.accumulate(np.array([len(p) for p in prefixes], np.int64)), full)
  # A later prefix can be shorter (replacement char merged): clamp from the right too.
  ends = np.minimum.accumulate(ends[::-1])[::-1]
  starts = np.concatenate([[0], ends[:-1]])
  return np.stack([starts, ends], axis=1)


def clause_token_mask(
    offsets: np.ndarray, spans: Sequence[tuple[int, int]], length: int
) -> np.ndarray:
  """`[length]` float32: 1 on tokens whose character span overlaps any of `spans`."""
  mask = np.zeros(length, np.float32)
  n = min(len(offsets), length)
  for s, e in spans:
    hit = (offsets[:n, 0] < e) & (offsets[:n, 1] > s) & (offsets[:n, 1] > offsets[:n, 0])
    mask[:n][hit] = 1.0
  return mask
