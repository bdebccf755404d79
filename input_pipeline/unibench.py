"""MER-UniBench's nine test sets, read from their released folders and label files.

Layouts, splits and label keys as the official AffectGPT code reads them (its `config.py`
paths and the `read_test_names` / `get_test_name2gt` of each dataset class):

===========  ========================  ===================  ==============================
dataset      folder (under the root)   labels               test split, gold
===========  ========================  ===================  ==============================
MER2023      mer2023-dataset-process   label-6way.npz       test1_corpus[name]['emo'] (411)
MER2024      mer2024-dataset-process   label-6way.npz       test1_corpus[name]['emo'] (1169)
IEMOCAP      iemocap-process           label_4way.npz       whole_corpus, session 5 (names
                                                            `Ses05...`), 'emo' an index into
                                                            happy, sad, neutral, anger (1241)
MELD         meld-process              label.npz            test_corpus, 'emo' an index into
                                                            anger, joy, sadness, neutral,
                                                            disgust, fear, surprise (2610)
CMUMOSI      cmumosi-process           label.npz            test_corpus[name]['val'] (686)
CMUMOSEI     cmumosei-process          label.npz            test_corpus[name]['val'] (4659)
SIMS         sims-process              label.npz            test_corpus[name]['val'] (457)
SIMSv2       simsv2-process            label.npz            test_corpus[name]['val'] (1034)
OVMERD       ovmerdplus-process        ovlabel.csv          every row, `name,openset`; an
                                                            empty list is ['neutral'] (532)
===========  ========================  ===================  ==============================

Media: faces `openface_face/{name}.npy` (no per-clip subfolder, unlike MER2025), audio
`{audio dir}/{name}.wav`, video `{video dir}/{name}.mp4` (IEMOCAP `.avi`; MER2023 either).
Subtitles: `transcription-engchi-polish.csv` column `english`; MER2024
`transcription_merge.csv` column `chinese`; OV-MERD+ `subtitle_eng.csv` column `sentence`.
Every set is asked the OV question (the official zero-shot inference). The counts are the
official test sizes; a different count is logged, not an error (tests use small files).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from absl import logging

from input_pipeline import readers


@dataclasses.dataclass(frozen=True)
class UniBenchSet:
  """Where one MER-UniBench test set lives and how its gold is read."""

  name: str  # our dataset name (mer_jax.metrics.unibench)
  folder: str  # the official `*-process` folder
  labels: str  # label file in the folder
  corpus: str = ""  # npz key ('' = csv)
  classes: tuple[str, ...] = ()  # label of each integer 'emo' index
  session: int = 0  # IEMOCAP: the test session
  subtitles: str = "transcription-engchi-polish.csv"
  subtitle_column: str = "english"
  video_dir: str = "video"
  video_exts: tuple[str, ...] = (".mp4",)
  audio_dir: str = "audio"
  face_dir: str = "openface_face"
  official_count: int = 0


SETS = {
    s.name: s
    for s in (
        UniBenchSet(
            "MER2023",
            "mer2023-dataset-process",
            "label-6way.npz",
            "test1_corpus",
            video_exts=(".mp4", ".avi"),
            official_count=411,
        ),
        UniBenchSet(
            "MER2024",
            "mer2024-dataset-process",
            "label-6way.npz",
            "test1_corpus",
            subtitles="transcription_merge.csv",
            subtitle_column="chinese",
            official_count=1169,
        ),
        UniBenchSet(
            "MELD",
            "meld-process",
            "label.npz",
            "test_corpus",
            classes=("anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise"),
            video_dir="subvideo",
            audio_dir="subaudio",
            official_count=2610,
        ),
        UniBenchSet(
            "IEMOCAP",
            "iemocap-process",
            "label_4way.npz",
            "whole_corpus",
            classes=("happy", "sad", "neutral", "anger"),
            session=5,
            video_dir="subvideo-tgt",
            video_exts=(".avi",),
            audio_dir="subaudio",
            official_count=1241,
        ),
        UniBenchSet(
            "CMUMOSI",
            "cmumosi-process",
            "label.npz",
            "test_corpus",
            video_dir="subvideo",
            audio_dir="subaudio",
            official_count=686,
        ),
        UniBenchSet(
            "CMUMOSEI",
            "cmumosei-process",
            "label.npz",
            "test_corpus",
            video_dir="subvideo_new",
            audio_dir="subaudio",
            official_count=4659,
        ),
        UniBenchSet("SIMS", "sims-process", "label.npz", "test_corpus", official_count=457),
        UniBenchSet(
            "SIMSv2",
            "simsv2-process",
            "label.npz",
            "test_corpus",
            video_dir="video_new",
            official_count=1034,
        ),
        UniBenchSet(
            "OVMERD",
            "ovmerdplus-process",
            "ovlabel.csv",
            subtitles="subtitle_eng.csv",
            subtitle_column="sentence",
            official_count=532,
        ),
    )
}


_BY_LOWER = {k.lower(): k for k in SETS}  # set names are matched case-insensitively


def selected(names: str) -> list[UniBenchSet]:
  """The sets of a comma-separated list (`eval.unibench_datasets`; '' = all nine)."""
  if not names.strip():
    return list(SETS.values())
  out = []
  for name in names.split(","):
    key = _BY_LOWER.get(name.strip().lower())
    if key is None:
      raise ValueError(
          f"config.eval.unibench_datasets: unknown set {name.strip()!r}; known: {', '.join(SETS)}"
      )
    out.append(SETS[key])
  return out


def parse_folders(text: str) -> dict[str, str]:
  """`NAME=DIR,NAME=DIR` (`eval.unibench_folders`) -> {NAME: DIR}."""
  out = {}
  for item in filter(None, (x.strip() for x in text.split(","))):
    name, sep, directory = item.partition("=")
    key = _BY_LOWER.get(name.strip().lower())
    if not sep or key is None or not directory.strip():
      raise ValueError(
          f"config.eval.unibench_folders: {item!r} is not NAME=DIR with NAME in {', '.join(SETS)}"
      )
    out[key] = directory.strip()
  return out


def folder(spec: UniBenchSet, root: str, folders: Mapping[str, str] | None = None) -> str:
  """The dataset's folder: `folders[name]` when given, else `<root>/<official folder>`."""
  override = (folders or {}).get(spec.name, "")
  return override or os.path.join(root, spec.folder)


def read_gold(spec: UniBenchSet, directory: str) -> dict[str, Any]:
  """name -> gold of the test split: a label (basic sets), a float (sentiment sets) or a
  label list (OV-MERD+), in the file's order."""
  path = os.path.join(directory, spec.labels)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{spec.name}: label file {path} does not exist")
  if not spec.corpus:
    gold = {}
    for name, value in readers.read_csv_column(path, "openset").items():
      gold[name] = readers.parse_openset(value) or ["neutral"]
    return gold
  gold = readers.read_unibench_gold(path, spec.corpus)
  if spec.session:
    gold = {n: g for n, g in gold.items() if n[4:5] == str(spec.session)}
  if spec.classes:
    gold = {n: spec.classes[int(g)] if str(g).isdigit() else g for n, g in gold.items()}
  if spec.official_count and len(gold) != spec.official_count:
    logging.warning(
        "%s: %d test samples in %s (the official test set has %d)",
        spec.name,
        len(gold),
        path,
        spec.official_count,
    )
  return gold


def _video(spec: UniBenchSet, directory: str, name: str) -> str:
  base = os.path.join(directory, spec.video_dir, name)
  exts = spec.video_exts
  return next((base + e for e in exts if os.path.exists(base + e)), base + exts[0])


def media_paths(spec: UniBenchSet, directory: str, name: str) -> dict[str, str]:
  """The clip's files: `video`, `faces` (`openface_face/{name}.npy`), `audio`."""
  return {
      "video": _video(spec, directory, name),
      "faces": os.path.join(directory, spec.face_dir, f"{name}.npy"),
      "audio": os.path.join(directory, spec.audio_dir, f"{name}.wav"),
  }


def texts(spec: UniBenchSet, directory: str, gold: Mapping[str, Any]) -> list[dict]:
  """The test clips' text samples, in gold order: name, subtitle, labels (the gold labels;
  [] for sentiment sets), valence (sentiment gold, else None), reason ('')."""
  path = os.path.join(directory, spec.subtitles)
  subtitles = readers.read_csv_column(path, spec.subtitle_column) if os.path.exists(path) else {}
  out = []
  for name, value in gold.items():
    sentiment = isinstance(value, float)
    out.append(
        dict(
            name=name,
            subtitle=subtitles.get(name, ""),
            reason="",
            labels=[] if sentiment else (value if isinstance(value, list) else [value]),
            valence=value if sentiment else None,
        )
    )
  return out
