"""The builtin lexicon: shipped JSON is current, structure, word forms."""

import json
from pathlib import Path
import subprocess
import sys

import pytest

from mer_jax.metrics import VARIANTS
from mer_jax.metrics import load_lexicon
from mer_jax.metrics.lexicon import BUILTIN_PATH

ROOT = Path(__file__).resolve().parents[1]


def test_json_small_and_structured():
  assert BUILTIN_PATH.stat().st_size < 1_000_000
  data = json.loads(BUILTIN_PATH.read_text(encoding='utf-8'))
  assert len(data['wheels']) == 5
  for w in data['wheels']:
    assert w['source'] and w['name'] in data['valence']
    # three levels: every wheel has level-1, level-2 and some level-3 words
    assert all(isinstance(sub, dict) and sub for sub in w['tree'].values())
    assert any(l3 for sub in w['tree'].values() for l3 in sub.values())
    assert set(data['valence'][w['name']]) == set(w['tree'])


def test_load_builtin_cached_and_default():
  a = load_lexicon()
  assert a is load_lexicon('builtin')
  st = a.stats()
  assert st['wheel_words'] > 250 and st['roots'] > 1000 and st['surface_forms'] > 3000


@pytest.mark.parametrize(
    'form, root_like',
    [
        ('happier', 'happy'),
        ('happiness', 'happy'),
        ('happily', 'happy'),
        ('angrily', 'angry'),
        ('anger', 'angry'),
        ('sadness', 'sad'),
        ('saddened', 'sad'),
        ('frustration', 'frustrated'),
        ('disappointment', 'disappointed'),
        ('nervousness', 'nervous'),
        ('anxiety', 'anxious'),
        ('joyfully', 'joyful'),
        ('fearful', 'afraid'),
        ('embarrassment', 'embarrassed'),
    ],
)
def test_word_forms_group_with_their_root(form, root_like):
  lex = load_lexicon('builtin')
  for w in range(1, 6):
    for lv in ('level1', 'level2'):
      v = f'wheel{w}_{lv}'
      assert lex.map_label(form, v) == lex.map_label(root_like, v), (form, v)
  assert (
      lex.map_label(form, 'wheel1_level1') is not None
      or lex.map_label(form, 'wheel2_level1') is not None
  )


def test_synonyms_and_drops():
  lex = load_lexicon('builtin')
  same = [
      ('glad', 'happy'),
      ('furious', 'angry'),
      ('terrified', 'scared'),
      ('sorrowful', 'sad'),
      ('puzzled', 'confused'),
      ('irritated', 'annoyed'),
  ]
  for a, b in same:
    assert lex.level1_categories(a) == lex.level1_categories(b), (a, b)
  for v in VARIANTS:
    assert lex.map_label('neutral', v) is None
    assert lex.map_label('positive', v) is None
  assert lex.level1_categories('happy') != lex.level1_categories('sad')


def test_build_script_output_is_current():
  pytest.importorskip('lemminflect')
  r = subprocess.run(
      [sys.executable, str(ROOT / 'scripts' / 'build_lexicon.py'), '--check'],
      capture_output=True,
      text=True,
      cwd=ROOT,
      check=False,
  )
  assert r.returncode == 0, r.stdout + r.stderr
