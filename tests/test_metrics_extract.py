"""Deterministic emotion-word extractor and the pluggable LLM interfaces."""

import pytest

from mer_jax.metrics import LLMEmotionExtractor
from mer_jax.metrics import LLMSentimentMapper
from mer_jax.metrics import extract_emotion_words
from mer_jax.metrics import parse_labels
from mer_jax.metrics.extract import LABEL_EXTRACTION_PROMPT


@pytest.mark.parametrize(
    'text, expected',
    [
        ('He is not angry but sad.', ['sad']),
        ('She does not seem happy or relaxed; she is nervous.', ['nervous']),
        ("He isn't at all worried, just excited.", ['excited']),
        ('Without any anger, he felt joy and happiness.', ['joy', 'happiness']),
        ('She was neither angry nor sad.', []),
        ('There is no sign of anger in his voice.', []),
        ('He shows a lack of confidence and feels anxious.', ['anxious']),
        ('No longer afraid, she smiled with relief.', ['relief']),
        ('The subtitle says "I am so happy" while he looks anxious.', ['anxious']),
        ('He looks down and speaks in a low voice, moved his head.', []),
        ('He is happy, HAPPY and happier.', ['happy', 'happier']),
        ('', []),
    ],
)
def test_extract(text, expected):
  assert extract_emotion_words(text) == expected


def test_extract_keep_quoted_and_official_style_input():
  assert extract_emotion_words('"I am so happy"', keep_quoted=True) == ['happy']
  assert extract_emotion_words(None) == []


def test_llm_extractor_and_sentiment_mapper():
  seen = {}

  def fake_generate(prompt):
    seen['prompt'] = prompt
    return "['Happy', 'nervous']"

  ext = LLMEmotionExtractor(fake_generate)
  assert ext('some clues') == ['happy', 'nervous']
  assert seen['prompt'] == LABEL_EXTRACTION_PROMPT.format('some clues')
  assert seen['prompt'].endswith('Input: some clues; Output: ')
  assert parse_labels(fake_generate('')) == ['happy', 'nervous']
  mapper = LLMSentimentMapper(lambda prompt: 'The sentiment is Negative.')
  assert mapper(['sad', 'angry']) == 'negative'
  assert LLMSentimentMapper(lambda prompt: 'no idea')('x') == 'neutral'
