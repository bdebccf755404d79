"""MER-UniBench: hit rate, sentiment WAF/ACC, OV-MERD+ EW F, dataset-wise mean.

Tasks and primary metrics (AffectGPT section 4, table 2):

=============  ======================================  ==========================
dataset        gold                                    primary metric
=============  ======================================  ==========================
MER2023        one of 6 labels (neutral angry happy    hit rate (5 wheels, level1)
MER2024        sad worried surprise)
MELD           one of 7 (neutral anger disgust fear    hit rate
               joy sadness surprise)
IEMOCAP        one of 4 (neutral angry happy sad)      hit rate
CMUMOSI,       a real score; > 0 positive, < 0         WAF (weighted F1), also ACC
CMUMOSEI,      negative, = 0 dropped
SIMS, SIMSv2
OVMERD         open-vocabulary label list              EW F (level1, 5 wheels)
=============  ======================================  ==========================

The report's ``mean`` is the mean of the primary metrics over the datasets
present (x100 in the printed table, fractions in JSON).

Directory layout read by :func:`unibench_from_dirs` (one CSV per dataset,
file stem = dataset name, case-insensitive; ``OVMERD+``/``OVMERDPlus`` accepted):

* gold, hit-rate sets: ``name,label`` (``emotion`` / ``openset`` also read);
* gold, sentiment sets: ``name,score`` (``value`` / ``val`` / ``sentiment``);
* gold, OVMERD: ``name,openset``;
* predictions: ``name,openset`` (the model's emotion labels) or, for
  descriptive outputs, ``name,reason`` (also ``description`` / ``text`` /
  ``output``): emotion words are then extracted with
  :func:`~mer_jax.metrics.extract.extract_emotion_words`; for sentiment
  sets an optional ``sentiment`` column (positive/negative/neutral) is used
  as is, otherwise the sentiment is derived from the labels with
  :func:`~mer_jax.metrics.extract.text_to_sentiment` (or a pluggable mapper).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from mer_jax.metrics import parsing
from mer_jax.metrics.extract import extract_emotion_words
from mer_jax.metrics.extract import text_to_sentiment
from mer_jax.metrics.lexicon import load_lexicon
from mer_jax.metrics.scoring import ew_scores
from mer_jax.metrics.scoring import hit_rate

HIT_DATASETS = {
    'MER2023': ('neutral', 'angry', 'happy', 'sad', 'worried', 'surprise'),
    'MER2024': ('neutral', 'angry', 'happy', 'sad', 'worried', 'surprise'),
    'MELD': ('neutral', 'anger', 'disgust', 'fear', 'joy', 'sadness', 'surprise'),
    'IEMOCAP': ('neutral', 'angry', 'happy', 'sad'),
}
SENTIMENT_DATASETS = ('CMUMOSI', 'CMUMOSEI', 'SIMS', 'SIMSv2')
OV_DATASETS = ('OVMERD',)
ALL_DATASETS = tuple(HIT_DATASETS) + SENTIMENT_DATASETS + OV_DATASETS
LABEL_COLUMNS = ('openset', 'labels', 'answer')
TEXT_COLUMNS = ('reason', 'description', 'text', 'output')
_ALIASES = {
    'OVMERD+': 'OVMERD',
    'OVMERDPLUS': 'OVMERD',
    'IEMOCAPFOUR': 'IEMOCAP',
    'CHSIMS': 'SIMS',
    'CHSIMSV2': 'SIMSv2',
    'CH-SIMS': 'SIMS',
    'CH-SIMSV2': 'SIMSv2',
}


def canonical_name(stem: str) -> str | None:
  key = stem.upper().replace('_', '').replace(' ', '')
  key = _ALIASES.get(key, key)
  for d in ALL_DATASETS:
    if d.upper() == key:
      return d
  return None


# --------------------------------------------------------------- sentiment
def weighted_f1(y_true, y_pred) -> float:
  """sklearn ``f1_score(average='weighted')`` (labels = union of both)."""
  y_true, y_pred = list(y_true), list(y_pred)
  if not y_true:
    return 0.0
  labels = sorted(set(y_true) | set(y_pred))
  total = 0.0
  for c in labels:
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == c and p == c)
    fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != c and p == c)
    fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == c and p != c)
    support = tp + fn
    denom = 2 * tp + fp + fn
    f1 = 2 * tp / denom if denom else 0.0
    total += support * f1
  return total / len(y_true)


def sentiment_scores(gold: Mapping[str, float], pred: Mapping[str, str]) -> dict:
  """WAF and ACC of binary sentiment (official MER-UniBench protocol).

  ``gold``: name -> score (> 0 positive, < 0 negative, 0 / missing dropped).
  ``pred``: name -> 'positive' / 'negative' / 'neutral'; neutral, anything
  else and a missing prediction count as negative.
  """
  y_true, y_pred = [], []
  for name, v in gold.items():
    try:
      v = float(v)
    except (TypeError, ValueError):
      continue
    if not np.isfinite(v) or v == 0:
      continue
    y_true.append('positive' if v > 0 else 'negative')
    p = str(pred.get(name) or '').strip().lower()
    y_pred.append('positive' if p == 'positive' else 'negative')
  if not y_true:
    return {'waf': 0.0, 'acc': 0.0, 'n_samples': 0}
  acc = float(np.mean([t == p for t, p in zip(y_true, y_pred, strict=True)]))
  return {'waf': weighted_f1(y_true, y_pred), 'acc': acc, 'n_samples': len(y_true)}


# ------------------------------------------------------------------ report
def evaluate_dataset(
    dataset: str,
    gold: Mapping,
    pred: Mapping,
    lexicon='builtin',
    pred_sentiment: Mapping | None = None,
    sentiment_mapper: Callable | None = None,
) -> dict:
  """Score one dataset; returns a dict with ``primary`` plus details."""
  lexicon = load_lexicon(lexicon)
  if dataset in HIT_DATASETS:
    r = hit_rate(gold, pred, lexicon)
    space = set(HIT_DATASETS[dataset])
    off = sorted({str(g).strip().lower() for g in gold.values()} - space)
    out = {'task': 'basic', 'metric': 'hit_rate', 'primary': r['hit_rate'], **r}
    if off:
      out['labels_outside_space'] = off[:20]
    return out
  if dataset in SENTIMENT_DATASETS:
    mapper = sentiment_mapper or (lambda words: text_to_sentiment(words, lexicon))
    sent = {}
    for name in gold:
      if pred_sentiment and pred_sentiment.get(name):
        sent[name] = pred_sentiment[name]
      else:
        sent[name] = mapper(parsing.parse_labels(pred.get(name)))
    r = sentiment_scores(gold, sent)
    return {'task': 'sentiment', 'metric': 'waf', 'primary': r['waf'], **r}
  if dataset in OV_DATASETS:
    r = ew_scores(gold, pred, lexicon, 'level1')
    return {
        'task': 'fine-grained',
        'metric': 'ew_f1_level1',
        'primary': r['f1'],
        'f1': r['f1'],
        'precision': r['precision'],
        'recall': r['recall'],
        'n_samples': len(gold),
    }
  raise ValueError(f'unknown dataset {dataset!r}; known: {ALL_DATASETS}')


def unibench_report(results: Mapping[str, dict], lexicon_name: str = '') -> dict:
  present = [d for d in ALL_DATASETS if d in results]
  mean = float(np.mean([results[d]['primary'] for d in present])) if present else 0.0
  return {
      'datasets': {d: results[d] for d in present},
      'mean': mean,
      'n_datasets': len(present),
      'missing': [d for d in ALL_DATASETS if d not in results],
      'lexicon': lexicon_name,
  }


def _find_csv(directory: Path, dataset: str) -> Path | None:
  for p in sorted(directory.glob('*.csv')):
    if canonical_name(p.stem) == dataset:
      return p
  return None


def _read_column(path: Path, candidates) -> tuple[dict, str]:
  rows = list(parsing.read_csv_rows(path, required=('name',)))
  header = list(rows[0][1].keys()) if rows else []
  col = next((c for c in candidates if c in header), None)
  if col is None:
    raise parsing.LabelFileError(
        f'{path}:1: needs one of the columns {list(candidates)}; has {header}'
    )
  out = {}
  for _, row in rows:
    cell = row[col]
    out[row['name']] = None if cell in parsing.PANDAS_NA_STRINGS else cell
  return out, col


def unibench_from_dirs(
    gt_dir, pred_dir, lexicon='builtin', datasets=None, sentiment_mapper: Callable | None = None
) -> dict:
  """Score every dataset with a gold CSV in ``gt_dir`` and predictions in ``pred_dir``."""
  gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
  for d in (gt_dir, pred_dir):
    if not d.is_dir():
      raise FileNotFoundError(f'{d} is not a directory')
  lex = load_lexicon(lexicon)
  wanted = ALL_DATASETS
  if datasets:
    wanted = []
    for x in (datasets.split(',') if isinstance(datasets, str) else datasets):
      c = canonical_name(x.strip())
      if c is None:
        raise ValueError(f'unknown dataset {x!r}; known: {ALL_DATASETS}')
      wanted.append(c)
  results = {}
  for d in wanted:
    g_path, p_path = _find_csv(gt_dir, d), _find_csv(pred_dir, d)
    if g_path is None or p_path is None:
      continue
    if d in HIT_DATASETS:
      gold, _ = _read_column(g_path, ('label', 'emotion', 'openset'))
    elif d in SENTIMENT_DATASETS:
      gold, _ = _read_column(g_path, ('score', 'value', 'val', 'sentiment'))
    else:
      gold, _ = _read_column(g_path, ('openset',))
    pred, col = _read_column(p_path, LABEL_COLUMNS + TEXT_COLUMNS)
    if col in TEXT_COLUMNS:  # descriptive output: extract emotion words
      pred = {n: extract_emotion_words(t or '', lex) for n, t in pred.items()}
    pred_sent = None
    if d in SENTIMENT_DATASETS:
      rows = list(parsing.read_csv_rows(p_path, required=('name',)))
      if rows and 'sentiment' in rows[0][1]:
        pred_sent = {r['name']: r['sentiment'] for _, r in rows}
    res = evaluate_dataset(
        d, gold, pred, lex, pred_sentiment=pred_sent, sentiment_mapper=sentiment_mapper
    )
    res['gold_file'], res['pred_file'] = str(g_path), str(p_path)
    results[d] = res
  return unibench_report(results, lex.name)


def print_table(rep: dict, out=None):
  import sys  # pylint: disable=import-outside-toplevel

  out = out or sys.stdout
  print(f'MER-UniBench  lexicon={rep["lexicon"]}  datasets={rep["n_datasets"]}', file=out)
  print(f'{"dataset":10s} {"metric":14s} {"score":>7s} {"extra":>18s} {"n":>7s}', file=out)
  for d, r in rep['datasets'].items():
    extra = (
        f'ACC {100 * r["acc"]:6.2f}'
        if r['task'] == 'sentiment'
        else (
            f'P {100 * r["precision"]:5.1f} R {100 * r["recall"]:5.1f}'
            if r['task'] == 'fine-grained'
            else ''
        )
    )
    print(
        f'{d:10s} {r["metric"]:14s} {100 * r["primary"]:7.2f} {extra:>18s} '
        f'{r.get("n_samples", 0):7d}',
        file=out,
    )
  print(f'{"mean":10s} {"":14s} {100 * rep["mean"]:7.2f}', file=out)
  if rep['missing']:
    print(f'(not found: {", ".join(rep["missing"])})', file=out)
