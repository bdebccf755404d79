"""MEP-Bench-style diagnostics (OPPO 4.2): utilization and faithfulness of a policy.

Utilization: recall of the gold visual + audio cues (C_V u C_A) in the generated
reasoning. Each gold cue is recalled when its best cosine to a `<think>` clause exceeds
`oppo.utilization_threshold` (0.6, as MEP-Bench; clauses stand in for the paper's
LLM-decomposed atomic cues). Micro-averaged over cues; per-set recalls are reported too
(emotion cues separately, they are not perception).

Faithfulness: POPE-style probes under unimodal masking. For each probe about evidence
that is present in a modality (synthmer `probes` with answer 'yes'), that modality's
features are zeroed entirely and the policy is asked; a 'yes' is a hallucination, the
correct answer is a refusal ('no'). Accuracy = fraction of such probes answered 'no'.
Two answerers (`oppo.probe_answerer`):
- `reasoning` (default): the policy generates its usual reasoning for the clip (label
  question) with the modality masked; the answer is 'yes' when the reasoning states the
  probed evidence, i.e. a clause matches the probe's evidence cue (the sample's gold cue
  of that modality closest to the probe question) above the utilization threshold. This
  works for a policy that was never taught to answer yes/no questions (the demo's).
- `ask`: the probe question is the prompt question (`prompts.build_probe_prompt`); the
  first 'yes'/'no' of the (answer part of the) reply is the answer, anything else counts
  as not refusing.
`*_unmasked_yes` is the same answerer on the full input (the evidence is there, so a
high rate shows that refusals under masking are not a model that never mentions it).
"""

from __future__ import annotations

import csv
import io
import re
from typing import Mapping, Sequence

from etils import epath
import jax
import numpy as np

from input_pipeline import datasets
from input_pipeline import prompts
from input_pipeline import tokenization
from mer_jax.decode import generation
from mer_jax.decode import layout as layout_lib
from mer_jax.rl import cues as cues_lib
from mer_jax.rl import omni
from mer_jax.rl import rewards as rewards_lib

PROBE_MODALITIES = {"visual": "video", "audio": "audio"}


def _opt(cfg, name: str, default):
  return rewards_lib._option(cfg, f"oppo.{name}", default)


def cue_recall(cue_emb: np.ndarray, clause_emb: np.ndarray, threshold: float) -> np.ndarray:
  """`[C]` bool: gold cue c recalled when max_k cos(c, clause_k) > threshold."""
  if not len(cue_emb):
    return np.zeros(0, bool)
  if not len(clause_emb):
    return np.zeros(len(cue_emb), bool)
  return omni.routing_matrix(cue_emb, clause_emb).max(axis=1) > threshold


def utilization(completions: Mapping[str, str], samples: Sequence[Mapping], cfg) -> dict:
  """Recall of gold cues in the reasoning of `completions` (name -> text)."""
  embedder = omni.sentence_embedder(cfg)
  threshold = float(_opt(cfg, "utilization_threshold", 0.6))
  method = _opt(cfg, "cue_extractor", "rules")
  hits = {k: [] for k in cues_lib.CUE_SETS}
  for sample in samples:
    if sample["name"] not in completions:
      continue
    sets = cues_lib.sample_cues(sample, method)
    clauses = [c for *_, c in cues_lib.think_clauses(completions[sample["name"]])]
    clause_emb = embedder.encode(clauses, query=True)
    for k in cues_lib.CUE_SETS:
      hits[k] += list(cue_recall(embedder.encode(sets[k]), clause_emb, threshold))
  mean = lambda x: float(np.mean(x)) if x else 0.0
  perception = hits["visual"] + hits["audio"]
  return {
      "utilization_recall": mean(perception),
      "recall_visual": mean(hits["visual"]),
      "recall_audio": mean(hits["audio"]),
      "recall_emotion": mean(hits["emotion"]),
      "num_cues": len(perception),
  }


def parse_yes_no(text: str) -> str:
  """'yes' | 'no' | '' from the answer part of a reply (first yes/no word)."""
  m = re.search(r"\b(yes|no)\b", rewards_lib.extract_answer(text).lower())
  return m.group(1) if m else ""


def probe_evidence(probe: Mapping, sample: Mapping, embedder, method: str) -> str | None:
  """The sample's gold cue of the probe's modality closest to the probe question."""
  candidates = cues_lib.sample_cues(sample, method).get(probe["modality"], [])
  if not candidates:
    return None
  sims = embedder.encode(candidates) @ embedder.encode([probe["question"]])[0]
  return candidates[int(np.argmax(sims))]


def generate_texts(
    ctx,
    params,
    samples: Sequence[Mapping],
    questions: Sequence[str | None],
    mask: str | None,
    max_new_tokens: int,
) -> list[str]:
  """Greedy completions, one per sample; `questions[i]` None = the label question, else a probe.

  `mask` ('video' | 'audio' | None) zeroes that modality's features entirely (and so the
  multi token's share of it). Every process generates its block of each global batch.
  """
  config, tok = ctx.config, ctx.tokenizer
  d = config.data
  stops = generation.stop_strings_for(d.target)
  cfg = generation.sampling_config(
      tok, max_new_tokens=max_new_tokens, temperature=0.0, stop_strings=stops
  )
  decoder = generation.prepare(
      ctx.policy.model,
      params,
      ctx.mesh,
      layout_lib.settings_from_config(config),
      rules=config.mesh.logical_axis_rules,
  )
  bs, pc, pi = int(d.eval_batch_size), jax.process_count(), jax.process_index()
  local = bs // pc
  out: list[str] = []
  empty_meta = {k: None for k in datasets.META_KEYS}
  for start in range(0, len(samples), bs):
    chunk = list(range(start, min(start + bs, len(samples))))
    rows = (chunk + [chunk[-1]] * bs)[:bs][pi * local : (pi + 1) * local]
    examples = []
    for i in rows:
      s, q = samples[i], questions[i]
      subtitle = s.get("subtitle") or ""
      text = (
          prompts.build_prompt(subtitle, "labels", d.face_or_frame, d.get("tokens_per_modality"))
          if q is None
          else prompts.build_probe_prompt(
              subtitle, q, d.face_or_frame, d.get("tokens_per_modality")
          )
      )
      ids = tokenization.encode_prompt(tok, text)[-int(d.max_length) :]
      feats = datasets.media_arrays(s, d)
      if mask is not None:
        key = omni.MODALITY_KEYS[mask]
        feats[key] = np.zeros_like(feats[key])
      examples.append({"input_ids": ids, **feats, "meta": empty_meta})
    arrays, _ = datasets.split_meta(
        datasets.collate(examples, d.length_buckets, tok.pad_token_id, left_pad=True)
    )
    res = decoder.generate(arrays, jax.random.PRNGKey(0), cfg)
    texts = generation.decode_completions(tok, res["tokens"], res["lengths"], stops)
    out += texts[: len(chunk)]
  return out


def faithfulness(
    ctx, params, samples: Sequence[Mapping], cfg, unmasked: Mapping[str, str] | None = None
) -> dict:
  """Probe accuracy under unimodal masking per modality (module doc), plus unmasked yes rates.

  `unmasked` (name -> completion of the label question on the full input, e.g. the
  evaluation's greedy completions) saves regenerating them for the `reasoning` answerer.
  """
  answerer = _opt(cfg, "probe_answerer", "reasoning")
  embedder = omni.sentence_embedder(cfg)
  threshold = float(_opt(cfg, "utilization_threshold", 0.6))
  method = _opt(cfg, "cue_extractor", "rules")
  result = {}
  for cue_set, modality in PROBE_MODALITIES.items():
    probes = [
        (s, p)
        for s in samples
        for p in (s.get("probes") or [])
        if p["modality"] == cue_set and p["answer"] == "yes"
    ]
    result[f"probes_{modality}"] = len(probes)
    if not probes:
      result[f"faithfulness_{modality}"] = 0.0
      continue
    probe_samples = [s for s, _ in probes]
    for masked, name in (
        (modality, f"faithfulness_{modality}"),
        (None, f"{modality}_unmasked_yes"),
    ):
      if answerer == "ask":
        texts = generate_texts(
            ctx, params, probe_samples, [p["question"] for _, p in probes], masked, 32
        )
        answers = [parse_yes_no(t) for t in texts]
      elif answerer == "reasoning":
        if (
            masked is None
            and unmasked is not None
            and all(s["name"] in unmasked for s in probe_samples)
        ):
          texts = [unmasked[s["name"]] for s in probe_samples]
        else:
          texts = generate_texts(
              ctx,
              params,
              probe_samples,
              [None] * len(probes),
              masked,
              int(ctx.config.eval.max_new_tokens),
          )
        answers = []
        for (s, p), text in zip(probes, texts, strict=True):
          evidence = probe_evidence(p, s, embedder, method)
          clauses = embedder.encode([c for *_, c in cues_lib.think_clauses(text)], query=True)
          said = evidence is not None and bool(
              cue_recall(embedder.encode([evidence]), clauses, threshold)[0]
          )
          answers.append("yes" if said else "no")
      else:
        raise ValueError(f"oppo.probe_answerer must be 'reasoning' or 'ask', got {answerer!r}")
      if masked is None:
        result[name] = float(np.mean([a == "yes" for a in answers]))
      else:
        result[name] = float(np.mean([a == "no" for a in answers]))
  return result


def read_completions(predictions_csv: str) -> dict[str, str]:
  """name -> completion of an evaluation's predictions.csv (mer_jax.train.evaluation)."""
  text = epath.Path(predictions_csv).read_text()
  return {r["name"]: r["completion"] for r in csv.DictReader(io.StringIO(text, newline=""))}


def evaluate_mep(ctx, params, samples: Sequence[Mapping], predictions_csv: str) -> dict:
  """Utilization (from the evaluation's completions) + faithfulness (masked generations)."""
  samples = [s for s in samples if s.get("cues") or s.get("reason")]
  completions = read_completions(predictions_csv)
  result = utilization(completions, samples, ctx.config)
  result.update(faithfulness(ctx, params, samples, ctx.config, unmasked=completions))
  result.update(provenance(ctx.config))
  return result


PROBE_ANSWERERS = {
    "reasoning": "reasoning (heuristic: whether the reasoning under masking states the probed "
    "evidence; not the paper's POPE-style yes/no probing)",
    "ask": "ask (heuristic: the policy's own yes/no to the probe question, parsed from its "
    "answer; not the paper's POPE-style probing protocol)",
}


def provenance(cfg) -> dict[str, str]:
  """What made the MEP numbers: the sentence embedder and the probe answerer."""
  return {
      "embedder": omni.sentence_embedder(cfg).description,
      "probe_answerer": PROBE_ANSWERERS[_opt(cfg, "probe_answerer", "reasoning")],
  }
