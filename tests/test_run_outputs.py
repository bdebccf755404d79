"""A whole GRPO job, as a user runs it without torch: one step numbering per phase, folders
named by phase, a line before every long silent stretch, and our report as the last line."""

import json
import os
import subprocess
import sys
import sysconfig

import pytest

from mer_jax import run_io


def _site_without_torch(tmp_path) -> str:
  """A directory that links every installed package except torch (torch is test-only)."""
  site = tmp_path / "site"
  site.mkdir()
  purelib = sysconfig.get_paths()["purelib"]
  for name in os.listdir(purelib):
    if not name.lower().startswith(("torch", "functorch")):
      os.symlink(os.path.join(purelib, name), site / name)
  return str(site)


def test_importing_transformers_after_mer_jax_says_nothing_about_torch(repo_root, tmp_path):
  """Every entry point (main, predict, evaluate, tools) imports the mer_jax package first."""
  env = dict(os.environ, PYTHONPATH=f"{_site_without_torch(tmp_path)}:{repo_root}")
  env.pop("TRANSFORMERS_NO_ADVISORY_WARNINGS", None)  # set in this process by the import
  result = subprocess.run(
      [sys.executable, "-S", "-c", "import mer_jax, transformers"],
      cwd=repo_root,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert result.returncode == 0 and result.stderr == "", result.stderr


def test_grpo_job_without_torch(repo_root, tmp_path):
  workdir = tmp_path / "w"
  env = dict(
      os.environ,
      JAX_PLATFORMS="cpu",
      PYTHONPATH=f"{_site_without_torch(tmp_path)}:{repo_root}",
  )
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user runs it
  result = subprocess.run(
      # -S: no site-packages but the torch-less copy above.
      [sys.executable, "-S", "-m", "mer_jax.main", "--config=configs/grpo.py:test"]
      + [f"--workdir={workdir}"],
      cwd=repo_root,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,  # one stream, in the order the user sees it
      text=True,
      timeout=600,
  )
  log = result.stdout
  assert result.returncode == 0, log[-3000:]
  assert "PyTorch" not in log and "Traceback" not in log

  # Each phase counts its own steps; its checkpoint folders carry the same numbers.
  records = run_io.read_metrics(str(workdir))
  steps = lambda key: [r["step"] for r in records if key in r]
  assert steps("sft/loss") == [1, 2, 3, 4] and steps("eval_sft/ew_f1") == [4]
  assert steps("grpo/loss") == [1, 2] and steps("eval_grpo/ew_f1") == [2]
  assert sorted(os.listdir(workdir / "sft" / "checkpoints")) == ["2", "4"]
  assert os.listdir(workdir / "grpo" / "checkpoints") == ["2"]
  assert not (workdir / "checkpoints").exists()

  # What would otherwise be long silences is announced.
  for what in (
      "building the policy ...",
      "sft: first step (compiling it) ...",
      "eval sft: first batch (compiling the sampler) ...",
      "grpo: first rollout (compiling the sampler) ...",
      "grpo: first update (compiling it) ...",
  ):
    assert what in log, what

  # The run ends with our report (status, figures per phase, where the outputs are) and
  # nothing after it: no library noise at exit.
  lines = log.splitlines()
  out = lines[lines.index(f"mer-jax grpo finished: {workdir}") :]
  assert out[1].startswith("  sft    EW F1") and out[2].startswith("  grpo   EW F1")
  assert all(line.startswith("  ") for line in out[1:]), out
  assert out[-1].startswith(f"  outputs in {workdir}: summary.json, metrics.jsonl")
  assert "grpo/checkpoints/2" in out[-1] and "sft/predictions.csv" in out[-1]


@pytest.mark.parametrize(
    "labels, error",
    [
        ("name,openset\n", "config error: the sft split has no usable samples"),
        ("name,openset,openset\na,happy,sad\n", "data error: {labels}:1: header"),
    ],
)
def test_data_errors_found_during_the_run_are_one_line(repo_root, tmp_path, labels, error):
  root = tmp_path / "data"
  root.mkdir()
  (root / "labels.csv").write_text(labels)
  (root / "subtitles.csv").write_text("name,english\n")
  workdir = tmp_path / "w"
  result = subprocess.run(
      [
          sys.executable,
          "-m",
          "mer_jax.main",
          "--config=configs/sft.py:test",
          f"--workdir={workdir}",
          "--config.data.source=released",
          f"--config.data.root={root}",
          "--config.data.labels_csv=labels.csv",
          "--config.data.eval_labels_csv=labels.csv",
          "--config.data.subtitles_csv=subtitles.csv",
          "--config.data.target=answer",
      ],
      cwd=repo_root,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [x for x in result.stderr.splitlines() if x.startswith(("config error", "data error"))]
  assert len(errors) == 1, result.stderr[-2000:]
  assert errors[0].startswith(error.format(labels=root / "labels.csv")), errors[0]
  assert "Traceback" not in result.stderr
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["status"] == "failed" and summary["status_detail"]["error"] in errors[0]
