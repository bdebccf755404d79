"""Fuzzing: a few hundred generated bad inputs to `mer_jax.evaluate`, the released-layout
readers and the checkpoint loader. Each gives one error line or a logged skip/warning,
never a traceback and never a number that changed without a warning. Fixed seeds."""

import csv
import gc
import io
import json
import os
import random
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from input_pipeline import decode
from input_pipeline import readers
from mer_jax import config_lib
from mer_jax import evaluate
from mer_jax.metrics import parsing
from mer_jax.train import checkpointing

WORDS = ('happy', 'sad', 'angry', 'worried', 'surprised', 'calm', 'disgusted', 'fearful')
# Bytes that break structure (quotes, separators, newlines, NUL, invalid UTF-8), never letters:
# a corrupted label never silently becomes another valid word.
JUNK = b'\x00"\',\n\r[]\xff\xc3\xa9\xfe'


def _csv_bytes(rows) -> bytes:
  buf = io.StringIO()
  csv.writer(buf).writerows(rows)
  return buf.getvalue().encode('utf-8')


def _clean_files(rng):
  names = [f's{i:02d}' for i in range(12)]
  gt = [['name', 'openset']] + [[n, str(rng.sample(WORDS, rng.randint(1, 3)))] for n in names]
  pred = [['name', 'openset']] + [[n, ', '.join(rng.sample(WORDS, 2))] for n in names]
  return _csv_bytes(gt), _csv_bytes(pred)


def _mutations(data: bytes, rng: random.Random):
  """(kind, corrupted bytes): structural damage of a CSV file."""
  text = data.decode('utf-8')
  lines = text.splitlines(keepends=True)
  cut = rng.randrange(len(data))
  flips = bytearray(data)
  for _ in range(rng.randint(1, 3)):
    flips[rng.randrange(len(flips))] = rng.choice(JUNK)
  line = rng.randrange(1, len(lines))
  name = lines[line].split(',')[0]
  return [
      ('truncated', data[:cut]),
      ('byte flips', bytes(flips)),
      ('empty', b''),
      ('header only', lines[0].encode()),
      ('utf-8 BOM', b'\xef\xbb\xbf' + data),
      ('utf-16', text.encode('utf-16')),
      ('latin-1 label', (text + 'zz,tr\xe8s heureux\n').encode('latin-1')),
      ('gbk label', (text + 'zz,\u5f00\u5fc3\n').encode('gbk')),
      ('huge field', (text + 'zz,' + 'x' * 200_000 + '\n').encode()),
      ('long label', (text + 'zz,' + 'happy' * 5000 + '\n').encode()),
      ('duplicate column', text.replace('name,openset', 'name,openset,openset', 1).encode()),
      ('duplicate row', (text + f'{name},angry\n').encode()),
      ('NUL byte', data[:cut] + b'\x00' + data[cut:]),
      ('deleted line', ''.join(lines[:line] + lines[line + 1 :]).encode()),
      ('NA cell', (text.replace(lines[line], f'{name},nan\n')).encode()),
      ('inf cell', (text.replace(lines[line], f'{name},inf\n')).encode()),
      ('unterminated quote', (text + 'zz,"[\'happy\n').encode()),
      ('CRLF', text.replace('\n', '\r\n').encode()),
      ('extra column', text.replace('\n', ',x\n').encode()),
  ]


def _score(capsys, gt, pred):
  rc = evaluate.main(['ovmer', '--gt', str(gt), '--pred', str(pred), '--json'])
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_evaluate_never_changes_a_number_silently(tmp_path, capsys):
  rng = random.Random(0)
  cases = 0
  for trial in range(6):
    gt_bytes, pred_bytes = _clean_files(rng)
    gt, pred = tmp_path / f'gt{trial}.csv', tmp_path / f'pred{trial}.csv'
    gt.write_bytes(gt_bytes)
    pred.write_bytes(pred_bytes)
    rc, out, err = _score(capsys, gt, pred)
    assert rc == 0 and err == '', err
    clean = json.loads(out)
    baseline = (clean['level1']['f1'], clean['n_samples'])
    for side, data in (('gt', gt_bytes), ('pred', pred_bytes)):
      for kind, bad in _mutations(data, rng):
        cases += 1
        path = tmp_path / f'{side}{trial}-{cases}.csv'
        path.write_bytes(bad)
        rc, out, err = _score(capsys, *((path, pred) if side == 'gt' else (gt, path)))
        lines = err.strip().splitlines()
        what = f'{side} {kind}: rc {rc}, stderr {err[:400]!r}'
        if rc == 2:
          assert len(lines) == 1 and lines[0].startswith(f'error: {path}'), what
          continue
        assert rc == 0, what
        assert all(x.startswith('warning: ') for x in lines), what
        rep = json.loads(out.strip().splitlines()[-1])
        if (rep['level1']['f1'], rep['n_samples']) != baseline:
          assert lines, f'{what}: the score changed without a warning'
  assert cases >= 200


def test_evaluate_non_utf8_file_names(tmp_path):
  gt = tmp_path / os.fsdecode(b'gold_\xff\xfe.csv')
  gt.write_bytes(_csv_bytes([['name', 'openset'], ['a', 'happy']]))
  missing = tmp_path / os.fsdecode(b'pred_\xe9.csv')
  for args, rc in (([gt, gt], 0), ([gt, missing], 2)):
    result = subprocess.run(
        [sys.executable, '-m', 'mer_jax.evaluate', 'ovmer', '--gt', args[0], '--pred', args[1]],
        capture_output=True,
        text=True,
        errors='replace',
    )
    assert result.returncode == rc, result.stderr
    assert 'Traceback' not in result.stderr
    if rc:
      assert len(result.stderr.strip().splitlines()) == 1


def test_released_label_files(tmp_path, caplog):
  rng = random.Random(1)
  for trial in range(4):
    gt_bytes, _ = _clean_files(rng)
    clean = tmp_path / f'clean{trial}.csv'
    clean.write_bytes(gt_bytes)
    expected = readers.read_gold(str(clean))
    for kind, bad in _mutations(gt_bytes, rng):
      path = tmp_path / f'labels{trial}-{kind.replace(" ", "_")}.csv'
      path.write_bytes(bad)
      caplog.clear()
      try:
        gold = readers.read_gold(str(path))
      except parsing.LabelFileError as e:
        assert '\n' not in str(e) and str(path) in str(e), (kind, str(e))
        continue
      if not gold:  # no rows: the run stops on an empty split (one config error line)
        assert kind in ('header only', 'truncated'), kind
        continue
      # What survives parsing is the file's content (a cut file keeps its first rows);
      # labels that differ from the clean file's come with a warning, except a cell that
      # reads 'inf', which is a label like any other word to the reader (`evaluate`
      # warns that it maps to no wheel word).
      changed = [n for n, v in gold.items() if n in expected and expected[n] != v]
      if kind == 'inf cell':
        assert [gold[n]['labels'] for n in changed] == [['inf']], changed
      else:
        assert not changed or 'WARNING' in caplog.text, (kind, changed)
      assert len(set(gold) - set(expected)) <= 2, (kind, sorted(gold))
      if kind == 'duplicate row':  # the last row counts, with a warning
        assert 'appear more than once' in caplog.text, kind


def _npz(path, corpus, key='test_corpus'):
  np.savez(path, **{key: np.asarray(corpus, dtype=object)})


@pytest.mark.parametrize(
    'corpus, fine',
    [
        ({'a': {'val': 1.5}, 'b': {'emo': 'happy'}}, True),
        ({'a': {'val': float('nan')}}, False),
        ({'a': {'val': float('inf')}}, False),
        ({'a': {'val': -float('inf')}}, False),
        ({'a': {'val': 'high'}}, False),
        ({'a': {'val': None}}, False),
        ({'a': {'other': 1}}, False),
        ({'a': 3.0}, False),
        ([1, 2, 3], False),
    ],
)
def test_unibench_gold_npz_values(tmp_path, corpus, fine):
  path = tmp_path / 'gold.npz'
  _npz(path, corpus)
  if fine:
    assert readers.read_unibench_gold(str(path)) == {'a': 1.5, 'b': 'happy'}
    return
  with pytest.raises(parsing.LabelFileError) as info:
    readers.read_unibench_gold(str(path))
  assert '\n' not in str(info.value) and str(path) in str(info.value)


def test_unibench_gold_npz_files(tmp_path):
  rng = random.Random(2)
  good = tmp_path / 'good.npz'
  _npz(good, {f's{i}': {'val': float(i)} for i in range(20)})
  data = good.read_bytes()
  variants = [b'', b'not a zip', data[: len(data) // 2], data[:100]]
  for _ in range(20):
    flipped = bytearray(data)
    for _ in range(rng.randint(1, 4)):
      flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    variants.append(bytes(flipped))
  two = tmp_path / 'two.npz'
  np.savez(two, a_corpus=np.asarray({}, dtype=object), b_corpus=np.asarray({}, dtype=object))
  variants.append(two.read_bytes())
  for i, bad in enumerate(variants):
    path = tmp_path / f'bad{i}.npz'
    path.write_bytes(bad)
    try:
      gold = readers.read_unibench_gold(str(path))
    except parsing.LabelFileError as e:
      assert '\n' not in str(e) and str(path) in str(e)
      continue
    assert gold == {f's{i}': float(i) for i in range(20)}  # a flip outside the data


def test_face_crops(tmp_path):
  rng = np.random.default_rng(3)
  good = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
  cases = {
      'uint8': (good, True),
      'float in range': (good.astype(np.float32), True),
      'NaN': (np.where(good > 250, np.nan, good).astype(np.float32), False),
      'inf': (np.where(good > 250, np.inf, good).astype(np.float32), False),
      'negative': (good.astype(np.int16) - 300, False),
      'above 255': (good.astype(np.float64) * 4, False),
      'no frames': (good[:0], False),
      'gray': (good[..., 0], False),
      'strings': (np.full((2, 4, 4, 3), 'x'), False),
  }
  for kind, (array, fine) in cases.items():
    path = tmp_path / f'{kind}.npy'
    np.save(path, array)
    try:
      frames, _ = decode.read_face_frames(str(path), num_frames=4, size=8)
    except decode.DecodeError as e:
      assert not fine and '\n' not in str(e), (kind, str(e))
      continue
    assert fine and frames.dtype == np.uint8, kind
  data = (tmp_path / 'uint8.npy').read_bytes()
  for i, bad in enumerate([b'', b'junk', data[:60], data[: len(data) // 2]]):
    path = tmp_path / f'cut{i}.npy'
    path.write_bytes(bad)
    with pytest.raises(decode.DecodeError):
      decode.read_face_frames(str(path), num_frames=4, size=8)


@pytest.fixture(scope='module')
def saved_step(tmp_path_factory):
  run = tmp_path_factory.mktemp('ckpt')
  state = {
      'w': jnp.arange(2048.0, dtype=jnp.float32).reshape(32, 64) / 7,
      'b': jnp.linspace(-1, 1, 64, dtype=jnp.float32),
      'step': jnp.asarray(4, jnp.int32),
  }
  ckpt = checkpointing.Checkpointer(str(run / 'checkpoints'), every_steps=1, keep=3)
  ckpt.save(4, state, meta={'frozen_source': {'llm': 'seed:0'}})
  ckpt.close()
  return run / 'checkpoints' / '4', jax.device_get(state)


@pytest.fixture
def frozen_heap():
  """Moves every object alive now out of the collector's sight for one test.

  A refused restore runs a full `gc.collect()` (to drop Orbax's reader coroutines while
  their error dumps are muted); with the whole suite's heap (jax, torch, transformers)
  each took ~1 s. Frozen, it still collects everything the restore created.
  """
  gc.freeze()
  yield
  gc.unfreeze()


def test_checkpoint_loader(saved_step, tmp_path, frozen_heap):
  step_dir, state = saved_step
  abstract = checkpointing.abstract_like(state)
  files = sorted(
      os.path.relpath(os.path.join(d, f), step_dir) for d, _, fs in os.walk(step_dir) for f in fs
  )
  rng = random.Random(4)
  outcomes = {'restored': 0, 'refused': 0}
  for case in range(60):
    bad = tmp_path / f'c{case}' / 'checkpoints' / '4'
    shutil.copytree(step_dir, bad)
    # Every other case hits the array data (files chosen by size), the rest any file.
    sizes = [os.path.getsize(step_dir / f) for f in files] if case % 2 else None
    target = bad / rng.choices(files, weights=sizes)[0]
    kind = rng.choice(('truncate', 'delete', 'flip', 'garbage'))
    data = target.read_bytes()
    if kind == 'truncate':
      target.write_bytes(data[: rng.randrange(len(data))] if data else b'')
    elif kind == 'delete':
      target.unlink()
    elif kind == 'flip' and data:
      flipped = bytearray(data)
      for _ in range(rng.randint(1, 8)):
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
      target.write_bytes(bytes(flipped))
    else:
      target.write_bytes(b'{"not": "what was saved"')
    what = f'{kind} {target.relative_to(bad)}'
    try:
      restored, meta = checkpointing.restore_step(str(bad), abstract)
    except config_lib.ConfigError as e:
      assert '\n' not in str(e) and str(bad) in str(e) and len(str(e)) < 500, (what, str(e))
      outcomes['refused'] += 1
      continue
    # Restored: then exactly what was saved.
    for key, value in state.items():
      np.testing.assert_array_equal(np.asarray(restored[key]), value, err_msg=what)
    assert meta['frozen_source'] == {'llm': 'seed:0'}, what
    outcomes['restored'] += 1
  assert outcomes['refused'] >= 20, outcomes
