"""Label parsing (official string_to_list semantics), CSV reading, official loader."""

import csv

import numpy as np
import pytest

from mer_jax.metrics import LabelFileError
from mer_jax.metrics import parse_labels
from mer_jax.metrics import read_label_csv
from mer_jax.metrics import string_to_list
from mer_jax.metrics.lexicon import load_official


@pytest.mark.parametrize(
    'raw, expected',
    [
        ("['happy', 'sad']", ['happy', 'sad']),
        ('["happy", "sad"]', ['happy', 'sad']),
        ('happy, sad', ['happy', 'sad']),
        ('[happy, sad]', ['happy', 'sad']),
        ("['Happy ', ' SAD', 'happy']", ['happy', 'sad']),  # case, spaces, duplicates
        ("['self-deprecating', 'at a loss']", ['self-deprecating', 'at a loss']),
        ('happy,,sad,', ['happy', 'sad']),
        ("happy's mood", ['happy', 's mood']),  # quotes split, as official
        ('[]', []),
        ('', []),
        (None, []),
        (float('nan'), []),
        ('[', []),
        ("['neutral']", ['neutral']),
        # only a bracket in the very first / last position is removed (official):
        (" ['happy'] ", ['[', 'happy', ']']),
        ('happy; sad', ['happy; sad']),  # no split on ';'
        ('happy\nsad', ['happy\nsad']),
    ],
)
def test_parse_labels(raw, expected):
  assert parse_labels(raw) == expected


def test_parse_labels_lists_and_arrays():
  assert parse_labels(['Happy', ' sad ', 'happy']) == ['happy', 'sad']
  assert parse_labels(('a', 'b')) == ['a', 'b']
  assert parse_labels(np.array(['X', 'y'])) == ['x', 'y']
  assert parse_labels(['happy', None, float('nan'), '']) == ['happy']
  assert parse_labels('a, a', unique=False) == ['a', 'a']
  # raw items are not lowercased by string_to_list (official)
  assert string_to_list("['Happy']") == ['Happy']
  assert string_to_list(['A', 'b']) == ['A', 'b']


def _write(path, rows):
  with open(path, 'w', newline='', encoding='utf-8') as f:
    csv.writer(f).writerows(rows)


def test_read_label_csv(tmp_path):
  p = tmp_path / 'gt.csv'
  _write(
      p,
      [
          ['name', 'openset', 'extra'],
          ['s1', "['happy', 'sad']", 'x'],
          ['s2', '', ''],
          ['s3', 'None', ''],
          ['s1', "['angry']", ''],
          [],
          ['s4', 'nan', ''],
      ],
  )
  d = read_label_csv(p)
  # NA strings (pandas) become None; later duplicate overrides; blank line skipped
  assert d == {'s1': "['angry']", 's2': None, 's3': None, 's4': None}


@pytest.mark.parametrize(
    'content, line',
    [
        ('name,openset\ns1,"[\'a\']"\ns2,a,b\n', 3),  # too many fields
        ('name,openset\ns1\n', 2),  # too few fields
        ('name,labels\ns1,a\n', 1),  # wrong header
        ('name,openset\n,"a"\n', 2),  # empty name
        ('', 1),  # empty file
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, content, line):
  p = tmp_path / 'bad.csv'
  p.write_text(content, encoding='utf-8')
  with pytest.raises(LabelFileError) as e:
    read_label_csv(p)
  assert f'{p}:{line}' in str(e.value)


def test_unterminated_quote_is_an_error(tmp_path):
  p = tmp_path / 'bad.csv'
  p.write_text("name,openset\ns1,\"['a']\ns2,b\n", encoding='utf-8')
  with pytest.raises(LabelFileError) as e:
    read_label_csv(p)
  assert str(p) in str(e.value)


def _xlsx(path, rows):
  openpyxl = pytest.importorskip('openpyxl')
  wb = openpyxl.Workbook()
  ws = wb.active
  for r in rows:
    ws.append(list(r))
  wb.save(path)


def make_official_dir(d):
  """A tiny lexicon in the released file layout (synthetic content)."""
  d.mkdir(parents=True, exist_ok=True)
  _write(
      d / 'format.csv',
      [
          ['name', 'format'],
          ['joy', 'joyful,joys'],
          ['delight', 'delighted,delightful'],
          ['rage', 'raging'],
          ['bliss', ''],
          ['elation', 'elated'],
      ],
  )
  header = []
  for k in range(1, 9):
    header += [f'word_run{k}', f'synonym_run{k}']
  row1 = ['Joy ', "['delight', 'Bliss']", 'joy', 'elation, delight'] + ['rage', ''] * 6
  _xlsx(d / 'synonym.xlsx', [header, row1])
  wheel = [
      ('level1', 'level2', 'level3'),
      ('Joy ', 'Happy', 'Glad'),
      (None, None, 'Cheerful'),
      (None, 'Content', None),
      ('Anger', 'Rage', 'Fury'),
  ]
  for i in range(1, 6):
    _xlsx(d / f'wheel{i}.xlsx', wheel)
  return d


def test_official_loader_semantics(tmp_path):
  lex = load_official(make_official_dir(tmp_path / 'ew'))
  # synonym runs merged; a wheel word maps to itself; lowercased and stripped
  assert lex.root2words['delight'] == ('joy',)
  assert lex.root2words['bliss'] == ('joy',)
  assert lex.root2words['elation'] == ('joy',)
  assert lex.root2words['joy'] == ('joy',)
  # forms: a form maps to its roots, a root to itself, empty format cell ok
  assert lex.format2roots['delighted'] == ('delight',)
  assert lex.format2roots['bliss'] == ('bliss',)
  assert lex.map_label('delighted', 'wheel1_level1') == 'joy'
  assert lex.map_label('elated', 'wheel3_level2') == 'content'  # level1 -> first level2
  assert lex.map_label('raging', 'wheel2_level1') == 'anger'
  assert lex.map_label('raging', 'wheel2_level2') == 'rage'
  assert lex.map_label('raging', 'case2') == 'rage'
  # forward fill: the blank level3 of the 'Content' row repeats 'cheerful',
  # which therefore ends up under 'content' at level2 (official behaviour)
  assert lex.wheel_maps['wheel1_level2']['cheerful'] == 'content'
  assert lex.wheel_maps['wheel1_level1']['cheerful'] == 'joy'


def test_official_loader_missing_file(tmp_path):
  d = make_official_dir(tmp_path / 'ew')
  (d / 'wheel3.xlsx').unlink()
  with pytest.raises(FileNotFoundError, match='wheel3.xlsx'):
    load_official(d)
