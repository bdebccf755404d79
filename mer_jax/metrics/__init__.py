"""Emotion-wheel metrics, MER-UniBench evaluation and fast per-sample rewards.

Public API (kept stable for the training / RL code):

* :func:`load_lexicon` (``'builtin'`` | ``'official:DIR'``), cached.
* :func:`parse_labels` - official label-string semantics.
* :func:`ew_scores`, :func:`ew_all_variants`, :func:`ovmer_report`.
* :class:`EWRewardScorer` - ``.reward``, ``.jaccard``, ``.hit`` on batches.
* :func:`hit_rate`, :func:`sentiment_scores`, :func:`unibench_report`.
* :func:`extract_emotion_words`, :func:`text_to_sentiment`.
"""

from mer_jax.metrics.lexicon import (LEVELS, N_WHEELS, VARIANTS, Lexicon, load_lexicon)
from mer_jax.metrics.parsing import (LabelFileError, parse_labels, read_label_csv, string_to_list)
from mer_jax.metrics.scoring import (
    EWRewardScorer,
    ew_all_variants,
    ew_scores,
    hit_rate,
    ovmer_report,
    reference_reward,
)
from mer_jax.metrics.extract import (
    LLMEmotionExtractor,
    LLMSentimentMapper,
    extract_emotion_words,
    text_to_sentiment,
    word_valence,
)
from mer_jax.metrics.unibench import (
    evaluate_dataset,
    sentiment_scores,
    unibench_from_dirs,
    unibench_report,
    weighted_f1,
)

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
