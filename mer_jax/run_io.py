"""Run outputs shared by every mode: config.json, metrics.jsonl, TensorBoard, summary.json, log.

Layout under `<workdir>` (docs/architecture.md):
  config.json     resolved config, written before any heavy work
  metrics.jsonl   one JSON object per logged step, always with an integer `step`
  tb/             TensorBoard event files (tensorboardX, no TensorFlow needed)
  summary.json    final figures; each mode owns a top-level key (`sft`, `grpo`, `eval`, ...)
  log.txt         the absl log of process 0

Only process 0 writes; other processes get a writer whose methods do nothing, so callers
never branch on the process index.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from typing import Any, Mapping

from absl import logging as absl_logging
import numpy as np


def _to_jsonable(value: Any) -> Any:
  """Converts numpy/JAX scalars and arrays, tuples and ConfigDicts to plain JSON types."""
  if isinstance(value, Mapping):
    return {str(k): _to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_jsonable(v) for v in value]
  if hasattr(value, "to_dict"):
    return _to_jsonable(value.to_dict())
  if isinstance(value, (np.generic,)) or (
      hasattr(value, "shape") and getattr(value, "shape", None) == ()
  ):
    value = np.asarray(value).item()
  elif hasattr(value, "shape"):
    return _to_jsonable(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/inf; keep them visible rather than crash
  return value


def atomic_write_json(path: str, obj: Any) -> None:
  """Writes JSON through a temp file + rename so a crash never leaves half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp_", suffix=".json")
  with os.fdopen(fd, "w") as f:
    json.dump(_to_jsonable(obj), f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def read_json(path: str, default: Any = None) -> Any:
  if not os.path.exists(path):
    return default
  with open(path) as f:
    return json.load(f)


class RunWriter:
  """Writes the run outputs of one workdir (process 0 only)."""

  def __init__(self, workdir: str, *, is_primary: bool = True, tensorboard: bool = True):
    self.workdir = workdir
    self.is_primary = is_primary
    self._tb = None
    self._log_handler = None
    if not is_primary:
      return
    os.makedirs(workdir, exist_ok=True)
    self.metrics_path = os.path.join(workdir, "metrics.jsonl")
    self.summary_path = os.path.join(workdir, "summary.json")
    if tensorboard:
      from tensorboardX import SummaryWriter  # light: protobuf only, no TensorFlow

      self._tb = SummaryWriter(os.path.join(workdir, "tb"))
    self._log_handler = logging.FileHandler(os.path.join(workdir, "log.txt"))
    self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for existing in absl_logging.get_absl_handler().filters:
      self._log_handler.addFilter(existing)
    absl_logging.get_absl_logger().addHandler(self._log_handler)

  def write_config(self, config) -> None:
    if self.is_primary:
      atomic_write_json(os.path.join(self.workdir, "config.json"), config)

  def write_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Appends one line `{"step": step, **metrics}` and the scalars to TensorBoard."""
    if not self.is_primary:
      return
    record = {"step": int(step), **_to_jsonable(dict(metrics))}
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
    if self._tb is not None:
      for key, value in record.items():
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tb.add_scalar(key, value, int(step))
      self._tb.flush()

  def truncate_metrics(self, after_step: int, prefix: str | None = None) -> None:
    """Drops metrics lines with `step > after_step` (on resume, so steps are not logged twice).

    With `prefix`, only lines holding a key that starts with it are dropped (a phase
    resuming must not erase the lines of the phases after it).
    """
    if not self.is_primary or not os.path.exists(self.metrics_path):
      return

    def keep(r):
      if r.get("step", 0) <= after_step:
        return True
      return prefix is not None and not any(k.startswith(prefix) for k in r)

    kept = [r for r in read_metrics(self.workdir) if keep(r)]
    fd, tmp = tempfile.mkstemp(dir=self.workdir, prefix=".tmp_", suffix=".jsonl")
    with os.fdopen(fd, "w") as f:
      for record in kept:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, self.metrics_path)

  def update_summary(self, section: str, values: Mapping[str, Any]) -> None:
    """Merges `values` into summary.json[section] (read-modify-write, atomic)."""
    if not self.is_primary:
      return
    summary = read_json(self.summary_path, default={})
    current = summary.get(section, {})
    if isinstance(current, dict) and isinstance(values, Mapping):
      current.update(_to_jsonable(dict(values)))
    else:
      current = _to_jsonable(values)
    summary[section] = current
    atomic_write_json(self.summary_path, summary)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    if self._log_handler is not None:
      absl_logging.get_absl_logger().removeHandler(self._log_handler)
      self._log_handler.close()
      self._log_handler = None


def read_metrics(workdir: str) -> list[dict]:
  """Reads metrics.jsonl back (tests, plots, resume checks)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
