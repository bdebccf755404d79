"""`python -m mer_jax.evaluate` (ovmer / unibench)."""

import csv
import json
from pathlib import Path
import random
import subprocess
import sys
import time

import pytest

from mer_jax import evaluate
from mer_jax.metrics import VARIANTS
from mer_jax.metrics import load_lexicon

ROOT = Path(__file__).resolve().parents[1]


def _write(path, rows):
  with open(path, 'w', newline='', encoding='utf-8') as f:
    csv.writer(f).writerows(rows)


@pytest.fixture
def files(tmp_path):
  gt, pred = tmp_path / 'gt.csv', tmp_path / 'pred.csv'
  _write(
      gt,
      [
          ['name', 'openset'],
          ['a', "['happy', 'sad']"],
          ['b', "['angry']"],
          ['c', "['neutral']"],
          ['d', 'furious, annoyed'],
      ],
  )
  _write(
      pred,
      [['name', 'openset'], ['a', "['Joyful']"], ['b', 'angry'], ['c', 'happy'], ['zzz', 'happy']],
  )  # d missing -> empty; zzz not in gt -> ignored
  return gt, pred


def run_main(capsys, *argv):
  rc = evaluate.main(list(argv))
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_ovmer_json_last_line(files, capsys):
  gt, pred = files
  rc, out, _ = run_main(
      capsys,
      'ovmer',
      '--gt',
      str(gt),
      '--pred',
      str(pred),
      '--json',
      '--all-variants',
      '--per-sample',
  )
  assert rc == 0
  rep = json.loads(out.strip().splitlines()[-1])
  for lv in ('level1', 'level2'):
    assert set(rep[lv]) == {'f1', 'precision', 'recall'}
  assert set(rep['wheels']) == {f'wheel{i}' for i in range(1, 6)}
  assert set(rep['variants']) == set(VARIANTS)
  for v in rep['variants'].values():
    assert {'precision', 'recall', 'f1'} <= set(v)
  ps = rep['per_sample']
  assert set(ps) == {'a', 'b', 'c', 'd'}
  assert ps['b'] == 1.0 and ps['c'] == 0.0 and ps['d'] == 0.0  # gold empty / pred missing
  assert rep['n_predictions_missing'] == 1
  assert {k: c['count'] for k, c in rep['checks'].items()} == {
      'duplicate_gt_names': 0,
      'duplicate_pred_names': 0,
      'pred_names_not_in_gt': 1,
      'missing_predictions': 1,
      'empty_gt_labels': 0,
      'empty_predictions': 0,
      'unmapped_gt_labels': 1,  # 'neutral' is on no wheel
      'unmapped_pred_labels': 0,
  }
  # a (1 of 2 gold categories hit, 1 predicted) and b (exact), d (empty prediction)
  assert rep['level1']['recall'] == pytest.approx((0.5 + 1 + 0) / 3)
  assert rep['level1']['precision'] == pytest.approx((1 + 1 + 0) / 3)


def test_ovmer_table_and_out_file(files, capsys, tmp_path):
  gt, pred = files
  out_json = tmp_path / 'r.json'
  rc, out, _ = run_main(
      capsys,
      'ovmer',
      '--gt',
      str(gt),
      '--pred',
      str(pred),
      '--level',
      'level2',
      '--out',
      str(out_json),
  )
  assert rc == 0 and 'level2 *' in out and 'wheel1' in out
  assert json.loads(out_json.read_text())['level'] == 'level2'


@pytest.mark.parametrize(
    'bad, line',
    [
        ('name,openset\na,"[\'x\']"\nb,x,y\n', 3),
        ('nm,openset\na,x\n', 1),
    ],
)
def test_malformed_file_error_names_file_and_line(files, capsys, tmp_path, bad, line):
  gt, _ = files
  p = tmp_path / 'broken.csv'
  p.write_text(bad, encoding='utf-8')
  rc, _, err = run_main(capsys, 'ovmer', '--gt', str(gt), '--pred', str(p), '--json')
  assert rc == 2
  assert f'{p}:{line}' in err


def test_missing_file_and_bad_lexicon(files, capsys, tmp_path):
  gt, pred = files
  rc, _, err = run_main(capsys, 'ovmer', '--gt', str(tmp_path / 'nope.csv'), '--pred', str(pred))
  assert rc == 2 and 'nope.csv' in err
  rc, _, err = run_main(
      capsys, 'ovmer', '--gt', str(gt), '--pred', str(pred), '--lexicon', f'official:{tmp_path}'
  )
  assert rc == 2 and 'format.csv' in err


def test_official_reproduction_via_cli(capsys, reference_dir):
  REF = reference_dir  # pylint: disable=invalid-name
  rc, out, _ = run_main(
      capsys,
      'ovmer',
      '--gt',
      str(REF / 'ovmerd' / 'ovmerd_labels.csv'),
      '--pred',
      str(REF / 'ovmerd' / 'baseline_predictions.csv'),
      '--lexicon',
      f'official:{REF / "emotion_wheel"}',
      '--json',
      '--all-variants',
  )
  assert rc == 0
  rep = json.loads(out.strip().splitlines()[-1])
  assert rep['level1']['f1'] == pytest.approx(0.5537059069585599, abs=1e-12)
  assert rep['level1']['precision'] == pytest.approx(0.559395213821158, abs=1e-12)
  assert rep['level1']['recall'] == pytest.approx(0.5485155879797873, abs=1e-12)
  assert rep['variants']['case1']['f1'] == pytest.approx(0.29120388952538445, abs=1e-12)
  assert rep['variants']['case2']['f1'] == pytest.approx(0.3280487459318136, abs=1e-12)


def test_cli_subprocess_100k_rows(tmp_path):
  rng = random.Random(0)
  vocab = sorted(load_lexicon('builtin').format2roots)[:2000] + ['neutral', 'unknown']
  gt, pred = tmp_path / 'gt.csv', tmp_path / 'pred.csv'
  g_rows, p_rows = [['name', 'openset']], [['name', 'openset']]
  for i in range(100_000):
    g_rows.append([f's{i}', str(rng.sample(vocab, rng.randint(1, 4)))])
    p_rows.append([f's{i}', ', '.join(rng.sample(vocab, rng.randint(1, 4)))])
  _write(gt, g_rows)
  _write(pred, p_rows)
  t0 = time.perf_counter()
  r = subprocess.run(
      [
          sys.executable,
          '-m',
          'mer_jax.evaluate',
          'ovmer',
          '--gt',
          str(gt),
          '--pred',
          str(pred),
          '--json',
          '--all-variants',
          '--per-sample',
      ],
      capture_output=True,
      text=True,
      cwd=ROOT,
      check=False,
  )
  dt = time.perf_counter() - t0
  assert r.returncode == 0, r.stderr
  rep = json.loads(r.stdout.strip().splitlines()[-1])
  assert rep['n_samples'] == 100_000 and len(rep['per_sample']) == 100_000
  print(f'\nCLI, 100k unique rows, all variants + per-sample: {dt:.2f} s')
  assert dt < 30


def test_unibench_cli(tmp_path, capsys):
  g, p = tmp_path / 'g', tmp_path / 'p'
  g.mkdir()
  p.mkdir()
  _write(g / 'IEMOCAP.csv', [['name', 'label'], ['a', 'happy'], ['b', 'neutral']])
  _write(p / 'IEMOCAP.csv', [['name', 'openset'], ['a', 'joyful'], ['b', 'sad']])
  rc, out, _ = run_main(capsys, 'unibench', '--gt-dir', str(g), '--pred-dir', str(p), '--json')
  assert rc == 0
  rep = json.loads(out.strip().splitlines()[-1])
  assert rep['datasets']['IEMOCAP']['primary'] == pytest.approx(1.0)
  assert rep['mean'] == pytest.approx(1.0)
  rc, out, _ = run_main(capsys, 'unibench', '--gt-dir', str(g), '--pred-dir', str(p))
  assert rc == 0 and 'IEMOCAP' in out and 'mean' in out


def test_ovmer_extract_from_descriptions(files, capsys, tmp_path):
  gt, _ = files
  desc = tmp_path / 'desc.csv'
  _write(
      desc,
      [
          ['name', 'reason'],
          ['a', 'He smiles; he is clearly happy, not sad.'],
          ['b', 'She shouts angrily.'],
          ['d', 'He is furious and annoyed.'],
      ],
  )
  rc, out, _ = run_main(
      capsys,
      'ovmer',
      '--gt',
      str(gt),
      '--pred',
      str(desc),
      '--pred-column',
      'reason',
      '--extract',
      '--json',
      '--per-sample',
  )
  assert rc == 0
  rep = json.loads(out.strip().splitlines()[-1])
  assert rep['per_sample']['b'] == 1.0 and rep['per_sample']['d'] == 1.0
  assert rep['level1']['precision'] == pytest.approx(1.0)


def test_ovmer_reports_what_the_score_passes_over(tmp_path, capsys):
  gt, pred = tmp_path / 'gt.csv', tmp_path / 'pred.csv'
  _write(
      gt,
      [
          ['name', 'openset'],
          ['a', "['happy', 'sad']"],
          ['b', "['calm']"],
          ['c', "['开心', 'happy']"],
          ['b', "['angry']"],
          ['d', 'furious'],
      ],
  )
  _write(
      pred,
      [
          ['name', 'openset'],
          ['a', 'joyful'],
          ['b', 'angry'],
          ['zzz', 'happy'],
          ['c', 'x1'],
          ['c', 'happy, blorp'],
      ],
  )
  rc, out, err = run_main(capsys, 'ovmer', '--gt', str(gt), '--pred', str(pred), '--json')
  assert rc == 0
  rep = json.loads(out.strip().splitlines()[-1])
  assert {k: (c['count'], c['examples']) for k, c in rep['checks'].items()} == {
      'duplicate_gt_names': (1, ["'b' (lines 3, 5)"]),
      'duplicate_pred_names': (1, ["'c' (lines 5, 6)"]),
      'pred_names_not_in_gt': (1, ["'zzz'"]),
      'missing_predictions': (1, ["'d'"]),
      'empty_gt_labels': (0, []),
      'empty_predictions': (0, []),
      'unmapped_gt_labels': (1, ["'开心' (c)"]),
      'unmapped_pred_labels': (1, ["'blorp' (c)"]),
  }
  warnings = err.strip().splitlines()
  assert len(warnings) == 6 and all(w.startswith('warning: ') for w in warnings)
  assert (
      f"warning: {gt}: duplicate names (the last row counts): 1, e.g. 'b' (lines 3, 5)" in warnings
  )
  rc, out, _ = run_main(capsys, 'ovmer', '--gt', str(gt), '--pred', str(pred))
  assert 'input checks:' in out and '1  pred  names not in the GT (ignored)' in out

  rc, out, err = run_main(
      capsys, 'ovmer', '--gt', str(gt), '--pred', str(pred), '--strict', '--json'
  )
  assert rc == 2 and out == ''
  assert len(err.strip().splitlines()) == 6 and err.startswith('error: ')
  clean = tmp_path / 'clean.csv'
  _write(
      clean, [['name', 'openset'], ['a', 'happy'], ['b', 'angry'], ['c', 'happy'], ['d', 'angry']]
  )
  rc, out, err = run_main(
      capsys, 'ovmer', '--gt', str(clean), '--pred', str(clean), '--strict', '--json'
  )
  assert rc == 0 and err == '' and json.loads(out)['level1']['f1'] == 1.0


def test_non_utf8_file_is_one_line_naming_the_line(files, capsys, tmp_path):
  gt, _ = files
  p = tmp_path / 'gbk.csv'
  p.write_bytes('name,openset\na,happy\nb,开心\n'.encode('gbk'))
  rc, out, err = run_main(capsys, 'ovmer', '--gt', str(gt), '--pred', str(p))
  assert rc == 2 and out == ''
  assert err.strip().splitlines() == [
      f'error: {p}:3: not UTF-8 text; save the file as UTF-8 (e.g. iconv -f GBK -t UTF-8)'
  ]
