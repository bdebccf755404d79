r"""Wall time, CPU-seconds and peak memory of a command and every process it starts.

    python benchmarks/measure_command.py [--out FILE.json] -- python -m mer_jax.main ...

What the README's time and memory figures come from. CPU-seconds are user + system time of
the command and all its descendants (from the kernel's accounting of reaped children);
peak memory is the largest total resident set size (RSS) of the process tree, sampled
every 0.5 s, so short peaks between samples can be missed. The machine's 1-minute load
average at the start, at the end and its mean over the run are printed too: on a shared
machine wall time depends on it, CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import psutil


def _tree_rss(proc: psutil.Process) -> int:
  total = 0
  for p in [proc, *proc.children(recursive=True)]:
    try:
      total += p.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
      pass
  return total


def measure(command: list[str], interval: float = 0.5, log: str | None = None, env=None) -> dict:
  """The figures of one run of `command` (its output to file `log` when given)."""
  load_start = os.getloadavg()
  before = os.times()
  t0 = time.time()
  out = open(log, "w") if log else None  # noqa: SIM115 - closed below
  child = subprocess.Popen(command, stdout=out, stderr=out, env=env)
  proc = psutil.Process(child.pid)
  peak, loads = 0, []
  while child.poll() is None:
    try:
      peak = max(peak, _tree_rss(proc))
    except psutil.NoSuchProcess:
      break
    loads.append(os.getloadavg()[0])
    time.sleep(interval)
  child.wait()
  if out is not None:
    out.close()
  wall = time.time() - t0
  after = os.times()
  cpu = (after.children_user - before.children_user) + (
      after.children_system - before.children_system
  )
  return {
      "command": " ".join(command),
      "returncode": child.returncode,
      "wall_s": round(wall, 1),
      "cpu_s": round(cpu, 1),
      "peak_rss_gib": round(peak / 2**30, 2),
      "load_average_start": [round(x, 1) for x in load_start],
      "load_average_end": [round(x, 1) for x in os.getloadavg()],
      "load_average_mean": round(sum(loads) / max(len(loads), 1), 1),
      "cpus": os.cpu_count(),
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", help="also write the figures to this JSON file")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command after --")
  result = measure(command)
  line = (
      f"wall {result['wall_s'] / 60:.1f} min, CPU {result['cpu_s']:.0f} s, peak RSS "
      f"{result['peak_rss_gib']:.2f} GiB, load average {result['load_average_start'][0]} -> "
      f"{result['load_average_end'][0]} (mean {result['load_average_mean']}) on "
      f"{result['cpus']} CPUs (exit {result['returncode']})"
  )
  print(line, file=sys.stderr)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  return result["returncode"]


if __name__ == "__main__":
  sys.exit(main())
