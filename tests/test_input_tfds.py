"""Optional TFDS builder (the `tfds` extra): builds and reads without TensorFlow."""

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets', reason='the optional tfds extra is not installed')
sf = pytest.importorskip('soundfile')

from input_pipeline import datasets  # noqa: E402
from input_pipeline import tfds_builder  # noqa: E402
from input_pipeline import tokenization  # noqa: E402
from input_pipeline.config import default_data_config  # noqa: E402


def test_build_and_read_without_tensorflow(tmp_path):
  root = tmp_path / 'licensed'
  for i, name in enumerate(('a', 'b', 'c', 'd')):
    (root / 'openface_face' / name).mkdir(parents=True)
    np.save(
        root / 'openface_face' / name / f'{name}.npy', np.full((6, 20, 20, 3), 10 * i, np.uint8)
    )
  (root / 'audio').mkdir()
  for name in ('a', 'b', 'd'):
    sf.write(root / 'audio' / f'{name}.wav', 0.1 * np.ones(20000, np.float32), 16000)
  (root / 'train.csv').write_text("name,openset\na,happy\nb,\"['sad', 'tired']\"\nc,calm\n")
  (root / 'eval.csv').write_text('name,openset\nd,angry\n')
  (root / 'subs.csv').write_text('name,english\na,Hi.\nb,Bye.\nc,So.\nd,No!\n')
  data = default_data_config(
      source='released',
      root=str(root),
      labels_csv='train.csv',
      eval_labels_csv='eval.csv',
      subtitles_csv='subs.csv',
      image_size=32,
      batch_size=2,
      max_length=384,
      length_buckets=[128, 256],
  )
  info = tfds_builder.build(data, str(tmp_path / 'tfds'))
  assert info['num_samples'] == {'train': 2, 'eval': 1}
  assert [s['name'] for s in info['skipped']['train']] == ['c']
  assert 'missing audio' in info['skipped']['train'][0]['reason']
  source = tfds_builder.tfds_source(str(tmp_path / 'tfds'), 'train', data)
  by_name = {source[i]['name']: source[i] for i in range(len(source))}
  assert sorted(by_name) == ['a', 'b']
  assert by_name['b']['labels'] == ['sad', 'tired'] and by_name['b']['subtitle'] == 'Bye.'
  assert by_name['b']['frames'].shape == (8, 32, 32, 3) and (by_name['b']['frames'] == 10).all()
  assert by_name['a']['audio'].shape == (20000,)
  batch = next(datasets.make_train_iterator(data, source, tokenization.build_synthmer_tokenizer()))
  assert batch['frames'].shape == (2, 8, 3, 32, 32) and sorted(batch['meta']['name']) == ['a', 'b']
  # Reuse: a second build reads the stored skip report instead of decoding again.
  assert tfds_builder.build(data, str(tmp_path / 'tfds'))['skipped'] == info['skipped']
