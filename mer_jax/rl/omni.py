"""OPPO's omni-perception reward (eq. 1-5) and loss (eq. 6-11).

Reward (host, per completion): the `<think>` clauses U and the gold cue sets C_V, C_A,
C_E are embedded (mer_jax/rl/embeddings.py); the evidence-routing matrix
M[c, k] = cos(e(c), e(u_k)) (eq. 1), M(c) = max_k M[c, k] (eq. 2),
s(c) = max(M(c) - delta, 0) / (1 - delta) (eq. 3), and
R_omni = sum over the non-empty sets of mean_c s(c) (eq. 4; an empty set adds 0, a
completion without clauses scores 0). Registered as reward `omni`; its weight in
`grpo.rewards` is `oppo.alpha` (eq. 5).

Loss routing (eq. 9): each clause goes to the best cue of C_V u C_A when that cosine
exceeds delta, and its tokens (character span -> token offsets) get weight 1 in the
visual or audio token set. The loss (`make_omni_loss`, inside the jitted GRPO update):
per modality m, a copy of the features with a fraction rho of the positions zeroed
(eq. 6), completion logits under it (eq. 7), exact KL(p_full || p_masked) per token
(eq. 8) summed over T_m (eq. 10); the GRPO loss gets `- beta * sum_m KL_m` added to its
loss_sum, i.e. the KL is maximized (eq. 11) with the GRPO loss's normalization.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mer_jax.rl import cues as cues_lib
from mer_jax.rl import embeddings as emb_lib
from mer_jax.rl import losses as losses_lib
from mer_jax.rl import rewards as rewards_lib

MODALITY_KEYS = {"video": "vision_feats", "audio": "audio_feats"}
WEIGHT_KEYS = {"video": "omni_weights_video", "audio": "omni_weights_audio"}
_CUE_OF = {"video": "visual", "audio": "audio"}


# ------------------------------------------------------------------ routing math
def routing_matrix(cue_emb: np.ndarray, clause_emb: np.ndarray) -> np.ndarray:
  """Evidence-routing matrix (eq. 1): `[C, E], [K, E]` (unit rows) -> cosines `[C, K]`."""
  return np.asarray(cue_emb, np.float32) @ np.asarray(clause_emb, np.float32).T


def hit_scores(matrix: np.ndarray, delta: float) -> np.ndarray:
  """s(c) (eq. 2-3): `[C, K]` -> `[C]` in [0, 1]; 0 for every cue when K = 0."""
  if matrix.shape[1] == 0:
    return np.zeros(matrix.shape[0], np.float32)
  best = matrix.max(axis=1)
  return (np.maximum(best - delta, 0.0) / (1.0 - delta)).astype(np.float32)


def omni_reward_value(
    cue_embs: Mapping[str, np.ndarray], clause_emb: np.ndarray, delta: float, form: str = "paper"
) -> float:
  """R_omni of one completion.

  form `paper` (eq. 4): sum over the non-empty cue sets of the mean hit score. `public`
  (the public recipe's perception + coherence rewards at equal weight): mean of the
  non-empty visual and audio set scores, plus the emotion set score.
  """
  scores = {}
  for name in cues_lib.CUE_SETS:
    emb = cue_embs.get(name)
    if emb is not None and len(emb):
      scores[name] = float(hit_scores(routing_matrix(emb, clause_emb), delta).mean())
  if form == "public":
    perception = [scores[k] for k in ("visual", "audio") if k in scores]
    return (float(np.mean(perception)) if perception else 0.0) + scores.get("emotion", 0.0)
  return float(sum(scores.values()))


def route_clauses(
    cue_embs: Mapping[str, np.ndarray], clause_emb: np.ndarray, delta: float
) -> list[str | None]:
  """Eq. 9: per clause 'video' | 'audio' (type of its best cue in C_V u C_A, cosine > delta) or None."""
  kinds, rows = [], []
  for modality, name in _CUE_OF.items():
    emb = cue_embs.get(name)
    if emb is not None and len(emb):
      kinds += [modality] * len(emb)
      rows.append(emb)
  if not rows or not len(clause_emb):
    return [None] * len(clause_emb)
  matrix = routing_matrix(np.concatenate(rows), clause_emb)  # [C_O, K]
  best = matrix.argmax(axis=0)
  return [kinds[b] if matrix[b, k] > delta else None for k, b in enumerate(best)]


# ------------------------------------------------------------------ per-completion analysis
def _oppo(cfg):
  return rewards_lib._option(cfg, "oppo", None)


def sentence_embedder(cfg) -> emb_lib.SentenceEmbedder:
  """The sentence embedder of a run config (`oppo.embedding_model`, `embedding_instruction`)."""
  return emb_lib.get_embedder(
      rewards_lib._option(cfg, "oppo.embedding_model", "minilm"),
      rewards_lib._option(cfg, "oppo.embedding_instruction", ""),
  )


def _cue_embeddings(embedder, sample: Mapping, method: str) -> dict[str, np.ndarray]:
  sets = cues_lib.sample_cues(sample, method)
  return {k: embedder.encode(v) for k, v in sets.items()}


def analyze(completions: Sequence[str], samples: Sequence[Mapping], cfg) -> list[dict]:
  """Per completion: think clauses (spans), their embeddings, the cue embeddings.

  All clauses of the batch are embedded in one call; cue embeddings come from the
  embedder's memo (filled per dataset by `precompute_cue_embeddings`).
  """
  embedder = sentence_embedder(cfg)
  method = rewards_lib._option(cfg, "oppo.cue_extractor", "rules")
  clauses = [cues_lib.think_clauses(t) for t in completions]
  flat = embedder.encode([c[2] for cs in clauses for c in cs], query=True)
  out, start = [], 0
  memo: dict[int, dict] = {}
  for text_clauses, sample in zip(clauses, samples, strict=True):
    key = id(sample)
    if key not in memo:
      memo[key] = _cue_embeddings(embedder, sample, method)
    out.append(
        {
            "clauses": text_clauses,
            "clause_emb": flat[start : start + len(text_clauses)],
            "cue_embs": memo[key],
        }
    )
    start += len(text_clauses)
  return out


@rewards_lib.register_reward("omni")
def omni_reward(completions: list[str], samples: list[dict], cfg) -> np.ndarray:
  """OPPO eq. 4 per completion (weight `oppo.alpha` in `grpo.rewards`, eq. 5)."""
  delta = float(rewards_lib._option(cfg, "oppo.delta", 0.5))
  form = rewards_lib._option(cfg, "oppo.omni_form", "paper")
  rows = analyze(completions, samples, cfg)
  return np.asarray(
      [omni_reward_value(r["cue_embs"], r["clause_emb"], delta, form) for r in rows], np.float32
  )


def routed_token_weights(
    tokenizer,
    texts: Sequence[str],
    tokens: np.ndarray,
    lengths: np.ndarray,
    samples: Sequence[Mapping],
    cfg,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """`{omni_weights_video, omni_weights_audio}` `[N, L]` (1 on routed clauses' tokens) + stats.

  Character offsets come from incremental decoding of each row's first `lengths` tokens
  (cues.token_char_offsets), the same decoding that produced `texts` (which may be cut
  at a stop string; clauses lie inside the text, so the prefix offsets apply).
  """
  delta = float(rewards_lib._option(cfg, "oppo.delta", 0.5))
  n, length = tokens.shape
  weights = {m: np.zeros((n, length), np.float32) for m in WEIGHT_KEYS}
  routed = {m: 0 for m in WEIGHT_KEYS}
  num_clauses = 0
  for i, row in enumerate(analyze(texts, samples, cfg)):
    kinds = route_clauses(row["cue_embs"], row["clause_emb"], delta)
    num_clauses += len(kinds)
    if not any(kinds):
      continue
    offsets = cues_lib.token_char_offsets(tokenizer, tokens[i, : int(lengths[i])])
    for modality in WEIGHT_KEYS:
      spans = [
          (s, e) for (s, e, _), kind in zip(row["clauses"], kinds, strict=True) if kind == modality
      ]
      routed[modality] += len(spans)
      if spans:
        weights[modality][i] = cues_lib.clause_token_mask(offsets, spans, length)
  stats = {
      "omni/clauses": num_clauses / max(n, 1),
      **{f"omni/routed_clauses_{m}": routed[m] / max(n, 1) for m in WEIGHT_KEYS},
      **{f"omni/routed_tokens_{m}": float(weights[m].sum()) / max(n, 1) for m in WEIGHT_KEYS},
  }
  return {WEIGHT_KEYS[m]: w for m, w in weights.items()}, stats


def precompute_cue_embeddings(samples: Sequence[Mapping], cfg, cache_dir: str, dataset: str) -> int:
  """Embeds every cue of a dataset once (disk cache keyed by dataset + model); returns the count."""
  embedder = sentence_embedder(cfg)
  method = rewards_lib._option(cfg, "oppo.cue_extractor", "rules")
  texts = [c for s in samples for v in cues_lib.sample_cues(s, method).values() for c in v]
  emb_lib.cached_embeddings(embedder, texts, cache_dir, dataset)
  return len(set(texts))


# ------------------------------------------------------------------ masked inputs and the loss
def modality_keep_mask(rng: jax.Array, shape: tuple[int, int], rho: float) -> jax.Array:
  """`[B, P]` float mask with round(rho * P) positions zeroed per row, chosen at random (eq. 6)."""
  b, p = shape
  num = int(round(rho * p))
  if num == 0:
    return jnp.ones(shape, jnp.float32)
  ranks = jnp.argsort(jnp.argsort(jax.random.uniform(rng, shape), axis=1), axis=1)
  return (ranks >= num).astype(jnp.float32)


def masked_batch(batch: Mapping[str, jax.Array], modality: str, keep: jax.Array) -> dict:
  """The batch with modality `video` or `audio` feature positions multiplied by `keep` `[B, P]`.

  The fusion recomputes the `multi` token from the masked features too.
  """
  key = MODALITY_KEYS[modality]
  out = dict(batch)
  out[key] = batch[key] * keep[..., None].astype(batch[key].dtype)
  return out


def make_omni_loss(model, g, o):
  """The `Hooks.extra_loss` of OPPO: `(params, batch, logits_full, rng, denominator) ->
  (-beta * KL term, metric sums)`.

  `o.loss_scope`: 'routed' (OPPO, weights = routed-token sets) or 'all' (PAPO-dual:
  weights = the completion mask, both modalities). The masked forwards use the same
  dropout rng as the full one, so with rho = 0 the KL is exactly 0. Public-recipe
  options: `o.loss_kl='k1'` (sampled-token log-ratio), `o.masked_grad=False` (no gradient
  through the masked pass), `o.loss_norm='modality_mean'` (each modality's KL averaged
  over its routed tokens of the micro-batch; scaled by the GRPO denominator so that the
  division of the summed loss leaves that mean).
  """
  from mer_jax.rl import grpo  # grpo imports nothing from here; avoids a cycle at import time

  beta, rho, scope = float(o.loss_beta), float(o.rho), o.loss_scope
  estimator = o.get("loss_kl", "exact")
  masked_grad = bool(o.get("masked_grad", True))
  per_modality_mean = o.get("loss_norm", "grpo") == "modality_mean"

  def extra_loss(params, batch, logits_full, rng, denominator=1.0):
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for i, modality in enumerate(MODALITY_KEYS):
      feats = batch[MODALITY_KEYS[modality]]
      keep = modality_keep_mask(jax.random.fold_in(rng, 1000 + i), feats.shape[:2], rho)
      logits_m = grpo.completion_logits(
          model,
          params,
          masked_batch(batch, modality, keep),
          g.temperature,
          deterministic=False,
          rng=rng,
      )
      if not masked_grad:
        logits_m = jax.lax.stop_gradient(logits_m)
      weights = batch["completion_mask"] if scope == "all" else batch[WEIGHT_KEYS[modality]]
      weights = weights * batch["completion_mask"]
      kl_sum, w_sum = losses_lib.omni_perception_kl(
          logits_full, logits_m, weights, batch["completion"], estimator
      )
      if per_modality_mean:
        total = total + kl_sum / jnp.maximum(w_sum, 1.0) * denominator
      else:
        total = total + kl_sum
      metrics[f"omni_kl_{modality}"] = jax.lax.stop_gradient(kl_sum)
      metrics[f"omni_tokens_{modality}"] = w_sum
    return -beta * total, metrics

  return extra_loss


def log_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
  """Mean KL per routed token of each modality (the `Hooks.log_metrics` of OPPO)."""
  out = {}
  for m in MODALITY_KEYS:
    if f"omni_kl_{m}" in metrics:
      out[f"omni/kl_{m}"] = float(metrics[f"omni_kl_{m}"]) / max(
          float(metrics[f"omni_tokens_{m}"]), 1.0
      )
      out[f"omni/loss_tokens_{m}"] = float(metrics[f"omni_tokens_{m}"])
  return out
