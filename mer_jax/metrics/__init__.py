"""Emotion-wheel metrics, MER-UniBench evaluation and fast per-sample rewards.

Public API (kept stable for the training / RL code):

* :func:`load_lexicon` (``'builtin'`` | ``'official:DIR'``), cached.
* :func:`parse_labels` - official label-string semantics.
* :func:`ew_scores`, :func:`ew_all_variants`, :func:`ovmer_report`.
* :class:`EWRewardScorer` - ``.reward``, ``.jaccard``, ``.hit`` on batches.
* :func:`hit_rate`, :func:`sentiment_scores`, :func:`unibench_report`.
* :func:`extract_emotion_words`, :func:`text_to_sentiment`.
"""

from mer_jax.metrics.extract import LLMEmotionExtractor
from mer_jax.metrics.extract import LLMSentimentMapper
from mer_jax.metrics.extract import extract_emotion_words
from mer_jax.metrics.extract import text_to_sentiment
from mer_jax.metrics.extract import word_valence
from mer_jax.metrics.lexicon import LEVELS
from mer_jax.metrics.lexicon import N_WHEELS
from mer_jax.metrics.lexicon import VARIANTS
from mer_jax.metrics.lexicon import Lexicon
from mer_jax.metrics.lexicon import load_lexicon
from mer_jax.metrics.parsing import LabelFileError
from mer_jax.metrics.parsing import parse_labels
from mer_jax.metrics.parsing import read_label_csv
from mer_jax.metrics.parsing import string_to_list
from mer_jax.metrics.scoring import EWRewardScorer
from mer_jax.metrics.scoring import ew_all_variants
from mer_jax.metrics.scoring import ew_scores
from mer_jax.metrics.scoring import hit_rate
from mer_jax.metrics.scoring import ovmer_report
from mer_jax.metrics.scoring import reference_reward
from mer_jax.metrics.unibench import evaluate_dataset
from mer_jax.metrics.unibench import sentiment_scores
from mer_jax.metrics.unibench import unibench_from_dirs
from mer_jax.metrics.unibench import unibench_report
from mer_jax.metrics.unibench import weighted_f1

__all__ = [
    'LEVELS',
    'N_WHEELS',
    'VARIANTS',
    'Lexicon',
    'load_lexicon',
    'LabelFileError',
    'parse_labels',
    'read_label_csv',
    'string_to_list',
    'EWRewardScorer',
    'ew_all_variants',
    'ew_scores',
    'hit_rate',
    'ovmer_report',
    'reference_reward',
    'LLMEmotionExtractor',
    'LLMSentimentMapper',
    'extract_emotion_words',
    'text_to_sentiment',
    'word_valence',
    'evaluate_dataset',
    'sentiment_scores',
    'unibench_from_dirs',
    'unibench_report',
    'weighted_f1',
]
