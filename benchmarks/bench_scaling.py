r"""Host memory does not grow with the number of clips; runs work with the media deleted.

    python benchmarks/bench_scaling.py [--clips 200,2000] [--steps 10] [--out DIR]

For each size N, writes a dataset in the released layout (N clips: video/*.mp4 160x120,
4 s at 10 fps, mpeg4; audio/*.wav 4 s 44.1 kHz stereo; labels.csv, reasons.csv,
subtitle_chieng.csv; an 8-clip eval_labels.csv) with a worker pool, then measures with
benchmarks/measure_command.py (wall, CPU-s, peak RSS of the process tree):

  1. `mode=features` (configs/sft.py:test, one CPU device) into DIR/N/features;
  2. an SFT run of `--steps` steps on those features;
  3. the same SFT run again with video/ and audio/ moved out of the dataset (as if
     deleted; moved back at the end): it must log the same losses.

An unmeasured 8-clip round first fills a compilation cache of its own, and an unmeasured
SFT run on each dataset compiles its length buckets, so no measured run compiles (a cold
compile adds ~300 MB of RSS to whichever run does it).

Prints one table (side by side per N) and the growth of peak RSS from the smallest to the
largest N (the issue-17 target: <= 250 MB), and writes DIR/scaling.json. Every run gets
its own $MER_JAX_CACHE, so nothing is shared with other runs on the machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import shutil
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, REPO)

from benchmarks import measure_command  # noqa: E402

EMOTIONS = ("happy", "sad", "angry", "worried", "calm", "surprised", "fearful")
SAMPLE_RATE = 44100
SECONDS = 4


def write_clip(root: str, i: int) -> None:
  """One clip: a 160x120 mp4 (40 frames at 10 fps) and a 4 s 44.1 kHz stereo wav."""
  from released_data import write_mp4  # tests/released_data.py
  import soundfile as sf

  name = f"clip_{i:05d}"
  write_mp4(os.path.join(root, "video", f"{name}.mp4"), 10 * SECONDS, h=120, w=160, seed=i)
  t = np.arange(SECONDS * SAMPLE_RATE) / SAMPLE_RATE
  left = 0.1 * np.sin(2 * np.pi * (120 + i % 200) * t)
  right = 0.1 * np.sin(2 * np.pi * (180 + i % 150) * t)
  sf.write(os.path.join(root, "audio", f"{name}.wav"), np.stack([left, right], 1), SAMPLE_RATE)


def write_dataset(root: str, n: int, workers: int) -> float:
  """The released layout with `n` clips under `root` (kept when complete); seconds taken."""
  done = os.path.join(root, "labels.csv")
  if os.path.exists(done) and os.path.isdir(os.path.join(root, "video")):
    return 0.0
  t0 = time.time()
  for sub in ("video", "audio"):
    os.makedirs(os.path.join(root, sub), exist_ok=True)
  with concurrent.futures.ProcessPoolExecutor(workers) as pool:
    list(pool.map(write_clip, [root] * n, range(n), chunksize=16))
  names = [f"clip_{i:05d}" for i in range(n)]

  def table(file, header, rows):
    with open(os.path.join(root, file), "w", newline="", encoding="utf-8") as f:
      w = csv.writer(f)
      w.writerow(header)
      w.writerows(rows)

  labels = [[x, str([EMOTIONS[i % 7], EMOTIONS[(i * 3 + 1) % 7]])] for i, x in enumerate(names)]
  table(
      "reasons.csv",
      ["name", "reason"],
      [[x, f"Clip {i} looks tense."] for i, x in enumerate(names)],
  )
  table(
      "subtitle_chieng.csv",
      ["name", "chinese", "english"],
      [[x, "你好", f"This is clip {i}."] for i, x in enumerate(names)],
  )
  table("eval_labels.csv", ["name", "openset"], labels[:8])
  table("labels.csv", ["name", "openset"], labels)  # last: marks the dataset complete
  return time.time() - t0


def main_args(root: str, workdir: str, features: str, mode: str, steps: int) -> list[str]:
  return [
      sys.executable,
      "-m",
      "mer_jax.main",
      f"--config={REPO}/configs/sft.py:test",
      f"--workdir={workdir}",
      f"--config.mode={mode}",
      f"--config.train.steps={steps}",
      "--config.checkpoint.every_steps=1000",
      "--config.eval.num_samples=8",
      "--config.data.source=released",
      "--config.data.face_or_frame=frame",
      f"--config.data.root={root}",
      f"--config.data.labels_csv={root}/labels.csv",
      f"--config.data.reasons_csv={root}/reasons.csv",
      f"--config.data.subtitles_csv={root}/subtitle_chieng.csv",
      f"--config.data.eval_labels_csv={root}/eval_labels.csv",
      f"--config.data.features_dir={features}",
      "--config.data.decode_workers=2",
  ]


def measure(args: list[str], env: dict, log: str) -> dict:
  """measure_command's figures for one run (its output in `log`); stops on failure."""
  result = measure_command.measure(args, log=log, env=env)
  if result["returncode"] != 0:
    raise SystemExit(f"failed (exit {result['returncode']}): see {log}")
  return result


def losses(workdir: str) -> list[float]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r["train/loss"] for r in rows if "train/loss" in r]


def run_size(n: int, out: str, steps: int, workers: int) -> dict:
  base = os.path.join(out, str(n))
  data = os.path.join(base, "data")
  gen_s = write_dataset(data, n, workers)
  env = dict(os.environ, MER_JAX_CACHE=os.path.join(base, "cache"), PYTHONPATH=REPO)
  env.pop("XLA_FLAGS", None)  # one CPU device, as a user runs it
  features = os.path.join(base, "features")
  for d in ("features", "run_features", "sft_warmup", "sft", "sft_no_media", "cache"):
    shutil.rmtree(os.path.join(base, d), ignore_errors=True)
  mb = lambda r: round(r["peak_rss_gib"] * 1024)
  row = {"clips": n, "generate_s": round(gen_s, 1)}
  # The SFT programs depend on the data (length buckets): an unmeasured run compiles them.
  runs = (("features", "features"), ("sft_warmup", "sft"), ("sft", "sft"))
  for name, mode in runs:
    workdir = os.path.join(base, "run_features" if name == "features" else name)
    r = measure(main_args(data, workdir, features, mode, steps), env, f"{workdir}.log")
    row[name] = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": mb(r)}
  media_bytes = sum(
      os.path.getsize(os.path.join(data, sub, f))
      for sub in ("video", "audio")
      for f in os.listdir(os.path.join(data, sub))
  )
  feature_bytes = sum(
      os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(features) for f in fs
  )
  row["media_mb"], row["features_mb"] = round(media_bytes / 2**20, 1), round(
      feature_bytes / 2**20, 1
  )
  aside = os.path.join(base, "media_aside")  # out of the dataset: the run cannot see it
  os.makedirs(aside, exist_ok=True)
  for sub in ("video", "audio"):
    os.replace(os.path.join(data, sub), os.path.join(aside, sub))
  workdir = os.path.join(base, "sft_no_media")
  r = measure(main_args(data, workdir, features, "sft", steps), env, f"{workdir}.log")
  row["sft_no_media"] = {"wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "peak_rss_mb": mb(r)}
  row["losses"] = losses(os.path.join(base, "sft"))
  row["losses_no_media"] = losses(workdir)
  row["same_losses"] = row["losses"] == row["losses_no_media"] and len(row["losses"]) == steps
  for sub in ("video", "audio"):  # back for the next run of the benchmark
    os.replace(os.path.join(aside, sub), os.path.join(data, sub))
  return row


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--clips", default="200,2000", help="comma-separated dataset sizes")
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--workers", type=int, default=2, help="media-writing processes")
  parser.add_argument("--out", default="/tmp/mer_jax_bench_scaling")
  args = parser.parse_args()
  sizes = [int(x) for x in args.clips.split(",")]
  # Compile once first (an 8-clip run; the shapes do not depend on N), so every measured
  # run reads its programs from the same warm compilation cache.
  os.environ["MER_JAX_COMPILATION_CACHE"] = os.path.join(args.out, "jax_cache")
  run_size(8, args.out, args.steps, args.workers)
  rows = []
  for n in sizes:
    rows.append(run_size(n, args.out, args.steps, args.workers))
    print(json.dumps(rows[-1]), flush=True)
  with open(os.path.join(args.out, "scaling.json"), "w") as f:
    json.dump({"rows": rows, "load_average": os.getloadavg(), "cpus": os.cpu_count()}, f, indent=1)
  print("\n| clips | " + " | ".join(str(r["clips"]) for r in rows) + " |")
  print("|---|" + "---|" * len(rows))
  for key in ("features", "sft", "sft_no_media"):
    for field in ("peak_rss_mb", "wall_s", "cpu_s"):
      print(f"| {key} {field} | " + " | ".join(str(r[key][field]) for r in rows) + " |")
  print("| media MB | " + " | ".join(str(r["media_mb"]) for r in rows) + " |")
  print("| features MB | " + " | ".join(str(r["features_mb"]) for r in rows) + " |")
  print("| same losses without media | " + " | ".join(str(r["same_losses"]) for r in rows) + " |")
  ok = all(r["same_losses"] for r in rows)
  for key in ("features", "sft"):
    growth = rows[-1][key]["peak_rss_mb"] - rows[0][key]["peak_rss_mb"]
    ok &= growth <= 250
    print(
        f"{key}: peak RSS {rows[0]['clips']} -> {rows[-1]['clips']} clips: {growth:+d} MB (target <= 250)"
    )
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
