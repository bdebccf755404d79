"""mer_jax.predict: a released checkpoint on the released layout and on new video files."""

import csv

import affectgpt_fixtures as fx
import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")

from input_pipeline import readers  # noqa: E402
from input_pipeline import tokenization  # noqa: E402
from mer_jax import predict  # noqa: E402
from mer_jax.decode import generation  # noqa: E402


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  return fx.write_release(tmp_path_factory.mktemp("release"))


def _config(recipe, release, face_or_frame):
  c = fx.eval_config(recipe, release, face_or_frame)
  c.mode = "predict"
  c.model.dtype = c.model.frozen_dtype = "float32"
  c.data.eval_batch_size = 8
  c.eval.max_new_tokens = 24
  # The reference is the released code's greedy answer; the paper preset samples officially.
  c.eval.decoding = "greedy"
  return c


def _rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def test_released_layout_gives_the_released_greedy_answer(recipe, release, tmp_path):
  config = _config(recipe, release, "face")
  summary = predict.predict_and_write(config, str(tmp_path / "preds.csv"))
  assert summary["num_predicted"] == 1 and summary["skipped"] == []
  reason = _rows(tmp_path / "preds-reason.csv")
  # The released code's greedy tokens for this clip, decoded as the greedy evaluation does.
  ref = np.load(fx.REF_DIR / "face.npz")["generated_ids"]
  tok = tokenization.get_tokenizer(config)
  want = generation.decode_completions(tok, ref[None], np.array([len(ref)]), ("###",))[0]
  assert [r["name"] for r in reason] == [fx.NAME] and reason[0]["reason"] == want
  assert readers.read_csv_column(str(tmp_path / "preds.csv"), "openset")[fx.NAME].startswith("[")


def _write_av_clip(path, seconds=2.5):
  import av

  rng = np.random.default_rng(3)
  with av.open(str(path), "w") as c:
    v = c.add_stream("mpeg4", rate=10)
    v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
    a = c.add_stream("aac", rate=22050)
    a.layout = "stereo"
    for _ in range(int(10 * seconds)):
      img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
      c.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
    t = np.arange(int(22050 * seconds)) / 22050
    wave = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    for start in range(0, len(wave), 1024):
      chunk = np.stack([wave[start : start + 1024]] * 2)
      frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
      frame.sample_rate = 22050
      c.mux(a.encode(frame))
    c.mux(v.encode())
    c.mux(a.encode())


def test_new_videos_use_their_own_audio_and_report_skips(recipe, release, tmp_path):
  config = _config(recipe, release, "frame")
  good, bad = tmp_path / "my_clip.mp4", tmp_path / "broken.mp4"
  _write_av_clip(good)
  bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
  with config.unlocked():
    config.data.source, config.data.root = "synthmer", ""
  summary = predict.predict_and_write(
      config, str(tmp_path / "out" / "p.csv"), [str(good), str(bad)], ["¿Qué? 你好"]
  )
  assert summary["num_predicted"] == 1
  assert [s["name"] for s in summary["skipped"]] == ["broken"]
  assert "cannot decode video" in summary["skipped"][0]["reason"]
  assert [r["name"] for r in _rows(tmp_path / "out" / "p.csv")] == ["my_clip"]
  assert _rows(tmp_path / "out" / "p-skipped.csv")[0]["name"] == "broken"
  with pytest.raises(ValueError, match="one per --video"):
    predict.read_clips(config, [str(good), str(bad)], ["a", "b", "c"])
