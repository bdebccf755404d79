"""ArrayRecord shards: lossless round trip, grain source, skip file for released splits."""

import numpy as np
import pytest

from input_pipeline import array_record
from input_pipeline import datasets
from input_pipeline import synthmer
from input_pipeline import tokenization
from input_pipeline.config import default_data_config

pytest.importorskip('array_record')
pytest.importorskip('transformers')


def test_roundtrip_and_train_iterator(tmp_path):
  data = default_data_config(
      image_size=32,
      max_length=384,
      length_buckets=[128, 256],
      batch_size=2,
      synthmer=dict(num_rl=7, cache_dir=''),
  )
  samples = synthmer.generate_split(data, 'rl', cache_dir='')
  paths = array_record.write_samples(samples, str(tmp_path), 'rl', records_per_shard=3)
  assert [p.rsplit('/', 1)[1] for p in paths] == [
      'rl.array_record-00000-of-00003',
      'rl.array_record-00001-of-00003',
      'rl.array_record-00002-of-00003',
  ]
  source = array_record.SampleArrayRecordSource(str(tmp_path), 'rl')
  assert len(source) == 7
  for i, s in enumerate(samples):
    r = source[i]
    np.testing.assert_array_equal(r['frames'], s['frames'])
    np.testing.assert_array_equal(r['audio'], s['audio'])
    assert r['frames'].dtype == np.uint8 and r['audio'].dtype == np.float32
    for k in ('name', 'subtitle', 'labels', 'reason', 'cues', 'probes'):
      assert r[k] == s[k]
  missing_audio = dict(samples[0], audio=None)
  assert (
      array_record.deserialize_sample(array_record.serialize_sample(missing_audio))['audio'] is None
  )
  tok = tokenization.build_synthmer_tokenizer()
  from_list = datasets.make_train_iterator(data, samples, tok)
  from_shards = datasets.make_train_iterator(data, source, tok)
  for _ in range(3):
    a, b = next(from_list), next(from_shards)
    assert a['meta']['name'] == b['meta']['name']
    np.testing.assert_array_equal(a['input_ids'], b['input_ids'])
    np.testing.assert_array_equal(a['frames'], b['frames'])


def test_released_shards_record_skips(tmp_path):
  sf = pytest.importorskip('soundfile')
  root = tmp_path / 'released'
  for name in ('a', 'b', 'c'):
    (root / 'openface_face' / name).mkdir(parents=True)
    np.save(root / 'openface_face' / name / f'{name}.npy', np.full((4, 20, 20, 3), 7, np.uint8))
  (root / 'audio').mkdir()
  for name in ('a', 'c'):
    sf.write(root / 'audio' / f'{name}.wav', np.zeros(16000, np.float32), 16000)
  (root / 'labels.csv').write_text(
      "name,openset\na,\"['happy']\"\nb,sad\nc,\"['calm', 'relaxed']\"\n"
  )
  data = default_data_config(
      source='released',
      root=str(root),
      labels_csv='labels.csv',
      face_or_frame='face',
      image_size=32,
  )
  out = array_record.write_released_shards(data, 'train', str(tmp_path / 'shards'))
  assert out['num_samples'] == 2 and [s['name'] for s in out['skipped']] == ['b']
  assert 'missing audio' in out['skipped'][0]['reason']
  assert array_record.read_skipped(str(tmp_path / 'shards'), 'train') == out['skipped']
  source = array_record.SampleArrayRecordSource(str(tmp_path / 'shards'), 'train')
  assert [source[i]['name'] for i in range(len(source))] == ['a', 'c']
  assert source[1]['labels'] == ['calm', 'relaxed'] and source[0]['frames'].shape == (8, 32, 32, 3)
