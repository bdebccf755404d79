"""Decoding: frame indices, PyAV video, OpenFace faces, audio clips (files written here)."""

import numpy as np
import pytest

from input_pipeline import decode

av = pytest.importorskip('av')
sf = pytest.importorskip('soundfile')


def write_mp4(path, frames, fps=10):
  """frames uint8 [T, H, W, 3]; each frame's mean gray level encodes its index."""
  with av.open(str(path), 'w') as container:
    stream = container.add_stream('mpeg4', rate=fps)
    stream.width, stream.height = frames.shape[2], frames.shape[1]
    stream.pix_fmt = 'yuv420p'
    stream.options = {'qscale': '2'}
    for f in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def gray_frames(n, h=48, w=64):
  levels = (np.arange(n) * 9 + 10).astype(np.uint8)
  return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).copy(), levels


def test_frame_indices_hand_computed():
  assert decode.frame_indices(20, 8).tolist() == [0, 2, 5, 7, 10, 12, 15, 17]
  assert decode.frame_indices(5, 8).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]
  assert decode.frame_indices(8, 8).tolist() == list(range(8))
  assert decode.frame_indices(1, 8).tolist() == [0] * 8
  assert decode.frame_indices(100, 8).tolist() == [0, 12, 25, 37, 50, 62, 75, 87]


def test_read_video_frames_at_indices(tmp_path):
  frames, levels = gray_frames(20)
  path = tmp_path / 'clip.mp4'
  write_mp4(path, frames)
  out = decode.read_video_frames(str(path), 8)
  assert out.shape == (8, 48, 64, 3) and out.dtype == np.uint8
  got = out.reshape(8, -1).mean(-1)
  want = levels[[0, 2, 5, 7, 10, 12, 15, 17]].astype(float)
  np.testing.assert_allclose(got, want, atol=3)


def test_read_video_errors(tmp_path):
  with pytest.raises(decode.DecodeError, match='missing video'):
    decode.read_video_frames(str(tmp_path / 'nope.mp4'))
  bad = tmp_path / 'bad.mp4'
  bad.write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(range(256)) * 4)
  with pytest.raises(decode.DecodeError, match='cannot decode video'):
    decode.read_video_frames(str(bad))


def test_read_face_frames(tmp_path):
  faces = np.arange(6)[:, None, None, None].repeat(3, 1).repeat(3, 2).repeat(3, 3).astype(np.uint8)
  np.save(tmp_path / 'f.npy', faces)
  out = decode.read_face_frames(str(tmp_path / 'f.npy'), 8)
  assert out[:, 0, 0, 0].tolist() == [0, 0, 1, 2, 3, 3, 4, 5]  # arange(0, 6, 0.75)
  np.save(tmp_path / 'g.npy', np.zeros((4, 5)))
  with pytest.raises(decode.DecodeError, match='shape'):
    decode.read_face_frames(str(tmp_path / 'g.npy'))


def test_clip_starts_and_padding():
  # 5 s at 16 kHz, 2 s clips: starts floor(i * 48000 / 7).
  assert decode.clip_starts(80000, 32000, 8).tolist() == [i * 48000 // 7 for i in range(8)]
  wave = np.arange(80000, dtype=np.float32)
  clips = decode.clip_audio(wave, 16000, 8, 2.0)
  assert clips.shape == (8, 32000)
  assert clips[:, 0].tolist() == [float(i * 48000 // 7) for i in range(8)]
  assert clips[-1, -1] == 79999
  short = decode.clip_audio(np.ones(8000, np.float32), 16000, 8, 2.0)
  assert short.shape == (8, 32000)
  assert short[:, :8000].min() == 1 and short[:, 8000:].max() == 0  # zero-padded, identical clips


def test_load_audio_clips_resamples_and_mixes(tmp_path):
  sr = 8000
  t = np.arange(int(3 * sr)) / sr
  left = 0.5 * np.sin(2 * np.pi * 440 * t)
  stereo = np.stack([left, left], 1).astype(np.float32)
  sf.write(tmp_path / 'a.wav', stereo, sr)
  clips = decode.load_audio_clips(str(tmp_path / 'a.wav'), 16000, 8, 2.0)
  assert clips.shape == (8, 32000) and clips.dtype == np.float32
  spec = np.abs(np.fft.rfft(clips[0]))
  assert abs(np.argmax(spec) * 16000 / 32000 - 440) < 2
  with pytest.raises(decode.DecodeError, match='missing audio'):
    decode.load_audio_clips(str(tmp_path / 'missing.wav'))
