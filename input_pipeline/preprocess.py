"""Numpy preprocessing equal to the Hugging Face processors the released code uses.

- `clip_preprocess` = `CLIPImageProcessor` (resize the shortest side with PIL bicubic,
  center crop, rescale 1/255, normalize with the CLIP mean/std), channels first.
- `wav2vec2_normalize` = `Wav2Vec2FeatureExtractor(do_normalize=True)` as the released
  code calls it: on the [8, 32000] clips of one sample as ONE input, so one mean and one
  variance over all clips together (design.md section 2b, item 7).
tests/test_input_preprocess.py checks both against `transformers` to 1e-5.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def resize_shortest_side(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8, shortest side = size, long side = int(size * long / short)."""
  h, w = image.shape[:2]
  if h <= w:
    new_h, new_w = size, int(size * w / h)
  else:
    new_h, new_w = int(size * h / w), size
  if (new_h, new_w) == (h, w):
    return image
  return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f'cannot center-crop {h}x{w} to {size}')
  top, left = (h - size) // 2, (w - size) // 2
  return image[top : top + size, left : left + size]


def resize_and_crop(frames: np.ndarray, size: int) -> np.ndarray:
  """uint8 [F, H, W, 3] -> uint8 [F, size, size, 3]: the CLIP geometry, before rescaling.

  Readers store frames in this form; `clip_preprocess` on its output is exact because
  resizing a size x size image to size x size is the identity.
  """
  return np.stack(
      [center_crop(resize_shortest_side(np.ascontiguousarray(f), size), size) for f in frames]
  )


def clip_preprocess(frames_uint8: np.ndarray, size: int) -> np.ndarray:
  """uint8 [F, H, W, 3] (or one [H, W, 3] image) -> float32 [F, 3, size, size]."""
  frames = np.asarray(frames_uint8)
  if frames.ndim == 3:
    frames = frames[None]
  if frames.dtype != np.uint8:
    raise TypeError(f'clip_preprocess expects uint8 frames, got {frames.dtype}')
  x = resize_and_crop(frames, size).astype(np.float64) * (1 / 255)
  x = (x.astype(np.float32) - CLIP_MEAN) / CLIP_STD
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def wav2vec2_normalize(clips: np.ndarray) -> np.ndarray:
  """float32 [C, S] clips of one sample -> `(x - mean) / sqrt(var + 1e-7)` over all of them."""
  x = np.asarray(clips, np.float32)
  return ((x - x.mean()) / np.sqrt(x.var() + 1e-7)).astype(np.float32)
