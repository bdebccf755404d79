"""Band-limited resampling equal to `torchaudio.functional.resample` (numpy, no torch).

The released AffectGPT code resamples every wav with torchaudio's default: windowed-sinc
interpolation with a Hann window (`sinc_interp_hann`), `lowpass_filter_width=6`,
`rolloff=0.99` (design.md section 2b, item 5). The algorithm, for rates reduced by their
gcd to `orig` -> `new`:

1. cutoff `base = min(orig, new) * rolloff`; half-width `width = ceil(6 * orig / base)`;
2. kernel `k[j, i] = sinc(t) * cos(t * pi / 12) ** 2 * base / orig` with
   `t = clamp((i - width) / orig - j / new, +-6 / base) * base` for output phase j < new and
   tap i < 2 * width + orig (computed in the waveform's dtype, as torchaudio does);
3. pad the signal with `width` zeros on the left and `width + orig` on the right, take
   frames of `2 * width + orig` samples every `orig` samples, and `frames @ k.T` gives `new`
   output samples per frame; keep the first `ceil(new * length / orig)`.

tests/test_input_resample.py compares it with torchaudio's outputs (committed arrays made
by torchaudio 2.9.1, and torchaudio itself where it is installed).
"""

from __future__ import annotations

import functools
import math

import numpy as np

LOWPASS_FILTER_WIDTH = 6
ROLLOFF = 0.99


@functools.lru_cache(maxsize=16)
def sinc_kernel(orig: int, new: int, dtype: str = "float32") -> tuple[np.ndarray, int]:
  """(kernel [new, 2 * width + orig], width) for rates already divided by their gcd."""
  dt = np.dtype(dtype)
  base = min(orig, new) * ROLLOFF
  width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base)
  idx = np.arange(-width, width + orig, dtype=dt)[None, :] / dt.type(orig)
  t = np.arange(0, -new, -1, dtype=dt)[:, None] / dt.type(new) + idx
  t = t * dt.type(base)
  t = np.clip(t, -LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH).astype(dt)
  window = np.cos(t * dt.type(math.pi) / dt.type(LOWPASS_FILTER_WIDTH) / dt.type(2)) ** 2
  t = t * dt.type(math.pi)
  scale = dt.type(base / orig)
  with np.errstate(invalid="ignore", divide="ignore"):
    kernel = np.where(t == 0, dt.type(1.0), np.sin(t) / t)
  kernel = (kernel * (window * scale)).astype(dt)
  return kernel, width


def resample(wave: np.ndarray, orig_freq: int, new_freq: int) -> np.ndarray:
  """float [..., N] at `orig_freq` -> [..., ceil(N * new / orig)] at `new_freq` (same dtype)."""
  wave = np.asarray(wave)
  if not np.issubdtype(wave.dtype, np.floating):
    raise TypeError(f"resample expects a float waveform, got {wave.dtype}")
  if orig_freq <= 0 or new_freq <= 0:
    raise ValueError(f"sample rates must be positive, got {orig_freq} -> {new_freq}")
  if orig_freq == new_freq:
    return wave
  g = math.gcd(int(orig_freq), int(new_freq))
  orig, new = int(orig_freq) // g, int(new_freq) // g
  kernel, width = sinc_kernel(orig, new, str(wave.dtype))
  shape = wave.shape
  flat = wave.reshape(-1, shape[-1])
  length = flat.shape[1]
  padded = np.pad(flat, ((0, 0), (width, width + orig)))
  taps = kernel.shape[1]
  num_frames = (padded.shape[1] - taps) // orig + 1
  frames = np.lib.stride_tricks.sliding_window_view(padded, taps, axis=1)[:, ::orig][:, :num_frames]
  out = np.einsum("bft,nt->bfn", frames.astype(np.float64), kernel.astype(np.float64))
  out = out.reshape(flat.shape[0], -1)[:, : math.ceil(new * length / orig)]
  return out.astype(wave.dtype).reshape(shape[:-1] + (-1,))
