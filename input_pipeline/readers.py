"""Readers for the released data layouts and the `config.data.source` dispatcher.

Released layout (design.md section 6), paths relative to `config.data.root`:
  labels / eval labels csv  `name, openset` (stringified list, e.g. "['happy', 'calm']"),
                            or a MER-UniBench gold npz (see `read_gold`)
  reasons csv (optional)    `name, reason`
  subtitles csv             `name, ..., english`
  video/{name}.mp4, audio/{name}.wav, openface_face/{name}/{name}.npy ([T, H, W, 3] uint8)

A sample whose media is missing or cannot be decoded is skipped and reported as
{'name', 'reason'}; nothing is dropped silently. Frames and faces are stored as the
released code reads them: resized to `config.data.image_size` squared (uint8,
`input_pipeline.decode`), which keeps memory bounded.
"""

from __future__ import annotations

import ast
import os
import pickle
from typing import Any, Iterator, Mapping
import zipfile

from absl import logging
import numpy as np

from input_pipeline import decode
from mer_jax.metrics import parsing

# The config.data fields of each released split: (root, labels, reasons, subtitles). An
# empty root, reasons or subtitles field means the training split's (`root`, ...); an
# empty `rl_labels_csv` means `labels_csv` (the RL phase then reads the cold-start labels).
RELEASED_SPLITS = {
    'train': ('root', 'labels_csv', 'reasons_csv', 'subtitles_csv'),
    'rl': ('rl_root', 'rl_labels_csv', 'rl_reasons_csv', 'rl_subtitles_csv'),
    'eval': ('eval_root', 'eval_labels_csv', 'eval_reasons_csv', 'eval_subtitles_csv'),
    'val': ('eval_root', 'val_labels_csv', 'eval_reasons_csv', 'eval_subtitles_csv'),
}
RELEASED_SPLITS['sft'] = RELEASED_SPLITS['train']


def split_files(cfg: Any, split: str) -> dict[str, str]:
  """The files of a released split: {'root', 'labels_csv', 'reasons_csv', 'subtitles_csv'}
  (paths joined to the root of the field that gave them; '' when empty) and 'labels_field'
  (the config field the labels come from)."""
  data = _data(cfg)
  if split not in RELEASED_SPLITS:
    raise ValueError(f'released split must be one of {sorted(RELEASED_SPLITS)}, got {split!r}')
  own, train = RELEASED_SPLITS[split], RELEASED_SPLITS['train']
  root = data.get(own[0]) or data.root

  def path(i: int) -> str:
    if data.get(own[i]) or i == 1 and split != 'rl':
      return _path(root, data.get(own[i]) or '')
    return _path(data.root, data.get(train[i]) or '')

  labels_field = own[1] if data.get(own[1]) or split != 'rl' else train[1]
  return {
      'root': root,
      'labels_csv': path(1),
      'reasons_csv': path(2),
      'subtitles_csv': path(3),
      'labels_field': labels_field,
  }


def _data(cfg: Any):
  return cfg.data if hasattr(cfg, 'data') and not isinstance(cfg, Mapping) else cfg


def _path(root: str, p: str) -> str:
  return p if not p or os.path.isabs(p) else os.path.join(root, p)


def parse_openset(text: str) -> list[str]:
  """ "['Happy', 'calm']" or "Happy, calm" -> ['Happy', 'calm'] (stripped, case kept).

  The released training target keeps the annotators' case; scoring lowercases. NA cells
  ('', 'nan', 'None', ... as pandas reads them) have no labels.
  """
  text = (text or '').strip()
  if text in parsing.PANDAS_NA_STRINGS:  # pandas (the released code) reads these as NaN
    return []
  labels = None
  if text.startswith('['):
    try:
      value = ast.literal_eval(text)
      if isinstance(value, (list, tuple)):
        labels = [str(v) for v in value]
    except (ValueError, SyntaxError):
      pass
  if labels is None:
    labels = text.strip('[]').replace('"', ',').replace("'", ',').split(',')
  return [label.strip() for label in labels if label.strip()]


def read_csv_column(path: str, column: str) -> dict[str, str]:
  """name -> value of `column` (UTF-8, BOM tolerated).

  A malformed file (not UTF-8, a missing or repeated column, a row with another number of
  fields, an empty name) is a `LabelFileError` naming the file and line; duplicate names
  keep the last row, as pandas-based released code does, with a warning.
  """
  out, lines = {}, {}
  for line, row in parsing.read_csv_rows(path, required=('name', column)):
    name = row['name'].strip()
    if not name:
      raise parsing.LabelFileError(f'{path}:{line}: empty sample name')
    lines.setdefault(name, []).append(line)
    out[name] = (row[column] or '').strip()
  repeated = {n: ls for n, ls in lines.items() if len(ls) > 1}
  if repeated:
    examples = ', '.join(f'{n!r} (lines {ls[0]}, {ls[-1]})' for n, ls in list(repeated.items())[:3])
    logging.warning(
        '%s: %d name(s) appear more than once; the last row counts: %s',
        path,
        len(repeated),
        examples,
    )
  return out


def media_paths(data: Any, root: str, name: str) -> dict:
  """The released layout's files of clip `name`: video, faces, audio."""
  return {
      'video': os.path.join(_path(root, data.get('video_dir') or 'video'), f'{name}.mp4'),
      'faces': os.path.join(
          _path(root, data.get('face_dir') or 'openface_face'), name, f'{name}.npy'
      ),
      'audio': os.path.join(_path(root, data.get('audio_dir') or 'audio'), f'{name}.wav'),
  }


def read_media(data: Any, video: str | None, faces: str | None, audio: str | None) -> dict:
  """{'frames' uint8 [F, S, S, 3], 'frame_indices' [F], 'audio' float32 [N]} of one clip.

  `faces` is read in face mode, `video` in frame mode; the audio comes from `audio`, or
  from the video's own track when no audio file is given (None).
  """
  num_frames, size = int(data.num_frames), int(data.image_size)
  if data.face_or_frame == 'face':
    frames, idx = decode.read_face_frames(faces, num_frames, size)
  elif data.face_or_frame == 'frame':
    frames, idx = decode.read_video_frames(video, num_frames, size)
  else:
    raise ValueError(
        f"config.data.face_or_frame must be 'face' or 'frame', got {data.face_or_frame!r}"
    )
  wave = decode.load_audio(audio or video, int(data.sample_rate))
  return {'frames': frames, 'frame_indices': idx, 'audio': wave}


def _media(data: Any, root: str, name: str) -> dict:
  paths = media_paths(data, root, name)
  media = read_media(data, paths['video'], paths['faces'], paths['audio'])
  return {'frames': media['frames'], 'audio': media['audio']}


def read_released_text(cfg: Any, split: str) -> list[dict]:
  """The text fields of every clip of a released split, in csv order; no media is opened.

  Each dict: name, subtitle, reason, labels (and valence for sentiment npz gold).
  """
  files = split_files(cfg, split)
  labels_csv = files['labels_csv']
  if not labels_csv or not os.path.exists(labels_csv):
    raise FileNotFoundError(f"config.data.{files['labels_field']} not found: {labels_csv!r}")
  gold = read_gold(labels_csv)
  reasons = read_csv_column(files['reasons_csv'], 'reason') if files['reasons_csv'] else {}
  subtitles = read_csv_column(files['subtitles_csv'], 'english') if files['subtitles_csv'] else {}
  return [
      dict(name=name, subtitle=subtitles.get(name, ''), reason=reasons.get(name, ''), **fields)
      for name, fields in gold.items()
  ]


def iter_released(cfg: Any, split: str) -> Iterator[tuple[str, dict]]:
  """Streams ('sample', sample) or ('skip', {'name', 'reason'}) in csv order."""
  data = _data(cfg)
  root = split_files(data, split)['root']
  for text in read_released_text(data, split):
    try:
      media = _media(data, root, text['name'])
    except decode.DecodeError as e:
      yield 'skip', {'name': text['name'], 'reason': str(e)}
      continue
    yield 'sample', dict(text, **media)


def read_gold(path: str) -> dict[str, dict]:
  """name -> {'labels': [...]} from a `name,openset` csv or a MER-UniBench npz.

  npz corpora give `labels = [emo]` (basic-emotion sets) or, for sentiment sets,
  `labels = []` plus `valence` (the gold float).
  """
  if path.endswith('.npz'):
    out = {}
    for name, value in read_unibench_gold(path).items():
      out[name] = (
          {'labels': [], 'valence': value}
          if isinstance(value, float)
          else {'labels': parse_openset(value)}
      )
    return out
  out = {name: {'labels': parse_openset(v)} for name, v in read_csv_column(path, 'openset').items()}
  empty = [name for name, fields in out.items() if not fields['labels']]
  if empty:
    logging.warning(
        '%s: %d name(s) have no labels (empty or unparsable openset): %s',
        path,
        len(empty),
        ', '.join(map(repr, empty[:5])),
    )
  return out


def read_released(cfg: Any, split: str) -> tuple[list[dict], list[dict]]:
  """(samples, skipped) of a released-layout split (a key of RELEASED_SPLITS)."""
  samples, skipped = [], []
  for kind, item in iter_released(cfg, split):
    (samples if kind == 'sample' else skipped).append(item)
  return samples, skipped


def load_texts(config: Any, split: str) -> list[dict]:
  """The text fields of every clip of a split (no media): dispatch on config.data.source."""
  data = _data(config)
  if data.source == 'synthmer':
    from input_pipeline import synthmer

    return synthmer.generate_split(data, split, media=False)
  if data.source == 'released':
    return read_released_text(data, split)
  raise ValueError(f"config.data.source must be 'synthmer' or 'released', got {data.source!r}")


def data_summary(**splits: tuple[list, list]) -> dict:
  """`summary.json["data"]`: sample counts per split and every skip with its reason."""
  return {
      'num_samples': {k: len(v[0]) for k, v in splits.items()},
      'skipped': [dict(s, split=k) for k, v in splits.items() for s in v[1]],
  }


def read_unibench_gold(npz_path: str, corpus_key: str | None = None) -> dict[str, Any]:
  """MER-UniBench gold npz -> {name: label str (field 'emo') or float (field 'val')}.

  MER2023/MER2024: `test1_corpus[name]['emo']`; MELD: `test_corpus[name]['emo']`;
  CMU-MOSI/MOSEI/CH-SIMS(v2): `test_corpus[name]['val']` (sentiment floats).
  """
  bad = parsing.LabelFileError
  try:
    with np.load(npz_path, allow_pickle=True) as z:
      keys = [k for k in z.files if k.endswith('_corpus')]
      if corpus_key is None:
        preferred = [k for k in ('test1_corpus', 'test_corpus') if k in keys]
        if not preferred and len(keys) != 1:
          raise bad(f'{npz_path}: choose corpus_key among {keys}')
        corpus_key = (preferred or keys)[0]
      corpus = z[corpus_key].tolist()
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
    if isinstance(e, bad):
      raise
    raise bad(f'{npz_path}: not a readable MER-UniBench npz ({type(e).__name__}: {e})') from None
  if not isinstance(corpus, dict):
    raise bad(f'{npz_path}:{corpus_key} is a {type(corpus).__name__}, expected a dict by name')
  out = {}
  for name, entry in corpus.items():
    where = f'{npz_path}:{corpus_key}[{name!r}]'
    if not isinstance(entry, dict):
      raise bad(f'{where} is a {type(entry).__name__}, expected a dict with emo or val')
    if 'emo' in entry:
      out[name] = str(entry['emo'])
    elif 'val' in entry:
      try:
        out[name] = float(entry['val'])
      except (TypeError, ValueError):
        raise bad(f'{where}: val {entry["val"]!r} is not a number') from None
      if not np.isfinite(out[name]):
        raise bad(f'{where}: val is {out[name]}, expected a finite sentiment score')
    else:
      raise bad(f'{where} has neither emo nor val: {sorted(entry)}')
  return out
