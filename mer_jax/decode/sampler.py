"""Jitted autoregressive sampler: prefill + KV-cache decode in a `lax.while_loop`.

The sampler is model-agnostic: it drives a `forward` callable with the Qwen2 calling
convention (mer_jax/models/qwen2.py):

    forward(params, input_ids=None, inputs_embeds=None, positions=..., attention_mask=...,
            cache=...) -> (logits [N, T, V], cache)

Prompts arrive left-padded (`prompt_mask` [N, P], 1 = real token) and already embedded
(multimodal features spliced in by the caller, who repeats each prompt G times after
running the encoders once). Prompt lengths are bucketed by the caller, so one compiled
program serves every batch of a bucket.

Returned per-token logprobs are those of the sampling distribution before top-k/top-p
truncation: `log_softmax(logits / temperature)` (temperature 1 for greedy), which is what
a full forward pass over the sampled sequence gives and what the GRPO ratio uses. The
completion mask keeps the eos / stop token itself (TRL convention), zeroing what follows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  max_new_tokens: int
  temperature: float = 1.0  # 0 = greedy
  top_p: float = 1.0
  top_k: int = 0
  eos_id: int = 0
  pad_id: int = 0
  # Token-id sequences that end a completion (e.g. the ids of "</answer>").
  stop_sequences: tuple[tuple[int, ...], ...] = ()


@flax.struct.dataclass
class _LoopState:
  step: jax.Array  # scalar int32: tokens generated so far
  tokens: jax.Array  # [N, max_new] int32
  logprobs: jax.Array  # [N, max_new] float32
  done: jax.Array  # [N] bool
  lengths: jax.Array  # [N] int32: tokens in the completion (eos/stop included)
  last_token: jax.Array  # [N] int32
  next_position: jax.Array  # [N] int32
  cache_mask: jax.Array  # [N, P + max_new] int32: which cache slots may be attended
  cache: Any
  rng: jax.Array


@flax.struct.dataclass
class SampleOutput:
  tokens: jax.Array  # [N, max_new] int32 (pad after the end)
  logprobs: jax.Array  # [N, max_new] float32 (0 after the end)
  completion_mask: jax.Array  # [N, max_new] int32, eos/stop token included
  lengths: jax.Array  # [N] int32


def filter_logits(logits: jax.Array, top_k: int, top_p: float) -> jax.Array:
  """Top-k then nucleus (top-p) truncation of `logits` [N, V]; removed entries -> -inf."""
  if top_k and top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, NEG_INF, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    cum = jnp.cumsum(probs, axis=-1)
    # keep the smallest prefix whose mass reaches top_p (always at least one token)
    keep_sorted = (cum - probs) < top_p
    threshold = jnp.min(jnp.where(keep_sorted, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < threshold, NEG_INF, logits)
  return logits


def _choose(logits: jax.Array, rng: jax.Array, cfg: SamplingConfig) -> tuple[jax.Array, jax.Array]:
  """Picks the next token [N] and its logprob under log_softmax(logits / T)."""
  logits = logits.astype(jnp.float32)
  if cfg.temperature <= 0.0:
    token = jnp.argmax(logits, axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
  else:
    scaled = logits / cfg.temperature
    logp = jax.nn.log_softmax(scaled, axis=-1)
    token = jax.random.categorical(rng, filter_logits(scaled, cfg.top_k, cfg.top_p), axis=-1)
  chosen = jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]
  return token.astype(jnp.int32), chosen


def _ends_with_stop(
    tokens: jax.Array, step: jax.Array, stops: Sequence[Sequence[int]]
) -> jax.Array:
  """[N] bool: the completion written so far (tokens[:, :step+1]) ends with a stop sequence."""
  hit = jnp.zeros(tokens.shape[0], bool)
  for seq in stops:
    k = len(seq)
    if k == 0:
      continue
    idx = step - (k - 1) + jnp.arange(k)
    window = jnp.take(tokens, jnp.clip(idx, 0, tokens.shape[1] - 1), axis=1)
    match = jnp.all(window == jnp.asarray(seq, jnp.int32)[None], axis=1) & (step >= k - 1)
    hit = hit | match
  return hit


def sample(
    forward: Callable,
    params: Any,
    prompt_embeds: jax.Array,
    prompt_mask: jax.Array,
    cache: Any,
    rng: jax.Array,
    cfg: SamplingConfig,
) -> SampleOutput:
  """Generates up to `cfg.max_new_tokens` for each of N left-padded prompts.

  Args:
    forward: the model call (see module docstring).
    prompt_embeds: [N, P, D] embedded prompts, left-padded.
    prompt_mask: [N, P] int, 1 on real prompt tokens.
    cache: an empty KV cache with room for P + max_new_tokens positions.
    rng: PRNG key.
  """
  n, p = prompt_mask.shape
  total = p + cfg.max_new_tokens
  prompt_mask = prompt_mask.astype(jnp.int32)
  positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1) - 1, 0)
  cache_mask = jnp.concatenate([prompt_mask, jnp.zeros((n, cfg.max_new_tokens), jnp.int32)], axis=1)
  logits, cache = forward(
      params,
      inputs_embeds=prompt_embeds,
      positions=positions,
      attention_mask=cache_mask,
      cache=cache,
  )
  rng, first_rng = jax.random.split(rng)
  token, logp = _choose(logits[:, -1], first_rng, cfg)
  tokens = jnp.full((n, cfg.max_new_tokens), cfg.pad_id, jnp.int32).at[:, 0].set(token)
  logprobs = jnp.zeros((n, cfg.max_new_tokens), jnp.float32).at[:, 0].set(logp)
  zero = jnp.asarray(0, jnp.int32)
  done = (token == cfg.eos_id) | _ends_with_stop(tokens, zero, cfg.stop_sequences)
  state = _LoopState(
      step=jnp.asarray(1, jnp.int32),
      tokens=tokens,
      logprobs=logprobs,
      done=done,
      lengths=jnp.ones((n,), jnp.int32),
      last_token=token,
      next_position=jnp.sum(prompt_mask, axis=1).astype(jnp.int32),
      cache_mask=cache_mask,
      cache=cache,
      rng=rng,
  )

  def cond(s: _LoopState):
    return (s.step < cfg.max_new_tokens) & ~jnp.all(s.done)

  def body(s: _LoopState) -> _LoopState:
    slot = p + s.step - 1  # cache slot of the token being fed
    cache_mask = s.cache_mask.at[:, slot].set(1)
    logits, cache = forward(
        params,
        input_ids=s.last_token[:, None],
        positions=s.next_position[:, None],
        attention_mask=cache_mask,
        cache=s.cache,
    )
    rng, step_rng = jax.random.split(s.rng)
    token, logp = _choose(logits[:, -1], step_rng, cfg)
    token = jnp.where(s.done, cfg.pad_id, token)
    logp = jnp.where(s.done, 0.0, logp)
    tokens = s.tokens.at[:, s.step].set(token)
    logprobs = s.logprobs.at[:, s.step].set(logp)
    finished = (token == cfg.eos_id) | _ends_with_stop(tokens, s.step, cfg.stop_sequences)
    lengths = s.lengths + (~s.done).astype(jnp.int32)
    return _LoopState(
        step=s.step + 1,
        tokens=tokens,
        logprobs=logprobs,
        done=s.done | finished,
        lengths=lengths,
        last_token=token,
        next_position=s.next_position + 1,
        cache_mask=cache_mask,
        cache=cache,
        rng=rng,
    )

  del total
  state = jax.lax.while_loop(cond, body, state)
  completion_mask = (jnp.arange(cfg.max_new_tokens)[None, :] < state.lengths[:, None]).astype(
      jnp.int32
  )
  return SampleOutput(
      tokens=jnp.where(completion_mask > 0, state.tokens, cfg.pad_id),
      logprobs=state.logprobs * completion_mask,
      completion_mask=completion_mask,
      lengths=state.lengths,
  )


def stop_sequences_from_strings(tokenizer, strings: Sequence[str]) -> tuple[tuple[int, ...], ...]:
  """Token ids of each stop string (as the tokenizer encodes it alone, no specials)."""
  out = []
  for s in strings:
    ids = tokenizer.encode(s, add_special_tokens=False)
    if ids:
      out.append(tuple(int(i) for i in ids))
  return tuple(out)


def truncate_at_stop(text: str, stop_strings: Sequence[str]) -> str:
  """Host-side: cut decoded text right after the first stop string (keeps the stop string)."""
  cut = len(text)
  for s in stop_strings:
    i = text.find(s)
    if i >= 0:
      cut = min(cut, i + len(s))
  return text[:cut]


def bucket_length(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= length (the largest bucket if none is)."""
  for b in buckets:
    if length <= b:
      return int(b)
  return int(buckets[-1])


def left_pad(
    sequences: Sequence[Sequence[int]], length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads (and left-truncates) token lists to `length`: ids [N, L], mask [N, L]."""
  ids = np.full((len(sequences), length), pad_id, np.int32)
  mask = np.zeros((len(sequences), length), np.int32)
  for i, seq in enumerate(sequences):
    seq = list(seq)[-length:]
    if seq:
      ids[i, length - len(seq) :] = seq
      mask[i, length - len(seq) :] = 1
  return ids, mask
