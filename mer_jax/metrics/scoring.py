"""EW scoring (dataset level, every variant) and fast per-sample rewards.

Semantics (the released OV-MER/AffectGPT ``wheel.py``, see docs/metrics.md):

* labels are parsed with :func:`parse_labels` and mapped per variant; labels
  that do not map are dropped; each side becomes a set.
* dataset level, per variant: samples whose mapped ground truth is empty are
  skipped; ``P_i = |G&P|/|P|`` (0 when the mapped prediction is empty),
  ``R_i = |G&P|/|G|``; ``P = mean P_i``, ``R = mean R_i``,
  ``F = 2PR/(P+R)`` (0 when P+R = 0).
* a level score (level1 / level2) is the mean over the 5 wheels of F, P, R.
* per-sample reward: per wheel at level1 ``F_i = 2 p r/(p+r)`` (0 when either
  mapped set is empty or they do not intersect), averaged over the 5 wheels.

Speed: each label set is one Python int (a bit per (wheel, category), see
``Lexicon.level_bits``), cached per raw string; a batch is converted to a
``(B, K)`` uint64 array and scored with vectorized popcounts.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mer_jax.metrics.lexicon import LEVELS
from mer_jax.metrics.lexicon import N_WHEELS
from mer_jax.metrics.lexicon import VARIANTS
from mer_jax.metrics.lexicon import Lexicon
from mer_jax.metrics.lexicon import load_lexicon
from mer_jax.metrics.parsing import _SPLIT_RE
from mer_jax.metrics.parsing import parse_labels

_popcount = np.bitwise_count


def _as_labels(x) -> list[str]:
  """Labels of a raw cell or an already-split list (normalized like official)."""
  if isinstance(x, (list, tuple)):
    return [str(s).lower().strip() for s in x]
  return parse_labels(x, unique=False)


def _iter_labels(x):
  """Normalized labels of a raw cell (official semantics, no intermediate lists)."""
  if type(x) is not str:  # pylint: disable=unidiomatic-typecheck
    yield from _as_labels(x)
    return
  if not x:
    return
  if x[0] == '[':
    x = x[1:]
  if x and x[-1] == ']':
    x = x[:-1]
  for item in _SPLIT_RE.split(x):
    item = item.strip()
    if item:
      yield item.lower().strip()


class _Codec:
  """Packs label sets of one level into ints and counts per wheel."""

  def __init__(self, lexicon: Lexicon, level: str):
    if level not in LEVELS:
      raise ValueError(f'unknown level {level!r}; expected level1 or level2')
    self.lexicon = lexicon
    self.level = level
    bits = lexicon.level_bits[level]
    self.n_words = bits['n_words']
    self.wheel_words = bits['wheel_words']
    self.label_mask = lexicon.level_mask[level]
    self.nbytes = 8 * self.n_words

  def pack_labels(self, labels) -> int:
    m = 0
    get = self.label_mask.get
    for label in labels:
      m |= get(label, 0)
    return m

  def to_words(self, packed: Sequence[int]) -> np.ndarray:
    nb = self.nbytes
    buf = b''.join([x.to_bytes(nb, 'little') for x in packed])
    return np.frombuffer(buf, dtype='<u8').reshape(len(packed), self.n_words)

  def counts(self, words: np.ndarray) -> np.ndarray:
    """(B, K) uint64 -> (B, 5) int64 number of categories per wheel."""
    out = np.zeros((words.shape[0], N_WHEELS), dtype=np.int64)
    for w, parts in enumerate(self.wheel_words):
      for k, mask in parts:
        out[:, w] += _popcount(words[:, k] & np.uint64(mask)).astype(np.int64)
    return out

  def gpi_counts(self, g: Sequence[int], p: Sequence[int]):
    gw, pw = self.to_words(g), self.to_words(p)
    return self.counts(gw), self.counts(pw), self.counts(gw & pw)


def _per_wheel_prf(gc: np.ndarray, pc: np.ndarray, ic: np.ndarray):
  """Official dataset-level P, R, F per wheel from (N, 5) count arrays."""
  out = []
  for w in range(gc.shape[1]):
    valid = gc[:, w] > 0
    g, p, i = gc[valid, w], pc[valid, w], ic[valid, w]
    if g.size == 0:
      out.append((0.0, 0.0, 0.0, 0))
      continue
    pi = np.where(p > 0, i / np.maximum(p, 1), 0.0)
    ri = i / g
    prec, rec = float(np.mean(pi)), float(np.mean(ri))
    f = 0.0 if prec + rec == 0 else 2 * (prec * rec) / (prec + rec)
    out.append((f, prec, rec, int(g.size)))
  return out


def _prf_from_sets(pairs):
  """Official P, R, F for one variant from a list of (G set, P set)."""
  acc, rec = [], []
  for g, p in pairs:
    if not g:
      continue
    if not p:
      acc.append(0)
      rec.append(0)
    else:
      i = len(g & p)
      acc.append(i / len(p))
      rec.append(i / len(g))
  if not acc:
    return 0.0, 0.0, 0.0, 0
  prec, recall = float(np.mean(acc)), float(np.mean(rec))
  f = 0.0 if prec + recall == 0 else 2 * (prec * recall) / (prec + recall)
  return f, prec, recall, len(acc)


class _Encoded:
  """One side (gt or pred) of a dataset, parsed once and encoded per level."""

  def __init__(self, values, lexicon: Lexicon, with_cases: bool):
    codes = lexicon.codes
    cache = {}
    self.packed = {lv: [] for lv in LEVELS}
    self.cases = ([], []) if with_cases else None
    p1, p2 = self.packed['level1'], self.packed['level2']
    for x in values:
      key = x if isinstance(x, str) or x is None else None
      hit = cache.get(key) if key is not None else None
      if hit is None:
        m1 = m2 = 0
        c1, c2 = set(), set()
        for label in _iter_labels(x):
          t = codes.get(label)
          if t is None:
            continue
          m1 |= t[2]
          m2 |= t[3]
          if t[0] >= 0:
            c1.add(t[0])
          if t[1] >= 0:
            c2.add(t[1])
        hit = (m1, m2, c1, c2)
        if key is not None:
          cache[key] = hit
      p1.append(hit[0])
      p2.append(hit[1])
      if with_cases:
        self.cases[0].append(hit[2])
        self.cases[1].append(hit[3])


def _encode_pair(gt: Mapping, pred: Mapping, lexicon, with_cases=False):
  names = list(gt.keys())
  g = _Encoded([gt[n] for n in names], lexicon, with_cases)
  p = _Encoded([pred.get(n) for n in names], lexicon, with_cases)  # missing = empty
  return names, g, p


def _level_result(lexicon, level, g: _Encoded, p: _Encoded):
  codec = _Codec(lexicon, level)
  gc, pc, ic = codec.gpi_counts(g.packed[level], p.packed[level])
  per_wheel = _per_wheel_prf(gc, pc, ic)
  wheels = {}
  for w, (f, pr, rc, n) in enumerate(per_wheel):
    wheels[f'wheel{w + 1}'] = {'f1': f, 'precision': pr, 'recall': rc, 'n_samples': n}
  arr = np.array([x[:3] for x in per_wheel], dtype=np.float64)
  mean = arr.mean(axis=0).tolist()
  return {'f1': mean[0], 'precision': mean[1], 'recall': mean[2], 'wheels': wheels}, (gc, pc, ic)


def ew_scores(gt: Mapping, pred: Mapping, lexicon='builtin', level: str = 'level1') -> dict:
  """Dataset-level EW score of one level (mean over 5 wheels of F, P, R).

  ``gt`` / ``pred``: ``{name: labels}``, labels as raw strings or lists.
  Samples are those of ``gt``; a name missing from ``pred`` counts as empty.
  Returns ``{'f1', 'precision', 'recall', 'wheels': {wheelK: {...}}}``.
  """
  lexicon = load_lexicon(lexicon)
  _, g, p = _encode_pair(gt, pred, lexicon)
  return _level_result(lexicon, level, g, p)[0]


def _variants_from(lexicon, g: _Encoded, p: _Encoded, level_results) -> dict:
  out = {}
  for v, variant in enumerate(VARIANTS[:2]):
    f, pr, rc, n = _prf_from_sets(zip(g.cases[v], p.cases[v], strict=True))
    out[variant] = {'precision': pr, 'recall': rc, 'f1': f, 'n_samples': n}
  for level in LEVELS:
    res = level_results[level]
    for w in range(N_WHEELS):
      r = res['wheels'][f'wheel{w + 1}']
      out[f'wheel{w + 1}_{level}'] = {
          'precision': r['precision'],
          'recall': r['recall'],
          'f1': r['f1'],
          'n_samples': r['n_samples'],
      }
  return out


def ew_all_variants(gt: Mapping, pred: Mapping, lexicon='builtin') -> dict:
  """All 12 official variants: case1, case2, wheel{1..5}_level{1,2}.

  Returns ``{variant: {'precision', 'recall', 'f1', 'n_samples'}}``.
  """
  lexicon = load_lexicon(lexicon)
  _, g, p = _encode_pair(gt, pred, lexicon, with_cases=True)
  res = {lv: _level_result(lexicon, lv, g, p)[0] for lv in LEVELS}
  return _variants_from(lexicon, g, p, res)


def per_sample_f(gc, pc, ic) -> np.ndarray:
  """Per-sample F averaged over wheels, float64, from (N, 5) count arrays."""
  with np.errstate(divide='ignore', invalid='ignore'):
    p = ic / pc
    r = ic / gc
    f = 2 * (p * r) / (p + r)
  f = np.where((gc > 0) & (pc > 0) & (ic > 0), f, 0.0)
  return f.mean(axis=1)


def ovmer_report(
    gt: Mapping,
    pred: Mapping,
    lexicon='builtin',
    all_variants: bool = False,
    per_sample: bool = False,
) -> dict:
  """The ``evaluate ovmer`` JSON: level1, level2, wheels (+variants, per_sample)."""
  lexicon = load_lexicon(lexicon)
  names, g, p = _encode_pair(gt, pred, lexicon, with_cases=all_variants)
  out = {}
  wheels = {}
  results, counts = {}, {}
  for level in LEVELS:
    res, counts[level] = _level_result(lexicon, level, g, p)
    results[level] = res
    out[level] = {'f1': res['f1'], 'precision': res['precision'], 'recall': res['recall']}
    for wname, r in res['wheels'].items():
      wheels.setdefault(wname, {})[level] = r
  out['wheels'] = wheels
  out['n_samples'] = len(names)
  out['lexicon'] = lexicon.name
  if all_variants:
    out['variants'] = _variants_from(lexicon, g, p, results)
  if per_sample:
    r = per_sample_f(*counts['level1'])
    out['per_sample'] = dict(zip(names, r.tolist(), strict=True))
  return out


class EWRewardScorer:
  """Fast per-sample EW rewards for GRPO (B x G samples per call).

  ``reward(gt, pred)``: mean over the 5 wheels (``level``, default level1) of
  the per-sample F (0 when either mapped set is empty).  ``jaccard(a, b)``:
  mean over wheels of ``|A&B|/|A|B|`` (0 when both are empty; the alignment
  reward).  ``hit(gt, pred)``: mean over wheels of ``[G&P non-empty]`` (0 for
  wheels whose gt maps empty).  Inputs are sequences whose items are raw label
  strings (``"['happy', 'sad']"``, ``"happy, sad"``) or lists of labels.
  Parsed raw strings are cached (bounded), so repeated ground truths and
  answers cost one dict lookup.
  """

  def __init__(self, lexicon='builtin', level: str = 'level1', cache_size: int = 1 << 20):
    self.lexicon = load_lexicon(lexicon)
    self.level = level
    self._codec = _Codec(self.lexicon, level)
    self._cache: dict = {}
    self._cache_size = cache_size

  def pack(self, x) -> int:
    """Packed category bits of one raw label cell or label list."""
    if isinstance(x, str):
      m = self._cache.get(x)
      if m is None:
        m = self._pack_str(x)
        if len(self._cache) >= self._cache_size:
          self._cache.clear()
        self._cache[x] = m
      return m
    if x is None:
      return 0
    return self._codec.pack_labels(_as_labels(x))

  def _pack_str(self, x: str) -> int:
    """``pack_labels(parse_labels(x))`` fused (same semantics, fewer lists)."""
    if not x:
      return 0
    if x[0] == '[':
      x = x[1:]
    if x and x[-1] == ']':
      x = x[:-1]
    m = 0
    get = self._codec.label_mask.get
    for item in _SPLIT_RE.split(x):
      item = item.strip()
      if item:
        m |= get(item.lower().strip(), 0)
    return m

  def counts(self, a_list, b_list):
    """(|A_w|, |B_w|, |A_w & B_w|) per sample and wheel, each (N, 5) int64."""
    if len(a_list) != len(b_list):
      raise ValueError(f'length mismatch: {len(a_list)} vs {len(b_list)}')
    pack = self.pack
    return self._codec.gpi_counts([pack(x) for x in a_list], [pack(x) for x in b_list])

  def reward(self, gt_labels_list, pred_labels_list, dtype=np.float32) -> np.ndarray:
    return per_sample_f(*self.counts(gt_labels_list, pred_labels_list)).astype(dtype)

  def jaccard(self, a_list, b_list, dtype=np.float32) -> np.ndarray:
    ac, bc, ic = self.counts(a_list, b_list)
    union = ac + bc - ic
    with np.errstate(divide='ignore', invalid='ignore'):
      j = np.where(union > 0, ic / np.maximum(union, 1), 0.0)
    return j.mean(axis=1).astype(dtype)

  def hit(self, gt_labels_list, pred_labels_list, dtype=np.float32) -> np.ndarray:
    gc, _, ic = self.counts(gt_labels_list, pred_labels_list)
    return ((gc > 0) & (ic > 0)).mean(axis=1).astype(dtype)

  def n_labels(self, labels_list) -> np.ndarray:
    """Number of distinct parsed labels per sample (for length penalties)."""
    return np.array(
        [
            len(parse_labels(x)) if not isinstance(x, (list, tuple)) else len(set(_as_labels(x)))
            for x in labels_list
        ],
        dtype=np.int64,
    )


def hit_rate(gt: Mapping, pred: Mapping, lexicon='builtin') -> dict:
  """MER-UniBench hit rate (official ``hitrate_metric_calculation``).

  Per wheel at level1: samples whose gold maps empty are skipped (neutral);
  per sample ``|G & P|`` (1/0 for a single gold label); mean over samples,
  then over the 5 wheels.  Returns ``{'hit_rate', 'wheels', 'n_samples'}``.
  """
  lexicon = load_lexicon(lexicon)
  names, g, p = _encode_pair(gt, pred, lexicon)
  codec = _Codec(lexicon, 'level1')
  gc, _, ic = codec.gpi_counts(g.packed['level1'], p.packed['level1'])
  wheels = {}
  vals = []
  for w in range(N_WHEELS):
    valid = gc[:, w] > 0
    v = float(np.mean(ic[valid, w])) if valid.any() else 0.0
    wheels[f'wheel{w + 1}'] = {'hit_rate': v, 'n_samples': int(valid.sum())}
    vals.append(v)
  return {'hit_rate': float(np.mean(vals)), 'wheels': wheels, 'n_samples': len(names)}


# ------------------------------------------------------------------ reference
def reference_reward(gt_labels, pred_labels, lexicon) -> float:
  """Plain-Python per-sample reward with string lookups (the slow baseline).

  Kept for tests and the benchmark; follows the official mapping functions
  literally (parse, lowercase, map each label per wheel, sets, F per wheel).
  """
  lexicon = load_lexicon(lexicon)
  g = _as_labels(gt_labels)
  p = _as_labels(pred_labels)
  total = 0.0
  for w in range(1, N_WHEELS + 1):
    variant = f'wheel{w}_level1'
    gs = {lexicon.map_label(x, variant) for x in g} - {None}
    ps = {lexicon.map_label(x, variant) for x in p} - {None}
    if not gs or not ps:
      continue
    i = len(gs & ps)
    if i == 0:
      continue
    pr, rc = i / len(ps), i / len(gs)
    total += 2 * pr * rc / (pr + rc)
  return total / N_WHEELS
