"""Writes a small dataset in the released AffectGPT layout (real mp4/wav files) for tests."""

import csv
import pathlib

import numpy as np


def write_mp4(path, num_frames: int, h: int = 40, w: int = 56, seed: int = 0) -> None:
  import av

  rng = np.random.default_rng(seed)
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=10)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    for i in range(num_frames):
      img = np.full((h, w, 3), (10 + 8 * i) % 240, np.uint8) + rng.integers(
          0, 5, (h, w, 3), dtype=np.uint8
      )
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def write_csv(path, header, rows) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def write_released_dataset(root, num_good: int = 6) -> dict:
  """`num_good` usable clips + one corrupt mp4 + one clip without its wav.

  Files: video/*.mp4, audio/*.wav, labels.csv (name,openset), reasons.csv (name,reason),
  subtitle_chieng.csv (name,chinese,english). Returns {'root', 'corrupt', 'noaudio', 'good'}.
  """
  import soundfile as sf

  root = pathlib.Path(root)
  (root / "video").mkdir(parents=True, exist_ok=True)
  (root / "audio").mkdir(exist_ok=True)
  good = [f"clip_{i:02d}" for i in range(num_good)]
  corrupt, noaudio = "clip_corrupt", "clip_noaudio"
  words = [
      ["happy", "excited"],
      ["sad"],
      ["angry", "annoyed"],
      ["worried"],
      ["calm"],
      ["surprised"],
  ]
  for i, name in enumerate(good + [corrupt, noaudio]):
    if name == corrupt:
      (root / "video" / f"{name}.mp4").write_bytes(b"\x00\x00\x00\x20ftypisom" + b"garbage" * 200)
    else:
      write_mp4(root / "video" / f"{name}.mp4", 10 + i, seed=i)
    if name != noaudio:
      sr = 22050 if i % 2 else 16000
      t = np.arange(int((1.5 + 0.3 * i) * sr)) / sr
      sf.write(root / "audio" / f"{name}.wav", 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * t), sr)
  names = good + [corrupt, noaudio]
  write_csv(
      root / "labels.csv",
      ["name", "openset"],
      [[n, str(words[i % len(words)])] for i, n in enumerate(names)],
  )
  write_csv(
      root / "reasons.csv",
      ["name", "reason"],
      [
          [n, f"The person in clip {i} looks {words[i % len(words)][0]} and speaks softly."]
          for i, n in enumerate(names)
      ],
  )
  write_csv(
      root / "subtitle_chieng.csv",
      ["name", "chinese", "english"],
      [[n, "你好", f"This is clip number {i}."] for i, n in enumerate(names)],
  )
  return {"root": root, "corrupt": corrupt, "noaudio": noaudio, "good": good}


def write_unibench(root, per_set: int = 2) -> dict:
  """The nine MER-UniBench test sets in their released layouts (tiny, faces + wav).

  Each set gets `per_set` test clips plus one training clip (absent from the test split)
  and, for IEMOCAP, one session-1 clip (not tested). Returns {set: {name: gold}} of the
  test clips; basic-emotion gold as the label string, sentiment as the float.
  """
  import soundfile as sf

  root = pathlib.Path(root)
  specs = {
      "MER2023": ("mer2023-dataset-process", "label-6way.npz", "test1_corpus"),
      "MER2024": ("mer2024-dataset-process", "label-6way.npz", "test1_corpus"),
      "MELD": ("meld-process", "label.npz", "test_corpus"),
      "IEMOCAP": ("iemocap-process", "label_4way.npz", "whole_corpus"),
      "CMUMOSI": ("cmumosi-process", "label.npz", "test_corpus"),
      "CMUMOSEI": ("cmumosei-process", "label.npz", "test_corpus"),
      "SIMS": ("sims-process", "label.npz", "test_corpus"),
      "SIMSv2": ("simsv2-process", "label.npz", "test_corpus"),
      "OVMERD": ("ovmerdplus-process", "ovlabel.csv", ""),
  }
  audio_dirs = {"MELD": "subaudio", "IEMOCAP": "subaudio", "CMUMOSI": "subaudio"}
  audio_dirs["CMUMOSEI"] = "subaudio"
  meld = ("anger", "joy", "sadness", "neutral", "disgust", "fear", "surprise")
  iemocap = ("happy", "sad", "neutral", "anger")
  gold_out = {}
  for k, (set_name, (folder, labels, corpus)) in enumerate(specs.items()):
    d = root / folder
    (d / "openface_face").mkdir(parents=True, exist_ok=True)
    (d / audio_dirs.get(set_name, "audio")).mkdir(exist_ok=True)
    prefix = "Ses05F_impro0" if set_name == "IEMOCAP" else f"{set_name.lower()}_"
    names = [f"{prefix}{i}" for i in range(per_set)]
    gold, entries = {}, {}
    for i, name in enumerate(names):
      if set_name in ("MER2023", "MER2024"):
        gold[name] = ("happy", "worried", "angry")[i % 3]
        entries[name] = {"emo": gold[name]}
      elif set_name == "MELD":
        gold[name] = meld[(i + 1) % 7]
        entries[name] = {"emo": (i + 1) % 7}  # the released MELD npz stores indices
      elif set_name == "IEMOCAP":
        gold[name] = iemocap[i % 4]
        entries[name] = {"emo": i % 4}
      elif set_name == "OVMERD":
        gold[name] = [["happy", "relaxed"], ["sad"], []][i % 3] or ["neutral"]
        entries[name] = str([["happy", "relaxed"], ["sad"], []][i % 3])
      else:
        gold[name] = (1.2, -0.8, 0.0)[i % 3]
        entries[name] = {"val": gold[name]}
    for i, name in enumerate(names):
      faces = np.full((5 + i, 20, 16, 3), 30 * (i + k) % 255, np.uint8)
      np.save(d / "openface_face" / f"{name}.npy", faces)
      t = np.arange(int(1.2 * 16000)) / 16000
      sf.write(d / audio_dirs.get(set_name, "audio") / f"{name}.wav", 0.1 * np.sin(2e2 * t), 16000)
    if set_name == "OVMERD":
      write_csv(d / labels, ["name", "openset"], [[n, entries[n]] for n in names])
      write_csv(d / "subtitle_eng.csv", ["name", "sentence"], [[n, f"Line {n}."] for n in names])
    else:
      corpora = {"train_corpus": {"train_clip": next(iter(entries.values()))}}
      if set_name == "IEMOCAP":
        entries = dict(entries, Ses01M_script01_F000={"emo": 1})  # session 1: training
      corpora[corpus] = entries
      np.savez(d / labels, **corpora)
      column = "chinese" if set_name == "MER2024" else "english"
      subtitles = (
          "transcription_merge.csv" if set_name == "MER2024" else "transcription-engchi-polish.csv"
      )
      write_csv(d / subtitles, ["name", column], [[n, f"Line {n}."] for n in names])
    gold_out[set_name] = gold
  return gold_out
