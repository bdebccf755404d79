"""Jitted autoregressive sampler: one prefill per prompt, then KV-cache decode with slot refill.

The sampler is model-agnostic: it drives a `forward` callable with the Qwen2 calling
convention (mer_jax/models/qwen2.py):

    forward(params, input_ids=None, inputs_embeds=None, positions=..., attention_mask=...,
            cache=..., logits_range=...) -> (logits [N, T, V], cache)

and a `make_cache(rows, length)` that returns an empty cache (`{'k', 'v', 'index'}`).
Prompts arrive left-padded (`prompt_mask` [B, P], 1 = real token) and already embedded
(multimodal features spliced in by the caller); each is sampled `repeat` (G) times.
Prompt lengths are bucketed by the caller, so one compiled program serves every batch of
a bucket.

Schedule (docs/performance.md):
  1. prefill: the B prompts once (not B x G times), logits of the last position only;
     the first token of every row is drawn from them;
  2. decode: a cache of `slots` rows (0 = all B x G rows at once). Each loop iteration
     feeds every busy slot its last token; a row that ends (eos, stop sequence,
     `max_new_tokens`) frees its slot, which takes the next queued row: the row's prompt
     keys/values are copied in from the prefill and decoding continues. A rollout whose
     lengths spread from 20 to 1024 tokens costs about sum(lengths) / slots iterations
     instead of max(lengths).

Randomness is keyed per row and step (`fold_in(fold_in(rng, row), step)`), so a row's
tokens do not depend on which slot decodes it or on its neighbours: any number of slots
gives the same completions for the same key (up to float rounding of the batched
matmuls).

Returned per-token logprobs are those of the sampling distribution before top-k/top-p
truncation: `log_softmax(logits / temperature)` (temperature 1 for greedy), which is what
a full forward pass over the sampled sequence gives and what the GRPO ratio uses. The
completion mask keeps the eos / stop token itself (TRL convention), zeroing what follows.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -1e9
# Logical axes of the KV caches (mer_jax/models/qwen2.py `init_cache`): slots over the batch
# axes, kv heads over `tensor`; the prefilled prompts are replicated over the batch axes so
# that a slot on any device copies its prompt locally.
CACHE_AXES = ("layers", "batch", "length", "act_kv", "head_dim")
PROMPT_CACHE_AXES = ("layers", None, "length", "act_kv", "head_dim")


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
  # > 1: the HF / vLLM repetition penalty on every token of the prompt (`sample`'s
  # `prompt_ids`) and of the completion so far; 1 = off (no extra state).
  repetition_penalty: float = 1.0


@flax.struct.dataclass
class _LoopState:
  # Per slot [S]: the row it decodes (N = none), the completion index of the token it
  # draws next, the token fed next and its RoPE position, which cache entries it may attend.
  row: jax.Array
  step: jax.Array
  busy: jax.Array
  last_token: jax.Array
  position: jax.Array
  cache_mask: jax.Array  # [S, P + max_new] int32
  cache: Any
  next_row: jax.Array  # scalar: first row of the queue not yet given a slot
  # Per row [N, ...]: the outputs.
  tokens: jax.Array  # [N, max_new] int32
  logprobs: jax.Array  # [N, max_new] float32
  lengths: jax.Array  # [N] int32: tokens in the completion (eos/stop included)
  # [S, V] bool: tokens of each slot's prompt and completion (repetition penalty; [S, 1]
  # and unused without one).
  seen: jax.Array


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


def repetition_penalty(logits: jax.Array, seen: jax.Array, penalty: float) -> jax.Array:
  """HF / vLLM repetition penalty: logits `[N, V]` of `seen` tokens divided by `penalty`
  where positive, multiplied by it where negative."""
  penalized = jnp.where(logits > 0, logits / penalty, logits * penalty)
  return jnp.where(seen, penalized, logits)


def _choose(
    logits: jax.Array, rng: jax.Array, rows: jax.Array, steps: jax.Array, cfg: SamplingConfig
) -> tuple[jax.Array, jax.Array]:
  """Next token [N] of each row and its logprob under log_softmax(logits / T).

  Row `rows[i]` at completion index `steps[i]` draws with `fold_in(fold_in(rng, row), step)`.
  """
  logits = logits.astype(jnp.float32)
  if cfg.temperature <= 0.0:
    token = jnp.argmax(logits, axis=-1)
    logp = jax.nn.log_softmax(logits, axis=-1)
  else:
    scaled = logits / cfg.temperature
    logp = jax.nn.log_softmax(scaled, axis=-1)
    keys = jax.vmap(lambda r, t: jax.random.fold_in(jax.random.fold_in(rng, r), t))(rows, steps)
    filtered = filter_logits(scaled, cfg.top_k, cfg.top_p)
    token = jax.vmap(jax.random.categorical)(keys, filtered)
  chosen = jnp.take_along_axis(logp, token[:, None], axis=-1)[:, 0]
  return token.astype(jnp.int32), chosen


def _ends_with_stop(
    tokens: jax.Array, step: jax.Array, stops: Sequence[Sequence[int]]
) -> jax.Array:
  """[N] bool: row i's completion so far (tokens[i, :step[i]+1]) ends with a stop sequence."""
  hit = jnp.zeros(tokens.shape[0], bool)
  for seq in stops:
    k = len(seq)
    if k == 0:
      continue
    idx = step[:, None] - (k - 1) + jnp.arange(k)
    window = jnp.take_along_axis(tokens, jnp.clip(idx, 0, tokens.shape[1] - 1), axis=1)
    match = jnp.all(window == jnp.asarray(seq, jnp.int32)[None], axis=1) & (step >= k - 1)
    hit = hit | match
  return hit


def _constrain(cache: Any, axes: tuple) -> Any:
  """Explicit sharding of a KV cache's k/v (no-op without logical-axis rules in context)."""
  return {
      **cache,
      "k": nn.with_logical_constraint(cache["k"], axes),
      "v": nn.with_logical_constraint(cache["v"], axes),
  }


def sample(
    forward: Callable,
    make_cache: Callable[[int, int], Any],
    params: Any,
    prompt_embeds: jax.Array,
    prompt_mask: jax.Array,
    rng: jax.Array,
    cfg: SamplingConfig,
    *,
    repeat: int = 1,
    slots: int = 0,
    prompt_ids: jax.Array | None = None,
) -> SampleOutput:
  """Generates up to `cfg.max_new_tokens` for each of `repeat` samples of B left-padded prompts.

  Args:
    forward, make_cache: the model calls (see module docstring).
    prompt_embeds: [B, P, D] embedded prompts, left-padded.
    prompt_mask: [B, P] int, 1 on real prompt tokens.
    rng: PRNG key.
    repeat: samples per prompt (G); row `i * repeat + g` is the g-th sample of prompt i.
    slots: rows decoded at once (the KV cache's batch); 0 or >= B * repeat = all rows.
    prompt_ids: [B, P] ids of the prompts, needed by `cfg.repetition_penalty`.

  Returns outputs for the B * repeat rows.
  """
  b, p = prompt_mask.shape
  m = cfg.max_new_tokens
  n = b * repeat
  s = n if slots <= 0 else min(int(slots), n)
  prompt_mask = prompt_mask.astype(jnp.int32)

  # 1. Prefill: each prompt once, logits of its last position only.
  positions = jnp.maximum(jnp.cumsum(prompt_mask, axis=1) - 1, 0)
  logits, prompt_cache = forward(
      params,
      inputs_embeds=prompt_embeds,
      positions=positions,
      attention_mask=prompt_mask,
      cache=make_cache(b, p),
      logits_range=(p - 1, p),
  )
  prompt_cache = _constrain(prompt_cache, PROMPT_CACHE_AXES)
  prompt_of_row = jnp.arange(n) // repeat
  rows = jnp.arange(n, dtype=jnp.int32)
  first_logits = jnp.repeat(logits[:, -1], repeat, axis=0)
  penalize = cfg.repetition_penalty != 1.0
  vocab = logits.shape[-1]
  if penalize:
    if prompt_ids is None:
      raise ValueError("SamplingConfig.repetition_penalty needs sample(..., prompt_ids=)")
    where = prompt_mask.astype(jnp.int8)
    seen_prompt = jnp.zeros((b, vocab), jnp.int8).at[jnp.arange(b)[:, None], prompt_ids].max(where)
    seen_prompt = seen_prompt > 0  # padding is not a prompt token
    first_logits = repetition_penalty(
        first_logits, seen_prompt[prompt_of_row], cfg.repetition_penalty
    )
  first, first_logp = _choose(first_logits, rng, rows, jnp.zeros_like(rows), cfg)
  zero = jnp.zeros((n,), jnp.int32)
  tokens = jnp.full((n, m), cfg.pad_id, jnp.int32).at[:, 0].set(first)
  first_done = (first == cfg.eos_id) | _ends_with_stop(tokens, zero, cfg.stop_sequences)
  prompt_lengths = jnp.sum(prompt_mask, axis=1).astype(jnp.int32)

  cache = make_cache(s, p + m)
  state = _LoopState(
      row=jnp.full((s,), n, jnp.int32),
      step=jnp.ones((s,), jnp.int32),
      busy=jnp.zeros((s,), bool),
      last_token=jnp.zeros((s,), jnp.int32),
      position=jnp.zeros((s,), jnp.int32),
      cache_mask=jnp.zeros((s, p + m), jnp.int32),
      cache=_constrain({**cache, "index": jnp.zeros((s,), jnp.int32)}, CACHE_AXES),
      next_row=jnp.zeros((), jnp.int32),
      tokens=tokens,
      logprobs=jnp.zeros((n, m), jnp.float32).at[:, 0].set(first_logp),
      lengths=jnp.ones((n,), jnp.int32),
      seen=jnp.zeros((s, vocab if penalize else 1), bool),
  )

  def refill(st: _LoopState) -> _LoopState:
    """Free slots take the next queued rows: prompt keys/values, first token, positions."""
    free = ~st.busy
    new_row = st.next_row + jnp.cumsum(free.astype(jnp.int32)) - 1
    take = free & (new_row < n)
    row = jnp.where(take, new_row, st.row)
    safe_row = jnp.clip(row, 0, n - 1)  # idle slots hold row n
    prompt = prompt_of_row[safe_row]
    keep = take[None, :, None, None, None]
    cache = dict(st.cache)
    for key in ("k", "v"):
      old = st.cache[key]
      head = nn.with_logical_constraint(prompt_cache[key][:, prompt], CACHE_AXES)
      head = jnp.where(keep, head, old[:, :, :p])
      cache[key] = jax.lax.dynamic_update_slice_in_dim(old, head.astype(old.dtype), 0, axis=2)
    fresh_mask = jnp.concatenate([prompt_mask[prompt], jnp.zeros((s, m), jnp.int32)], axis=1)
    seen = st.seen
    if penalize:
      fresh = seen_prompt[prompt].at[jnp.arange(s), first[safe_row]].set(True)
      seen = jnp.where(take[:, None], fresh, seen)
    return st.replace(
        seen=seen,
        row=row,
        step=jnp.where(take, 1, st.step),
        busy=st.busy | (take & ~first_done[safe_row] & (m > 1)),
        last_token=jnp.where(take, first[safe_row], st.last_token),
        position=jnp.where(take, prompt_lengths[prompt], st.position),
        cache_mask=jnp.where(take[:, None], fresh_mask, st.cache_mask),
        cache=_constrain(cache, CACHE_AXES),
        next_row=st.next_row + jnp.sum(take.astype(jnp.int32)),
    )

  def cond(st: _LoopState):
    return jnp.any(st.busy) | (st.next_row < n)

  def body(st: _LoopState) -> _LoopState:
    st = jax.lax.cond(jnp.any(~st.busy) & (st.next_row < n), refill, lambda x: x, st)
    step = jnp.clip(st.step, 1, m - 1)
    slot = p + step - 1  # cache entry of the token being fed
    cache_mask = jnp.where(jnp.arange(p + m) == slot[:, None], 1, st.cache_mask)
    logits, cache = forward(
        params,
        input_ids=st.last_token[:, None],
        positions=st.position[:, None],
        attention_mask=cache_mask,
        cache={**st.cache, "index": slot},
    )
    logits = logits[:, -1]
    if penalize:
      logits = repetition_penalty(logits, st.seen, cfg.repetition_penalty)
    token, logp = _choose(logits, rng, st.row, step, cfg)
    # Idle slots write nowhere (row n is out of range: dropped).
    out_row = jnp.where(st.busy, st.row, n)
    tokens = st.tokens.at[out_row, step].set(token, mode="drop")
    logprobs = st.logprobs.at[out_row, step].set(logp, mode="drop")
    lengths = st.lengths.at[out_row].set(step + 1, mode="drop")
    finished = (token == cfg.eos_id) | (step + 1 >= m)
    if cfg.stop_sequences:
      history = tokens[jnp.clip(st.row, 0, n - 1)]
      finished = finished | _ends_with_stop(history, step, cfg.stop_sequences)
    return st.replace(
        seen=st.seen.at[jnp.arange(s), token].set(True) if penalize else st.seen,
        step=step + 1,
        busy=st.busy & ~finished,
        last_token=token,
        position=st.position + 1,
        cache_mask=cache_mask,
        cache=_constrain({**cache, "index": st.cache["index"]}, CACHE_AXES),
        tokens=tokens,
        logprobs=logprobs,
        lengths=lengths,
    )

  state = jax.lax.while_loop(cond, body, state)
  completion_mask = (jnp.arange(m)[None, :] < state.lengths[:, None]).astype(jnp.int32)
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
