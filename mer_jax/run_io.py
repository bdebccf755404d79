"""Run outputs shared by every mode: config.json, metrics.jsonl, TensorBoard, summary.json, log.

Layout under `<workdir>` (docs/architecture.md):
  config.json     resolved config, written before any heavy work
  config_history.jsonl  every config the run was started with, one line per launch
  metrics.jsonl   one JSON object per logged step, always with an integer `step`
  tb/             TensorBoard event files (tensorboardX, no TensorFlow needed)
  summary.json    final figures; each mode owns a top-level key (`sft`, `grpo`, `eval`, ...);
                  `status` is running | finished | interrupted | failed (`status_detail`)
  log.txt         the absl log of process 0, with a line of the latest metrics at most
                  once a minute (the progress bars only reach the console)

Only process 0 writes; other processes get a writer whose methods do nothing, so callers
never branch on the process index. The workdir may be a local path or a bucket (gs://):
every file goes through etils.epath (`input_pipeline.files`); on a bucket the appended
files are rewritten at most every 30 s and at the end of the run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import threading
import time
from typing import Any, Mapping

from absl import logging as absl_logging
from etils import epath
import numpy as np

from input_pipeline import files


def to_jsonable(value: Any) -> Any:
  """Converts numpy/JAX scalars and arrays, tuples and ConfigDicts to plain JSON types."""
  if isinstance(value, Mapping):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, "to_dict"):
    return to_jsonable(value.to_dict())
  if isinstance(value, (np.generic,)) or (
      hasattr(value, "shape") and getattr(value, "shape", None) == ()
  ):
    value = np.asarray(value).item()
  elif hasattr(value, "shape"):
    return to_jsonable(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them visible rather than crash
  return value


def config_dict(config) -> dict:
  """A config as plain JSON types, as config.json holds it (tuples become lists)."""
  return json.loads(json.dumps(to_jsonable(config)))


class Interrupted(Exception):
  """A train loop stopped on a signal after saving a checkpoint; the run can be resumed."""

  def __init__(self, signal_name: str, step: int, checkpoint: str):
    super().__init__(f"{signal_name} at step {step}; checkpoint saved in {checkpoint}")
    self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes JSON through a temp file + rename so a crash never leaves half a file."""
  files.write_json(path, to_jsonable(obj), indent=2)


read_json = files.read_json


class _EpathRecordFile:
  """A TensorBoard event file in a bucket: kept in memory, uploaded whole every 30 s and at close."""

  def __init__(self, path: str):
    self._path = epath.Path(path)
    self._data = bytearray()
    self._uploaded_at = 0.0

  def write(self, data: bytes) -> None:
    self._data += data

  def flush(self) -> None:
    if time.time() - self._uploaded_at >= 30.0:
      self.close()

  def close(self) -> None:
    files.write_bytes(self._path, bytes(self._data))
    self._uploaded_at = time.time()


class _EpathRecordFactory:
  """tensorboardX writer factory for URLs (its own gs:// support needs google-cloud-storage)."""

  def open(self, path: str) -> _EpathRecordFile:
    return _EpathRecordFile(path)

  def directory_check(self, path: str) -> None:
    del path  # buckets have no directories to create


def _tensorboard(logdir: str):
  from tensorboardX import SummaryWriter  # light: protobuf only, no TensorFlow
  from tensorboardX import record_writer

  if files.is_remote(logdir):
    record_writer.register_writer_factory(logdir.split(":")[0], _EpathRecordFactory())
  return SummaryWriter(logdir)


class _AppendHandler(logging.Handler):
  """A logging handler that appends formatted records to an `AppendFile` (log.txt)."""

  def __init__(self, path: str):
    super().__init__()
    self.file = files.AppendFile(path)
    self.file.write("")  # log.txt exists from the start, as with a FileHandler

  def emit(self, record: logging.LogRecord) -> None:
    try:
      self.file.write(self.format(record) + "\n")
    except Exception:  # noqa: BLE001 - logging must never raise
      self.handleError(record)

  def close(self) -> None:
    self.file.close()
    super().close()


class RunWriter:
  """Writes the run outputs of one workdir (process 0 only)."""

  # log.txt gets a metrics line at most this often (progress bars only reach the console,
  # so a user tailing log.txt would otherwise see nothing for the length of a phase).
  LOG_METRICS_EVERY_S = 60.0

  def __init__(self, workdir: str, *, is_primary: bool = True, tensorboard: bool = True):
    self.workdir = workdir
    self.is_primary = is_primary
    self._tb = None
    self._log_handler = None
    self._metrics_logged_at = -math.inf
    if not is_primary:
      return
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    self.metrics_path = os.path.join(workdir, "metrics.jsonl")
    self.summary_path = os.path.join(workdir, "summary.json")
    self._metrics = files.AppendFile(self.metrics_path)
    self._history = files.AppendFile(os.path.join(workdir, "config_history.jsonl"))
    if tensorboard:
      self._tb = _tensorboard(os.path.join(workdir, "tb"))
    self._log_handler = _AppendHandler(os.path.join(workdir, "log.txt"))
    self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for existing in absl_logging.get_absl_handler().filters:
      self._log_handler.addFilter(existing)
    absl_logging.get_absl_logger().addHandler(self._log_handler)

  def write_config(self, config) -> None:
    """config.json (the config of this launch) + one line in config_history.jsonl."""
    if not self.is_primary:
      return
    atomic_write_json(os.path.join(self.workdir, "config.json"), config)
    record = {"time": _now(), "config": to_jsonable(config)}
    self._history.write(json.dumps(record, sort_keys=True) + "\n")
    self._history.flush()

  def set_status(self, status: str, **detail) -> None:
    """summary.json `status` (running | finished | interrupted | failed) and its detail."""
    if not self.is_primary:
      return
    summary = read_json(self.summary_path, default={})
    summary["status"] = status
    summary.pop("status_detail", None)
    if detail:
      summary["status_detail"] = to_jsonable(dict(detail, time=_now()))
    atomic_write_json(self.summary_path, summary)

  def write_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Appends one line `{"step": step, **metrics}` and the scalars to TensorBoard."""
    if not self.is_primary:
      return
    record = {"step": int(step), **to_jsonable(dict(metrics))}
    self._metrics.write(json.dumps(record, sort_keys=True) + "\n")
    self._log_metrics(record)
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tb.add_scalar(key, value, int(step))
      self._tb.flush()

  def _log_metrics(self, record: Mapping[str, Any]) -> None:
    """One `step N: key=value ...` line in log.txt only (not the console), rate-limited."""
    now = time.monotonic()
    if self._log_handler is None or now - self._metrics_logged_at < self.LOG_METRICS_EVERY_S:
      return
    self._metrics_logged_at = now
    scalars = " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(record.items())
        if k != "step" and isinstance(v, (int, float, str)) and not isinstance(v, bool)
    )
    args = (record["step"], scalars)
    line = logging.LogRecord(__name__, logging.INFO, __file__, 0, "step %d: %s", args, None)
    self._log_handler.handle(line)

  def truncate_metrics(self, after_step: int, prefix: str | None = None) -> None:
    """Drops metrics lines with `step > after_step` (on resume, so steps are not logged twice).

    With `prefix`, only lines holding a key that starts with it are dropped (a phase
    resuming must not erase the lines of the phases after it).
    """
    if not self.is_primary:
      return

    def keep(r):
      if r.get("step", 0) <= after_step:
        return True
      return prefix is not None and not any(k.startswith(prefix) for k in r)

    records = [json.loads(line) for line in self._metrics.read().splitlines() if line.strip()]
    kept = [r for r in records if keep(r)]
    if len(kept) < len(records):
      self._metrics.rewrite("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))

  def update_summary(self, section: str, values: Mapping[str, Any]) -> None:
    """Merges `values` into summary.json[section] (read-modify-write, atomic)."""
    if not self.is_primary:
      return
    summary = read_json(self.summary_path, default={})
    current = summary.get(section, {})
    if isinstance(current, dict) and isinstance(values, Mapping):
      current.update(to_jsonable(dict(values)))
    else:
      current = to_jsonable(values)
    summary[section] = current
    atomic_write_json(self.summary_path, summary)

  def close(self) -> None:
    if self.is_primary:
      self._metrics.close()
      self._history.close()
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._log_handler is not None:
      absl_logging.get_absl_logger().removeHandler(self._log_handler)
      self._log_handler.close()
      self._log_handler = None


@contextlib.contextmanager
def activity(what: str, enabled: bool = True, every_s: float = 20.0):
  """Logs `what ...` now and `still <what> (N s)` every `every_s` seconds until it is done.

  For work that prints nothing else for a long time (XLA compiling a first step, building
  a 7B policy, reading a dataset), so that a run never goes quiet without saying why.
  `enabled=False` makes it a no-op (e.g. every step but the first).
  """
  if not enabled:
    yield
    return
  absl_logging.info("%s ...", what)
  done, t0 = threading.Event(), time.time()

  def beat():
    while not done.wait(every_s):
      absl_logging.info("still %s (%.0f s)", what, time.time() - t0)

  thread = threading.Thread(target=beat, daemon=True)
  thread.start()
  try:
    yield
  finally:
    done.set()
    thread.join()
    if time.time() - t0 >= every_s:
      absl_logging.info("%s: done in %.0f s", what, time.time() - t0)


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def report(workdir: str, mode: str = "") -> str:
  """The lines that end a run: status, the evaluation figures and where the outputs are."""
  summary = read_json(os.path.join(workdir, "summary.json"), default={})
  status = summary.get("status", "unknown")
  detail = summary.get("status_detail", {})
  head = f"mer-jax {mode} {status}".replace("  ", " ")
  if status == "interrupted":
    where = f" at step {detail['step']}" if "step" in detail else ""
    head += f" ({detail.get('signal', 'signal')}{where}); rerun the same command to resume"
  lines = [f"{head}: {workdir}"]
  phases = sorted(summary, key=lambda k: (_PHASE_ORDER.index(k) if k in _PHASE_ORDER else 9, k))
  for name in phases:
    section = summary[name]
    if isinstance(section, dict) and "ew_f1" in section:
      line = (
          f"  {name:<6s} EW F1 {section['ew_f1']:.4f} (P {section['ew_precision']:.4f} "
          f"R {section['ew_recall']:.4f}), format rate {section['format_rate']:.3f}, "
          f"{section['num_samples']} clips"
      )
      if "majority_baseline_f1" in section:
        line += (
            f"; majority label {section['majority_label']!r}: "
            f"{section['majority_baseline_f1']:.4f}"
        )
      lines.append(line)
  root = epath.Path(workdir)
  outputs = [f for f in _OUTPUT_FILES if (root / f).exists()]

  def visit(directory: epath.Path, rel: str, depth: int) -> None:
    if not directory.is_dir():
      return
    entries = sorted(directory.iterdir(), key=lambda p: p.name)
    if directory.name == "checkpoints":
      steps = sorted((int(p.name) for p in entries if p.name.isdigit()), reverse=True)
      outputs.extend([os.path.join(rel, str(steps[0]))] if steps else [])
      return
    for p in entries:
      if p.is_dir():
        if depth < 2 and p.name not in ("tb", "tokenizer", "hf"):
          visit(p, os.path.join(rel, p.name), depth + 1)
      elif p.name.endswith(_SHOWN):
        outputs.append(os.path.normpath(os.path.join(rel, p.name)))

  visit(root, "", 0)
  if summary.get("export_hf", {}).get("dir"):
    outputs.append(os.path.relpath(summary["export_hf"]["dir"], workdir) + "/")
  lines.append(f"  outputs in {workdir}: {', '.join(outputs)}")
  if detail.get("error"):
    lines.append(f"  error: {detail['error']}")
  return "\n".join(lines)


_PHASE_ORDER = ("sft", "grpo", "oppo", "eval")
_OUTPUT_FILES = ("summary.json", "metrics.jsonl", "log.txt", "config.json")
_SHOWN = ("predictions.csv", "gold.csv", ".png")


def read_metrics(workdir: str) -> list[dict]:
  """Reads metrics.jsonl back (tests, plots, resume checks)."""
  path = epath.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
