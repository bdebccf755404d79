"""MER-UniBench pieces: WAF/ACC against sklearn, sentiment protocol, report."""

import csv

import numpy as np
import pytest

from mer_jax.metrics import evaluate_dataset
from mer_jax.metrics import sentiment_scores
from mer_jax.metrics import text_to_sentiment
from mer_jax.metrics import unibench_from_dirs
from mer_jax.metrics import weighted_f1
from mer_jax.metrics import word_valence

sklearn_metrics = pytest.importorskip('sklearn.metrics')


def test_weighted_f1_matches_sklearn():
  rng = np.random.default_rng(0)
  for _ in range(50):
    n = int(rng.integers(1, 40))
    classes = ['positive', 'negative', 'neutral'][: int(rng.integers(1, 4))]
    t = list(rng.choice(classes, n))
    p = list(rng.choice(['positive', 'negative', 'neutral'], n))
    ref = sklearn_metrics.f1_score(t, p, average='weighted', zero_division=0)
    assert weighted_f1(t, p) == pytest.approx(ref, abs=1e-12)


def test_sentiment_protocol_against_sklearn():
  gold = {'a': 1.2, 'b': -0.4, 'c': 0.0, 'd': 2.0, 'e': -3, 'f': 0.6, 'g': -1}
  pred = {
      'a': 'positive',
      'b': 'neutral',
      'c': 'positive',
      'd': 'negative',
      'e': 'negative',
      'f': 'Positive',
  }  # g missing -> negative
  r = sentiment_scores(gold, pred)
  # c dropped (score 0); neutral and missing count as negative
  t = ['positive', 'negative', 'positive', 'negative', 'positive', 'negative']
  p = ['positive', 'negative', 'negative', 'negative', 'positive', 'negative']
  assert r['n_samples'] == 6
  assert r['acc'] == pytest.approx(sklearn_metrics.accuracy_score(t, p))
  assert r['waf'] == pytest.approx(sklearn_metrics.f1_score(t, p, average='weighted'))
  assert sentiment_scores({'a': 0}, {})['n_samples'] == 0


def test_text_to_sentiment_default():
  assert text_to_sentiment(['happy', 'excited']) == 'positive'
  assert text_to_sentiment('angry, sad') == 'negative'
  assert text_to_sentiment(['happy', 'sad']) == 'neutral'
  assert text_to_sentiment([]) == 'neutral'
  assert text_to_sentiment(['neutral', 'qwerty']) == 'neutral'
  assert word_valence('joyful') == 1 and word_valence('furious') == -1
  assert word_valence('unknownword') == 0


def test_hit_rate_dataset_and_label_space():
  gold = {'a': 'happy', 'b': 'angry', 'c': 'neutral', 'd': 'sad'}
  pred = {'a': "['joyful', 'excited']", 'b': 'sad', 'c': 'happy', 'd': 'sorrowful, tired'}
  r = evaluate_dataset('MER2023', gold, pred)
  # every wheel maps happy~joyful and sad~sorrowful together, angry != sad
  assert r['primary'] == pytest.approx(2 / 3)
  assert r['wheels']['wheel1']['n_samples'] == 3
  r = evaluate_dataset('MELD', {'a': 'joy', 'b': 'pizza'}, {'a': 'happy', 'b': 'x'})
  assert r['labels_outside_space'] == ['pizza']
  with pytest.raises(ValueError):
    evaluate_dataset('NOPE', {}, {})


def _write(path, rows):
  with open(path, 'w', newline='', encoding='utf-8') as f:
    csv.writer(f).writerows(rows)


def test_unibench_from_dirs(tmp_path):
  g, p = tmp_path / 'gold', tmp_path / 'pred'
  g.mkdir()
  p.mkdir()
  _write(g / 'MER2024.csv', [['name', 'label'], ['a', 'happy'], ['b', 'sad']])
  _write(p / 'MER2024.csv', [['name', 'openset'], ['a', "['happy']"], ['b', "['angry']"]])
  _write(g / 'SIMS.csv', [['name', 'score'], ['a', '0.8'], ['b', '-0.2'], ['c', '0']])
  _write(p / 'SIMS.csv', [['name', 'openset'], ['a', "['joyful']"], ['b', "['worried']"]])
  _write(g / 'OVMERD+.csv', [['name', 'openset'], ['a', "['happy', 'excited']"]])
  _write(p / 'OVMERD+.csv', [['name', 'openset'], ['a', "['happy']"]])
  _write(g / 'MELD.csv', [['name', 'label'], ['a', 'joy']])  # no prediction file
  rep = unibench_from_dirs(g, p)
  assert list(rep['datasets']) == ['MER2024', 'SIMS', 'OVMERD']
  assert rep['datasets']['MER2024']['primary'] == pytest.approx(0.5)
  sims = rep['datasets']['SIMS']
  assert sims['n_samples'] == 2 and sims['acc'] == 1.0
  ov = rep['datasets']['OVMERD']
  assert ov['precision'] == pytest.approx(1.0)
  prim = [rep['datasets'][d]['primary'] for d in rep['datasets']]
  assert rep['mean'] == pytest.approx(np.mean(prim))
  assert 'MELD' in rep['missing']


def test_hit_rate_equals_sklearn_accuracy_for_single_labels():
  from mer_jax.metrics import hit_rate
  from mer_jax.metrics import load_lexicon

  lex = load_lexicon('builtin')
  rng = np.random.default_rng(1)
  space = ['angry', 'happy', 'sad', 'worried', 'surprised', 'joyful', 'furious', 'nervous']
  gold = {f's{i}': str(rng.choice(space)) for i in range(200)}
  pred = {f's{i}': str(rng.choice(space)) for i in range(200)}
  r = hit_rate(gold, pred, lex)
  for w in range(1, 6):
    v = f'wheel{w}_level1'
    keep = [n for n in gold if lex.map_label(gold[n], v) is not None]
    t = [lex.map_label(gold[n], v) for n in keep]
    p = [lex.map_label(pred[n], v) or '<none>' for n in keep]
    assert r['wheels'][f'wheel{w}']['hit_rate'] == pytest.approx(
        sklearn_metrics.accuracy_score(t, p), abs=1e-12
    )


def test_unibench_descriptive_predictions(tmp_path):
  g, p = tmp_path / 'gold', tmp_path / 'pred'
  g.mkdir()
  p.mkdir()
  _write(g / 'MELD.csv', [['name', 'label'], ['a', 'joy'], ['b', 'anger']])
  _write(
      p / 'MELD.csv',
      [
          ['name', 'reason'],
          ['a', 'She laughs, obviously delighted.'],
          ['b', 'He is not angry at all, rather sad.'],
      ],
  )
  rep = unibench_from_dirs(g, p)
  assert rep['datasets']['MELD']['primary'] == pytest.approx(0.5)
