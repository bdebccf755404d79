"""Optional TFDS builder for the released layouts (the `tfds` extra; no TensorFlow needed).

`tensorflow-datasets` >= 4.9 builds with `file_format='array_record'` and reads with
`tfds.data_source` without TensorFlow installed (checked with 4.9.10, see
docs/input_pipeline.md). `manual_dir` is the user's licensed copy in the released
layout; the builder decodes it once with `readers.iter_released` (same decoding, same
skips) and writes ArrayRecord shards. The core pipeline never imports this module.

  info = build(config.data, data_dir='/data/tfds', manual_dir='/data/mer2025')
  source = tfds_source('/data/tfds', 'train', config.data)   # grain random-access source
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import readers

_FIELDS = (
    'labels_csv',
    'eval_labels_csv',
    'reasons_csv',
    'subtitles_csv',
    'face_or_frame',
    'num_frames',
    'image_size',
    'sample_rate',
)


def _layout(data: Any) -> dict:
  return {k: data.get(k) for k in _FIELDS}


def config_name(data: Any) -> str:
  return f'{data.face_or_frame}{int(data.image_size)}'


class MerReleasedConfig(tfds.core.BuilderConfig):
  """Which csv files, visual mode and frame size to build (from config.data)."""

  def __init__(self, *, layout: dict, **kwargs):
    super().__init__(version=tfds.core.Version('1.0.0'), **kwargs)
    self.layout = layout


class MerReleased(tfds.core.GeneratorBasedBuilder):
  """AffectGPT released layout: video/ audio/ openface_face/ + label/reason/subtitle csvs."""

  VERSION = tfds.core.Version('1.0.0')
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Point manual_dir at your licensed copy in the released layout: video/{name}.mp4, '
      'audio/{name}.wav, openface_face/{name}/{name}.npy and the csv files named in config.data.'
  )

  def __init__(self, *, data_config: Any = None, **kwargs):
    if data_config is not None:
      kwargs['config'] = MerReleasedConfig(
          name=config_name(data_config), layout=_layout(data_config)
      )
    kwargs.setdefault('file_format', 'array_record')  # the TFRecord default needs TensorFlow
    super().__init__(**kwargs)
    self.skipped: dict[str, list[dict]] = {}

  def _info(self) -> tfds.core.DatasetInfo:
    lay = self.builder_config.layout
    f, s = int(lay['num_frames']), int(lay['image_size'])
    return tfds.core.DatasetInfo(
        builder=self,
        description='Released OV-MER layout decoded by mer-jax (frames after CLIP resize+crop).',
        features=tfds.features.FeaturesDict(
            {
                'name': tfds.features.Text(),
                'subtitle': tfds.features.Text(),
                'reason': tfds.features.Text(),
                'labels': tfds.features.Sequence(tfds.features.Text()),
                'frames': tfds.features.Tensor(shape=(f, s, s, 3), dtype=np.uint8),
                'audio': tfds.features.Tensor(shape=(None,), dtype=np.float32),
            }
        ),
    )

  def _split_generators(self, dl_manager):
    splits = {'train': 'labels_csv', 'eval': 'eval_labels_csv'}
    return {
        split: self._generate_examples(dl_manager.manual_dir, split)
        for split, key in splits.items()
        if self.builder_config.layout.get(key)
    }

  def _generate_examples(self, manual_dir, split):
    import ml_collections

    data = ml_collections.ConfigDict(dict(self.builder_config.layout, root=os.fspath(manual_dir)))
    skipped = self.skipped.setdefault(split, [])
    for kind, item in readers.iter_released(data, split):
      if kind == 'skip':
        skipped.append(item)
        continue
      yield item['name'], {
          k: item[k] for k in ('name', 'subtitle', 'reason', 'labels', 'frames', 'audio')
      }


def build(data: Any, data_dir: str, manual_dir: str | None = None) -> dict:
  """Build (or reuse) the dataset; skips are written to `<dataset dir>/skipped.json`."""
  builder = MerReleased(data_config=data, data_dir=data_dir)
  skipped_path = os.path.join(builder.data_dir, 'skipped.json')
  if not os.path.exists(skipped_path):
    manual = manual_dir or data.root
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    with open(skipped_path, 'w') as f:
      json.dump(builder.skipped, f, indent=1)
  with open(skipped_path) as f:
    skipped = json.load(f)
  return {
      'data_dir': builder.data_dir,
      'skipped': skipped,
      'num_samples': {k: v.num_examples for k, v in builder.info.splits.items()},
  }


class TfdsSampleSource:
  """grain random-access source of sample dicts over `tfds.data_source` records."""

  def __init__(self, data_source):
    self._source = data_source

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    r = self._source[int(index)]
    text = lambda v: v.decode() if isinstance(v, bytes) else str(v)
    return dict(
        name=text(r['name']),
        subtitle=text(r['subtitle']),
        reason=text(r['reason']),
        labels=[text(label) for label in r['labels']],
        frames=np.asarray(r['frames']),
        audio=np.asarray(r['audio']),
    )

  def __repr__(self) -> str:
    return f'TfdsSampleSource({len(self)} records)'


def tfds_source(data_dir: str, split: str, data: Any) -> TfdsSampleSource:
  builder = MerReleased(data_config=data, data_dir=data_dir)
  return TfdsSampleSource(builder.as_data_source(split=split))
