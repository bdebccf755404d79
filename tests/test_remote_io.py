"""Run I/O on gs:// without a mount: run outputs, features, tokenizer, predictions, init_from.

`fake_gcs` (conftest) serves gs:// from a local directory through fsspec, refusing
appends as GCS does. Orbax writes its array data with TensorStore's own GCS driver, which
cannot be faked offline: there the test maps the (unmangled) gs:// checkpoint directory to
the fake's local directory, so epath and Orbax see the same files.
"""

import json
import types

from etils import epath
import pytest

from mer_jax import config_lib
from mer_jax import run_io
from mer_jax.train import checkpointing
from mer_jax.train import context
from mer_jax.train import evaluation
from mer_jax.train import sft


def test_run_writer_writes_a_bucket(fake_gcs, recipe, monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  writer = run_io.RunWriter("gs://bucket/run")
  writer.write_config(recipe("sft", "test"))
  for step in (1, 2, 3):
    writer.write_metrics(step, {"train/loss": 3.0 - step})
  writer.truncate_metrics(after_step=2)
  writer.update_summary("sft", {"steps": 2})
  writer.set_status("finished")
  from absl import logging

  logging.warning("a line for log.txt")
  writer.close()
  run = fake_gcs / "bucket" / "run"
  assert [r["step"] for r in run_io.read_metrics("gs://bucket/run")] == [1, 2]
  assert json.loads((run / "summary.json").read_text())["status"] == "finished"
  assert json.loads((run / "config.json").read_text())["train"]["steps"] == 4
  assert len((run / "config_history.jsonl").read_text().splitlines()) == 1
  assert "a line for log.txt" in (run / "log.txt").read_text()
  (events,) = list((run / "tb").iterdir())
  assert b"train/loss" in events.read_bytes()
  assert not (tmp_path / "gs:").exists()  # the bug this guards against: a local `gs:` folder
  assert "summary.json, metrics.jsonl" in run_io.report("gs://bucket/run", "sft")


def test_sft_then_eval_on_a_bucket(fake_gcs, recipe, monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  seen = []
  real_init = checkpointing.Checkpointer.__init__

  def to_fake(self, directory, **kwargs):
    seen.append(directory)
    assert directory.startswith("gs://bucket/"), directory  # kept as given, not abspath'd
    real_init(self, str(fake_gcs / directory[len("gs://") :]), **kwargs)

  monkeypatch.setattr(checkpointing.Checkpointer, "__init__", to_fake)
  config = recipe("sft", "test")
  config.data.features_dir = "gs://bucket/features"
  config.eval.num_samples = 4
  writer = run_io.RunWriter("gs://bucket/run")
  sft.run(config, "gs://bucket/run", writer)
  writer.close()
  run = fake_gcs / "bucket" / "run"
  assert [r["step"] for r in run_io.read_metrics("gs://bucket/run") if "train/loss" in r] == [
      1,
      2,
      3,
      4,
  ]
  assert (run / "tokenizer" / "tokenizer.json").exists()
  assert (run / "predictions.csv").exists() and (run / "gold.csv").exists()
  assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "4"]
  assert list((fake_gcs / "bucket" / "features").glob("*/manifest.json"))
  assert seen == ["gs://bucket/run/checkpoints"]

  # init_from keeps the URL: validated and restored through it, same greedy answers.
  ev = recipe("eval", "test")
  ev.data.features_dir = "gs://bucket/features"
  ev.checkpoint.init_from = "gs://bucket/run/checkpoints/4"
  ev.eval.num_samples = 4
  config_lib.validate(ev)
  writer = run_io.RunWriter("gs://bucket/eval")
  evaluation.run(ev, "gs://bucket/eval", writer)
  writer.close()
  assert seen[-1] == "gs://bucket/run/checkpoints"
  read = lambda d: sorted(epath.Path(d, "predictions.csv").read_text().splitlines())
  assert read("gs://bucket/eval") == read("gs://bucket/run")
  with pytest.raises(config_lib.ConfigError, match="does not exist"):
    ev.checkpoint.init_from = "gs://bucket/run/checkpoints/6"
    config_lib.validate(ev)


def test_a_stale_phase_moves_its_checkpoints_aside_on_a_bucket(fake_gcs):
  """A phase whose data changed starts over on a gs:// workdir too (no stale resume)."""
  workdir = "gs://bucket/run"
  writer = run_io.RunWriter(workdir, tensorboard=False)
  ctx = types.SimpleNamespace(workdir=workdir, is_primary=True, writer=writer)
  ckpt_dir = f"{workdir}/grpo/checkpoints"
  (epath.Path(ckpt_dir) / "2").mkdir(parents=True)
  (epath.Path(ckpt_dir) / "2" / "meta").write_text("step 2")
  context.start_phase(ctx, "grpo", "k1", ckpt_dir, "grpo/")
  context.start_phase(ctx, "grpo", "k2", ckpt_dir, "grpo/")  # other data: starts over
  writer.close()
  local = fake_gcs / "bucket" / "run" / "grpo"
  assert not (local / "checkpoints").exists()
  assert (local / "checkpoints.stale-k1" / "2" / "meta").read_text() == "step 2"
