"""Reruns and interruptions: another config is refused, a finished run reports, Ctrl-C saves."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mer_jax import config_lib
from mer_jax import run_io
from mer_jax.train import checkpointing


def _main(repo_root, *args, timeout=120):
  return subprocess.run(
      [sys.executable, "-m", "mer_jax.main", *args],
      cwd=repo_root,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def _previous_run(recipe, workdir, **summary):
  config = recipe("sft", "test")
  os.makedirs(workdir)
  run_io.atomic_write_json(os.path.join(workdir, "config.json"), config)
  run_io.atomic_write_json(os.path.join(workdir, "summary.json"), summary)
  return config


def test_resume_conflicts_name_the_fixed_fields(recipe):
  old = run_io.config_dict(recipe("grpo", "test"))
  new = run_io.config_dict(recipe("grpo", "test"))
  new["train"]["steps"], new["grpo"]["steps"], new["mesh"]["fsdp"] = 9, 9, 2
  new["checkpoint"]["every_steps"], new["grpo"]["log_every"] = 3, 7
  assert config_lib.resume_conflicts(old, new) == ""
  new["grpo"]["lr"], new["seed"], new["data"]["length_buckets"] = 0.5, 3, [64]
  assert config_lib.resume_conflicts(old, new) == (
      "data.length_buckets [128, 256] -> [64], grpo.lr 0.0001 -> 0.5, seed 0 -> 3"
  )


def test_rerun_with_another_config_is_refused(repo_root, recipe, tmp_path):
  workdir = str(tmp_path / "w")
  _previous_run(recipe, workdir, status="interrupted")
  before = (tmp_path / "w" / "config.json").read_text()
  result = _main(
      repo_root,
      "--config=configs/sft.py:test",
      f"--workdir={workdir}",
      "--config.train.peak_lr=0.01",
      "--config.seed=1",
      "--config.train.steps=9",
  )
  assert result.returncode == 2, result.stderr
  assert result.stderr.strip().splitlines() == [
      f"config error: {workdir}/config.json holds another run's config "
      "(seed 0 -> 1, train.peak_lr 0.001 -> 0.01); rerun with the same config (only steps, "
      "logging, checkpointing and the mesh may change) or use another --workdir"
  ]
  assert (tmp_path / "w" / "config.json").read_text() == before
  assert sorted(os.listdir(workdir)) == ["config.json", "summary.json"]


def test_rerun_of_a_finished_run_prints_its_results(repo_root, recipe, tmp_path):
  workdir = str(tmp_path / "w")
  figures = {"ew_f1": 0.5, "ew_precision": 0.625, "ew_recall": 0.4, "format_rate": 1.0}
  _previous_run(recipe, workdir, status="finished", eval=dict(figures, num_samples=8))
  os.makedirs(os.path.join(workdir, "checkpoints", "4"))
  result = _main(repo_root, "--config=configs/sft.py:test", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr
  out = result.stdout.splitlines()
  assert out[0].startswith("nothing to do: this run already finished")
  assert out[1] == f"mer-jax sft finished: {workdir}"
  assert "  eval   EW F1 0.5000 (P 0.6250 R 0.4000), format rate 1.000, 8 clips" in out
  assert out[-1] == (f"  outputs in {workdir}: summary.json, config.json, checkpoints/4")
  assert "Traceback" not in result.stderr
  assert not os.path.exists(os.path.join(workdir, "log.txt"))  # no work started


def test_guard_saves_on_first_ctrl_c_and_stops_on_the_second():
  # What the guard replaced (SIG_IGN, not Python's handler, under `nohup ... &`).
  before = signal.getsignal(signal.SIGINT)
  guard = checkpointing.PreemptionGuard()
  try:
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.01)  # let the handler run
    assert guard.should_stop(1) and guard.signal_name == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
      time.sleep(0.01)
  finally:
    guard.restore()
  assert signal.getsignal(signal.SIGINT) is before


def _wait_for_metrics(workdir, proc, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if any("train/loss" in r for r in run_io.read_metrics(workdir)):
      return
    time.sleep(0.2)
  raise AssertionError(f"no training step logged (rc {proc.poll()})")


def test_ctrl_c_saves_then_the_same_command_resumes_and_finishes(repo_root, tmp_path):
  workdir = str(tmp_path / "w")
  args = [
      sys.executable,
      "-m",
      "mer_jax.main",
      "--config=configs/sft.py:test",
      f"--workdir={workdir}",
      "--config.train.steps=60",
      "--config.checkpoint.every_steps=1000",
      "--config.eval.num_samples=4",
  ]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen(
      args, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
  )
  try:
    _wait_for_metrics(workdir, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 130, err[-3000:]
  summary = json.loads(open(os.path.join(workdir, "summary.json")).read())
  assert summary["status"] == "interrupted", summary
  step = summary["status_detail"]["step"]
  assert 1 <= step < 60 and summary["status_detail"]["signal"] == "SIGINT"
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(step)))
  assert "eval" not in summary
  assert out.splitlines()[0] == (
      f"mer-jax sft interrupted (SIGINT at step {step}); rerun the same command to resume: "
      f"{workdir}"
  )
  assert "Traceback" not in err

  result = subprocess.run(args, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads(open(os.path.join(workdir, "summary.json")).read())
  assert summary["status"] == "finished" and summary["sft"]["steps"] == 60
  steps = [r["step"] for r in run_io.read_metrics(workdir) if "train/loss" in r]
  assert steps == list(range(1, 61))
  assert result.stdout.splitlines()[0] == f"mer-jax sft finished: {workdir}"
  assert result.stdout.splitlines()[-1].startswith(f"  outputs in {workdir}: summary.json")
  history = open(os.path.join(workdir, "config_history.jsonl")).read().splitlines()
  assert len(history) == 2

  # The evaluation wrote the gold labels of its clips next to the predictions: the
  # evaluate CLI rescores them to the run's figure.
  gold, pred = os.path.join(workdir, "gold.csv"), os.path.join(workdir, "predictions.csv")
  rescored = evaluate_cli(["ovmer", "--gt", gold, "--pred", pred])
  assert rescored["level1"]["f1"] == pytest.approx(summary["eval"]["ew_f1"], abs=1e-12)
  assert rescored["n_samples"] == summary["eval"]["num_samples"] == 4
  assert rescored["checks"]["missing_predictions"]["count"] == 0
  assert evaluate_cli(["ovmer", "--gt", gold, "--pred", gold])["level1"]["f1"] == 1.0


def evaluate_cli(args):
  out = subprocess.run(
      [sys.executable, "-m", "mer_jax.evaluate", *args, "--json"],
      capture_output=True,
      text=True,
      check=True,
  ).stdout
  return json.loads(out.splitlines()[-1])
