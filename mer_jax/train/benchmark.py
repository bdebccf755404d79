"""Mode `eval`: score checkpoints on the held-out split or on MER-UniBench, one table.

    python -m mer_jax.main --config=configs/eval.py:paper --workdir=W \
        --config.checkpoint.init_from=RUN/checkpoints \
        --config.eval.benchmark=unibench --config.eval.unibench_root=/data/MER-UniBench

1. Checkpoints: `checkpoint.init_from` is one checkpoint (a step directory or a released
   `.pth`), or a directory of them (`config_lib.checkpoints_in`): each is scored; '' = the
   base model.
2. Benchmark sets (`eval.benchmark`): `heldout` (the eval split, EW F at `eval.level`) or
   the nine MER-UniBench test sets read from their released folders
   (`input_pipeline/unibench.py`), each with its own metric (`mer_jax/metrics/unibench.py`:
   hit rate; WAF and ACC on non-zero sentiment labels; EW F at level 1). The frozen
   encoders run once per clip (feature cache per set); the policy is built once.
3. Per checkpoint and set: answers (`evaluation.generate_completions`, `eval.decoding`),
   labels (`eval.extractor`), the set's metric; predictions in
   `<workdir>/<checkpoint>/<set>/predictions.csv`.
4. `<workdir>/benchmark.json` and `benchmark.md`: every checkpoint x set, the mean over
   the sets, the settings (extractor, lexicon, decoding) and, labelled as such, what the
   official protocol would report: for each set the best of the checkpoints (the
   papers' best-of-epochs selection, chosen on the test set itself). Resumable: a rerun
   skips the pairs already scored under the same settings.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from absl import logging
import numpy as np

from input_pipeline import features as input_features
from input_pipeline import files
from input_pipeline import readers
from input_pipeline import unibench as unibench_data
from mer_jax import config_lib
from mer_jax import metrics
from mer_jax import run_io
from mer_jax.metrics import unibench as unibench_metrics
from mer_jax.train import context as context_lib
from mer_jax.train import evaluation
from mer_jax.train import extractors
from mer_jax.train import features as features_lib
from mer_jax.train import state as state_lib

HELDOUT = "heldout"


@dataclasses.dataclass
class BenchSet:
  name: str  # a MER-UniBench set, or HELDOUT
  samples: list[dict]  # without media (features cached)
  gold: dict[str, Any]  # name -> label / float / label list
  config: Any  # the run config with this set's feature cache


def checkpoints(init_from: str) -> list[tuple[str, str]]:
  """(label, path) of every checkpoint to score; ('base', '') without one."""
  if not init_from:
    return [("base", "")]
  found = config_lib.checkpoints_in(init_from) or [init_from]
  return [(_label(p), p) for p in found]


def _label(path: str) -> str:
  name = os.path.basename(path.rstrip("/"))
  return f"step_{name}" if name.isdigit() else os.path.splitext(name)[0]


def settings(config, extractor, tokenizer) -> dict:
  """What every number of the run depends on besides the checkpoint."""
  sampling = evaluation.decoding(config, tokenizer).sampling
  return {
      "benchmark": config.eval.benchmark,
      "extractor": extractor.description,
      "lexicon": config.eval.lexicon,
      "level": config.eval.level if config.eval.benchmark == HELDOUT else "level1",
      "decoding": config.eval.decoding,
      "max_new_tokens": sampling.max_new_tokens,
      "temperature": sampling.temperature,
      "num_samples": config.eval.num_samples,
  }


def load_sets(ctx, run_config) -> list[BenchSet]:
  """The benchmark's sets, their encoder features made (the features pass, once per clip).

  `run_config`: the config as given (its `data.features_dir` is the features root).
  """
  config = ctx.config
  limit = config.eval.num_samples or None
  if config.eval.benchmark == HELDOUT:
    samples = ctx.samples["eval"][:limit]
    gold = {s["name"]: list(s.get("labels") or []) for s in samples}
    return [BenchSet(HELDOUT, samples, gold, config)]
  e = config.eval
  folders = unibench_data.parse_folders(e.unibench_folders)
  # The features pass reads every set's media from its own paths (released layout).
  media_config = run_config.copy_and_resolve_references()
  with media_config.unlocked():
    media_config.data.source = "released"
  frames = "faces" if config.data.face_or_frame == "face" else "video"
  out = []
  for spec in unibench_data.selected(e.unibench_datasets):
    directory = unibench_data.folder(spec, e.unibench_root, folders)
    gold = unibench_data.read_gold(spec, directory)
    if limit:
      gold = dict(list(gold.items())[:limit])
    clips = []
    for name in gold:
      paths = unibench_data.media_paths(spec, directory, name)
      clips.append(
          input_features.Clip(spec.name, name, {frames: paths[frames], "audio": paths["audio"]})
      )
    with run_io.activity(f"features: {spec.name} from {directory}"):
      features_dir, manifest = features_lib.ensure_clip_features(media_config, clips)
    texts = unibench_data.texts(spec, directory, gold)
    samples = [t for t in texts if t["name"] in manifest.clips]
    skipped = [
        {"name": t["name"], "reason": manifest.skipped[t["name"]]["reason"]}
        for t in texts
        if t["name"] in manifest.skipped
    ]
    if skipped:
      logging.warning("%s: %d clips skipped (first: %s)", spec.name, len(skipped), skipped[0])
    ctx.writer.update_summary(
        "data", {f"unibench_{spec.name}": readers.data_summary(test=(samples, skipped))}
    )
    set_config = config.copy_and_resolve_references()
    with set_config.unlocked():
      set_config.data.features_dir = features_dir
    out.append(
        BenchSet(spec.name, samples, {s["name"]: gold[s["name"]] for s in samples}, set_config)
    )
  return out


def score_set(bench: BenchSet, names: Sequence[str], labels, sentiments, config) -> dict:
  """The set's metric on `labels` (name order of `names`) and, for sentiment sets,
  `sentiments` (None = from the labels' wheel valence)."""
  pred = dict(zip(names, labels, strict=True))
  if bench.name == HELDOUT:
    r = metrics.ew_scores(bench.gold, pred, config.eval.lexicon, level=config.eval.level)
    return {
        "task": "fine-grained",
        "metric": f"ew_f1_{config.eval.level}",
        "primary": r["f1"],
        "precision": r["precision"],
        "recall": r["recall"],
        "n_samples": len(bench.gold),
    }
  sentiment = dict(zip(names, sentiments, strict=True)) if sentiments is not None else None
  return unibench_metrics.evaluate_dataset(
      bench.name, bench.gold, pred, config.eval.lexicon, pred_sentiment=sentiment
  )


def official_best(table: dict[str, dict]) -> dict:
  """Per set, the best checkpoint's primary score (the papers' best-of-epochs protocol)."""
  sets = sorted({s for row in table.values() for s in row["datasets"]})
  best = {}
  for s in sets:
    label, score = max(
        ((c, row["datasets"][s]["primary"]) for c, row in table.items() if s in row["datasets"]),
        key=lambda x: x[1],
    )
    best[s] = {"primary": score, "checkpoint": label}
  return {
      "note": "per set, the best checkpoint on that test set (the official best-of-epochs "
      "selection; optimistic: the test set chooses the model)",
      "datasets": best,
      "mean": float(np.mean([b["primary"] for b in best.values()])) if best else 0.0,
  }


def markdown(report: dict) -> str:
  """The report as one markdown table (scores x100)."""
  sets = [
      s
      for s in (*unibench_metrics.ALL_DATASETS, HELDOUT)
      if any(s in r["datasets"] for r in report["checkpoints"].values())
  ]
  st = report["settings"]
  lines = [
      f"# {st['benchmark']}: {len(report['checkpoints'])} checkpoint(s)",
      "",
      f"extractor `{st['extractor']}`, lexicon `{st['lexicon']}`, decoding `{st['decoding']}` "
      f"(max {st['max_new_tokens']} new tokens, T {st['temperature']}), level {st['level']}",
      "",
      "| checkpoint | " + " | ".join(sets) + " | mean |",
      "|---" * (len(sets) + 2) + "|",
  ]
  cell = lambda d, s: f"{100 * d[s]['primary']:.2f}" if s in d else "-"
  for label, row in report["checkpoints"].items():
    lines.append(
        f"| {label} | "
        + " | ".join(cell(row["datasets"], s) for s in sets)
        + f" | {100 * row['mean']:.2f} |"
    )
  best = report["official_best"]
  lines.append(
      "| *official best-of-epochs* | "
      + " | ".join(cell(best["datasets"], s) for s in sets)
      + f" | {100 * best['mean']:.2f} |"
  )
  lines += ["", f"*official best-of-epochs*: {best['note']}."]
  return "\n".join(lines) + "\n"


def run(config, workdir: str, writer) -> dict:
  """Mode `eval` (module doc). One checkpoint on the held-out split with the rules
  extractor is `evaluation.run` (summary.json['eval'] holds its figures)."""
  heldout = config.eval.benchmark == HELDOUT
  to_score = checkpoints(config.checkpoint.init_from)  # lists the directory once
  if heldout and len(to_score) == 1 and config.eval.extractor == "rules":
    return evaluation.run(config, workdir, writer)
  roles = ("eval",) if heldout else ()
  ctx = context_lib.build_context(config, workdir, writer, roles=roles)
  extractor = extractors.from_config(ctx)
  sets = load_sets(ctx, config)
  path = os.path.join(workdir, "benchmark.json")
  st = settings(config, extractor, ctx.tokenizer)
  report = run_io.read_json(path, {})
  if report.get("settings") != st:
    report = {"settings": st, "checkpoints": {}}
  for label, ckpt in to_score:
    row = report["checkpoints"].setdefault(label, {"path": ckpt, "datasets": {}})
    todo = [b for b in sets if b.name not in row["datasets"]]
    if not todo:
      continue
    params = state_lib.load_trained_params(ctx, ckpt) if ckpt else ctx.policy.params
    for bench in todo:
      set_ctx = dataclasses.replace(ctx, config=bench.config)
      out = evaluation.generate_completions(
          set_ctx, params, bench.samples, desc=f"{label} {bench.name}"
      )
      labels, sentiments = extractor.extract(
          out.texts, sentiment=bench.name in unibench_metrics.SENTIMENT_DATASETS
      )
      result = score_set(bench, out.names, labels, sentiments, config)
      result["truncation_rate"] = out.truncation_rate
      result["num_answers"] = len(out.names)
      if ctx.is_primary:
        evaluation.write_label_csv(
            os.path.join(workdir, label, bench.name, "predictions.csv"),
            out.names,
            labels,
            out.texts,
        )
      row["datasets"][bench.name] = result
      row["mean"] = float(np.mean([d["primary"] for d in row["datasets"].values()]))
      logging.info("%s %s: %s %.4f", label, bench.name, result["metric"], result["primary"])
      if ctx.is_primary:
        run_io.atomic_write_json(path, report)
  report["official_best"] = official_best(report["checkpoints"])
  if ctx.is_primary:
    run_io.atomic_write_json(path, report)
    files.write_text(os.path.join(workdir, "benchmark.md"), markdown(report))
  summary = {
      "benchmark_json": path,
      "settings": st,
      "mean": {c: r["mean"] for c, r in report["checkpoints"].items()},
      "official_best_mean": report["official_best"]["mean"],
  }
  writer.update_summary("eval", summary)
  return report
