"""Emotion-wheel lexicon: surface form -> roots -> wheel words -> wheel categories.

A :class:`Lexicon` holds the three mappings of the OV-MER metric
(OV-MER paper section 3.1, AffectGPT-R1 appendix D):

* ``format2roots``  (the official ``format.csv``): a surface form (``happier``,
  ``happiness``) -> the root words whose form list contains it; a root maps to
  itself.  Grouping M1 ("case1") maps a label to the first sorted root.
* ``root2words`` (the official ``synonym.xlsx``, 8 runs merged): a root ->
  the wheel words it is a synonym of; a wheel word maps to itself.  Grouping
  M2 ("case2") maps to the first sorted wheel word of the M1 root.
* five wheels with levels 1/2/3 (``wheel1..5.xlsx``).  M3 ("case3") collects
  every wheel word of every root of the label, scans them in sorted order and
  returns the wheel category (level1, or level2) of the first one the wheel
  knows.

Two sources: ``load_lexicon('official:DIR')`` reads the released files from
DIR (never shipped with this project); ``load_lexicon('builtin')`` (default)
reads ``data/builtin_lexicon.json`` authored by ``scripts/build_lexicon.py``.

Every lexicon is compiled once into integer tables: for every known surface
form the 12 variant ids (case1, case2, wheel{1..5}_level{1,2}) and, per
level, a bitmask with one bit per (wheel, category).  Scoring then works on
ints only (see :mod:`mer_jax.metrics.scoring`).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

from mer_jax.metrics import parsing

N_WHEELS = 5
LEVELS = ('level1', 'level2')
WHEEL_VARIANTS = tuple(f'wheel{w}_{lv}' for w in range(1, N_WHEELS + 1) for lv in LEVELS)
VARIANTS = ('case1', 'case2') + WHEEL_VARIANTS
BUILTIN_PATH = Path(__file__).with_name('data') / 'builtin_lexicon.json'

# tree: level1 -> level2 -> [level3, ...], insertion ordered like the
# official ``read_wheel_to_map``.
WheelTree = Mapping[str, Mapping[str, Sequence[str]]]


def wheel_map_from_tree(tree: WheelTree, level: str) -> dict[str, str]:
  """The official ``func_get_wheel_cluster`` for one wheel and level.

  level1: every level-1/2/3 word -> its level-1 word.  level2: a level-1 word
  -> the alphabetically first of its level-2 children; level-2/3 words -> their
  level-2 word.  Later assignments win (same iteration order as official).
  """
  m = {}
  if level == 'level1':
    for l1, sub in tree.items():
      m[l1] = l1
      for l2, l3s in sub.items():
        m[l2] = l1
        for l3 in l3s:
          m[l3] = l1
  elif level == 'level2':
    for l1, sub in tree.items():
      m[l1] = sorted(sub)[0]
      for l2, l3s in sub.items():
        m[l2] = l2
        for l3 in l3s:
          m[l3] = l2
  else:
    raise ValueError(f'unknown level {level!r}; expected level1 or level2')
  return m


class Lexicon:
  """A compiled emotion-wheel lexicon (see module docstring)."""

  def __init__(
      self,
      name: str,
      format2roots: Mapping[str, Sequence[str]],
      root2words: Mapping[str, Sequence[str]],
      wheels: Sequence[tuple[str, WheelTree]],
      valence: Mapping[str, int] | None = None,
      meta: Mapping | None = None,
  ):
    if len(wheels) != N_WHEELS:
      raise ValueError(f'{name}: expected {N_WHEELS} wheels, got {len(wheels)}')
    self.name = name
    self.format2roots = {k: tuple(v) for k, v in format2roots.items()}
    self.root2words = {k: tuple(v) for k, v in root2words.items()}
    self.wheel_names = tuple(n for n, _ in wheels)
    self.wheel_trees = tuple(t for _, t in wheels)
    self.valence = dict(valence or {})
    self.meta = dict(meta or {})
    self.wheel_maps = {}
    for i, tree in enumerate(self.wheel_trees):
      for lv in LEVELS:
        self.wheel_maps[f'wheel{i + 1}_{lv}'] = wheel_map_from_tree(tree, lv)
    self._compile()

  # ---------------------------------------------------------------- mapping
  def candidates(self, label: str) -> list[str]:
    """All wheel words reachable from ``label`` (roots -> synonyms), sorted."""
    roots = self.format2roots.get(label)
    if not roots:
      return []
    words = []
    for root in roots:
      words.extend(self.root2words.get(root, ()))
    return sorted(words)

  def map_label(self, label: str, variant: str) -> str | None:
    """Map one normalized label under ``variant``; None if it is dropped."""
    roots = self.format2roots.get(label)
    if not roots:
      return None
    if variant == 'case1':
      return min(roots)
    if variant == 'case2':
      words = self.root2words.get(min(roots))
      return min(words) if words else None
    wmap = self.wheel_maps.get(variant)
    if wmap is None:
      raise ValueError(f'unknown variant {variant!r}; expected one of {VARIANTS}')
    for word in self.candidates(label):
      if word in wmap:
        return wmap[word]
    return None

  # -------------------------------------------------------------- compiling
  def _compile(self):
    nv = len(VARIANTS)
    self.vocab = [[] for _ in range(nv)]  # variant -> id -> category string
    index = [{} for _ in range(nv)]
    # bit layout per level: each wheel's categories get contiguous bits inside
    # 64-bit words (a wheel never straddles a word unless it has > 64
    # categories, then it owns whole words), so a sample's label set is one
    # Python int that converts to a (K,) uint64 row for numpy popcounts.
    self.level_bits = {}
    for lv in LEVELS:
      bit_of, wheel_words = [], []
      word, pos = 0, 0
      for w in range(N_WHEELS):
        wmap = self.wheel_maps[f'wheel{w + 1}_{lv}']
        cats = sorted(set(wmap.values()))
        n = len(cats)
        if n <= 64:
          if pos + n > 64:
            word, pos = word + 1, 0
          bit_of.append({c: word * 64 + pos + j for j, c in enumerate(cats)})
          wheel_words.append([(word, ((1 << n) - 1) << pos)])
          pos += n
        else:
          if pos:
            word, pos = word + 1, 0
          bit_of.append({c: word * 64 + j for j, c in enumerate(cats)})
          ws = []
          left = n
          while left > 0:
            k = min(64, left)
            ws.append((word, (1 << k) - 1))
            left -= k
            word += 1
          wheel_words.append(ws)
          pos = 0
      n_words = word + (1 if pos else 0)
      self.level_bits[lv] = {
          'bit_of': bit_of,
          'wheel_words': wheel_words,
          'n_words': max(1, n_words),
      }
    self.table = {}  # label -> tuple of nv ids (-1 = dropped)
    self.level_mask = {lv: {} for lv in LEVELS}  # label -> int bitmask
    for label in self.format2roots:
      ids = []
      for v, variant in enumerate(VARIANTS):
        t = self.map_label(label, variant)
        if t is None:
          ids.append(-1)
          continue
        j = index[v].get(t)
        if j is None:
          j = index[v][t] = len(self.vocab[v])
          self.vocab[v].append(t)
        ids.append(j)
      self.table[label] = tuple(ids)
      for lv in LEVELS:
        bits = self.level_bits[lv]
        mask = 0
        for w in range(N_WHEELS):
          t = ids[VARIANTS.index(f'wheel{w + 1}_{lv}')]
          if t >= 0:
            cat = self.vocab[VARIANTS.index(f'wheel{w + 1}_{lv}')][t]
            mask |= 1 << bits['bit_of'][w][cat]
        if mask:
          self.level_mask[lv][label] = mask
    self._unknown = (-1,) * nv
    # label -> (case1 id, case2 id, level1 bits, level2 bits); only labels
    # that map somewhere are stored.
    self.codes = {}
    for label, ids in self.table.items():
      m1 = self.level_mask['level1'].get(label, 0)
      m2 = self.level_mask['level2'].get(label, 0)
      if ids[0] >= 0 or ids[1] >= 0 or m1 or m2:
        self.codes[label] = (ids[0], ids[1], m1, m2)

  def ids(self, label: str) -> tuple[int, ...]:
    """The 12 variant ids of a normalized label (-1 where it is dropped)."""
    return self.table.get(label, self._unknown)

  # ---------------------------------------------------------------- queries
  def is_known(self, label: str) -> bool:
    return label in self.format2roots

  def level1_categories(self, label: str) -> list[str | None]:
    return [self.map_label(label, f'wheel{w}_level1') for w in range(1, N_WHEELS + 1)]

  def all_wheel_words(self) -> set[str]:
    out = set()
    for tree in self.wheel_trees:
      for l1, sub in tree.items():
        out.add(l1)
        for l2, l3s in sub.items():
          out.add(l2)
          out.update(l3s)
    out.discard('')
    return out

  def stats(self) -> dict:
    return {
        'name': self.name,
        'surface_forms': len(self.format2roots),
        'roots': len(self.root2words),
        'wheel_words': len(self.all_wheel_words()),
        'wheels': {
            n: {
                'level1': len(set(self.wheel_maps[f'wheel{i + 1}_level1'].values())),
                'level2': len(set(self.wheel_maps[f'wheel{i + 1}_level2'].values())),
            }
            for i, n in enumerate(self.wheel_names)
        },
    }

  def __repr__(self):
    return (
        f'Lexicon({self.name!r}, forms={len(self.format2roots)}, ' f'roots={len(self.root2words)})'
    )


# ----------------------------------------------------------------- builders
def build_format2roots(root2forms: Mapping[str, Sequence[str]]) -> dict:
  """Official ``read_format2raws``: form -> [roots]; each root -> itself."""
  f2r = {}
  for root, forms in root2forms.items():
    for form in forms:
      f2r.setdefault(form, []).append(root)
    f2r.setdefault(root, []).append(root)
  return f2r


def merge_synonym_runs(runs: Sequence[Sequence[tuple[str, Sequence[str]]]]) -> dict:
  """Official ``read_candidate_synonym_merge``: synonym -> [wheel words].

  Each run is a list of ``(wheel word, [synonyms])`` rows; a wheel word maps to
  itself; runs are merged by set union.
  """
  merged: dict[str, set] = {}
  for rows in runs:
    for raw, synonyms in rows:
      raw = raw.strip().lower()
      merged.setdefault(raw, set()).add(raw)
      for syn in synonyms:
        merged.setdefault(syn.strip().lower(), set()).add(raw)
  return {k: sorted(v) for k, v in merged.items()}


def _xlsx_rows(path: Path) -> tuple[list[str], list[list]]:
  """Header and data rows of the first sheet, pandas-like NA handling."""
  import openpyxl  # pylint: disable=import-outside-toplevel

  wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
  try:
    ws = wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
  finally:
    wb.close()

  def cell(v):
    if isinstance(v, str) and v in parsing.PANDAS_NA_STRINGS:
      return None
    return v

  if not rows:
    raise ValueError(f'{path}: empty workbook')
  header = [str(h).strip() if h is not None else '' for h in rows[0]]
  data = []
  for r in rows[1:]:
    r = [cell(v) for v in r]
    if all(v is None for v in r):
      continue  # pandas skips blank rows (and trims trailing ones)
    data.append(r)
  return header, data


def read_wheel_xlsx(path: Path) -> dict:
  """Official ``read_wheel_to_map``: forward fill, lowercase, strip."""
  header, rows = _xlsx_rows(path)
  try:
    i1, i2, i3 = (header.index(c) for c in ('level1', 'level2', 'level3'))
  except ValueError as e:
    raise ValueError(f'{path}: needs columns level1, level2, level3; got {header}') from e
  tree: dict[str, dict[str, list[str]]] = {}
  l1 = l2 = l3 = ''
  for r in rows:
    cells = [r[i] if i < len(r) else None for i in (i1, i2, i3)]
    l1, l2, l3 = (
        prev if cell is None else str(cell) for prev, cell in zip((l1, l2, l3), cells, strict=True)
    )
    l1, l2, l3 = l1.lower().strip(), l2.lower().strip(), l3.lower().strip()
    tree.setdefault(l1, {}).setdefault(l2, []).append(l3)
  return tree


def load_official(directory) -> Lexicon:
  """Read the released files (format.csv, synonym.xlsx, wheel1..5.xlsx)."""
  d = Path(directory).expanduser()
  for fname in ['format.csv', 'synonym.xlsx'] + [f'wheel{i}.xlsx' for i in range(1, 6)]:
    if not (d / fname).is_file():
      raise FileNotFoundError(f'official lexicon: {d / fname} not found')
  # format.csv: name, format (comma separated forms); pandas-like NA cells.
  root2forms = {}
  for _, row in parsing.read_csv_rows(d / 'format.csv', required=('name', 'format')):
    name = row['name']
    name = '' if name in parsing.PANDAS_NA_STRINGS else name
    fmt = row['format']
    fmt = None if fmt in parsing.PANDAS_NA_STRINGS else fmt
    root2forms.setdefault(name, []).extend(parsing.string_to_list(fmt))
  f2r = build_format2roots(root2forms)
  # synonym.xlsx: 8 runs of (word_runK, synonym_runK)
  header, rows = _xlsx_rows(d / 'synonym.xlsx')
  runs = []
  k = 1
  while f'word_run{k}' in header:
    iw, isyn = header.index(f'word_run{k}'), header.index(f'synonym_run{k}')
    run = []
    for r in rows:
      w = r[iw] if iw < len(r) else None
      if w is None:
        continue
      syn = r[isyn] if isyn < len(r) else None
      run.append((str(w), [str(s) for s in parsing.string_to_list(syn)]))
    runs.append(run)
    k += 1
  if not runs:
    raise ValueError(f'{d / "synonym.xlsx"}: no word_runK/synonym_runK columns')
  r2w = merge_synonym_runs(runs)
  wheels = [(f'wheel{i}', read_wheel_xlsx(d / f'wheel{i}.xlsx')) for i in range(1, 6)]
  return Lexicon(
      f'official:{d}', f2r, r2w, wheels, meta={'source': str(d), 'synonym_runs': len(runs)}
  )


def load_builtin(path=BUILTIN_PATH) -> Lexicon:
  """Read the lexicon authored in this project (scripts/build_lexicon.py)."""
  with open(path, encoding='utf-8') as f:
    data = json.load(f)
  root2forms = data['forms']  # root -> [surface forms]
  f2r = build_format2roots(root2forms)
  r2w = {k: sorted(set(v)) for k, v in data['root2words'].items()}
  wheels = [(w['name'], w['tree']) for w in data['wheels']]
  return Lexicon(
      'builtin',
      f2r,
      r2w,
      wheels,
      valence=data.get('valence'),
      meta={k: data[k] for k in ('version', 'sources') if k in data},
  )


@functools.lru_cache(maxsize=8)
def _load_cached(kind: str, arg: str) -> Lexicon:
  if kind == 'builtin':
    return load_builtin(Path(arg) if arg else BUILTIN_PATH)
  return load_official(arg)


def load_lexicon(spec: str | Lexicon = 'builtin') -> Lexicon:
  """``'builtin'`` (default), ``'official:DIR'`` or a path to a builtin-format json.

  Cached per spec: repeated calls return the same compiled object.
  """
  if isinstance(spec, Lexicon):
    return spec
  spec = (spec or 'builtin').strip()
  if spec == 'builtin':
    return _load_cached('builtin', '')
  if spec.startswith('official:'):
    d = os.path.abspath(os.path.expanduser(spec[len('official:') :]))
    return _load_cached('official', d)
  if spec.endswith('.json'):
    return _load_cached('builtin', os.path.abspath(spec))
  raise ValueError(f'lexicon spec {spec!r}: use builtin, official:DIR or a .json path')
