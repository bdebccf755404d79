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
  # Released rule for n < 8: every frame once, the last repeated (design.md 2b, item 1).
  assert decode.frame_indices(5, 8).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
  assert decode.frame_indices(13, 8).tolist() == [0, 1, 3, 4, 6, 8, 9, 11]
  assert decode.frame_indices(37, 8).tolist() == [0, 4, 9, 13, 18, 23, 27, 32]
  assert decode.frame_indices(8, 8).tolist() == list(range(8))
  assert decode.frame_indices(1, 8).tolist() == [0] * 8
  assert decode.frame_indices(100, 8).tolist() == [0, 12, 25, 37, 50, 62, 75, 87]


def test_read_video_frames_at_indices(tmp_path):
  frames, levels = gray_frames(20)
  path = tmp_path / 'clip.mp4'
  write_mp4(path, frames)
  out, idx = decode.read_video_frames(str(path), 8, size=32)
  assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8  # scaled to size x size
  assert idx.tolist() == [0, 2, 5, 7, 10, 12, 15, 17]
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
  out, idx = decode.read_face_frames(str(tmp_path / 'f.npy'), 8, size=5)
  assert out.shape == (8, 5, 5, 3)  # cv2 bilinear to size x size, aspect not kept
  assert out[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 5, 5] == idx.tolist()
  np.save(tmp_path / 'g.npy', np.zeros((4, 5)))
  with pytest.raises(decode.DecodeError, match='shape'):
    decode.read_face_frames(str(tmp_path / 'g.npy'))


def test_clip_starts_and_padding():
  # 5 s at 16 kHz, 2 s clips: starts k * (5 - 2) / 8 s (divided by 8, not 7), so the
  # last clip ends 3/8 s before the end.
  assert decode.clip_starts(80000, 32000, 8, 16000).tolist() == [k * 6000 for k in range(8)]
  # 3.3 s: 3.3 - 2 is 1.2999999999999998 in floats, so every start truncates one sample
  # lower than the exact k * 2600 (as the released code does; the parity test checks it).
  assert decode.clip_starts(52800, 32000, 8, 16000).tolist() == [
      0,
      2599,
      5199,
      7799,
      10399,
      12999,
      15599,
      18199,
  ]
  wave = np.arange(80000, dtype=np.float32)
  clips = decode.clip_audio(wave, 16000, 8, 2.0)
  assert clips.shape == (8, 32000)
  # Each clip has its own mean removed (the released code's in-place DC removal).
  np.testing.assert_allclose(clips.mean(axis=1), 0, atol=1e-2)
  np.testing.assert_allclose(clips[:, 0], -15999.5, rtol=1e-6)
  short = decode.clip_audio(np.ones(8000, np.float32), 16000, 8, 2.0)
  assert short.shape == (8, 32000)
  np.testing.assert_allclose(short[:, :8000], 0.75)  # zero-padded, then mean 0.25 removed
  np.testing.assert_allclose(short[:, 8000:], -0.25)


def test_load_audio_resamples_each_channel_before_the_mix(tmp_path):
  """stereo int16 wav -> soundfile float32 -> torchaudio-equal resample -> channel mean."""
  from input_pipeline import resample

  rng = np.random.default_rng(0)
  pcm = rng.integers(-20000, 20000, size=(4410, 2), dtype=np.int16)
  sf.write(tmp_path / 's.wav', pcm, 44100, subtype='PCM_16')
  want = resample.resample((pcm.T / 32768).astype(np.float32), 44100, 16000).mean(0)
  np.testing.assert_array_equal(decode.load_audio(str(tmp_path / 's.wav')), want)


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
