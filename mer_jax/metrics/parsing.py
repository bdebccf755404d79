"""Label parsing and label-CSV reading with the official OV-MER semantics.

The official evaluation code turns a stored label cell into a list with its
``string_to_list`` helper and then lowercases and strips each item.  We follow
those semantics exactly (see docs/metrics.md) because every score has to agree
with the released implementation to 1e-9, messy strings included:

* ``None`` / NaN / ``''`` -> ``[]``; a list (or numpy array) is used as is.
* one leading ``[`` and one trailing ``]`` are removed (only when they are the
  very first / last character: ``" ['a']"`` keeps its bracket tokens, which then
  never map to a lexicon entry and are dropped at scoring time),
* the rest is split on every ``'``, ``"`` and ``,`` character, pieces are
  stripped and empty pieces dropped,
* each label is lowercased and stripped.

``parse_labels`` additionally removes duplicates (first occurrence kept); all
metrics are set based, so this never changes a score, and the length penalties
of AffectGPT-R1 count deduplicated labels.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
import re
from typing import Iterable

_SPLIT_RE = re.compile('[\'",]')

# pandas.read_csv / read_excel default NA strings (matched on the whole cell).
PANDAS_NA_STRINGS = frozenset(
    {
        '',
        '#N/A',
        '#N/A N/A',
        '#NA',
        '-1.#IND',
        '-1.#QNAN',
        '-NaN',
        '-nan',
        '1.#IND',
        '1.#QNAN',
        '<NA>',
        'N/A',
        'NA',
        'NULL',
        'NaN',
        'None',
        'n/a',
        'nan',
        'null',
    }
)


def is_missing(value) -> bool:
  """True for None / float NaN (what ``pd.isna`` says for a scalar)."""
  if value is None:
    return True
  if isinstance(value, float) and math.isnan(value):
    return True
  return False


def string_to_list(value) -> list:
  """The official ``string_to_list``: raw items, not lowercased."""
  if type(value) is str:  # pylint: disable=unidiomatic-typecheck
    if not value:
      return []
    return _split_str(value)
  if hasattr(value, 'tolist') and not isinstance(value, str):
    value = value.tolist()
  if isinstance(value, (list, tuple)):
    return list(value)
  if is_missing(value):
    return []
  if not isinstance(value, str):
    value = str(value)
  if value == '':
    return []
  return _split_str(value)


def _split_str(value: str) -> list:
  if value[0] == '[':
    value = value[1:]
  if value and value[-1] == ']':
    value = value[:-1]
  out = []
  for item in _SPLIT_RE.split(value):
    item = item.strip()
    if item not in ('', ','):
      out.append(item)
  return out


def parse_labels(value, unique: bool = True) -> list[str]:
  """Parse a label cell / model answer into lowercased, stripped labels.

  Accepts stringified lists (``"['happy', 'sad']"``), comma lists
  (``"happy, sad"``), lists/tuples of strings, None/NaN.
  """
  items = string_to_list(value)
  out = []
  seen = set()
  for item in items:
    if is_missing(item):
      continue
    label = str(item).lower().strip()
    if not label:
      continue
    if unique:
      if label in seen:
        continue
      seen.add(label)
    out.append(label)
  return out


class LabelFileError(ValueError):
  """A label or data file is malformed; the message names the file and the line or entry."""


def read_csv_rows(path, required: Iterable[str] = ('name',)):
  """Yield ``(line_number, row_dict)`` (raw string cells) from a CSV file.

  Blank lines are skipped like pandas does.  Rows with more or fewer fields than the
  header, unterminated quotes or a missing required column raise
  :class:`LabelFileError` naming the file and the line.
  """
  path = Path(path)
  try:
    f = open(path, newline='', encoding='utf-8-sig')
  except OSError as e:
    raise LabelFileError(f'{path}: cannot open ({e})') from e
  with f:
    reader = csv.reader(f, strict=True)
    header = None
    try:
      for fields in reader:
        line = reader.line_num
        if not fields or all(x.strip() == '' for x in fields) and len(fields) <= 1:
          continue
        if header is None:
          header = [h.strip() for h in fields]
          missing = [c for c in required if c not in header]
          if missing:
            raise LabelFileError(f'{path}:{line}: header {header!r} lacks column(s) {missing!r}')
          twice = sorted({h for h in header if header.count(h) > 1})
          if twice:
            raise LabelFileError(f'{path}:{line}: header {header!r} repeats column(s) {twice!r}')
          continue
        if len(fields) != len(header):
          raise LabelFileError(
              f'{path}:{line}: expected {len(header)} fields '
              f'({",".join(header)}), found {len(fields)}'
          )
        if any('\x00' in x for x in fields):
          raise LabelFileError(f'{path}:{line}: NUL byte in a field (a damaged text file)')
        yield line, dict(zip(header, fields, strict=True))
    except csv.Error as e:
      raise LabelFileError(f'{path}:{reader.line_num}: malformed CSV ({e})') from e
    except UnicodeDecodeError:
      raise LabelFileError(f'{path}:{_first_non_utf8_line(path)}: {NOT_UTF8}') from None
    if header is None:
      raise LabelFileError(f'{path}:1: empty file (no header row)')


NOT_UTF8 = 'not UTF-8 text; save the file as UTF-8 (e.g. iconv -f GBK -t UTF-8)'


def _first_non_utf8_line(path) -> int:
  with open(path, 'rb') as f:
    for number, raw in enumerate(f, 1):
      try:
        raw.decode('utf-8')
      except UnicodeDecodeError:
        return number
  return 1


def read_label_rows(path, column: str = 'openset') -> list[tuple[int, str, str | None]]:
  """``(line, name, raw cell)`` of every row of a ``name,<column>`` CSV, in file order.

  Label cells equal to one of pandas' default NA strings (``''``, ``'nan'``,
  ``'None'``, ...) become ``None``: the official code reads the CSV with
  pandas, gets NaN there and treats it as an empty list.  A row with an empty
  name is an error.
  """
  out = []
  for line, row in read_csv_rows(path, required=('name', column)):
    name = row['name']
    if not name.strip():
      raise LabelFileError(f'{path}:{line}: empty sample name')
    cell = row[column]
    out.append((line, name, None if cell in PANDAS_NA_STRINGS else cell))
  return out


def read_label_csv(path, column: str = 'openset') -> dict:
  """Read ``name,<column>`` into ``{name: raw cell (str or None)}`` (see ``read_label_rows``).

  Later rows with the same name override earlier ones (a dict, as in the
  official code); ``mer_jax.metrics.checks`` counts such duplicates.
  """
  return {name: cell for _, name, cell in read_label_rows(path, column)}
