"""ArrayRecord shards of decoded samples, read back by grain.

Decoding real videos is the slow part of the released-layout pipeline; at paper scale
(31K clips) the decoded samples also do not fit in memory. `write_released_shards`
decodes a split once (skips reported, never silent) into ArrayRecord files;
`SampleArrayRecordSource` is a grain random-access source over them that
`datasets.make_train_iterator` accepts in place of a sample list. See
docs/input_pipeline.md for why this uses `array_record` directly and not a TFDS builder.

Record format: 4-byte little-endian header length, a JSON header (the sample's text
fields plus dtype/shape of each array), then the raw array bytes in header order.
"""

from __future__ import annotations

import glob
import json
import os
import struct
from typing import Any, Iterable, Mapping

import numpy as np

ARRAY_KEYS = ('frames', 'audio')


def serialize_sample(sample: Mapping, array_keys: tuple[str, ...] = ARRAY_KEYS) -> bytes:
  arrays = {k: np.ascontiguousarray(sample[k]) for k in array_keys if sample.get(k) is not None}
  header = {k: v for k, v in sample.items() if k not in array_keys}
  header['__arrays__'] = [[k, str(a.dtype), list(a.shape)] for k, a in arrays.items()]
  head = json.dumps(header).encode()
  return b''.join([struct.pack('<I', len(head)), head] + [a.tobytes() for a in arrays.values()])


def deserialize_sample(record: bytes, array_keys: tuple[str, ...] = ARRAY_KEYS) -> dict:
  (n,) = struct.unpack_from('<I', record, 0)
  header = json.loads(record[4 : 4 + n].decode())
  offset = 4 + n
  sample = {k: None for k in array_keys}
  for key, dtype, shape in header.pop('__arrays__'):
    count = int(np.prod(shape)) if shape else 1
    a = np.frombuffer(record, dtype=np.dtype(dtype), count=count, offset=offset).reshape(shape)
    sample[key] = a
    offset += a.nbytes
  sample.update(header)
  return sample


def open_writer(path: str):
  """An ArrayRecord writer for grain's random access (local `path`)."""
  from array_record.python.array_record_module import ArrayRecordWriter
  # group_size:1 keeps every record independently addressable (fast random access).
  return ArrayRecordWriter(path, 'group_size:1')


def write_samples(
    samples: Iterable[Mapping], out_dir: str, split: str, records_per_shard: int = 1000
) -> list[str]:
  """Write samples to `{out_dir}/{split}.array_record-XXXXX-of-NNNNN`; returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  for stale in glob.glob(os.path.join(out_dir, f'{split}.array_record-*')):
    os.remove(stale)
  tmp_paths, writer, count = [], None, 0
  for sample in samples:
    if writer is None or count == records_per_shard:
      if writer is not None:
        writer.close()
      tmp_paths.append(os.path.join(out_dir, f'.{split}.{len(tmp_paths):05d}.tmp'))
      writer, count = open_writer(tmp_paths[-1]), 0
    writer.write(serialize_sample(sample))
    count += 1
  if writer is not None:
    writer.close()
  paths = []
  for i, tmp in enumerate(tmp_paths):
    paths.append(os.path.join(out_dir, f'{split}.array_record-{i:05d}-of-{len(tmp_paths):05d}'))
    os.replace(tmp, paths[-1])
  return paths


def write_released_shards(
    cfg: Any, split: str, out_dir: str, records_per_shard: int = 1000
) -> dict:
  """Decode a released-layout split into shards; skips go to `{split}.skipped.json`.

  Returns {'paths', 'num_samples', 'skipped'}.
  """
  from input_pipeline import readers

  skipped, kept = [], [0]

  def samples():
    for kind, item in readers.iter_released(cfg, split):
      if kind == 'skip':
        skipped.append(item)
      else:
        kept[0] += 1
        yield item

  paths = write_samples(samples(), out_dir, split, records_per_shard)
  with open(os.path.join(out_dir, f'{split}.skipped.json'), 'w') as f:
    json.dump(skipped, f, indent=1)
  return {'paths': paths, 'num_samples': kept[0], 'skipped': skipped}


def shard_paths(out_dir: str, split: str) -> list[str]:
  return sorted(glob.glob(os.path.join(out_dir, f'{split}.array_record-*-of-*')))


def read_skipped(out_dir: str, split: str) -> list[dict]:
  path = os.path.join(out_dir, f'{split}.skipped.json')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


class SampleArrayRecordSource:
  """grain random-access source of sample dicts stored by `write_samples`."""

  def __init__(self, paths: str | list[str], split: str | None = None):
    import grain

    if isinstance(paths, str):
      paths = shard_paths(paths, split) if split else [paths]
    if not paths:
      raise FileNotFoundError(f'no ArrayRecord shards for split {split!r}')
    self._paths = list(paths)
    self._source = grain.sources.ArrayRecordDataSource(self._paths)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    return deserialize_sample(self._source[int(index)])

  def __repr__(self) -> str:
    return f'SampleArrayRecordSource({len(self._paths)} shards, {len(self)} records)'
