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
      img = np.full((h, w, 3), 10 + 8 * i, np.uint8) + rng.integers(0, 5, (h, w, 3), dtype=np.uint8)
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
