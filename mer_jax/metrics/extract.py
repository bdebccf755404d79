"""Emotion words from free text, and sentiment from emotion words.

Deterministic defaults (no model calls), plus pluggable LLM versions that use
the prompts of the papers (AffectGPT appendix E; AffectGPT-R1 appendix E.1).

:func:`extract_emotion_words` (lexicon based):

1. quoted spans (subtitles quoted inside a description: ``"..."``, ``“...”``)
   are removed - they are what the character *says*, not the inferred state;
2. the text is lowercased and split into clauses at ``.;:!?`` / newlines and
   at contrastive words (``but``, ``however``, ``although``, ``yet``,
   ``whereas``, ``while``);
3. inside a clause, tokens are matched greedily (longest first, up to 4
   tokens) against the lexicon's surface forms that map to a level-1 category
   of at least one wheel; a small stop list removes forms that in
   descriptions are almost always literal (``low`` voice, looks ``down``,
   ``moved`` his head, ``touched`` her face ...);
4. negation: a match is dropped when one of ``not no never without nor
   neither hardly barely n't lack`` (``no longer``, ``free of``, ``devoid
   of`` included) precedes it in the same clause with only intensifiers,
   copulas (``is``, ``seem``, ``feel``), articles, list joiners or other
   emotion words in between (``not very angry``, ``no sign of anger``,
   ``not angry or sad``), at most 6 tokens back;
5. result: distinct matched surface forms in order of first occurrence.

:func:`text_to_sentiment` maps emotion words to positive / negative / neutral
from the valence of each word's level-1 categories over the wheels.
"""

from __future__ import annotations

import re
from typing import Callable, Protocol, Sequence

from mer_jax.metrics.lexicon import LEVELS
from mer_jax.metrics.lexicon import Lexicon
from mer_jax.metrics.lexicon import load_lexicon
from mer_jax.metrics.parsing import parse_labels

# The official evaluation toolkit's prompts (AffectGPT toolkit/utils/qwen.py:
# reason_to_openset_qwen, openset_to_sentiment_qwen), character for character; `{}` is the
# answer (step 1) or the step-1 label list (step 2). The second keeps the indentation its
# source's line continuations leave inside the string.
LABEL_EXTRACTION_PROMPT = (
    'Please assume the role of an expert in the field of emotions. We provide clues that may '
    'be related to the emotions of the characters. Based on the provided clues, please '
    'identify the emotional states of the main character. The main character is the one with '
    'the most detailed clues. Please separate different emotional categories with commas and '
    'output only the clearly identifiable emotional categories in a list format. If none are '
    'identified, please output an empty list. Input: We cannot recognize his emotional state; '
    'Output: [] Input: His emotional state is happy, sad, and angry; Output: [happy, sad, '
    'angry] Input: {}; Output: '
)
_PAD = ' ' * 12
SENTIMENT_PROMPT = (
    f'Please act as an expert in the field of emotions. {_PAD}We provide a few words to '
    f'describe the emotions of a character. {_PAD}Please choose the most likely sentiment '
    f'from the given candidates: [positive, negative, neutral] {_PAD}Please direct output '
    f'answer without analyzing process. {_PAD}Input: [joyful]; Output: positive {_PAD}Input: '
    f'[]; Output: neutral {_PAD}Input: {{}}; Output: '
)
# AffectGPT-R1 appendix E.1 (think-text emotion words for the alignment reward).
THINK_EXTRACTION_PROMPT = (
    'Please assume the role of an expert in the field of emotions. We provide clues '
    'related to the emotional state of a character. Based on the provided clues, please '
    "identify the character's emotional states. Separate different emotional categories "
    'with commas, and output only the clearly identifiable emotional categories in a list '
    'format. If no emotions can be identified, please return an empty list.'
)

NEGATORS = frozenset(
    {
        'not',
        'no',
        'never',
        'without',
        'nor',
        'neither',
        'hardly',
        'barely',
        'scarcely',
        "n't",
        'nothing',
        'none',
        'lacks',
        'lack',
        'lacking',
        'absence',
    }
)
_SKIPPABLE = frozenset(
    {
        'very',
        'too',
        'so',
        'really',
        'particularly',
        'overly',
        'at',
        'all',
        'be',
        'been',
        'being',
        'is',
        'was',
        'are',
        'were',
        'seem',
        'seems',
        'seemed',
        'appear',
        'appears',
        'look',
        'looks',
        'feel',
        'feels',
        'of',
        'any',
        'a',
        'an',
        'the',
        'sign',
        'signs',
        'trace',
        'hint',
        'longer',
        'feeling',
        'feelings',
        'sense',
        'obviously',
        'overtly',
        'or',
        'and',
        'much',
        'more',
        'less',
        'quite',
        'that',
        'entirely',
        'completely',
        'totally',
        'showing',
        'show',
        'shows',
        'expressing',
        'express',
        'expresses',
    }
)
_INTENSIFIERS = frozenset(
    {
        'very',
        'too',
        'so',
        'really',
        'quite',
        'particularly',
        'overly',
        'much',
        'more',
        'less',
        'a',
        'an',
        'any',
        'entirely',
        'completely',
        'totally',
        'at',
        'all',
    }
)
_LIST_JOINERS = frozenset({'or', 'and', ','})
_CLAUSE_SPLIT = re.compile(r'[.;:!?\n]+|\b(?:but|however|although|though|yet|whereas|while)\b')
_TOKEN = re.compile(r"n't|[a-z]+(?:[-'][a-z]+)*|,")
_QUOTED = re.compile(r'"[^"]*"|“[^”]*”|「[^」]*」')
# surface forms that in descriptions are nearly always literal / non-emotional
EXTRACT_STOP = frozenset(
    {
        'down',
        'low',
        'still',
        'quiet',
        'free',
        'open',
        'close',
        'cold',
        'warm',
        'moved',
        'touched',
        'mean',
        'like',
        'liked',
        'likes',
        'want',
        'wants',
        'wanted',
        'wish',
        'care',
        'cares',
        'cared',
        'interest',
        'interests',
        'active',
        'bright',
        'sharp',
        'heavy',
        'soft',
        'long',
        'dark',
        'off',
        'sick',
        'blue',
        'lost',
        'left',
        'used',
        'use',
        'expose',
        'exposed',
        'stimulated',
        'bad',
        'empty',
        'numb',
        'weak',
        'busy',
        'rushed',
        'hurried',
        'important',
        'aware',
        'sure',
        'certain',
        'overcome',
        'responsive',
        'pressure',
        'pressed',
        'threat',
        'attention',
        'attentive',
        'emotional',
        'intense',
        'intensity',
        'strong',
        'power',
        'powerful',
        'energy',
        'engaged',
        'drawn',
        'fire',
        'shaky',
        'stiff',
        'tight',
        'slight',
        'serious',
        'deep',
        'wild',
        'focused',
        'concern',
        'concerned',
        'expectation',
        'dismissed',
        'passive',
        'collected',
        'composed',
        'positive',
        'negative',
        'neutral',
        'please',
        'pleasant',
        'unpleasant',
        'upset_',
        'distant',
        'detached',
        'remote',
        'open-minded',
        'awful',
        'terrible',
        'horrible',
        'dreadful',
        'lovely',
        'tender',
        'gentle',
        'kind',
        'respect',
        'sensitive',
        'alert',
        'careful',
        'cautious',
        'wary',
        'watchful',
        'quick',
        'content',
        'frown',
        'frowns',
        'frowned',
        'frowning',
        'laugh',
        'laughs',
        'laughed',
        'laughter',
        'laughing',
        'smile',
        'smiles',
        'smiling',
        'tears',
        'thinking',
        'question',
        'questions',
        'questioned',
        'asking',
        'consideration',
        'considering',
        'control',
        'force',
        'engaging',
        'interesting',
        'biting',
        'cutting',
        'stirring',
        'touching',
        'affected',
        'revealed',
        'uncovered',
        'naked',
        'including',
        'included',
        'approved',
        'drained',
        'closed',
        'closing',
        'believing',
        'wanting',
        'importance',
    }
)


class EmotionExtractor(Protocol):

  def __call__(self, text: str) -> list[str]:
    ...


def _emotion_forms(lexicon: Lexicon) -> tuple[frozenset, int]:
  cache = getattr(lexicon, '_extract_forms', None)
  if cache is None:
    forms = frozenset(f for f in lexicon.level_mask['level1'] if f not in EXTRACT_STOP)
    maxlen = max((len(f.split()) for f in forms), default=1)
    cache = (forms, min(maxlen, 4))
    lexicon._extract_forms = cache  # pylint: disable=protected-access
  return cache


def _tokens(clause: str) -> list[str]:
  clause = clause.replace('’', "'").replace("n't", " n't")
  return _TOKEN.findall(clause)


def _negated(tokens: list[str], i: int, forms: frozenset) -> bool:
  """A negator governs token i.

  Walking back from i: negator -> negated; intensifiers / copulas / list
  joiners / other emotion words (``not angry or sad``) keep the scope open;
  any other word closes it.  At most 6 tokens back.
  """
  for j in range(i - 1, max(-1, i - 7), -1):
    t = tokens[j]
    if t in NEGATORS:
      return True
    if t in _LIST_JOINERS:
      # "not angry or (very) sad": a joiner continues the scope only when
      # nothing but intensifiers separates it from the word
      if all(x in _INTENSIFIERS for x in tokens[j + 1 : i]):
        continue
      return False
    if t in _SKIPPABLE or t in forms:
      continue
    return False
  return False


def extract_emotion_words(text: str, lexicon='builtin', keep_quoted: bool = False) -> list[str]:
  """Deterministic, negation-aware emotion words of an English text.

  Returns distinct surface forms (lowercased) that the lexicon maps to a
  level-1 wheel category, in order of first occurrence (see module doc).
  """
  if not text:
    return []
  lexicon = load_lexicon(lexicon)
  forms, maxlen = _emotion_forms(lexicon)
  text = str(text)
  if not keep_quoted:
    text = _QUOTED.sub(' . ', text)
  text = text.lower().replace('free of ', 'without ').replace('devoid of ', 'without ')
  out, seen = [], set()
  for clause in _CLAUSE_SPLIT.split(text):
    toks = _tokens(clause)
    i = 0
    while i < len(toks):
      match = None
      for n in range(min(maxlen, len(toks) - i), 0, -1):
        cand = ' '.join(toks[i : i + n])
        if cand in forms:
          match = (cand, n)
          break
      if match is None:
        i += 1
        continue
      cand, n = match
      if not _negated(toks, i, forms) and cand not in seen:
        seen.add(cand)
        out.append(cand)
      i += n
  return out


def postprocess_response(response: str) -> str:
  """The toolkit's `func_postprocess_qwen`: strip echoed prefixes, a colon and newlines."""
  response = response.strip()
  for prefix in (
      '输入',
      '输出',
      '翻译',
      '让我们来翻译一下：',
      'output',
      'Output',
      'input',
      'Input',
  ):
    if response.startswith(prefix):
      response = response[len(prefix) :]
  response = response.strip()
  for colon in (':', '：'):
    if response.startswith(colon):
      response = response[len(colon) :]
  return response.strip().replace('\n', '').strip()


class LLMEmotionExtractor:
  """Pluggable LLM extractor: ``generate(prompt) -> completion``.

  Fills the official toolkit's label prompt with the text and parses the (post-processed)
  answer as a label list (same parser as the metric). ``generate`` can wrap any chat model
  (vLLM, an HF pipeline, an API client); mer_jax.train.extractors runs a local Qwen2.5.
  """

  def __init__(self, generate: Callable[[str], str], prompt: str = LABEL_EXTRACTION_PROMPT):
    self.generate = generate
    self.prompt = prompt

  def build_prompt(self, text: str) -> str:
    return self.prompt.format(text)

  def __call__(self, text: str) -> list[str]:
    return parse_labels(postprocess_response(self.generate(self.build_prompt(text))))


# --------------------------------------------------------------- sentiment
def word_valence(word: str, lexicon='builtin') -> int:
  """+1 / -1 / 0: sign of the summed valence of the word's level-1 categories.

  Uses the lexicon's own category valences when it has them (builtin); for a
  lexicon without (official), the builtin lexicon is consulted.
  """
  lexicon = load_lexicon(lexicon)
  if not lexicon.valence:
    lexicon = load_lexicon('builtin')
  label = str(word).lower().strip()
  total = 0
  for w, name in enumerate(lexicon.wheel_names):
    cat = lexicon.map_label(label, f'wheel{w + 1}_{LEVELS[0]}')
    if cat is not None:
      total += lexicon.valence.get(name, {}).get(cat, 0)
  return (total > 0) - (total < 0)


def text_to_sentiment(words, lexicon='builtin') -> str:
  """'positive' / 'negative' / 'neutral' from emotion words (deterministic).

  ``words``: a list of labels or a raw label string.  Sum of word valences:
  > 0 positive, < 0 negative, else neutral (also for no mapped word).
  """
  if isinstance(words, str) or words is None:
    words = parse_labels(words)
  score = sum(word_valence(w, lexicon) for w in words)
  if score > 0:
    return 'positive'
  if score < 0:
    return 'negative'
  return 'neutral'


class LLMSentimentMapper:
  """Pluggable LLM sentiment mapper using the AffectGPT prompt."""

  def __init__(self, generate: Callable[[str], str], prompt: str = SENTIMENT_PROMPT):
    self.generate = generate
    self.prompt = prompt

  def __call__(self, words: Sequence[str] | str) -> str:
    if not isinstance(words, str):
      words = '[' + ', '.join(words) + ']'
    out = postprocess_response(self.generate(self.prompt.format(words))).lower()
    hits = [(out.find(c), c) for c in ('positive', 'negative', 'neutral') if c in out]
    return min(hits)[1] if hits else 'neutral'
