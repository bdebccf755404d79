"""The SFT job end to end on a dataset in the released layout, with a corrupt mp4 and a missing wav."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("av")
pytest.importorskip("soundfile")

from released_data import write_released_dataset  # noqa: E402


def test_sft_job_on_released_layout_reports_skips(repo_root, tmp_path):
  data = write_released_dataset(tmp_path / "data")
  d = str(data["root"])
  workdir = tmp_path / "run"
  args = [
      sys.executable,
      "-m",
      "mer_jax.main",
      "--config=configs/sft.py:test",
      f"--workdir={workdir}",
      "--config.train.steps=3",
      "--config.data.source=released",
      f"--config.data.root={d}",
      f"--config.data.labels_csv={d}/labels.csv",
      f"--config.data.reasons_csv={d}/reasons.csv",
      f"--config.data.subtitles_csv={d}/subtitle_chieng.csv",
      f"--config.data.eval_labels_csv={d}/labels.csv",
      "--config.data.face_or_frame=frame",
  ]
  env = dict(os.environ, MER_JAX_CACHE=str(tmp_path / "cache"))
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user runs it
  result = subprocess.run(args, cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((workdir / "summary.json").read_text())
  skipped = {(s["name"], s["split"]): s["reason"] for s in summary["data"]["skipped"]}
  for split in ("sft", "eval"):
    assert (
        "video" in skipped[(data["corrupt"], split)]
        or "decode" in skipped[(data["corrupt"], split)]
    )
    assert "audio" in skipped[(data["noaudio"], split)]
  assert summary["data"]["num_samples"] == {"sft": 6, "eval": 6}
  assert 0.0 <= summary["eval"]["ew_f1"] <= 1.0 and summary["eval"]["num_samples"] == 6
  assert summary["sft"]["steps"] == 3
  lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in lines if "train/loss" in r] == [1, 2, 3]
