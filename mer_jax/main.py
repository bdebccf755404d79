r"""Entry point of every mer-jax run.

    python -m mer_jax.main --config=configs/grpo.py[:demo|test|paper] [--workdir=W] \
        [--config.grpo.steps=100 ...] \
        [--jax_coordinator_address=HOST:PORT --jax_num_processes=N --jax_process_id=I]

Validates the config (one-line error naming a bad field), initializes multi-process JAX
when asked, writes `<workdir>/config.json`, then dispatches on `config.mode`
(mer_jax/modes.py). Every mode writes metrics.jsonl, TensorBoard events, summary.json
and log.txt in the workdir (mer_jax/run_io.py).
"""

from __future__ import annotations

import logging as logging_std
import os
import re
import signal
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from mer_jax import config_lib
from mer_jax import distributed
from mer_jax import modes
from mer_jax import run_io
from mer_jax.metrics import parsing

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Recipe file with get_config(arg), e.g. configs/grpo.py:demo.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Output directory (default: workdir/<mode>-<preset> under the current directory).",
)
_COORDINATOR = flags.DEFINE_string(
    "jax_coordinator_address",
    None,
    "HOST:PORT of process 0 for multi-process JAX (jax.distributed).",
)
_NUM_PROCESSES = flags.DEFINE_integer("jax_num_processes", None, "Number of JAX processes.")
_PROCESS_ID = flags.DEFINE_integer("jax_process_id", None, "Index of this JAX process.")
flags.mark_flags_as_required(["config"])


class _QuietLibraries(logging_std.Filter):
  """Keeps Orbax/XLA INFO chatter (dozens of lines per checkpoint) out of the console and log.txt."""

  _NOISY = ("orbax", "jax/_src", "absl/logging")

  def filter(self, record: logging_std.LogRecord) -> bool:
    return record.levelno >= logging_std.WARNING or not any(
        n in record.pathname for n in self._NOISY
    )


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = _CONFIG.value  # loaded lazily: a missing file or bad preset surfaces here
    config_lib.validate(config)
  except config_lib.ConfigError as e:
    print(f"config error: {e}", file=sys.stderr)
    return 2
  except (KeyError, ValueError, OSError) as e:
    print(f"config error: {_one_line(e)}", file=sys.stderr)
    return 2
  workdir = _WORKDIR.value or os.path.join("workdir", f"{config.mode}-{config.preset}")
  rerun = _check_rerun(config, workdir)
  if rerun is not None:
    return rerun

  for handler in (logging.get_absl_handler(),):
    handler.addFilter(_QuietLibraries())
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  except distributed.UsageError as e:
    print(f"config error: {e}", file=sys.stderr)
    return 2
  import jax

  try:
    config_lib.validate_layout(config, jax.device_count(), jax.process_count())
  except config_lib.ConfigError as e:
    print(f"config error: {e}", file=sys.stderr)
    return 2

  writer = run_io.RunWriter(workdir, is_primary=jax.process_index() == 0)
  status = 0
  try:
    writer.write_config(config)
    writer.set_status("running")
    logging.info(
        "mer-jax %s (%s preset) -> %s; %d process(es), %d device(s): %s",
        config.mode,
        config.preset,
        workdir,
        jax.process_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )
    for warning in config_lib.fidelity_warnings(config):
      logging.warning("%s", warning)
    modes.get_mode(config.mode)(config, workdir, writer)
    writer.set_status("finished")
  except run_io.Interrupted as e:
    writer.set_status("interrupted", signal=e.signal_name, step=e.step, checkpoint=e.checkpoint)
    status = 128 + getattr(signal, e.signal_name, signal.SIGTERM)
  except KeyboardInterrupt:
    # Ctrl-C outside a train loop (setup, evaluation) or a second Ctrl-C: finished phases
    # and saved checkpoints are kept, the current phase's unsaved work is lost.
    writer.set_status("interrupted", signal="SIGINT")
    status = 128 + signal.SIGINT
  except (config_lib.ConfigError, parsing.LabelFileError) as e:
    # A bad config value or data file found during the run: one line, as up front.
    writer.set_status("failed", error=str(e))
    kind = "data" if isinstance(e, parsing.LabelFileError) else "config"
    print(f"{kind} error: {e}", file=sys.stderr)
    return 2
  except Exception as e:
    writer.set_status("failed", error=_one_line(e))
    raise
  finally:
    writer.close()
  if jax.process_index() == 0:
    print(run_io.report(workdir, config.mode), flush=True)
  return status


def _check_rerun(config, workdir: str) -> int | None:
  """The exit status when this launch must not run: another config in `workdir` (2), or
  the same finished run (0, after printing its results). None: start or resume.

  Every process reads the same files (a multi-process workdir is shared), and process 0
  changes them only when the run goes ahead, so all processes decide alike.
  """
  config_path = os.path.join(workdir, "config.json")
  try:
    previous = run_io.read_json(config_path)
    summary = run_io.read_json(os.path.join(workdir, "summary.json"), default={})
  except (OSError, ValueError) as e:
    print(f"config error: cannot read {workdir}/: {_one_line(e)}", file=sys.stderr)
    return 2
  if previous is None:
    return None
  current = run_io.config_dict(config)
  conflicts = config_lib.resume_conflicts(previous, current)
  if conflicts:
    print(
        f"config error: {config_path} holds another run's config ({conflicts}); rerun with "
        "the same config (only steps, logging, checkpointing and the mesh may change) or "
        "use another --workdir",
        file=sys.stderr,
    )
    return 2
  if summary.get("status") == "finished" and previous == current:
    print(
        "nothing to do: this run already finished (raise the steps to train further, or "
        "use another --workdir)\n" + run_io.report(workdir, config.mode),
        flush=True,
    )
    return 0
  return None


def _one_line(e: BaseException) -> str:
  """The useful last line of a config/flag loading error (they nest tracebacks as text)."""
  suggestion = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', str(e))
  if suggestion:
    return f"unknown config field {suggestion.group(2)!r} (did you mean {suggestion.group(1)!r}?)"
  if isinstance(e, KeyError):
    text = str(e.args[0]) if e.args else repr(e)
    return "unknown config field " + " ".join(text.split())
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  flag = next(
      (line.split(":")[0][len("flag ") :] for line in lines if line.startswith("flag --")), ""
  )
  detail = next(
      (line for line in reversed(lines) if line.startswith("[Errno")),
      lines[-1] if lines else repr(e),
  )
  return f"{flag}: {detail}" if flag and flag not in detail else detail


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors (bad preset, unknown or mistyped override)."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, TypeError, ValueError, OSError) as e:
    print(f"config error: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)


def run_main() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run_main()
