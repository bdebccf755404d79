"""The numpy resampler equals torchaudio.functional.resample (sinc_interp_hann, width 6, rolloff 0.99)."""

import numpy as np
import pytest

from input_pipeline import resample

REF = np.load(__import__("pathlib").Path(__file__).parent / "data/affectgpt_ref/resample.npz")
RATES = (44100, 48000, 22050, 8000, 32000, 11025)


@pytest.mark.parametrize("sr", RATES)
def test_matches_torchaudio_reference(sr):
  """Outputs of torchaudio 2.9.1 (tests/data/affectgpt_ref/README.md)."""
  out = resample.resample(REF[f"in_{sr}"], sr, 16000)
  want = REF[f"out_{sr}"]
  assert out.shape == want.shape and out.dtype == np.float32
  np.testing.assert_allclose(out, want, atol=2e-6, rtol=0)


def test_matches_installed_torchaudio():
  torch = pytest.importorskip("torch")
  torchaudio = pytest.importorskip("torchaudio")
  x = np.random.default_rng(1).normal(size=(3, 9001)).astype(np.float32)
  for sr, new in ((44100, 16000), (16000, 44100), (48000, 22050)):
    want = torchaudio.functional.resample(torch.from_numpy(x), sr, new).numpy()
    np.testing.assert_allclose(resample.resample(x, sr, new), want, atol=2e-6, rtol=0)


def test_identity_and_errors():
  x = np.ones(10, np.float32)
  assert resample.resample(x, 16000, 16000) is x
  with pytest.raises(TypeError, match="float"):
    resample.resample(np.ones(10, np.int16), 8000, 16000)
