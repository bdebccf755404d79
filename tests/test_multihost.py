"""Multi-host correctness: the same global batches and losses for any number of processes.

The end-to-end SFT test runs `configs/sft.py:test` once as 1 process x 4 fake CPU devices
and once as 2 processes x 2 devices (`launch/local_multiprocess.sh`: real
`jax.distributed` with gloo collectives on 127.0.0.1), each with its own features pass,
and compares the features, metrics.jsonl and predictions; then resumes the 2-process
checkpoint in one process.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import grain
import numpy as np
import pytest

from input_pipeline import datasets
from input_pipeline import features
from mer_jax import run_io

REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS = 6
# Smaller than the test preset where it does not matter: fewer generated clips, a short eval.
OVERRIDES = (
    f"--config.train.steps={STEPS}",
    "--config.data.synthmer.num_sft=16",
    "--config.data.synthmer.num_eval=4",
    "--config.eval.max_new_tokens=4",
)


def _gloo_missing() -> str | None:
  try:
    from jax._src.lib import _jax
  except ImportError:
    return "this jaxlib does not expose its C++ module"
  if not hasattr(_jax, "make_gloo_tcp_collectives"):
    return "this jaxlib has no gloo CPU collectives (needed for multi-process JAX on CPU)"
  return None


def _global_batches(sampler_rows, process_count, steps=4, batch=4, num_records=10, num_epochs=None):
  """Per step, the record keys and rng draws each process reads, in global-batch row order."""
  per_step = [[None] * batch for _ in range(steps)]
  for p, rows in enumerate(sampler_rows):
    options = grain.sharding.ShardOptions(
        shard_index=p, shard_count=process_count, drop_remainder=True
    )
    sampler = datasets.GlobalBatchSampler(
        num_records, batch, rows, options, seed=3, num_epochs=num_epochs
    )
    for j in range(steps * len(rows)):  # the loader's local item j is sampler[j * count + p]
      record = sampler[j * process_count + p]
      step, r = divmod(j, len(rows))
      per_step[step][rows[r]] = (record.record_key, record.rng.integers(1 << 30))
  return per_step


@pytest.mark.parametrize("layout", [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((1,), (3,), (0,), (2,))])
def test_global_batch_is_the_same_for_any_process_layout(layout):
  single = _global_batches([(0, 1, 2, 3)], 1)
  assert _global_batches(list(layout), len(layout)) == single
  keys = [k for step in single for k, _ in step]
  assert (
      sorted(keys[:8]) != keys[:8] and len(set(keys[:8])) == 8
  )  # shuffled, no repeats in an epoch


def test_finite_epochs_drop_the_partial_global_batch():
  options = grain.sharding.ShardOptions(shard_index=1, shard_count=2, drop_remainder=True)
  sampler = datasets.GlobalBatchSampler(10, 4, (2, 3), options, seed=0, num_epochs=1)
  assert len(sampler) == 2 * 2 * 2  # 2 global batches of 10 records, 2 rows each, 2 shards
  with pytest.raises(IndexError):
    sampler[len(sampler)]


def test_pad_tokens():
  batch = {
      "input_ids": np.array([[5, 6, 1]]),
      "attention_mask": np.array([[1, 1, 0]]),
      "loss_mask": np.array([[0.0, 1.0, 0.0]]),
      "vision_feats": np.zeros((1, 2, 3)),
  }
  right = datasets.pad_tokens(batch, 5, pad_id=1, left_pad=False)
  np.testing.assert_array_equal(right["input_ids"], [[5, 6, 1, 1, 1]])
  np.testing.assert_array_equal(right["loss_mask"], [[0, 1, 0, 0, 0]])
  left = datasets.pad_tokens(batch, 4, pad_id=9, left_pad=True)
  np.testing.assert_array_equal(left["input_ids"], [[9, 5, 6, 1]])
  np.testing.assert_array_equal(left["attention_mask"], [[0, 1, 1, 0]])
  assert left["vision_feats"] is batch["vision_feats"]


def _env(devices: int) -> dict:
  env = dict(os.environ)
  flags = [
      f
      for f in env.get("XLA_FLAGS", "").split()
      if not f.startswith("--xla_force_host_platform_device_count")
  ]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHON"] = sys.executable
  return env


def _losses(workdir) -> dict[int, float]:
  records = [r for r in run_io.read_metrics(str(workdir)) if "train/loss" in r]
  steps = [r["step"] for r in records]
  assert len(steps) == len(set(steps)), f"metrics written more than once: steps {steps}"
  return {r["step"]: r["train/loss"] for r in records}


def _main(args, workdir, devices=4):
  subprocess.run(
      [sys.executable, "-m", "mer_jax.main", *args, f"--workdir={workdir}"],
      cwd=REPO,
      env=_env(devices),
      check=True,
      capture_output=True,
      timeout=900,
  )


def _stored_features(features_dir) -> dict:
  (key_dir,) = [d for d in features_dir.iterdir() if d.is_dir()]
  store = features.FeatureStore(str(key_dir))
  manifest = features.load_manifest(str(key_dir))
  return {name: store[name] for name in manifest.clips}


def test_sft_losses_equal_for_1x4_and_2x2(tmp_path):
  """1 x 4 vs 2 x 2 devices: features pass, losses, predictions; then 2 -> 1 process resume."""
  reason = _gloo_missing()
  if reason:
    pytest.skip(reason)
  single, multi, resumed = tmp_path / "1x4", tmp_path / "2x2", tmp_path / "2x2-then-1x4"
  args = ["--config=configs/sft.py:test", *OVERRIDES, "--config.data.features_shard_clips=4"]
  _main([*args, f"--config.data.features_dir={tmp_path / 'f1'}"], single)
  env = _env(2)
  env["MER_JAX_LOG_DIR"] = str(tmp_path / "logs")
  run = subprocess.run(
      [
          "bash",
          str(REPO / "launch" / "local_multiprocess.sh"),
          "-n",
          "2",
          "-d",
          "2",
          "--",
          *args,
          f"--config.data.features_dir={tmp_path / 'f2'}",
          f"--workdir={multi}",
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

  # The two processes encoded disjoint halves of the clips (5 shards: 3 + 2), into one
  # manifest whose features equal those of the single process.
  one, two = _stored_features(tmp_path / "f1"), _stored_features(tmp_path / "f2")
  assert sorted(one) == sorted(two) and len(one) == 20
  for name in one:
    for key in features.FEATURE_KEYS:
      np.testing.assert_allclose(one[name][key], two[name][key], atol=1e-5)
  logs = [(tmp_path / "logs" / f"process_{i}.log").read_text() for i in range(2)]
  assert "3 shards" in logs[0] and "2 shards" in logs[1], logs

  a, b = _losses(single), _losses(multi)
  assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
  for step in a:
    assert abs(a[step] - b[step]) <= 1e-5, (step, a[step], b[step])
  assert a[STEPS] < a[1]
  # Process 0 alone wrote the run outputs; the data position is one JSON for all processes.
  eval_lines = [r for r in run_io.read_metrics(str(multi)) if "eval/ew_f1" in r]
  assert len(eval_lines) == 1 and eval_lines[0]["eval/num_samples"] == 4
  position = json.loads((multi / "checkpoints" / str(STEPS) / "data" / "metadata").read_text())
  assert position["global_batches"] == STEPS
  # Both runs generated the same greedy completions for the same clips.
  read = lambda d: sorted((d / "predictions.csv").read_text().splitlines())
  assert read(single) == read(multi)

  # The 2-process checkpoint of step STEPS - 2 resumes in one process: same losses after it.
  resumed.mkdir()
  shutil.copytree(multi / "tokenizer", resumed / "tokenizer")
  shutil.copytree(multi / "checkpoints" / str(STEPS - 2), resumed / "checkpoints" / str(STEPS - 2))
  _main([*args, f"--config.data.features_dir={tmp_path / 'f2'}"], resumed)
  c = _losses(resumed)
  assert sorted(c) == [STEPS - 1, STEPS]
  for step in c:
    assert abs(a[step] - c[step]) <= 1e-5, (step, a[step], c[step])
  assert read(single) == read(resumed)
