"""Generation-based evaluation: answers -> labels -> emotion-wheel F/P/R, format rate.

Predictions are written as `<dir>/predictions.csv` in the released `name,openset`
format (plus the raw completion) next to the gold labels of the same clips,
`<dir>/gold.csv`, so `python -m mer_jax.evaluate ovmer --gt <dir>/gold.csv --pred
<dir>/predictions.csv` rescores them with any lexicon. Gold labels no emotion wheel maps
(which the score drops) are counted and warned about.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from typing import Any, Sequence

from absl import logging
import jax
import numpy as np
from tqdm import tqdm

from input_pipeline import datasets
from input_pipeline import files
from input_pipeline import tokenization
from mer_jax import metrics
from mer_jax import run_io
from mer_jax.decode import generation
from mer_jax.decode import layout as layout_lib
from mer_jax.metrics import checks
from mer_jax.rl import rewards as rewards_lib
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import state as state_lib


def predicted_labels(completion: str) -> list[str]:
  """Labels of a completion: the <answer> part (or the whole text), official parsing."""
  answer = rewards_lib.extract_answer(completion)
  answer = answer.split("###")[0]
  # The released label question answers "The character's emotional state is a, b."
  lowered = answer.lower()
  for prefix in ("the character's emotional state is", "the emotional state is"):
    if prefix in lowered:
      answer = answer[lowered.index(prefix) + len(prefix) :]
      break
  return metrics.parse_labels(answer.strip().rstrip("."))


def write_label_csv(
    path: str,
    names: Sequence[str],
    labels: Sequence[list[str]],
    completions: Sequence[str] | None = None,
) -> None:
  """`name,openset[,completion]` in the released format (written atomically; local or gs://)."""
  out = io.StringIO(newline="")
  w = csv.writer(out)
  w.writerow(["name", "openset"] + (["completion"] if completions is not None else []))
  for i, (name, labs) in enumerate(zip(names, labels, strict=True)):
    w.writerow([name, str(list(labs))] + ([completions[i]] if completions is not None else []))
  files.write_text(path, out.getvalue())


# The released inference call (inference_hybird.py -> Chat.answer_sample).
OFFICIAL_MAX_NEW_TOKENS = 1200
OFFICIAL_MAX_LENGTH = 2000  # prompt + new tokens; leading prompt tokens are dropped
OFFICIAL_TOP_P = 0.9
HF_DEFAULT_TOP_K = 50  # transformers' GenerationConfig default, when the LLM sets none


def official_top_k(llm_dir: str) -> int:
  """top_k of the LLM's generation_config.json (Qwen2.5-Instruct: 20), as HF generate uses."""
  path = os.path.join(llm_dir, "generation_config.json") if llm_dir else ""
  if path and os.path.exists(path):
    with open(path) as f:
      return int(json.load(f).get("top_k", HF_DEFAULT_TOP_K))
  return HF_DEFAULT_TOP_K


@dataclasses.dataclass(frozen=True)
class Decoding:
  """How evaluation generates (`config.eval.decoding`): sampler settings, how many trailing
  prompt tokens are kept (0 = all) and how generated ids become the response text."""

  sampling: Any
  keep_prompt_tokens: int
  official: bool

  def texts(self, tokenizer, tokens: np.ndarray, lengths: np.ndarray, stops) -> list[str]:
    if not self.official:
      return generation.decode_completions(tokenizer, tokens, lengths, stops)
    return [
        tokenization.official_response(tokenizer, row[: int(n)])
        for row, n in zip(tokens, lengths, strict=True)
    ]


def decoding(config, tokenizer) -> Decoding:
  """`greedy`: eval.temperature (0 = greedy) and eval.max_new_tokens, our stop strings.
  `official`: the released settings (docs/official.md): sampling at temperature 1, top_p
  0.9, top_k from the LLM's generation_config, repetition penalty 1 (none), 1200 new
  tokens, the prompt cut to its last 2000 - 1200 tokens, the released stop words and
  response post-processing."""
  if config.eval.decoding == "official":
    eos = tokenization.official_eos_ids(tokenizer, config.model.llm.hf_dir)
    stops = tokenization.official_stop_sequences(tokenizer) + tuple((i,) for i in eos)
    sampling = generation.sampling_config(
        tokenizer,
        max_new_tokens=OFFICIAL_MAX_NEW_TOKENS,
        temperature=1.0,
        top_p=OFFICIAL_TOP_P,
        top_k=official_top_k(config.model.llm.hf_dir),
    )
    sampling = dataclasses.replace(sampling, stop_sequences=tuple(dict.fromkeys(stops)))
    return Decoding(sampling, OFFICIAL_MAX_LENGTH - OFFICIAL_MAX_NEW_TOKENS, True)
  sampling = generation.sampling_config(
      tokenizer,
      max_new_tokens=config.eval.max_new_tokens,
      temperature=config.eval.temperature,
      stop_strings=generation.stop_strings_for(config.data.target),
  )
  return Decoding(sampling, 0, False)


def keep_last_prompt_tokens(batch: dict, keep: int) -> dict:
  """Left-padded prompts cut to their last `keep` tokens (the released truncation)."""
  if not keep or batch["input_ids"].shape[1] <= keep:
    return batch
  return dict(
      batch,
      input_ids=batch["input_ids"][:, -keep:],
      attention_mask=batch["attention_mask"][:, -keep:],
  )


@dataclasses.dataclass
class Completions:
  """Generated answers of a sample list, in generation order (padding rows dropped)."""

  names: list[str]
  texts: list[str]
  lengths: list[int]  # generated tokens per answer
  max_new_tokens: int
  elapsed: float  # seconds

  @property
  def truncated(self) -> list[bool]:
    """Answers cut at the token budget (no stop reached): their labels may be missing."""
    return [n >= self.max_new_tokens for n in self.lengths]

  @property
  def truncation_rate(self) -> float:
    """Share of `truncated` answers (0 without answers): a cut `<think>` scores 0."""
    return float(np.mean(self.truncated)) if self.lengths else 0.0


def generate_completions(
    ctx, params: Any, samples: Sequence[dict], *, lora: bool = True, desc: str = "eval"
) -> Completions:
  """Answers to `samples` as `config.eval.decoding` says (`decoding`).

  Every host generates its block of rows; all hosts see all completions (the sampler's
  outputs are gathered).
  """
  config = ctx.config
  stops = generation.stop_strings_for(config.data.target)
  dec = decoding(config, ctx.tokenizer)
  cfg = dec.sampling
  decoder = generation.prepare(
      ctx.policy.model,
      params,
      ctx.mesh,
      layout_lib.settings_from_config(config),
      lora=lora,
      rules=config.mesh.logical_axis_rules,
  )
  rng = jax.random.PRNGKey(config.seed + 17)
  names, completions, lengths = [], [], []
  t0 = time.time()
  batches = datasets.make_eval_batches(
      config, samples, ctx.tokenizer, jax.process_index(), jax.process_count()
  )
  num_batches = -(-len(samples) // int(config.data.eval_batch_size))
  bar = tqdm(batches, total=num_batches, desc=desc, disable=not ctx.is_primary, leave=False)
  for i, batch in enumerate(bar):
    batch = mesh_lib.common_length(batch, ctx.tokenizer.pad_token_id, left_pad=True)
    batch = keep_last_prompt_tokens(batch, dec.keep_prompt_tokens)
    arrays, meta = datasets.split_meta(batch)
    rng, step_rng = jax.random.split(rng)
    with run_io.activity(f"{desc}: first batch (compiling the sampler)", enabled=i == 0):
      out = decoder.generate(arrays, step_rng, cfg)
    texts = dec.texts(ctx.tokenizer, out["tokens"], out["lengths"], stops)
    all_names = _gathered_names(
        meta["name"], meta["valid"], mesh_lib.process_rows(ctx.mesh, len(texts))
    )
    for name, text, n in zip(all_names, texts, out["lengths"], strict=True):
      if name is not None:
        names.append(name)
        completions.append(text)
        lengths.append(int(n))
  return Completions(names, completions, lengths, int(cfg.max_new_tokens), time.time() - t0)


def evaluate(
    ctx,
    params: Any,
    samples: Sequence[dict],
    out_dir: str,
    *,
    lora: bool = True,
    max_samples: int = 0,
    desc: str = "eval",
) -> dict:
  """Answers (`generate_completions`) -> labels -> EW F/P/R and format rate on `samples`.

  Process 0 writes the predictions and gold files.
  """
  config = ctx.config
  if max_samples:
    samples = list(samples)[:max_samples]
  out = generate_completions(ctx, params, samples, lora=lora, desc=desc)
  names, completions, lengths, elapsed = out.names, out.texts, out.lengths, out.elapsed
  labels = [predicted_labels(t) for t in completions]
  gold = {s["name"]: list(s.get("labels") or []) for s in samples}
  pred = dict(zip(names, labels, strict=True))
  scores = metrics.ew_scores(gold, pred, config.eval.lexicon, level=config.eval.level)
  found = checks.label_checks(gold, pred, metrics.load_lexicon(config.eval.lexicon))
  format_ok = rewards_lib.format_reward(completions, [{} for _ in completions], None)
  result = {
      "ew_f1": scores["f1"],
      "ew_precision": scores["precision"],
      "ew_recall": scores["recall"],
      "format_rate": float(np.mean(format_ok)) if completions else 0.0,
      "num_samples": len(names),
      "mean_labels": float(np.mean([len(x) for x in labels])) if labels else 0.0,
      "mean_completion_tokens": float(np.mean(lengths)) if lengths else 0.0,
      "truncation_rate": out.truncation_rate,
      "samples_per_sec": len(names) / max(elapsed, 1e-9),
      "unmapped_gt_labels": found["unmapped_gt_labels"]["count"],
      "unmapped_pred_labels": found["unmapped_pred_labels"]["count"],
  }
  files = {
      "gt": os.path.join(out_dir, "gold.csv"),
      "pred": os.path.join(out_dir, "predictions.csv"),
  }
  if ctx.is_primary:
    write_label_csv(files["pred"], names, labels, completions)
    write_label_csv(files["gt"], names, [gold[n] for n in names])
  for line in checks.describe({"unmapped_gt_labels": found["unmapped_gt_labels"]}, files):
    logging.warning("%s: %s", desc, line)
  logging.info(
      "%s: EW F1 %.4f (P %.4f R %.4f), format %.3f on %d samples in %.1fs",
      desc,
      result["ew_f1"],
      result["ew_precision"],
      result["ew_recall"],
      result["format_rate"],
      len(names),
      elapsed,
  )
  return result


def majority_baseline(
    train_samples: Sequence[dict], eval_samples: Sequence[dict], lexicon: str, level: str = "level1"
) -> dict:
  """EW F1 of answering every eval clip with the training split's most frequent label."""
  counts: dict[str, int] = {}
  for s in train_samples:
    for label in s.get("labels") or []:
      label = label.lower()  # labels keep the annotators' case
      counts[label] = counts.get(label, 0) + 1
  label = max(sorted(counts), key=counts.get) if counts else "neutral"
  gold = {s["name"]: list(s.get("labels") or []) for s in eval_samples}
  scores = metrics.ew_scores(gold, {name: [label] for name in gold}, lexicon, level=level)
  return {"majority_label": label, "majority_baseline_f1": scores["f1"]}


def _gathered_names(
    local_names: Sequence[str], local_valid: Sequence[bool], rows: np.ndarray
) -> list[str | None]:
  """Names of all rows of a gathered eval batch, None for padding rows.

  `rows`: the global rows this host's names fill (`mesh_lib.process_rows`).
  """
  names = [n if v else None for n, v in zip(local_names, local_valid, strict=True)]
  if jax.process_count() == 1:
    return names
  from jax.experimental import multihost_utils

  encoded = np.zeros((len(names), 256), np.uint8)
  for i, name in enumerate(names):
    if name is not None:
      raw = name.encode()[:255]
      encoded[i, 0] = len(raw)
      encoded[i, 1 : 1 + len(raw)] = np.frombuffer(raw, np.uint8)
  allnames = np.asarray(multihost_utils.process_allgather(encoded, tiled=True))
  allrows = np.asarray(multihost_utils.process_allgather(np.asarray(rows, np.int32), tiled=True))
  out: list[str | None] = [None] * len(allrows)
  for row, r in zip(allrows, allnames, strict=True):
    out[row] = bytes(r[1 : 1 + r[0]]).decode() if r[0] else None
  return out


def run(config, workdir: str, writer) -> dict:
  """`mode=eval`: evaluate the checkpoint in `config.checkpoint.init_from` (or the base model)."""
  ctx = context_lib.build_context(config, workdir, writer, roles=("eval",))
  params = ctx.policy.params
  if config.checkpoint.init_from:
    params = state_lib.load_trained_params(ctx, config.checkpoint.init_from)
  result = evaluate(ctx, params, ctx.samples["eval"], workdir, max_samples=config.eval.num_samples)
  writer.write_metrics(0, {f"eval/{k}": v for k, v in result.items()})
  writer.update_summary("eval", result)
  return result
