"""Media decoding: video frames with PyAV, faces from OpenFace npy, audio with librosa.

Frame indices and audio clips follow the released AffectGPT code (design.md section 2):
- 8 frames at `np.arange(0, n, n / 8).astype(int)` (the last index repeated if fewer);
- audio resampled to 16 kHz mono, zero-padded to >= one clip, then 8 clips whose starts
  are evenly spaced over [0, duration - clip] (ImageBind's ConstantClipsPerVideoSampler;
  they overlap for short audio).
Decoders raise `DecodeError` with a human-readable reason; readers turn it into a skip.
"""

from __future__ import annotations

import os

import numpy as np


class DecodeError(Exception):
  """Media that is missing or cannot be decoded (the message is the skip reason)."""


def frame_indices(n: int, num_frames: int) -> np.ndarray:
  """int [num_frames]: `np.arange(0, n, n/num_frames).astype(int)`, padded with the last."""
  if n <= 0:
    raise DecodeError('video has no frames')
  idx = np.arange(0, n, n / num_frames).astype(int)[:num_frames]
  if len(idx) < num_frames:
    idx = np.concatenate([idx, np.full(num_frames - len(idx), idx[-1])])
  return np.minimum(idx, n - 1)


def _count_video_packets(path: str) -> int:
  import av

  with av.open(path) as container:
    stream = container.streams.video[0]
    return sum(1 for p in container.demux(stream) if p.size > 0)


def _decode_selected(path: str, wanted: np.ndarray) -> tuple[list[np.ndarray], int]:
  import av

  want = {}
  for slot, i in enumerate(wanted):
    want.setdefault(int(i), []).append(slot)
  out = [None] * len(wanted)
  n = 0
  with av.open(path) as container:
    stream = container.streams.video[0]
    for frame in container.decode(stream):
      if n in want:
        rgb = frame.to_ndarray(format='rgb24')
        for slot in want[n]:
          out[slot] = rgb
      n += 1
  return out, n


def read_video_frames(path: str, num_frames: int = 8) -> np.ndarray:
  """uint8 [num_frames, H, W, 3] RGB frames of `path` at the released indices.

  The frame count comes from demuxing (cheap); only the selected frames are kept while
  decoding. If the decoded count differs from the packet count, the indices are
  recomputed from the decoded count and the file decoded again.
  """
  if not os.path.exists(path):
    raise DecodeError(f'missing video {path}')
  try:
    n = _count_video_packets(path)
    frames, decoded = _decode_selected(path, frame_indices(n, num_frames))
    if decoded != n:
      frames, decoded = _decode_selected(path, frame_indices(decoded, num_frames))
  except DecodeError:
    raise
  except Exception as e:  # PyAV raises many error types for broken files
    raise DecodeError(f'cannot decode video {path}: {type(e).__name__}: {e}') from e
  if decoded == 0 or any(f is None for f in frames):
    raise DecodeError(f'cannot decode video {path}: no decodable frames')
  return np.stack(frames)


def read_face_frames(npy_path: str, num_frames: int = 8) -> np.ndarray:
  """uint8 [num_frames, H, W, 3] faces from an OpenFace `{name}.npy` ([T, H, W, 3])."""
  if not os.path.exists(npy_path):
    raise DecodeError(f'missing faces {npy_path}')
  try:
    faces = np.load(npy_path, mmap_mode='r')
  except Exception as e:
    raise DecodeError(f'cannot read faces {npy_path}: {type(e).__name__}: {e}') from e
  if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[0] == 0:
    raise DecodeError(f'faces {npy_path} have shape {faces.shape}, expected [T>0, H, W, 3]')
  return np.asarray(faces[frame_indices(faces.shape[0], num_frames)], dtype=np.uint8)


def load_audio(path: str, sr: int = 16000) -> np.ndarray:
  """float32 [N] mono waveform resampled to `sr` (librosa: soundfile + soxr)."""
  import librosa

  if not os.path.exists(path):
    raise DecodeError(f'missing audio {path}')
  try:
    wave, _ = librosa.load(path, sr=sr, mono=True)
  except Exception as e:
    raise DecodeError(f'cannot decode audio {path}: {type(e).__name__}: {e}') from e
  if wave.size == 0:
    raise DecodeError(f'audio {path} is empty')
  return wave.astype(np.float32)


def clip_starts(num_samples: int, clip_samples: int, num_clips: int) -> np.ndarray:
  """Start samples `floor(i * (N - S) / (C - 1))`, i = 0..C-1 (N already >= S)."""
  span = max(num_samples - clip_samples, 0)
  return np.array([i * span // max(num_clips - 1, 1) for i in range(num_clips)], np.int64)


def clip_audio(
    wave: np.ndarray, sr: int = 16000, num_clips: int = 8, clip_seconds: float = 2.0
) -> np.ndarray:
  """float32 [N] -> float32 [num_clips, clip_seconds * sr]: zero-pad, evenly spaced clips."""
  s = int(round(clip_seconds * sr))
  wave = np.asarray(wave, np.float32)
  if wave.shape[0] < s:
    wave = np.pad(wave, (0, s - wave.shape[0]))
  starts = clip_starts(wave.shape[0], s, num_clips)
  return np.stack([wave[a : a + s] for a in starts])


def load_audio_clips(
    path: str, sr: int = 16000, num_clips: int = 8, clip_seconds: float = 2.0
) -> np.ndarray:
  """float32 [num_clips, clip_seconds * sr] raw (unnormalized) clips of an audio file."""
  return clip_audio(load_audio(path, sr), sr, num_clips, clip_seconds)
