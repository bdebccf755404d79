"""Command line evaluation: OV-MER (EW metrics) and the whole MER-UniBench.

  python -m mer_jax.evaluate ovmer --gt GT.csv --pred PRED.csv \
      [--lexicon builtin|official:DIR] [--level level1|level2] \
      [--all-variants] [--per-sample] [--json] [--out FILE] [--strict]

  python -m mer_jax.evaluate unibench --gt-dir GOLD_DIR --pred-dir PRED_DIR \
      [--lexicon ...] [--json] [--out FILE]

GT/PRED are CSVs with columns ``name,openset`` (stringified lists, the released
format).  With ``--json`` the last line of stdout is one JSON object; otherwise
a table is printed.  A malformed file exits with status 2 and a message naming
the file and line.  What the score passes over (duplicate names, predictions not
in the GT, missing predictions, labels no wheel maps) is counted under
``checks`` and warned about on stderr; ``--strict`` makes it an error (status 2).
See docs/metrics.md for the exact semantics.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mer_jax.metrics import checks
from mer_jax.metrics import parsing


def _fmt(x):
  return f'{100 * x:6.2f}'


def _print_ovmer_table(rep: dict, level: str, out=None):
  out = out or sys.stdout
  print(f'OV-MER EW metrics  lexicon={rep["lexicon"]}  samples={rep["n_samples"]}', file=out)
  print(f'{"":14s} {"F":>6s} {"P":>6s} {"R":>6s}   (x100)', file=out)
  for lv in ('level1', 'level2'):
    r = rep[lv]
    mark = ' *' if lv == level else ''
    print(f'{lv + mark:14s} {_fmt(r["f1"])} {_fmt(r["precision"])} {_fmt(r["recall"])}', file=out)
  for wname, d in rep['wheels'].items():
    r = d[level]
    print(
        f'  {wname}/{level[-1]:<6s} {_fmt(r["f1"])} {_fmt(r["precision"])} '
        f'{_fmt(r["recall"])}  n={r["n_samples"]}',
        file=out,
    )
  if 'variants' in rep:
    for v in ('case1', 'case2'):
      r = rep['variants'][v]
      print(f'  {v:12s} {_fmt(r["f1"])} {_fmt(r["precision"])} {_fmt(r["recall"])}', file=out)
  print('input checks:', file=out)
  for name, c in rep['checks'].items():
    side, meaning = checks.CHECKS[name]
    print(f'  {c["count"]:6d}  {side:4s}  {meaning}', file=out)


def cmd_ovmer(args) -> int:
  from mer_jax.metrics import load_lexicon  # pylint: disable=import-outside-toplevel
  from mer_jax.metrics import ovmer_report  # pylint: disable=import-outside-toplevel

  t0 = time.perf_counter()
  gt_rows = parsing.read_label_rows(args.gt, column=args.column)
  pred_rows = parsing.read_label_rows(args.pred, column=args.pred_column or args.column)
  gt = {name: cell for _, name, cell in gt_rows}
  pred = {name: cell for _, name, cell in pred_rows}
  lex = load_lexicon(args.lexicon)
  if args.extract:
    from mer_jax.metrics import extract_emotion_words  # pylint: disable=import-outside-toplevel

    pred = {n: extract_emotion_words(t or '', lex) for n, t in pred.items()}
  found = checks.label_checks(gt, pred, lex, gt_rows, pred_rows)
  problems = checks.describe(found, {'gt': args.gt, 'pred': args.pred})
  for line in problems:
    print(f'{"error" if args.strict else "warning"}: {line}', file=sys.stderr)
  if args.strict and problems:
    return 2
  rep = ovmer_report(gt, pred, lex, all_variants=args.all_variants, per_sample=args.per_sample)
  rep['level'] = args.level
  rep['checks'] = found
  rep['n_predictions_missing'] = found['missing_predictions']['count']
  rep['seconds'] = round(time.perf_counter() - t0, 4)
  return _emit(rep, args, lambda r: _print_ovmer_table(r, args.level))


def cmd_unibench(args) -> int:
  from mer_jax.metrics import unibench  # pylint: disable=import-outside-toplevel

  rep = unibench.unibench_from_dirs(
      args.gt_dir, args.pred_dir, lexicon=args.lexicon, datasets=args.datasets
  )
  return _emit(rep, args, unibench.print_table)


def _emit(rep: dict, args, print_table) -> int:
  """Table (unless --json), optional --out file, JSON as the last stdout line."""
  if not args.json:
    print_table(rep)
  if args.out:
    with open(args.out, 'w', encoding='utf-8') as f:
      json.dump(rep, f, indent=1)
  if args.json:
    sys.stdout.write(json.dumps(rep) + '\n')
  return 0


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(
      prog='python -m mer_jax.evaluate', description=__doc__.split('\n\n')[0]
  )
  sub = ap.add_subparsers(dest='command', required=True)

  o = sub.add_parser('ovmer', help='EW metrics of one prediction file')
  o.add_argument('--gt', required=True, help='CSV with name,openset')
  o.add_argument('--pred', required=True, help='CSV with name,openset')
  o.add_argument('--lexicon', default='builtin', help='builtin (default) or official:DIR')
  o.add_argument(
      '--level',
      default='level1',
      choices=('level1', 'level2'),
      help='level shown in the table (JSON always has both)',
  )
  o.add_argument('--column', default='openset', help='label column name')
  o.add_argument('--pred-column', default=None, help='column of PRED to read (default: --column)')
  o.add_argument(
      '--extract',
      action='store_true',
      help='PRED cells are free text (descriptions): score the emotion '
      'words found by the deterministic extractor',
  )
  o.add_argument(
      '--all-variants', action='store_true', help='add case1, case2 and every wheel/level variant'
  )
  o.add_argument(
      '--per-sample',
      action='store_true',
      help='add per-sample rewards (level1 EW F averaged over wheels)',
  )
  o.add_argument(
      '--json', action='store_true', help='print one JSON object as the last stdout line'
  )
  o.add_argument('--out', default=None, help='also write the JSON report here')
  o.add_argument(
      '--strict',
      action='store_true',
      help='exit 2 instead of warning when the inputs have duplicate names, predictions '
      'not in the GT, missing predictions or labels no emotion wheel maps',
  )
  o.set_defaults(func=cmd_ovmer)

  u = sub.add_parser('unibench', help='the whole MER-UniBench from a directory')
  u.add_argument('--gt-dir', required=True, help='gold CSVs: <DATASET>.csv (see docs/metrics.md)')
  u.add_argument(
      '--pred-dir', required=True, help='prediction CSVs: <DATASET>.csv with name,openset'
  )
  u.add_argument('--lexicon', default='builtin')
  u.add_argument(
      '--datasets', default=None, help='comma-separated subset (default: every known dataset found)'
  )
  u.add_argument('--json', action='store_true')
  u.add_argument('--out', default=None)
  u.set_defaults(func=cmd_unibench)
  return ap


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args.func(args)
  except parsing.LabelFileError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
