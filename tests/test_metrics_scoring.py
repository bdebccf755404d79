"""EW scoring on a hand-built toy lexicon: every variant hand-computed."""

import numpy as np
import pytest

from mer_jax.metrics import VARIANTS
from mer_jax.metrics import EWRewardScorer
from mer_jax.metrics import Lexicon
from mer_jax.metrics import ew_all_variants
from mer_jax.metrics import ew_scores
from mer_jax.metrics import hit_rate
from mer_jax.metrics import ovmer_report
from mer_jax.metrics import reference_reward
from mer_jax.metrics.lexicon import build_format2roots
from mer_jax.metrics.lexicon import wheel_map_from_tree

WHEEL_A = {
    'joy': {'happy': ['glad_x'], 'content': []},
    'sadness': {'sad': [], 'grief': []},
    'anger': {'rage': ['fury_x'], 'annoyance': []},
}
WHEEL_B = {'positive': {'joy': [], 'happy': []}, 'negative': {'sad': [], 'anger': ['rage']}}


def toy_lexicon():
  f2r = build_format2roots(
      {
          'happy': ['happier', 'happiness'],
          'glad': ['gladness'],
          'sad': ['sadness', 'sadder'],
          'angry': ['anger', 'angrier'],
          'furious': ['fury'],
      }
  )
  r2w = {
      'happy': ['happy'],
      'glad': ['happy', 'joy'],
      'sad': ['sad'],
      'angry': ['anger'],
      'furious': ['anger', 'rage'],
  }
  wheels = [('A1', WHEEL_A), ('B2', WHEEL_B), ('A3', WHEEL_A), ('B4', WHEEL_B), ('A5', WHEEL_A)]
  return Lexicon('toy', f2r, r2w, wheels)


@pytest.fixture(scope='module')
def lex():
  return toy_lexicon()


GT = {
    's1': "['happy', 'sadness']",
    's2': 'anger',
    's3': 'neutral',
    's4': 'fury, gladness',
    's5': 'sadder',
}
PRED = {'s1': "['gladness']", 's2': 'fury', 's3': 'happy', 's5': 'anger'}  # s4 missing


def test_wheel_maps_level1_and_level2():
  m1 = wheel_map_from_tree(WHEEL_A, 'level1')
  assert m1 == {
      'joy': 'joy',
      'happy': 'joy',
      'glad_x': 'joy',
      'content': 'joy',
      'sadness': 'sadness',
      'sad': 'sadness',
      'grief': 'sadness',
      'anger': 'anger',
      'rage': 'anger',
      'fury_x': 'anger',
      'annoyance': 'anger',
  }
  m2 = wheel_map_from_tree(WHEEL_A, 'level2')
  # a level-1 word goes to the alphabetically first of its level-2 children
  assert m2['joy'] == 'content' and m2['sadness'] == 'grief' and m2['anger'] == 'annoyance'
  assert m2['glad_x'] == 'happy' and m2['fury_x'] == 'rage' and m2['sad'] == 'sad'
  with pytest.raises(ValueError):
    wheel_map_from_tree(WHEEL_A, 'level3')


def test_label_mapping_all_variants(lex):
  assert lex.map_label('gladness', 'case1') == 'glad'
  assert lex.map_label('gladness', 'case2') == 'happy'
  assert lex.map_label('fury', 'case2') == 'anger'
  assert lex.map_label('fury', 'wheel1_level1') == 'anger'
  assert lex.map_label('fury', 'wheel1_level2') == 'annoyance'  # 'anger' sorts before 'rage'
  assert lex.map_label('fury', 'wheel2_level1') == 'negative'
  assert lex.map_label('fury', 'wheel2_level2') == 'anger'
  assert lex.map_label('anger', 'wheel1_level2') == 'annoyance'
  for v in VARIANTS:
    assert lex.map_label('neutral', v) is None  # unknown words are dropped
    assert lex.map_label('joy', v) is None  # a wheel word that is not a form
  with pytest.raises(ValueError):
    lex.map_label('happy', 'wheel9_level1')


def test_dataset_scores_every_variant(lex):
  v = ew_all_variants(GT, PRED, lex)
  assert set(v) == set(VARIANTS)
  # case1: no sample intersects -> 0; s3 skipped (gold maps empty)
  assert v['case1'] == {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'n_samples': 4}
  # case2 / wheel A (both levels) / wheel B level2: P = 2/4, R = 1.5/4, F = 3/7
  for name in [
      'case2',
      'wheel1_level1',
      'wheel3_level1',
      'wheel5_level1',
      'wheel1_level2',
      'wheel2_level2',
      'wheel4_level2',
  ]:
    assert v[name]['precision'] == pytest.approx(0.5, abs=1e-12), name
    assert v[name]['recall'] == pytest.approx(0.375, abs=1e-12), name
    assert v[name]['f1'] == pytest.approx(3 / 7, abs=1e-12), name
  # wheel B level1: s5 sad/anger are both 'negative': P = 3/4, R = 2.5/4
  for name in ['wheel2_level1', 'wheel4_level1']:
    assert v[name]['precision'] == pytest.approx(0.75, abs=1e-12)
    assert v[name]['recall'] == pytest.approx(0.625, abs=1e-12)
    assert v[name]['f1'] == pytest.approx(15 / 22, abs=1e-12)
  lv1 = ew_scores(GT, PRED, lex, 'level1')
  # reported score = mean over the 5 wheels of per-wheel F, P, R
  assert lv1['f1'] == pytest.approx((3 * 3 / 7 + 2 * 15 / 22) / 5, abs=1e-12)
  assert lv1['precision'] == pytest.approx(0.6, abs=1e-12)
  assert lv1['recall'] == pytest.approx(0.475, abs=1e-12)
  assert lv1['wheels']['wheel2']['n_samples'] == 4
  lv2 = ew_scores(GT, PRED, lex, 'level2')
  assert lv2['f1'] == pytest.approx(3 / 7, abs=1e-12)


def test_per_sample_reward_jaccard_hit(lex):
  names = list(GT)
  g = [GT[n] for n in names]
  p = [PRED.get(n) for n in names]
  sc = EWRewardScorer(lex)
  r = sc.reward(g, p, dtype=np.float64)
  np.testing.assert_allclose(r, [2 / 3, 1.0, 0.0, 0.0, 0.4], atol=1e-12)
  ref = [reference_reward(a, b, lex) for a, b in zip(g, p, strict=True)]
  np.testing.assert_allclose(r, ref, atol=1e-12)
  assert sc.reward(g, p).dtype == np.float32
  np.testing.assert_allclose(
      sc.jaccard(g, p, dtype=np.float64), [0.5, 1.0, 0.0, 0.0, 0.4], atol=1e-12
  )
  np.testing.assert_allclose(sc.hit(g, p, dtype=np.float64), [1.0, 1.0, 0.0, 0.0, 0.4], atol=1e-12)
  rep = ovmer_report(GT, PRED, lex, per_sample=True)
  assert rep['per_sample'] == pytest.approx(dict(zip(names, r.tolist(), strict=True)), abs=1e-12)


def test_reward_empty_and_unknown(lex):
  sc = EWRewardScorer(lex)
  r = sc.reward(
      ['', 'happy', None, 'xyz, qqq', 'happy'],
      ['happy', '', 'happy', 'happy', []],
      dtype=np.float64,
  )
  np.testing.assert_array_equal(r, [0, 0, 0, 0, 0])
  # lists and strings are equivalent; case, whitespace, duplicates do not matter
  a = sc.reward([['Happy ', 'happy', 'SADDER']], [['gladness']], dtype=np.float64)
  b = sc.reward(["['happy', 'sadder']"], ['gladness'], dtype=np.float64)
  np.testing.assert_array_equal(a, b)
  # jaccard of two empty sets is 0, of identical sets 1
  np.testing.assert_array_equal(
      sc.jaccard(['', 'happy'], ['', 'happiness'], dtype=np.float64), [0.0, 1.0]
  )
  with pytest.raises(ValueError):
    sc.reward(['a'], ['a', 'b'])
  assert sc.n_labels(['happy, Happy, sad', [], ['a', 'a', 'b']]).tolist() == [2, 0, 2]


def test_dataset_hit_rate(lex):
  gold = {'h1': 'happy', 'h2': 'sadder', 'h3': 'neutral', 'h4': 'anger', 'h5': 'sadder'}
  pred = {'h1': 'gladness, anger', 'h2': 'happy', 'h3': 'happy', 'h4': 'fury', 'h5': 'anger'}
  r = hit_rate(gold, pred, lex)
  assert r['wheels']['wheel1']['hit_rate'] == pytest.approx(0.5)
  assert r['wheels']['wheel2']['hit_rate'] == pytest.approx(0.75)
  assert r['wheels']['wheel1']['n_samples'] == 4  # neutral skipped
  assert r['hit_rate'] == pytest.approx(0.6)


def test_all_gold_empty_gives_zero(lex):
  r = ew_scores({'a': 'neutral', 'b': ''}, {'a': 'happy'}, lex)
  assert r['f1'] == 0.0 and r['precision'] == 0.0 and r['recall'] == 0.0


def test_fast_reward_matches_reference_on_random_labels(lex):
  rng = np.random.default_rng(0)
  vocab = sorted(lex.format2roots) + ['neutral', 'joy', 'x']
  g, p = [], []
  for _ in range(300):
    g.append(', '.join(rng.choice(vocab, rng.integers(0, 4))))
    p.append(list(rng.choice(vocab, rng.integers(0, 5))))
  sc = EWRewardScorer(lex)
  np.testing.assert_allclose(
      sc.reward(g, p, dtype=np.float64),
      [reference_reward(a, b, lex) for a, b in zip(g, p, strict=True)],
      atol=1e-12,
  )


def test_level2_reward(lex):
  sc = EWRewardScorer(lex, level='level2')
  r = sc.reward(["['happy', 'sadness']", 'sadder'], ["['gladness']", 'anger'], dtype=np.float64)
  np.testing.assert_allclose(r, [2 / 3, 0.0], atol=1e-12)


def test_wide_wheels_span_several_words():
  # 70 level-1 categories (> 64 bits) and wheels that do not fit one uint64 word
  big = {f'cat{i:02d}': {f'sub{i:02d}': [f'leaf{i:02d}']} for i in range(70)}
  small = {f'k{i}': {f'ks{i}': []} for i in range(40)}
  forms = {f'leaf{i:02d}': [f'leafy{i:02d}'] for i in range(70)}
  forms.update({f'k{i}': [] for i in range(40)})
  r2w = {w: [w] for w in forms}
  lex = Lexicon(
      'wide',
      build_format2roots(forms),
      r2w,
      [('w1', small), ('w2', big), ('w3', small), ('w4', big), ('w5', small)],
  )
  assert lex.level_bits['level1']['n_words'] >= 4
  rng = np.random.default_rng(0)
  vocab = sorted(lex.format2roots)
  g = [list(rng.choice(vocab, rng.integers(0, 5))) for _ in range(200)]
  p = [list(rng.choice(vocab, rng.integers(0, 5))) for _ in range(200)]
  sc = EWRewardScorer(lex)
  np.testing.assert_allclose(
      sc.reward(g, p, dtype=np.float64),
      [reference_reward(a, b, lex) for a, b in zip(g, p, strict=True)],
      atol=1e-12,
  )
  # leafy05 -> cat05 in the wide wheels, k3 -> k3 in the small ones: a perfect match
  assert sc.reward([['leafy05', 'k3']], [['leaf05', 'k3']], dtype=np.float64)[0] == 1.0
