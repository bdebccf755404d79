"""Media decoding exactly as the released AffectGPT code does it (design.md section 2b).

- Frame/face indices: `np.arange(0, n, n / min(8, n)).astype(int)`, the last one repeated
  up to 8 (13 faces -> [0,1,3,4,6,8,9,11]; 5 -> [0,1,2,3,4,4,4,4]).
- Faces: `openface_face/{name}/{name}.npy` (uint8 [T, H, W, 3], channels used as stored),
  each resized with `cv2.resize(face, (size, size))` (bilinear, aspect not kept).
- Video frames: decoded with PyAV and scaled in YUV by FFmpeg's bilinear swscale to
  size x size before the rgb24 conversion (a `scale=S:S:flags=bilinear,format=rgb24` filter
  graph), which is what decord's `VideoReader(height=S, width=S)` does.
- Audio: float32 samples (int16 / 32768 for PCM wavs), each channel resampled to 16 kHz
  with torchaudio's windowed-sinc resampler (`input_pipeline.resample`) BEFORE the down-mix
  (mean of the channels); a video without a wav gives its own audio track.
- Clips: zero-pad to one clip, then 8 clips of exactly 2 s starting at `k * (D - 2) / 8`
  seconds (pytorchvideo's ConstantClipsPerVideoSampler in exact fractions of the float
  duration D; the last clip ends before the end), each with its own mean removed (a side
  effect of the released mel-spectrogram code on the tensor HuBERT then reads).
Decoders raise `DecodeError` with a human-readable reason; readers turn it into a skip.
"""

from __future__ import annotations

import fractions
import os

import numpy as np

from input_pipeline import resample as resample_lib

# Bumped whenever decoding or preprocessing changes what the encoders see, so cached
# encoder features (keyed on it) are recomputed. "released-1": design.md section 2b.
PIPELINE_VERSION = 'released-1'


class DecodeError(Exception):
  """Media that is missing or cannot be decoded (the message is the skip reason)."""


def frame_indices(n: int, num_frames: int) -> np.ndarray:
  """int [num_frames]: `np.arange(0, n, n / min(num_frames, n)).astype(int)`, last repeated."""
  if n <= 0:
    raise DecodeError('video has no frames')
  idx = np.arange(0, n, n / min(num_frames, n)).astype(int)[:num_frames]
  if len(idx) < num_frames:
    idx = np.concatenate([idx, np.full(num_frames - len(idx), idx[-1])])
  return idx


def _count_video_packets(path: str) -> int:
  import av

  with av.open(path) as container:
    stream = container.streams.video[0]
    return sum(1 for p in container.demux(stream) if p.size > 0)


def _scaler(stream, size: int):
  """A PyAV filter graph: FFmpeg bilinear scale to size x size in YUV, then rgb24."""
  import av

  graph = av.filter.Graph()
  src = graph.add_buffer(template=stream)
  scale = graph.add('scale', f'{size}:{size}:flags=bilinear')
  fmt = graph.add('format', 'rgb24')
  sink = graph.add('buffersink')
  src.link_to(scale)
  scale.link_to(fmt)
  fmt.link_to(sink)
  graph.configure()
  return graph


def _decode_selected(path: str, wanted: np.ndarray, size: int) -> tuple[list[np.ndarray], int]:
  import av

  want = {}
  for slot, i in enumerate(wanted):
    want.setdefault(int(i), []).append(slot)
  out = [None] * len(wanted)
  n = 0
  with av.open(path) as container:
    stream = container.streams.video[0]
    graph = None
    for frame in container.decode(stream):
      if n in want:
        graph = graph or _scaler(stream, size)
        graph.push(frame)
        rgb = graph.pull().to_ndarray()
        for slot in want[n]:
          out[slot] = rgb
      n += 1
  return out, n


def read_video_frames(
    path: str, num_frames: int = 8, size: int = 224
) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [num_frames, size, size, 3] RGB frames, int [num_frames] indices) of `path`.

  The frame count comes from demuxing (cheap); only the selected frames are scaled and
  kept while decoding. If the decoded count differs from the packet count, the indices are
  recomputed from the decoded count and the file decoded again.
  """
  if not os.path.exists(path):
    raise DecodeError(f'missing video {path}')
  try:
    n = _count_video_packets(path)
    idx = frame_indices(n, num_frames)
    frames, decoded = _decode_selected(path, idx, size)
    if decoded != n:
      idx = frame_indices(decoded, num_frames)
      frames, decoded = _decode_selected(path, idx, size)
  except DecodeError:
    raise
  except Exception as e:  # PyAV raises many error types for broken files
    raise DecodeError(f'cannot decode video {path}: {type(e).__name__}: {e}') from e
  if decoded == 0 or any(f is None for f in frames):
    raise DecodeError(f'cannot decode video {path}: no decodable frames')
  return np.stack(frames), idx


def read_face_frames(
    npy_path: str, num_frames: int = 8, size: int = 224
) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [num_frames, size, size, 3] faces, indices) from an OpenFace `{name}.npy`."""
  import cv2

  if not os.path.exists(npy_path):
    raise DecodeError(f'missing faces {npy_path}')
  try:
    faces = np.load(npy_path, mmap_mode='r')
  except Exception as e:
    raise DecodeError(f'cannot read faces {npy_path}: {type(e).__name__}: {e}') from e
  if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[0] == 0:
    raise DecodeError(f'faces {npy_path} have shape {faces.shape}, expected [T>0, H, W, 3]')
  if faces.dtype != np.uint8:  # a cast to uint8 would wrap NaN, inf and out-of-range values
    values = np.asarray(faces)
    if values.dtype.kind not in 'biuf' or not (
        np.isfinite(values).all() and values.min() >= 0 and values.max() <= 255
    ):
      raise DecodeError(
          f'faces {npy_path} ({faces.dtype}) hold values that are not pixels in 0..255 '
          '(NaN, inf or out of range); expected uint8 crops'
      )
  idx = frame_indices(faces.shape[0], num_frames)
  resized = {
      int(i): cv2.resize(np.ascontiguousarray(faces[i], np.uint8), (size, size))
      for i in set(idx.tolist())
  }
  return np.stack([resized[int(i)] for i in idx]), idx


def _read_samples(path: str) -> tuple[np.ndarray, int]:
  """float32 [channels, N] and the rate: soundfile for audio files, PyAV for a video's track."""
  import soundfile as sf

  try:
    wave, sr = sf.read(path, dtype='float32', always_2d=True)
    return np.ascontiguousarray(wave.T), int(sr)
  except sf.LibsndfileError:
    pass
  import av

  with av.open(path) as container:
    if not container.streams.audio:
      raise DecodeError(f'{path} has no audio track')
    stream = container.streams.audio[0]
    chunks = [
        f.to_ndarray().astype(np.float32).reshape(len(f.layout.channels), -1)
        for f in container.decode(stream)
    ]
    if not chunks:
      raise DecodeError(f'audio of {path} is empty')
    return np.concatenate(chunks, axis=1), int(stream.rate)


def load_audio(path: str, sr: int = 16000) -> np.ndarray:
  """float32 [N] at `sr`: every channel resampled (torchaudio's sinc), then their mean."""
  if not os.path.exists(path):
    raise DecodeError(f'missing audio {path}')
  try:
    wave, rate = _read_samples(path)
  except DecodeError:
    raise
  except Exception as e:
    raise DecodeError(f'cannot decode audio {path}: {type(e).__name__}: {e}') from e
  if wave.size == 0:
    raise DecodeError(f'audio {path} is empty')
  wave = resample_lib.resample(wave, rate, sr)
  # The released code down-mixes stereo after resampling (3+ channels: the same mean).
  return wave.mean(axis=0) if wave.shape[0] > 1 else wave[0]


def clip_starts(num_samples: int, clip_samples: int, num_clips: int, sr: int) -> np.ndarray:
  """Start samples of the released clips: `int(k * (D - S) / C * sr)`, k = 0..C-1.

  D = num_samples / sr as a float and S = clip_samples / sr, combined in exact fractions
  like pytorchvideo's ConstantClipsPerVideoSampler (so the last clip ends before the end).
  """
  duration = num_samples / sr
  span = fractions.Fraction(max(duration - clip_samples / sr, 0))
  step = span / num_clips
  return np.array([int(step * k * sr) for k in range(num_clips)], np.int64)


def clip_audio(
    wave: np.ndarray, sr: int = 16000, num_clips: int = 8, clip_seconds: float = 2.0
) -> np.ndarray:
  """float32 [N] -> float32 [num_clips, clip_seconds * sr]: zero-pad, clip, remove each mean."""
  s = int(round(clip_seconds * sr))
  wave = np.asarray(wave, np.float32)
  if wave.shape[0] < s:
    wave = np.pad(wave, (0, s - wave.shape[0]))
  starts = clip_starts(wave.shape[0], s, num_clips, sr)
  clips = np.stack([wave[a : a + s] for a in starts])
  return clips - clips.mean(axis=1, keepdims=True)


def load_audio_clips(
    path: str, sr: int = 16000, num_clips: int = 8, clip_seconds: float = 2.0
) -> np.ndarray:
  """float32 [num_clips, clip_seconds * sr] clips of an audio (or video) file, unnormalized."""
  return clip_audio(load_audio(path, sr), sr, num_clips, clip_seconds)
