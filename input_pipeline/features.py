"""Frozen-encoder features on disk: fingerprint, manifest, shards, media stamps, reader.

AffectGPT's encoders are frozen, so a clip's features are a pure function of (encoder
weights, preprocessing settings, media). The features pass (`mode=features`,
mer_jax/train/features.py) computes them once into a directory keyed by a hash of the
first two; training, evaluation, GRPO and OPPO then read them instead of media. Nothing
here imports JAX.

Layout of `<config.data.features_dir>/<key>/` (any epath: a local path or gs://):

  manifest.json       written by process 0 after a pass: {format, fingerprint, shards,
                      clips: {name: {shard, row, media}}, skipped: {name: {reason, media}}}
  shards/<id>.array_record   one record per clip: JSON header {name} + vision_feats [F, Dv]
                      + audio_feats [C, Da] (the encoders' output dtype)
  shards/<id>.json    sidecar of a finished shard (its clips and skips); a shard counts once
                      its sidecar exists, so a pass that stopped keeps its finished shards

A clip's entry records a stamp of each media file it was decoded from (`media_stamp`:
size, mtime and a content hash). A file that is present with another content makes the
clip stale (it is encoded again); a file that is gone does not (the features are what is
left of it: runs work with the media deleted).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from typing import Any, Iterable, Mapping

from etils import epath
import numpy as np

from input_pipeline import array_record
from input_pipeline import decode
from input_pipeline import files
from input_pipeline import preprocess
from input_pipeline import readers

FORMAT = 1
MANIFEST = 'manifest.json'
SHARDS = 'shards'
FEATURE_KEYS = ('vision_feats', 'audio_feats')

# config.data fields that do not change a clip's features: text, batching, where files live
# (any field naming a file or directory: `root`, `*_csv`, `*_dir`). Every other field is part
# of the fingerprint, so a new preprocessing setting invalidates old features by itself.
NON_FEATURE_FIELDS = frozenset(
    {
        'root',
        'rl_root',
        'eval_root',
        'question',
        'target',
        'max_length',
        'length_buckets',
        'batch_size',
        'eval_batch_size',
        'shuffle_seed',
        'worker_count',
        'tokenizer',
        'tokens_per_modality',
        'decode_workers',
        'features_batch_size',
        'features_shard_clips',
    }
)
# synthmer settings that choose which clips exist, not what a clip is.
NON_FEATURE_SYNTHMER_FIELDS = frozenset({'cache_dir', 'num_sft', 'num_rl', 'num_eval', 'num_val'})


def _data(cfg: Any):
  return cfg.data if hasattr(cfg, 'data') and not isinstance(cfg, Mapping) else cfg


def _names_files(field: str) -> bool:
  return field in NON_FEATURE_FIELDS or field.endswith(('_csv', '_dir', '_npz'))


def preprocessing_settings(cfg: Any) -> dict:
  """The config.data fields a clip's features depend on (all but NON_FEATURE_FIELDS & paths)."""
  data = _data(cfg)
  d = data.to_dict() if hasattr(data, 'to_dict') else dict(data)
  out = {k: v for k, v in d.items() if not _names_files(k) and k != 'synthmer'}
  if d.get('source') == 'synthmer':
    from input_pipeline import synthmer

    syn = dict(d.get('synthmer') or {})
    out['synthmer'] = {k: v for k, v in syn.items() if k not in NON_FEATURE_SYNTHMER_FIELDS}
    out['synthmer']['generator_version'] = synthmer.GENERATOR_VERSION
  return out


def fingerprint_key(fingerprint: Mapping) -> str:
  """16 hex digits of the sha256 of the fingerprint's canonical JSON."""
  blob = json.dumps(fingerprint, sort_keys=True, default=str).encode()
  return hashlib.sha256(blob).hexdigest()[:16]


def default_root() -> str:
  """`config.data.features_dir` when empty: `$MER_JAX_CACHE/features` (shared by runs)."""
  return os.path.join(files.cache_root(), 'features')


# ----------------------------------------------------------------------------- media stamps


def file_digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      h.update(chunk)
  return h.hexdigest()[:16]


def media_stamp(path: str) -> list | None:
  """[size, mtime_ns, content hash] of a media file, None when it does not exist."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  return [st.st_size, st.st_mtime_ns, file_digest(path)]


def media_unchanged(saved: Mapping[str, Any] | None, paths: Mapping[str, str]) -> bool:
  """False when a present media file differs from the one the entry was made from.

  A missing file counts as unchanged (features outlive deleted media). A file whose size
  and mtime match is unchanged without being read; otherwise its content hash decides
  (a copy with a new mtime keeps its features).
  """
  saved = saved or {}
  for key, path in paths.items():
    try:
      st = os.stat(path)
    except OSError:
      continue
    stamp = saved.get(key)
    if stamp is None or stamp[0] != st.st_size:
      return False
    if stamp[1] != st.st_mtime_ns and stamp[2] != file_digest(path):
      return False
  return True


# ----------------------------------------------------------------------------- clips


@dataclasses.dataclass(frozen=True)
class Clip:
  """One clip to encode: its split, name and media files (empty for generated clips)."""

  split: str
  name: str
  paths: Mapping[str, str]


def clips_of_split(cfg: Any, split: str, names: Iterable[str]) -> list[Clip]:
  """The clips of `names`, each with the media files the released layout decodes it from."""
  data = _data(cfg)
  if data.source != 'released':
    return [Clip(split, n, {}) for n in names]
  frames = 'faces' if data.face_or_frame == 'face' else 'video'
  root = readers.split_files(data, split)['root']
  out = []
  for n in names:
    paths = readers.media_paths(data, root, n)
    out.append(Clip(split, n, {frames: paths[frames], 'audio': paths['audio']}))
  return out


def encoder_inputs(sample: Mapping, data: Any) -> dict:
  """Decoded media -> encoder inputs: frames float32 [F, 3, S, S], audio clips float32 [C, L].

  A sample without frames or audio gets zeros in their place.
  """
  f, c = int(data.num_frames), int(data.num_audio_clips)
  size, sr = int(data.image_size), int(data.sample_rate)
  clip_len = int(round(float(data.audio_clip_seconds) * sr))
  if sample.get('frames') is None:
    frames = np.zeros((f, 3, size, size), np.float32)
  else:
    frames = preprocess.clip_preprocess(sample['frames'], size)
  if sample.get('audio') is None:
    audio = np.zeros((c, clip_len), np.float32)
  else:
    clips = decode.clip_audio(sample['audio'], sr, c, float(data.audio_clip_seconds))
    audio = preprocess.wav2vec2_normalize(clips)
  return {'frames': frames, 'audio': audio}


def decode_clip(data: Any, clip: Clip, sample: Mapping | None = None) -> dict:
  """Model-input media of one clip (runs in decode workers).

  Returns {'name', 'media': stamps, 'frames', 'audio'} or {'name', 'media', 'skip': reason}.
  `sample` is the generated sample of a synthmer clip (its media are in memory).
  """
  stamps = {k: media_stamp(p) for k, p in clip.paths.items()}
  try:
    if sample is None:
      p = clip.paths
      sample = readers.read_media(data, p.get('video'), p.get('faces'), p['audio'])
    arrays = encoder_inputs(sample, data)
  except decode.DecodeError as e:
    return {'name': clip.name, 'media': stamps, 'skip': str(e)}
  return {'name': clip.name, 'media': stamps, **arrays}


# ----------------------------------------------------------------------------- manifest


@dataclasses.dataclass
class Manifest:
  """What a features directory holds (module docstring)."""

  fingerprint: dict
  clips: dict  # name -> {'shard': id, 'row': int, 'media': stamps}
  skipped: dict  # name -> {'reason': str, 'media': stamps}
  shards: list  # ids of the shards merged in

  def covers(self, clip: Clip) -> bool:
    """True when the clip has an entry (features or a skip) made from its current media."""
    entry = self.clips.get(clip.name) or self.skipped.get(clip.name)
    return entry is not None and media_unchanged(entry.get('media'), clip.paths)

  def digest(self) -> str:
    return fingerprint_key(
        {'clips': self.clips, 'skipped': self.skipped, 'fingerprint': self.fingerprint}
    )


def _merge(manifest: Manifest, sidecar: Mapping) -> None:
  for name, entry in sidecar['clips'].items():
    manifest.clips[name] = {'shard': sidecar['id'], **entry}
    manifest.skipped.pop(name, None)
  for name, entry in sidecar['skipped'].items():
    manifest.skipped[name] = dict(entry)
    manifest.clips.pop(name, None)
  manifest.shards.append(sidecar['id'])


def load_manifest(directory: str, fingerprint: Mapping | None = None) -> Manifest:
  """The manifest of `directory` plus any finished shard not in it yet (a pass that stopped).

  With `fingerprint`, refuses a directory whose manifest was made with another one.
  """
  root = epath.Path(directory)
  path = root / MANIFEST
  if path.exists():
    raw = files.read_json(path)
    if raw.get('format') != FORMAT:
      raise ValueError(f'{path}: features format {raw.get("format")}, expected {FORMAT}')
    manifest = Manifest(raw['fingerprint'], raw['clips'], raw['skipped'], list(raw['shards']))
    if fingerprint is not None and fingerprint_key(raw['fingerprint']) != fingerprint_key(
        fingerprint
    ):
      raise ValueError(f'{path} was written for other encoders or preprocessing settings')
  else:
    manifest = Manifest(dict(fingerprint or {}), {}, {}, [])
  shard_dir = root / SHARDS
  known = set(manifest.shards)
  if shard_dir.exists():
    orphans = [
        files.read_json(p)
        for p in shard_dir.glob('*.json')
        if p.name[: -len('.json')] not in known and not p.name.startswith('.')
    ]
    for sidecar in sorted(orphans, key=lambda s: (s['created'], s['id'])):
      _merge(manifest, sidecar)
  return manifest


def write_manifest(directory: str, fingerprint: Mapping) -> Manifest:
  """Merges the finished shards into `<directory>/manifest.json` (process 0, after a pass)."""
  manifest = load_manifest(directory, fingerprint)
  files.write_json(
      epath.Path(directory) / MANIFEST,
      {
          'format': FORMAT,
          'fingerprint': manifest.fingerprint,
          'shards': manifest.shards,
          'clips': manifest.clips,
          'skipped': manifest.skipped,
          'num_clips': len(manifest.clips),
          'num_skipped': len(manifest.skipped),
      },
  )
  return manifest


class ShardWriter:
  """Writes one shard: records to a temporary file, moved into place, then its sidecar.

  Several processes may write the same shard at once (runs sharing a features cache
  encode the same missing clips): each writes its own temporary file; a writer that finds
  the same shard finished (a sidecar with the same clips and media stamps) keeps it, else
  the shard and then its sidecar are renamed into place, so a reader never finds a
  sidecar without its whole shard, nor half a file.
  """

  def __init__(self, directory: str, shard_id: str):
    self.directory = epath.Path(directory) / SHARDS
    self.shard_id = shard_id
    self._target = self.directory / f'{shard_id}.array_record'
    if files.is_remote(self._target):
      local = tempfile.mkdtemp(prefix='mer_jax_shard-')
      self._tmp = os.path.join(local, f'{shard_id}.array_record')
    else:  # same directory: the move is an atomic rename
      self.directory.mkdir(parents=True, exist_ok=True)
      self._tmp = files.temp_sibling(self._target)
    self._writer = array_record.open_writer(self._tmp)
    self._clips: dict = {}
    self._skipped: dict = {}

  def add(self, name: str, media: Mapping, vision_feats: np.ndarray, audio_feats: np.ndarray):
    record = {'name': name, 'vision_feats': vision_feats, 'audio_feats': audio_feats}
    self._writer.write(array_record.serialize_sample(record, FEATURE_KEYS))
    self._clips[name] = {'row': len(self._clips), 'media': dict(media)}

  def skip(self, name: str, media: Mapping, reason: str) -> None:
    self._skipped[name] = {'reason': reason, 'media': dict(media)}

  def close(self) -> None:
    self._writer.close()
    sidecar = self.directory / f'{self.shard_id}.json'
    if sidecar.exists():
      done = files.read_json(sidecar)
      if (done['clips'], done['skipped']) == (self._clips, self._skipped):
        _remove_tmp(self._tmp)  # another writer finished the same shard first: keep it
        return
    if files.is_remote(self._target):  # one object write: whole or absent
      files.upload(self._tmp, self._target)
      _remove_tmp(self._tmp)
    else:
      os.replace(self._tmp, os.fspath(self._target))
    files.write_json(
        sidecar,
        {
            'id': self.shard_id,
            'created': time.time(),
            'clips': self._clips,
            'skipped': self._skipped,
        },
    )


def _remove_tmp(path: str) -> None:
  os.remove(path)
  parent = os.path.dirname(path)
  if os.path.basename(parent).startswith('mer_jax_shard-'):
    shutil.rmtree(parent, ignore_errors=True)


# ----------------------------------------------------------------------------- reading


class FeatureStore:
  """name -> {'vision_feats', 'audio_feats'} of a features directory (random access).

  Holds the name index only (a few dozen bytes per clip); every lookup reads one record.
  """

  def __init__(self, directory: str):
    self.directory = str(directory)
    manifest = load_manifest(directory)
    self._index = {name: (e['shard'], e['row']) for name, e in manifest.clips.items()}
    self._sources: dict = {}  # shard id -> grain ArrayRecordDataSource, opened on first use

  def _source(self, shard_id: str):
    if shard_id not in self._sources:
      import grain

      path = epath.Path(self.directory) / SHARDS / f'{shard_id}.array_record'
      self._sources[shard_id] = grain.sources.ArrayRecordDataSource([files.local_copy(path)])
    return self._sources[shard_id]

  def __len__(self) -> int:
    return len(self._index)

  def __contains__(self, name: str) -> bool:
    return name in self._index

  def __getitem__(self, name: str) -> dict:
    where = self._index.get(name)
    if where is None:
      raise KeyError(
          f'no features for clip {name!r} in {self.directory} (run mode=features on this data)'
      )
    shard_id, row = where
    record = array_record.deserialize_sample(self._source(shard_id)[row], FEATURE_KEYS)
    if record['name'] != name:
      raise ValueError(
          f'{self.directory}: shard {shard_id} row {row} holds {record["name"]!r}, not {name!r}'
      )
    return {k: record[k] for k in FEATURE_KEYS}


_STORES: dict[str, FeatureStore] = {}


def open_store(directory: str) -> FeatureStore:
  """The process-wide `FeatureStore` of `directory` (opened on first use)."""
  directory = str(directory)
  if directory not in _STORES:
    _STORES[directory] = FeatureStore(directory)
  return _STORES[directory]


def forget_store(directory: str) -> None:
  """Drops the open store of `directory` (its manifest may have changed: reopened on use)."""
  _STORES.pop(str(directory), None)
