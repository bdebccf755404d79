"""Preprocessing parity with transformers' CLIP image processor and Wav2Vec2 extractor."""

import numpy as np
import pytest

from input_pipeline import preprocess

transformers = pytest.importorskip('transformers')


def _clip_processor(size):
  try:  # transformers >= 5 without torchvision: the PIL backend is the reference
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as cls
  except ImportError:
    cls = transformers.CLIPImageProcessor
  return cls(
      size={'shortest_edge': size},
      crop_size={'height': size, 'width': size},
      do_resize=True,
      do_center_crop=True,
      do_rescale=True,
      do_normalize=True,
      resample=3,
      rescale_factor=1 / 255,
      image_mean=[0.48145466, 0.4578275, 0.40821073],
      image_std=[0.26862954, 0.26130258, 0.27577711],
  )


@pytest.mark.parametrize(
    'h,w,size', [(48, 64, 32), (37, 29, 32), (120, 90, 224), (224, 224, 224), (16, 16, 32)]
)
def test_clip_preprocess_matches_hf(h, w, size):
  rng = np.random.default_rng(h * w)
  frames = rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8)
  ref = np.stack(_clip_processor(size)(list(frames), return_tensors='np')['pixel_values'])
  ours = preprocess.clip_preprocess(frames, size)
  assert ours.shape == (3, 3, size, size) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_resize_and_crop_then_preprocess_is_exact():
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (2, 90, 120, 3), dtype=np.uint8)
  stored = preprocess.resize_and_crop(frames, 32)
  assert stored.shape == (2, 32, 32, 3) and stored.dtype == np.uint8
  np.testing.assert_array_equal(
      preprocess.clip_preprocess(stored, 32), preprocess.clip_preprocess(frames, 32)
  )


def test_center_crop_offsets():
  img = np.arange(5 * 8).reshape(5, 8, 1).repeat(3, -1).astype(np.uint8)
  out = preprocess.center_crop(img, 3)
  # top = (5 - 3) // 2 = 1, left = (8 - 3) // 2 = 2
  np.testing.assert_array_equal(out[..., 0], img[1:4, 2:5, 0])


def test_wav2vec2_normalize_matches_hf():
  rng = np.random.default_rng(0)
  clips = (rng.normal(0.1, 0.3, (8, 32000))).astype(np.float32)
  fe = transformers.Wav2Vec2FeatureExtractor(
      feature_size=1,
      sampling_rate=16000,
      padding_value=0.0,
      do_normalize=True,
      return_attention_mask=False,
  )
  # The released HUBERT_LARGE encoder hands the [8, 32000] clips to the feature extractor
  # as ONE input, so they share one mean and variance (design.md 2b, item 7).
  torch = pytest.importorskip('torch')
  ref = fe(torch.from_numpy(clips), sampling_rate=16000, return_tensors='np')['input_values'][0]
  ours = preprocess.wav2vec2_normalize(clips)
  np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
  assert abs(float(ours.mean())) < 1e-5 and np.abs(ours.mean(-1)).max() > 1e-3
