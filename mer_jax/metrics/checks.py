"""What an EW score silently passes over in its inputs, counted with examples.

The official scoring reads GT and predictions into dicts (a later duplicate name wins),
scores the GT names only (a missing prediction is an empty answer, a prediction of
another name is ignored) and drops labels that no emotion wheel maps. Each of these
changes a score without an error, so `python -m mer_jax.evaluate` reports them
(`checks` in its JSON and table, warnings with examples, errors with `--strict`) and
the training-time evaluation logs them.
"""

from __future__ import annotations

import collections
from typing import Mapping, Sequence

from mer_jax.metrics import parsing

MAX_EXAMPLES = 5

# check name -> (the file it is about: 'gt' | 'pred', what it means for the score).
CHECKS = {
    'duplicate_gt_names': ('gt', 'duplicate names (the last row counts)'),
    'duplicate_pred_names': ('pred', 'duplicate names (the last row counts)'),
    'pred_names_not_in_gt': ('pred', 'names not in the GT (ignored)'),
    'missing_predictions': ('pred', 'GT names without a prediction (scored as empty answers)'),
    'empty_gt_labels': ('gt', 'names with no label (empty or NA cells)'),
    'empty_predictions': ('pred', 'names with no label (empty or NA cells; empty answers)'),
    'unmapped_gt_labels': ('gt', 'labels that map to no emotion-wheel word (dropped)'),
    'unmapped_pred_labels': ('pred', 'labels that map to no emotion-wheel word (dropped)'),
}


def _duplicates(rows: Sequence[tuple[int, str, object]]) -> tuple[int, list[str]]:
  lines = collections.defaultdict(list)
  for line, name, _ in rows:
    lines[name].append(line)
  dups = {n: ls for n, ls in lines.items() if len(ls) > 1}
  examples = [f'{n!r} (lines {", ".join(map(str, ls))})' for n, ls in dups.items()]
  return sum(len(ls) - 1 for ls in dups.values()), examples[:MAX_EXAMPLES]


def _unmapped(table: Mapping[str, object], lexicon) -> tuple[int, list[str]]:
  count, seen = 0, {}
  for name, cell in table.items():
    for label in parsing.parse_labels(cell):
      if label not in lexicon.codes:
        count += 1
        seen.setdefault(label, name)
  examples = [f'{label!r} ({name})' for label, name in list(seen.items())[:MAX_EXAMPLES]]
  return count, examples


def label_checks(
    gt: Mapping[str, object],
    pred: Mapping[str, object],
    lexicon,
    gt_rows: Sequence[tuple[int, str, object]] = (),
    pred_rows: Sequence[tuple[int, str, object]] = (),
) -> dict:
  """`{check: {'count': n, 'examples': [...]}}` for every name in `CHECKS`.

  gt, pred: the dicts that are scored (`{name: labels}`); gt_rows, pred_rows: the file
  rows they were read from, `(line, name, cell)` (`parsing.read_label_rows`), for the
  duplicate counts.
  """
  results = {
      'duplicate_gt_names': _duplicates(gt_rows),
      'duplicate_pred_names': _duplicates(pred_rows),
      'pred_names_not_in_gt': _names([n for n in pred if n not in gt]),
      'missing_predictions': _names([n for n in gt if n not in pred]),
      'empty_gt_labels': _names([n for n, cell in gt.items() if not parsing.parse_labels(cell)]),
      'empty_predictions': _names(
          [n for n in gt if n in pred and not parsing.parse_labels(pred[n])]
      ),
      'unmapped_gt_labels': _unmapped(gt, lexicon),
      'unmapped_pred_labels': _unmapped({n: pred[n] for n in gt if n in pred}, lexicon),
  }
  return {k: {'count': c, 'examples': e} for k, (c, e) in results.items()}


def _names(names: list[str]) -> tuple[int, list[str]]:
  return len(names), [repr(n) for n in names[:MAX_EXAMPLES]]


def describe(checks: Mapping[str, Mapping], files: Mapping[str, str]) -> list[str]:
  """One line per check that found something: '<file>: <meaning>: N, e.g. <examples>'.

  files: {'gt': path, 'pred': path}, the files the checks are about.
  """
  lines = []
  for k, c in checks.items():
    if c['count']:
      side, meaning = CHECKS[k]
      lines.append(f'{files[side]}: {meaning}: {c["count"]}, e.g. {", ".join(c["examples"])}')
  return lines
