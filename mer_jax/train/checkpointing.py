"""Orbax checkpoints of the train state + data iterator + RNG, with resume and preemption.

Layout: `<checkpoints>/<step>/{state,data,meta}` (+ `merged_lora` in RL runs with
LoRA: the cold-start adapters merged into the frozen weights, see `mer_jax.rl.grpo`),
where `<checkpoints>` is `<workdir>/checkpoints` (modes sft) or
`<workdir>/<phase>/checkpoints` (the phases of a GRPO/OPPO job: `sft`, `grpo`, `oppo`);
`<step>` counts that phase's steps, as its metrics lines do. Orbax writes each step into a
temporary directory and renames it when every item is finalized, so a half-written step
(a crash or SIGKILL during the save) is never returned by `latest_step()` and is never
restored. Frozen weights are not saved: they are reproducible from their source
(`hf_dir` or the seed); `meta` records their content fingerprint (not their path, so a
run moves between clusters), checked on restore. The data position (`data`) is JSON that
restores with any number of processes (`input_pipeline.datasets.TrainIterator`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import types
from typing import Any

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from input_pipeline import files
from mer_jax import config_lib
from mer_jax import run_io

MERGED_LORA = "merged_lora"


class Checkpointer:
  """A `CheckpointManager` with items `state` (pytree), `data` (iterator position), `meta` (JSON)
  and, when given, `merged_lora` (pytree of adapters that belong to the frozen weights)."""

  def __init__(self, directory: str, *, every_steps: int, keep: int, async_save: bool = True):
    self.directory = files.absolute(directory)
    self.every_steps = every_steps
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=True, enable_async_checkpointing=async_save
    )
    self.manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data", "meta", MERGED_LORA)
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def should_save(self, step: int) -> bool:
    return self.every_steps > 0 and step % self.every_steps == 0

  def save(
      self,
      step: int,
      state: Any,
      data_iterator: Any = None,
      meta: dict | None = None,
      force: bool = False,
      merged_lora: Any = None,
  ) -> bool:
    checksums = {"state": state_checksum(state)}
    if merged_lora is not None:
      checksums[MERGED_LORA] = state_checksum(merged_lora)
    args = {
        "state": ocp.args.StandardSave(state),
        "meta": ocp.args.JsonSave(dict(meta or {}, step=step, checksums=checksums)),
    }
    if data_iterator is not None:
      args["data"] = ocp.args.JsonSave(data_iterator.get_state())
    if merged_lora is not None:
      args[MERGED_LORA] = ocp.args.StandardSave(merged_lora)
    saved = self.manager.save(step, args=ocp.args.Composite(**args), force=force)
    if saved:
      logging.info("checkpoint: saving step %d to %s", step, self.directory)
    return saved

  def restore(self, step: int, abstract_state: Any, data_iterator: Any = None) -> tuple[Any, dict]:
    """Restores `state` onto the shardings of `abstract_state` (ShapeDtypeStructs)."""
    args = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
    if data_iterator is not None:
      args["data"] = ocp.args.JsonRestore()
    restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    if data_iterator is not None:
      data_iterator.set_state(restored["data"])
    meta = dict(restored["meta"] or {})
    self._verify(step, "state", restored["state"], meta)
    logging.info("checkpoint: restored step %d from %s", step, self.directory)
    return restored["state"], meta

  def restore_merged_lora(self, step: int, abstract: Any) -> Any:
    """The step's `merged_lora` item onto `abstract` (adapter ShapeDtypeStructs)."""
    args = {MERGED_LORA: ocp.args.StandardRestore(abstract), "meta": ocp.args.JsonRestore()}
    restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    self._verify(step, MERGED_LORA, restored[MERGED_LORA], dict(restored["meta"] or {}))
    return restored[MERGED_LORA]

  def _verify(self, step: int, item: str, tree: Any, meta: dict) -> None:
    """Refuses restored arrays whose checksums differ from those saved with them."""
    saved = meta.get("checksums", {}).get(item)
    if saved is None:  # written before checksums existed
      return
    now = state_checksum(tree)
    bad = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if bad:
      raise config_lib.ConfigError(
          f"checkpoint {self.directory}/{step} is damaged: {len(bad)} of {len(saved)} "
          f"arrays of {item}/ differ from the checksums saved with them (e.g. {bad[0]}); "
          "restore a good copy or use another step"
      )

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def restore_step(step_dir: str, abstract_state: Any) -> tuple[Any, dict]:
  """(state, meta) of one step directory (`checkpoint.init_from`), onto `abstract_state`.

  Anything wrong with it is one `ConfigError` line naming the directory: the layout is
  checked first (`config_lib.checkpoint_step_problem`), then a failed restore (damaged or
  cut-short data, another model's shapes, arrays that differ from their saved checksums)
  is reported without Orbax's TensorStore dump.
  """
  step_dir = files.absolute(step_dir)
  problem = config_lib.checkpoint_step_problem(step_dir)
  if problem:
    raise config_lib.ConfigError(f"checkpoint {step_dir} {problem}")
  return _restore_from(step_dir, lambda ckpt, step: ckpt.restore(step, abstract_state))


def restore_merged_lora(step_dir: str, abstract: Any) -> Any | None:
  """The `merged_lora` item of one step directory onto `abstract`, or None if it has none."""
  step_dir = files.absolute(step_dir)
  if not (epath.Path(step_dir) / MERGED_LORA).is_dir():
    return None
  return _restore_from(step_dir, lambda ckpt, step: ckpt.restore_merged_lora(step, abstract))


def _restore_from(step_dir: str, restore) -> Any:
  """`restore(checkpointer, step)` of one step directory, failures in one line."""
  parent, name = os.path.split(step_dir)
  ckpt = Checkpointer(parent, every_steps=0, keep=1000)
  try:
    return _in_one_line(step_dir, lambda: restore(ckpt, int(name)))
  finally:
    ckpt.close()


def _in_one_line(step_dir: str, restore, hint: str = "") -> Any:
  """`restore()`, with any failure turned into one `ConfigError` line naming `step_dir`."""
  with _quiet_reader_leftovers():
    try:
      return restore()
    except config_lib.ConfigError:
      raise
    except Exception as e:  # noqa: BLE001 - one line instead of an Orbax/TensorStore dump
      error = _first_line(e)
    gc.collect()  # collect the failed restore's reader coroutines now, quietly
  hint = hint or "is it damaged, cut short, or from a run with another model config?"
  raise config_lib.ConfigError(f"cannot restore checkpoint {step_dir}: {error} ({hint})")


@contextlib.contextmanager
def _quiet_reader_leftovers():
  """Drops what a failed Orbax restore leaves for Python to print when it is collected:
  its reader coroutines' errors (each with the whole TensorStore spec) and their event
  loop's "closed" errors. Everything else goes to the usual hook."""
  previous = sys.unraisablehook

  def hook(unraisable):
    loop_closed = isinstance(unraisable.exc_value, RuntimeError) and "loop is closed" in str(
        unraisable.exc_value
    )
    if not (isinstance(unraisable.object, types.CoroutineType) or loop_closed):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    sys.unraisablehook = previous


def state_checksum(tree: Any) -> dict[str, int]:
  """`{leaf path: checksum}` of a pytree of arrays, stored with every checkpoint.

  The checksum is the sum of each element's bit pattern times an odd weight (2 * position
  + 1), modulo 2**32: any flipped bit, cut-short or moved data changes it, and integer
  sums are exact in any order, so a restore onto another mesh computes the same value.
  Device arrays are reduced on their devices (one jitted call per set of devices).
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  sums: dict[int, int] = {}
  groups: dict[frozenset, list[int]] = {}
  for i, (_, x) in enumerate(leaves):
    if isinstance(x, jax.Array):
      groups.setdefault(frozenset(x.sharding.device_set), []).append(i)
    else:
      sums[i] = int(_checksum(np, np.asarray(x)))
  for members in groups.values():
    values = jax.device_get(_device_checksums([leaves[i][1] for i in members]))
    sums.update({i: int(v) for i, v in zip(members, values, strict=True)})
  return {jax.tree_util.keystr(p): sums[i] for i, (p, _) in enumerate(leaves)}


@jax.jit
def _device_checksums(leaves: list) -> list:
  return [_checksum(jnp, x) for x in leaves]


def _checksum(xp, x):
  """The checksum of one array with `xp` = numpy or jax.numpy (uint32 arithmetic wraps)."""
  if x.dtype == xp.bool_:
    x = x.astype(xp.uint8)
  unsigned = {1: xp.uint8, 2: xp.uint16, 4: xp.uint32}[x.dtype.itemsize]
  bits = (jax.lax.bitcast_convert_type(x, unsigned) if xp is jnp else x.view(unsigned)).astype(
      xp.uint32
  )
  position = xp.zeros(x.shape, xp.uint32)
  for d in range(x.ndim):  # row-major position, without reshaping a sharded array
    stride = xp.uint32(int(np.prod(x.shape[d + 1 :], dtype=np.int64)) % (1 << 32))
    shape = [1] * x.ndim
    shape[d] = x.shape[d]
    position = position + xp.arange(x.shape[d], dtype=xp.uint32).reshape(shape) * stride
  return xp.sum(bits * (xp.uint32(2) * position + xp.uint32(1)), dtype=xp.uint32)


def _first_line(e: BaseException, limit: int = 240) -> str:
  """The first line of an error, without TensorStore's spec dump, at most `limit` chars."""
  text = str(e).split("See full TensorStore details")[0]
  line = next((x.strip() for x in text.splitlines() if x.strip()), "")
  line = f"{type(e).__name__}: {line}" if line else type(e).__name__
  return line if len(line) <= limit else line[: limit - 3] + "..."


def resume_or_start(
    ckpt: "Checkpointer", state: Any, data_iterator: Any, frozen: dict
) -> tuple[Any, int]:
  """(state, first step): restored from the latest complete checkpoint, or as given at step 0."""
  latest = ckpt.latest_step()
  if latest is None:
    return state, 0
  step_dir = os.path.join(ckpt.directory, str(latest))
  state, meta = _in_one_line(
      step_dir,
      lambda: ckpt.restore(latest, abstract_like(state), data_iterator),
      hint=f"if it is damaged, delete {step_dir} to resume from the step before",
  )
  check_frozen(meta, frozen, ckpt.directory)
  return state, int(latest)


def save_when_due(
    ckpt: "Checkpointer",
    guard: "PreemptionGuard",
    step: int,
    last_step: int,
    state: Any,
    data_iterator: Any,
    frozen: dict,
    merged_lora: Any = None,
) -> None:
  """Saves on schedule, at the last step, or on a signal; then raises `run_io.Interrupted`."""
  stop = guard.should_stop(step)
  if ckpt.should_save(step) or stop or step == last_step:
    ckpt.save(
        step,
        state,
        data_iterator,
        meta={"frozen": frozen},
        force=True,
        merged_lora=merged_lora,
    )
  if stop:
    name = guard.signal_name or "SIGTERM"  # a preemption notice or another process's signal
    raise run_io.Interrupted(name, step, os.path.join(ckpt.directory, str(step)))


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of arrays, for restoring onto it."""

  def to_abstract(x):
    if isinstance(x, jax.Array):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
    x = np.asarray(x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype)

  return jax.tree_util.tree_map(to_abstract, tree)


def check_frozen(meta: dict, expected: dict, directory: str) -> None:
  """Refuses to resume on other frozen weights than the checkpoint was trained on.

  `expected` is `policy.frozen_fingerprint`: content hashes, so the same weights at another
  path (another cluster) pass.
  """
  saved = meta.get("frozen")
  if saved is None:
    logging.warning(
        "%s records no frozen-weights fingerprint (older mer-jax): not checked", directory
    )
    return
  differ = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
  if differ:
    raise config_lib.ConfigError(
        f"checkpoint {directory} was trained on other frozen weights ({', '.join(differ)}: "
        f"{ {k: saved.get(k) for k in differ} } vs this run's "
        f"{ {k: expected.get(k) for k in differ} }); point --workdir elsewhere or use the same weights"
    )


class PreemptionGuard:
  """Turns SIGTERM (a preemption notice) and a first Ctrl-C (SIGINT) into a save-and-stop at
  the same step on every process; a second Ctrl-C stops at once (KeyboardInterrupt).

  One process: a signal handler sets a flag that `should_stop` reads. Several processes:
  JAX's preemption service (started by `jax.distributed.initialize`) catches SIGTERM on any
  host and tells the others; `multihost_utils.reached_preemption_sync_point(step)` then
  returns True on every host at the same step (the step after the furthest one), so all
  hosts save that step together. A Python SIGTERM handler would replace the service's, so
  only the SIGINT one is installed there; its flag (`_flag`) is all-gathered.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self._flag = threading.Event()
    self.signal_name: str | None = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      signals = self.SIGNALS if jax.process_count() == 1 else (signal.SIGINT,)
      self._previous = {s: signal.signal(s, self._handle) for s in signals}

  def _handle(self, signum, frame):
    del frame
    if self._flag.is_set() and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = signal.Signals(signum).name
    logging.warning(
        "%s received: saving a checkpoint and stopping after this step (Ctrl-C again stops "
        "at once, without saving)",
        self.signal_name,
    )
    self._flag.set()

  def should_stop(self, step: int) -> bool:
    """Called after every train step by every process, with the same `step`."""
    local = self._flag.is_set()
    if jax.process_count() == 1:
      return local
    from jax.experimental import multihost_utils

    if multihost_utils.reached_preemption_sync_point(step):
      logging.warning("preemption notice: every process saves step %d and stops", step)
      return True
    flags = multihost_utils.process_allgather(np.asarray([local], dtype=np.int32))
    return bool(np.any(flags))

  def restore(self) -> None:
    for s, previous in self._previous.items():
      signal.signal(s, previous)
    self._previous = {}
