"""Against the released files in ../shared/reference (skipped when absent).

Pinned numbers were produced by the released algorithm (official lexicon,
official scoring) on the released OV-MERD labels and baseline predictions;
the README quotes F ~ 0.554, P ~ 0.559, R ~ 0.549 at level1.
"""

import csv

import numpy as np
import pytest

from mer_jax.metrics import EWRewardScorer
from mer_jax.metrics import extract_emotion_words
from mer_jax.metrics import load_lexicon
from mer_jax.metrics import ovmer_report
from mer_jax.metrics import parse_labels
from mer_jax.metrics import read_label_csv

# ``reference_dir`` (tests/conftest.py): ../shared/reference or $MER_JAX_REFERENCE,
# skipping with a reason when absent.


@pytest.fixture(scope='module')
def official(reference_dir):
  return load_lexicon(f'official:{reference_dir / "emotion_wheel"}')


@pytest.fixture(scope='module')
def pair(reference_dir):
  gt = read_label_csv(reference_dir / 'ovmerd' / 'ovmerd_labels.csv')
  pred = read_label_csv(reference_dir / 'ovmerd' / 'baseline_predictions.csv')
  return gt, pred


# (precision, recall) of every variant from the released implementation
OFFICIAL_PR = {
    'case1': (0.333887210473313, 0.258196662350741),
    'case2': (0.356596173212487, 0.303733275787656),
    'wheel1_level1': (0.575433231396534, 0.553007135575943),
    'wheel2_level1': (0.59375, 0.557621951219512),
    'wheel3_level1': (0.541409465020576, 0.56712962962963),
    'wheel4_level1': (0.556320081549439, 0.537920489296636),
    'wheel5_level1': (0.530063291139241, 0.526898734177215),
    'wheel1_level2': (0.465443425076453, 0.38236493374108),
    'wheel2_level2': (0.464939024390244, 0.385111788617886),
    'wheel3_level2': (0.442489711934156, 0.447920340975897),
    'wheel4_level2': (0.433588175331295, 0.405584680355323),
    'wheel5_level2': (0.430643459915612, 0.4042194092827),
}


def test_official_lexicon_size(official):
  st = official.stats()
  assert (st['surface_forms'], st['roots'], st['wheel_words']) == (7386, 1255, 253)


def test_baseline_reproduces_official_numbers(official, pair):
  rep = ovmer_report(*pair, official, all_variants=True, per_sample=True)
  assert rep['level1']['f1'] == pytest.approx(0.554, abs=5e-4)
  assert rep['level1']['precision'] == pytest.approx(0.559, abs=5e-4)
  assert rep['level1']['recall'] == pytest.approx(0.549, abs=5e-4)
  assert rep['level1']['f1'] == pytest.approx(0.5537059069585599, abs=1e-12)
  assert rep['level2']['f1'] == pytest.approx(0.4244863488795757, abs=1e-12)
  for name, (p, r) in OFFICIAL_PR.items():
    v = rep['variants'][name]
    assert v['precision'] == pytest.approx(p, abs=1e-12), name
    assert v['recall'] == pytest.approx(r, abs=1e-12), name
    assert v['f1'] == pytest.approx(2 * p * r / (p + r), abs=1e-12), name
  ps = rep['per_sample']
  assert len(ps) == 332
  assert sum(ps.values()) == pytest.approx(170.66190476190476, abs=1e-9)
  assert ps['sample_00000007'] == pytest.approx(0.7666666666666666, abs=1e-12)
  assert ps['sample_00000055'] == pytest.approx(0.9333333333333332, abs=1e-12)


def test_builtin_within_003_of_official(official, pair):
  b = ovmer_report(*pair, 'builtin')
  o = ovmer_report(*pair, official)
  gap = abs(b['level1']['f1'] - o['level1']['f1'])
  print(
      f'\nbuiltin level1 F={b["level1"]["f1"]:.4f} official={o["level1"]["f1"]:.4f} '
      f'gap={gap:.4f}'
  )
  assert gap < 0.03
  # per-sample rewards of the two lexicons agree in the large
  names = list(pair[0])
  g = [pair[0][n] for n in names]
  p = [pair[1].get(n) for n in names]
  rb = EWRewardScorer('builtin').reward(g, p)
  ro = EWRewardScorer(official).reward(g, p)
  assert np.corrcoef(rb, ro)[0, 1] > 0.75


def test_extractor_on_clue_multi(reference_dir, official):
  rows = list(
      csv.DictReader(
          open(reference_dir / 'ovmerd' / 'clue_multi_descriptions.csv', encoding='utf-8')
      )
  )
  gt = read_label_csv(reference_dir / 'ovmerd' / 'ovmerd_labels.csv')
  pred = {r['name']: extract_emotion_words(r['english']) for r in rows}
  assert len(pred) == len(gt) == 332
  # exact-string micro precision/recall vs the gold labels
  tp = fp = fn = 0
  for n, g in gt.items():
    G, P = set(parse_labels(g)), set(pred[n])
    tp, fp, fn = tp + len(G & P), fp + len(P - G), fn + len(G - P)
  exact_p, exact_r = tp / (tp + fp), tp / (tp + fn)
  rb = ovmer_report(gt, pred, 'builtin', all_variants=True)
  ro = ovmer_report(gt, pred, official, all_variants=True)
  print(
      f'\nextractor exact P={exact_p:.3f} R={exact_r:.3f}; EW level1 (builtin) '
      f'F={rb["level1"]["f1"]:.3f} P={rb["level1"]["precision"]:.3f} '
      f'R={rb["level1"]["recall"]:.3f}; (official) F={ro["level1"]["f1"]:.3f}; '
      f'M1 root P={ro["variants"]["case1"]["precision"]:.3f} '
      f'R={ro["variants"]["case1"]["recall"]:.3f}'
  )
  assert exact_r > 0.25 and exact_p > 0.12
  assert rb['level1']['recall'] > 0.8 and rb['level1']['f1'] > 0.65
  assert ro['level1']['f1'] > 0.65  # scored with the official lexicon too
