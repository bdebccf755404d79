"""Test hooks inside `python -m mer_jax.main` subprocesses (tests/test_multihost.py).

`sitecustomize_dir(tmp)` writes a `sitecustomize.py` that imports this module when the
interpreter runs `-m mer_jax.main`; put the directory and the repository on PYTHONPATH.
Then, per environment variable:

- MER_JAX_TEST_TEXT_REWARD=1: the `format` reward scores `text_hash_reward` instead
  (random-init test policies never write the format, so every group would have zero
  variance and GRPO no gradient; this reward differs for every completion and sample).
- MER_JAX_TEST_KILL_AFTER=DIR:STEP: SIGKILL this process as soon as checkpoint STEP in
  directory DIR is complete on disk and every process has saved it (no cleanup, no final
  save: a preempted machine).
"""

from __future__ import annotations

import os
import pathlib
import signal
import zlib

import numpy as np


def text_hash_reward(completions, samples, cfg):
  """A reward in [0, 1) that depends on the completion text and on the sample's name."""
  del cfg
  return np.asarray(
      [
          zlib.crc32(f"{s['name']}|{c}".encode()) % 1000 / 1000
          for c, s in zip(completions, samples, strict=True)
      ],
      np.float32,
  )


def sitecustomize_dir(directory: pathlib.Path) -> pathlib.Path:
  """A directory holding the sitecustomize.py that installs these hooks in mer_jax.main."""
  directory.mkdir(parents=True, exist_ok=True)
  (directory / "sitecustomize.py").write_text(
      "import sys\n"
      "if sys.orig_argv[1:3] == ['-m', 'mer_jax.main']:\n"
      "  from tests import run_hooks\n"
      "  run_hooks.install()\n"
  )
  return directory


def install() -> None:
  if os.environ.get("MER_JAX_TEST_TEXT_REWARD") == "1":
    from mer_jax.rl import rewards

    dict.__setitem__(rewards.REWARDS, "format", rewards.Reward("format", text_hash_reward))
  kill = os.environ.get("MER_JAX_TEST_KILL_AFTER")
  if kill:
    directory, step = kill.rsplit(":", 1)
    _kill_after_checkpoint(os.path.realpath(directory), int(step))


def _kill_after_checkpoint(directory: str, step: int) -> None:
  from mer_jax.train import checkpointing

  save = checkpointing.Checkpointer.save

  def save_then_kill(self, at_step, *args, **kwargs):
    saved = save(self, at_step, *args, **kwargs)
    if saved and at_step == step and os.path.realpath(self.directory) == directory:
      self.wait()  # the step directory is renamed into place: a complete checkpoint
      from mer_jax.train import mesh

      mesh.wait_for_processes("test_kill")  # every process is past the save: kill them all
      os.kill(os.getpid(), signal.SIGKILL)
    return saved

  checkpointing.Checkpointer.save = save_then_kill
