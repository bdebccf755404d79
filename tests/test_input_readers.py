"""Released-layout reader on a small dataset written here (real mp4/wav/npy files)."""

import numpy as np
import pytest
from released_data import write_csv as _write_csv
from released_data import write_mp4 as _write_mp4

from input_pipeline import datasets
from input_pipeline import readers
from input_pipeline import tokenization
from input_pipeline.config import default_data_config

av = pytest.importorskip('av')
sf = pytest.importorskip('soundfile')
pytest.importorskip('transformers')

NAMES = ['sample_a', 'sample_b', 'sample_corrupt', 'sample_noaudio', 'sample_c']


@pytest.fixture(scope='module')
def released_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('released')
  for d in ('video', 'audio', 'openface_face'):
    (root / d).mkdir()
  for i, name in enumerate(NAMES):
    if name == 'sample_corrupt':
      (root / 'video' / f'{name}.mp4').write_bytes(b'\x00\x00\x00\x20ftypisom' + b'garbage' * 200)
    else:
      _write_mp4(root / 'video' / f'{name}.mp4', 12 + i, seed=i)
    if name != 'sample_noaudio':
      sr = 22050 if i % 2 else 16000
      sf.write(root / 'audio' / f'{name}.wav', 0.1 * np.sin(np.arange(int(1.3 * sr)) * 0.05), sr)
    (root / 'openface_face' / name).mkdir()
    np.save(
        root / 'openface_face' / name / f'{name}.npy', np.full((5 + i, 24, 24, 3), 30 * i, np.uint8)
    )
  _write_csv(
      root / 'train_ovmerd.csv',
      ['name', 'openset'],
      [[n, "['Happy', 'calm']" if j % 2 else 'worried, tense'] for j, n in enumerate(NAMES)],
  )
  _write_csv(root / 'eval_ovmerd.csv', ['name', 'openset'], [['sample_c', "['sad']"]])
  _write_csv(root / 'reasons.csv', ['name', 'reason'], [['sample_a', 'He smiles warmly.']])
  _write_csv(
      root / 'subtitle_chieng.csv',
      ['name', 'chinese', 'english'],
      [[n, '你好', f'Hello from {n}.'] for n in NAMES],
  )
  return root


def make_data(root, **kw):
  base = dict(
      source='released',
      root=str(root),
      labels_csv='train_ovmerd.csv',
      eval_labels_csv='eval_ovmerd.csv',
      reasons_csv='reasons.csv',
      subtitles_csv='subtitle_chieng.csv',
      image_size=32,
      max_length=384,
      length_buckets=[128, 192, 256],
      batch_size=3,
      eval_batch_size=2,
      question='labels',
  )
  base.update(kw)
  return default_data_config(**base)


def test_parse_openset():
  assert readers.parse_openset("['Happy', ' calm ']") == ['Happy', 'calm']  # case kept
  assert readers.parse_openset('worried, tense') == ['worried', 'tense']
  assert readers.parse_openset('[happy, sad]') == ['happy', 'sad']
  assert readers.parse_openset('') == []


def test_frame_mode_skips_corrupt_video_and_missing_audio(released_root):
  samples, skipped = readers.read_released(make_data(released_root, face_or_frame='frame'), 'train')
  assert [s['name'] for s in samples] == ['sample_a', 'sample_b', 'sample_c']
  reasons = {s['name']: s['reason'] for s in skipped}
  assert set(reasons) == {'sample_corrupt', 'sample_noaudio'}
  assert 'cannot decode video' in reasons['sample_corrupt']
  assert (
      'missing audio' in reasons['sample_noaudio']
      and 'sample_noaudio.wav' in reasons['sample_noaudio']
  )
  a = samples[0]
  assert a['frames'].shape == (8, 32, 32, 3) and a['frames'].dtype == np.uint8
  assert a['audio'].dtype == np.float32 and a['audio'].shape == (int(1.3 * 16000),)
  b = samples[1]  # 22.05 kHz resampled to 16 kHz
  assert abs(b['audio'].shape[0] - int(1.3 * 16000)) <= 1
  assert a['labels'] == ['worried', 'tense'] and b['labels'] == ['Happy', 'calm']  # case kept
  assert a['reason'] == 'He smiles warmly.' and b['reason'] == ''
  assert a['subtitle'] == 'Hello from sample_a.'
  # Frame indices of 12 frames: arange(0, 12, 1.5) -> 0,1,3,4,6,7,9,10; gray 10 + 8 i.
  levels = a['frames'].reshape(8, -1).mean(-1)
  np.testing.assert_allclose(levels, [10 + 8 * i + 2 for i in (0, 1, 3, 4, 6, 7, 9, 10)], atol=3)
  summary = readers.data_summary(train=(samples, skipped))
  assert summary['num_samples'] == {'train': 3}
  assert {s['name'] for s in summary['skipped']} == {'sample_corrupt', 'sample_noaudio'}
  assert all(s['split'] == 'train' and s['reason'] for s in summary['skipped'])


def test_face_mode_and_eval_split(released_root):
  data = make_data(released_root, face_or_frame='face')
  samples, skipped = readers.read_released(data, 'train')
  assert [s['name'] for s in samples] == ['sample_a', 'sample_b', 'sample_corrupt', 'sample_c']
  assert [s['name'] for s in skipped] == ['sample_noaudio']
  c = samples[2]  # faces of sample 2 are all 60
  assert c['frames'].shape == (8, 32, 32, 3) and (c['frames'] == 60).all()
  ev, ev_skipped = readers.read_released(data, 'eval')
  assert [s['name'] for s in ev] == ['sample_c'] and ev_skipped == [] and ev[0]['labels'] == ['sad']


def test_released_batches_flow(released_root, tmp_path):
  data = make_data(released_root, face_or_frame='frame')
  samples, _ = readers.read_released(data, 'train')
  tok = tokenization.get_tokenizer(default_data_config(tokenizer='synthmer'), str(tmp_path))
  batch = next(datasets.make_train_iterator(data, samples, tok))
  assert batch['input_ids'].shape[0] == 3 and batch['input_ids'].shape[1] in (128, 192, 256)
  assert batch['frames'].shape == (3, 8, 3, 32, 32) and batch['audio'].shape == (3, 8, 32000)
  for i in range(3):
    text = tok.decode(batch['input_ids'][i][batch['loss_mask'][i] > 0])
    labels = ', '.join(batch['meta']['labels'][i])
    assert text == f"The character's emotional state is {labels}.###<|im_end|>"
    # 1.3 s of audio padded to 2 s: every clip is the same padded signal.
    np.testing.assert_allclose(batch['audio'][i, 0], batch['audio'][i, 7])
  ev = list(datasets.make_eval_batches(data, samples, tok))
  assert [v for b in ev for v in b['meta']['valid']] == [True, True, True, False]


def test_unibench_npz_as_eval_labels(released_root, tmp_path):
  np.savez(
      tmp_path / 'mer2023.npz',
      test1_corpus={'sample_a': {'emo': 'Worried'}, 'sample_noaudio': {'emo': 'sad'}},
  )
  np.savez(tmp_path / 'sims.npz', test_corpus={'sample_b': {'val': -0.6}})
  data = make_data(
      released_root, face_or_frame='face', eval_labels_csv=str(tmp_path / 'mer2023.npz')
  )
  samples, skipped = readers.read_released(data, 'eval')
  assert [(s['name'], s['labels']) for s in samples] == [('sample_a', ['Worried'])]  # case kept
  assert [s['name'] for s in skipped] == ['sample_noaudio']
  data = make_data(released_root, face_or_frame='face', eval_labels_csv=str(tmp_path / 'sims.npz'))
  (b,), _ = readers.read_released(data, 'eval')
  assert b['labels'] == [] and b['valence'] == -0.6


def test_unibench_gold(tmp_path):
  np.savez(
      tmp_path / 'mer2023.npz', test1_corpus={'s1': {'emo': 'happy'}, 's2': {'emo': 'worried'}}
  )
  np.savez(tmp_path / 'mosi.npz', test_corpus={'v1': {'val': -1.4}, 'v2': {'val': 0.0}})
  assert readers.read_unibench_gold(str(tmp_path / 'mer2023.npz')) == {
      's1': 'happy',
      's2': 'worried',
  }
  assert readers.read_unibench_gold(str(tmp_path / 'mosi.npz')) == {'v1': -1.4, 'v2': 0.0}


def test_rl_and_validation_splits_read_their_own_files(released_root, tmp_path, recipe):
  """The RL split's labels, reasons, subtitles and media root (MER2025-OV in the paper
  recipe), the validation split's labels; empty fields fall back to the training split's."""
  from input_pipeline import features
  from mer_jax import config_lib

  rl_root = tmp_path / 'rl'
  for d in ('video', 'audio'):
    (rl_root / d).mkdir(parents=True)
  _write_mp4(rl_root / 'video' / 'rl_x.mp4', 10, seed=7)
  sf.write(rl_root / 'audio' / 'rl_x.wav', np.zeros(16000, np.float32), 16000)
  _write_csv(rl_root / 'rl.csv', ['name', 'openset'], [['rl_x', "['angry']"]])
  _write_csv(rl_root / 'rl_reasons.csv', ['name', 'reason'], [['rl_x', 'He shouts.']])
  data = make_data(
      released_root,
      face_or_frame='frame',
      rl_root=str(rl_root),
      rl_labels_csv='rl.csv',
      rl_reasons_csv='rl_reasons.csv',
      val_labels_csv='train_ovmerd.csv',
  )
  (x,), skipped = readers.read_released(data, 'rl')
  assert not skipped and x['name'] == 'rl_x' and x['labels'] == ['angry']
  assert x['reason'] == 'He shouts.' and x['subtitle'] == ''  # subtitles_csv has no rl_x
  assert x['frames'].shape == (8, 32, 32, 3)  # decoded from rl_root
  (clip,) = features.clips_of_split(data, 'rl', ['rl_x'])
  assert clip.paths['audio'] == str(rl_root / 'audio' / 'rl_x.wav')
  assert [s['name'] for s in readers.read_released_text(data, 'val')] == NAMES
  # No rl_labels_csv: the RL split is the training split (the run warns).
  train = readers.read_released_text(make_data(released_root), 'rl')
  assert [s['name'] for s in train] == NAMES and train[0]['reason'] == 'He smiles warmly.'

  # Validated before any work, one line naming the field.
  config = recipe('grpo', 'test')
  config.data.update(dict(make_data(released_root)))
  config.data.rl_root = str(rl_root)
  config_lib.validate(config)
  for field, value, message in (
      ('rl_labels_csv', 'missing.csv', f"config.data.rl_labels_csv: file '{rl_root}/missing.csv'"),
      ('rl_root', str(tmp_path / 'nope'), 'config.data.rl_root: directory'),
      ('eval_reasons_csv', 'nope.csv', 'config.data.eval_reasons_csv: file'),
  ):
    bad = config.copy_and_resolve_references()
    bad.data[field] = value
    with pytest.raises(config_lib.ConfigError, match=message):
      config_lib.validate(bad)
  config.eval.split = 'validation'  # needs the validation labels
  with pytest.raises(config_lib.ConfigError, match='config.data.val_labels_csv is required'):
    config_lib.validate(config)
