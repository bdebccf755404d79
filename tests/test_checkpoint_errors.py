"""A bad `checkpoint.init_from` is one line naming the path and what is wrong, exit status 2."""

import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax import config_lib
from mer_jax.train import checkpointing
from mer_jax.train import mesh as mesh_lib


def _state():
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": -1, "tensor": 1})
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("fsdp", None))
  return {
      "w": jax.device_put(jnp.arange(4096.0).reshape(64, 64), sharding),
      "step": jnp.asarray(4, jnp.int32),
  }


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A run directory with one complete step, `checkpoints/4`."""
  run = tmp_path_factory.mktemp("run")
  ckpt = checkpointing.Checkpointer(str(run / "checkpoints"), every_steps=1, keep=3)
  ckpt.save(4, _state(), meta={"frozen_source": {"llm": "seed:0"}})
  ckpt.close()
  (run / "tb").mkdir()
  return run


def _copy(run_dir, tmp_path, name="4"):
  step = tmp_path / "checkpoints" / name
  shutil.copytree(run_dir / "checkpoints" / "4", step)
  return step


def _truncate_largest(step):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step / "state") for f in fs]
  largest = max(files, key=os.path.getsize)
  os.truncate(largest, os.path.getsize(largest) // 2)


def _one_line_error(step_dir, abstract=None):
  with pytest.raises(config_lib.ConfigError) as info:
    checkpointing.restore_step(str(step_dir), abstract or checkpointing.abstract_like(_state()))
  message = str(info.value)
  assert "\n" not in message and len(message) < 500, message
  assert str(step_dir).rstrip("/") in message
  return message


def test_complete_step_restores(run_dir):
  state, meta = checkpointing.restore_step(
      str(run_dir / "checkpoints" / "4"), checkpointing.abstract_like(_state())
  )
  np.testing.assert_array_equal(np.asarray(state["w"]), np.asarray(_state()["w"]))
  assert meta["frozen_source"] == {"llm": "seed:0"}


def test_layout_problems_name_the_path_and_the_fix(run_dir, tmp_path):
  checkpoints = run_dir / "checkpoints"
  assert _one_line_error(run_dir).endswith(
      f"is a run directory, not a checkpoint step; use e.g. {checkpoints}/4"
  )
  assert _one_line_error(checkpoints).endswith(
      f"holds checkpoint steps, not one step; use one, e.g. the latest: {checkpoints}/4"
  )
  assert "is not a checkpoint step directory" in _one_line_error(run_dir / "tb")
  unfinished = _copy(run_dir, tmp_path, "6.orbax-checkpoint-tmp-99")
  assert "is an unfinished save" in _one_line_error(unfinished)

  no_state = _copy(run_dir, tmp_path / "a")
  shutil.rmtree(no_state / "state")
  assert "has no state/ directory" in _one_line_error(no_state)
  unfinalized = _copy(run_dir, tmp_path / "b")
  os.remove(unfinalized / "_CHECKPOINT_METADATA")
  assert "_CHECKPOINT_METADATA is missing or empty" in _one_line_error(unfinalized)
  cut = _copy(run_dir, tmp_path / "c")
  os.truncate(cut / "state" / "_METADATA", 10)
  assert "state/_METADATA is not readable JSON" in _one_line_error(cut)


def test_cut_short_data_and_other_shapes_fail_in_one_line(run_dir, tmp_path):
  cut = _copy(run_dir, tmp_path / "cut")
  _truncate_largest(cut)
  assert "cannot restore checkpoint" in _one_line_error(cut)
  other = {
      "w": jax.ShapeDtypeStruct((32, 8), jnp.float32),
      "step": jax.ShapeDtypeStruct((), jnp.int32),
  }
  assert "cannot restore checkpoint" in _one_line_error(run_dir / "checkpoints" / "4", other)


def _main(repo_root, workdir, init_from, timeout=300):
  return subprocess.run(
      [
          sys.executable,
          "-m",
          "mer_jax.main",
          "--config=configs/eval.py:test",
          f"--workdir={workdir}",
          f"--config.checkpoint.init_from={init_from}",
          "--config.eval.num_samples=2",
      ],
      cwd=repo_root,
      env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True,
      text=True,
      timeout=timeout,
  )


def test_main_refuses_a_run_directory_before_any_work(repo_root, run_dir, tmp_path):
  result = _main(repo_root, tmp_path / "w", run_dir)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines() == [
      f"config error: config.checkpoint.init_from: {run_dir} is a run directory, not a "
      f"checkpoint step; use e.g. {run_dir}/checkpoints/4"
  ]
  assert not (tmp_path / "w").exists()
