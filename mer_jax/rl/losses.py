"""GRPO policy loss and the omni-perception KL, as (sum, denominator) pairs.

Every loss here returns `(loss_sum, denominator)` and never divides: the caller sums
both over micro-batches (and devices) and divides once,

    loss = sum_over_microbatches(loss_sum) / sum_over_microbatches(denominator),

which equals the loss of the whole batch for every aggregation mode (docs/rl.md).

Per token t of completion i (AffectGPT-R1 eq. 2-4; DAPO asymmetric clip; k3 KL):

    ratio   = exp(logp - old_logp)
    S       = min(ratio * A_i, clip(ratio, 1 - eps_low, 1 + eps_high) * A_i)
    kl      = exp(ref - logp) - (ref - logp) - 1
    loss_t  = -S + beta * kl

Aggregations (`LOSS_AGGREGATIONS`, config `grpo.loss_agg`), m = completion mask:

- `token_mean`: sum_it m*loss / sum_it m. Denominator: number of completion tokens.
- `seq_mean_token_mean`: mean over sequences of (sum_t m*loss / sum_t m). Sum: the
  per-sequence token means added up; denominator: the number of sequences with at
  least one completion token (all-padding rows count for nothing).
- `seq_mean_token_sum_norm` (Dr. GRPO): sum_it m*loss / (num_seqs * max_len) with a
  constant max_len (`grpo.max_new_tokens`). Sum: sum_it m*loss / max_len; denominator:
  the number of sequences with at least one completion token.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from mer_jax.rl import Registry

Aggregation = Callable[[jax.Array, jax.Array, float], tuple[jax.Array, jax.Array]]
# name -> fn(per_token [N, T], mask [N, T], max_len) -> (sum, denominator)
LOSS_AGGREGATIONS = Registry("loss aggregation")


def _num_sequences(mask: jax.Array) -> jax.Array:
  return jnp.sum(jnp.any(mask > 0, axis=-1).astype(jnp.float32))


@LOSS_AGGREGATIONS.register("token_mean")
def token_mean(per_token, mask, max_len):
  del max_len
  return jnp.sum(per_token * mask), jnp.sum(mask)


@LOSS_AGGREGATIONS.register("seq_mean_token_mean")
def seq_mean_token_mean(per_token, mask, max_len):
  del max_len
  seq_tokens = jnp.sum(mask, axis=-1)
  seq_mean = jnp.sum(per_token * mask, axis=-1) / jnp.maximum(seq_tokens, 1.0)
  return jnp.sum(seq_mean), _num_sequences(mask)


@LOSS_AGGREGATIONS.register("seq_mean_token_sum_norm")
def seq_mean_token_sum_norm(per_token, mask, max_len):
  return jnp.sum(per_token * mask) / max_len, _num_sequences(mask)


class PolicyLoss(NamedTuple):
  """Output of `grpo_loss`. Everything is a sum, so micro-batches add up exactly.

  loss_sum / denominator: the aggregated loss (see the module docstring).
  metrics: token sums `clip_low`, `clip_high`, `ratio`, `kl`, `entropy` (the last two
    0 when not computed) and `tokens` (completion tokens); `mean_metrics` divides.
  """

  loss_sum: jax.Array
  denominator: jax.Array
  metrics: dict[str, jax.Array]


def k3_kl(logprobs: jax.Array, ref_logprobs: jax.Array) -> jax.Array:
  """k3 estimator of KL(pi || ref) per sampled token: exp(ref - logp) - (ref - logp) - 1 >= 0."""
  d = ref_logprobs - logprobs
  return jnp.exp(d) - d - 1.0


@functools.partial(jax.jit, static_argnames=("loss_agg",))
def grpo_loss(
    logprobs: jax.Array,
    advantages: jax.Array,
    completion_mask: jax.Array,
    old_logprobs: jax.Array | None = None,
    ref_logprobs: jax.Array | None = None,
    token_entropy: jax.Array | None = None,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float = 0.0,
    beta: float = 0.0,
    max_len: float | None = None,
    loss_agg: str = "token_mean",
) -> PolicyLoss:
  """Clipped-ratio GRPO loss of one micro-batch (minimized; AffectGPT-R1 eq. 2-5).

  Args:
    logprobs: [N, T] log pi_theta of the sampled tokens (differentiated).
    advantages: [N] advantage of each completion.
    completion_mask: [N, T] 1 on completion tokens (the eos token included), 0 on padding.
    old_logprobs: [N, T] log pi_old stored at rollout; None = stop_gradient(logprobs)
      (num_iterations = 1: ratio 1, gradient of the plain policy gradient).
    ref_logprobs: [N, T] log pi_ref (the cold-start policy); None = no KL term.
    token_entropy: [N, T] per-token policy entropy, only for the `entropy` metric.
    clip_eps: lower clip epsilon (and upper when clip_eps_high is 0).
    clip_eps_high: > 0 gives the DAPO asymmetric upper clip 1 + clip_eps_high.
    beta: weight of the k3 KL term (used only when ref_logprobs is given).
    max_len: the constant length of `seq_mean_token_sum_norm`; None = T.
    loss_agg: a `LOSS_AGGREGATIONS` name.
  """
  logprobs = logprobs.astype(jnp.float32)
  mask = completion_mask.astype(jnp.float32)
  old = (
      jax.lax.stop_gradient(logprobs) if old_logprobs is None else old_logprobs.astype(jnp.float32)
  )
  adv = advantages.astype(jnp.float32)[:, None]
  eps_low = clip_eps
  eps_high = jnp.where(clip_eps_high > 0, clip_eps_high, clip_eps)

  ratio = jnp.exp(logprobs - old)
  clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
  per_token = -jnp.minimum(ratio * adv, clipped * adv)
  metrics = {
      "tokens": jnp.sum(mask),
      "ratio": jnp.sum(jax.lax.stop_gradient(ratio) * mask),
      "clip_low": jnp.sum(((ratio < 1.0 - eps_low) & (adv < 0)) * mask),
      "clip_high": jnp.sum(((ratio > 1.0 + eps_high) & (adv > 0)) * mask),
      "kl": jnp.zeros((), jnp.float32),
      "entropy": jnp.zeros((), jnp.float32),
  }
  if ref_logprobs is not None:
    kl = k3_kl(logprobs, ref_logprobs.astype(jnp.float32))
    per_token = per_token + beta * kl
    metrics["kl"] = jnp.sum(jax.lax.stop_gradient(kl) * mask)
  if token_entropy is not None:
    metrics["entropy"] = jnp.sum(jax.lax.stop_gradient(token_entropy.astype(jnp.float32)) * mask)

  length = logprobs.shape[-1] if max_len is None else max_len
  loss_sum, denominator = LOSS_AGGREGATIONS[loss_agg](per_token, mask, length)
  metrics = {k: jax.lax.stop_gradient(v) for k, v in metrics.items()}
  return PolicyLoss(loss_sum, denominator, metrics)


def mean_metrics(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Token sums of `PolicyLoss.metrics` (possibly added over micro-batches) -> means."""
  tokens = jnp.maximum(metrics["tokens"], 1.0)
  return {k: v / tokens for k, v in metrics.items() if k != "tokens"}


def token_kl(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
  """Exact KL(softmax(p) || softmax(q)) over the vocabulary: [..., V] -> [...]."""
  logp = jax.nn.log_softmax(logits_p.astype(jnp.float32), axis=-1)
  logq = jax.nn.log_softmax(logits_q.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


@functools.partial(jax.jit, static_argnames=("estimator",))
def omni_perception_kl(
    logits_full: jax.Array,
    logits_masked: jax.Array,
    token_weights: jax.Array,
    tokens: jax.Array | None = None,
    estimator: str = "exact",
) -> tuple[jax.Array, jax.Array]:
  """Weighted per-token KL(p_full || p_masked) (OPPO eq. 6-10; PAPO with weights = mask).

  Args:
    logits_full: [N, T, V] policy logits with the full input.
    logits_masked: [N, T, V] logits of the same completions with one modality masked.
    token_weights: [N, T] weight of each completion token (OPPO: 1 on tokens of
      clauses routed to the masked modality; PAPO: the completion mask).
    tokens: [N, T] the sampled completion tokens (needed by `k1`).
    estimator: `exact` = KL over the vocabulary (eq. 8); `k1` = log p_full(y) -
      log p_masked(y) of the sampled token y (the public OPPO recipe).
  Returns:
    (sum_t w_t KL_t, sum_t w_t). OPPO maximizes the KL: the training loss adds
    `-oppo.loss_beta * kl_sum` (normalized like the GRPO loss it joins).
  """
  w = token_weights.astype(jnp.float32)
  if estimator == "k1":
    logp = jax.nn.log_softmax(logits_full.astype(jnp.float32), axis=-1)
    logq = jax.nn.log_softmax(logits_masked.astype(jnp.float32), axis=-1)
    pick = lambda x: jnp.take_along_axis(x, tokens[..., None], axis=-1)[..., 0]
    kl = pick(logp) - pick(logq)
  else:
    kl = token_kl(logits_full, logits_masked)
  return jnp.sum(kl * w), jnp.sum(w)
