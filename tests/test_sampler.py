"""The sampler's tokens and logprobs agree with full forward passes over the sampled sequences."""

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np

from mer_jax.decode import sampler as sampler_lib
from mer_jax.models import qwen2

CFG = qwen2.Qwen2Config(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    tie_word_embeddings=False,
    scan_layers=True,
)
MODEL = qwen2.Qwen2ForCausalLM(CFG)


def _params():
  variables = MODEL.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))
  return flax.linen.meta.unbox(variables["params"])


def _forward(params, **kw):
  return MODEL.apply({"params": params}, **kw)


def _prompts():
  seqs = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
  return sampler_lib.left_pad(seqs, 6, pad_id=0)


def _run(params, cfg, seed=0, repeat=1, slots=0):
  """(prompt ids, mask, output) with the prompts repeated `repeat` times (rows i * repeat + g)."""
  ids, mask = _prompts()
  embeds = MODEL.apply({"params": params}, jnp.asarray(ids), method=MODEL.embed)
  run = jax.jit(
      functools.partial(
          sampler_lib.sample, _forward, MODEL.init_cache, cfg=cfg, repeat=repeat, slots=slots
      )
  )
  out = run(params, embeds, jnp.asarray(mask), jax.random.PRNGKey(seed))
  return np.repeat(ids, repeat, axis=0), np.repeat(mask, repeat, axis=0), out


def _full_logprobs(params, ids, mask, out, temperature):
  """log_softmax(logits / T) of each sampled token from one forward pass over prompt + completion."""
  seq = np.concatenate([ids, np.asarray(out.tokens)], axis=1)
  full_mask = np.concatenate([mask, np.asarray(out.completion_mask)], axis=1)
  logits, _ = MODEL.apply(
      {"params": params}, jnp.asarray(seq), attention_mask=jnp.asarray(full_mask)
  )
  p = ids.shape[1]
  logits = np.asarray(logits)[:, p - 1 : -1] / temperature
  logp = jax.nn.log_softmax(logits, axis=-1)
  return np.take_along_axis(np.asarray(logp), np.asarray(out.tokens)[..., None], axis=-1)[..., 0]


def test_sampled_logprobs_equal_full_forward():
  params = _params()
  cfg = sampler_lib.SamplingConfig(
      max_new_tokens=7, temperature=0.7, top_p=0.9, top_k=20, eos_id=63, pad_id=0
  )
  ids, mask, out = _run(params, cfg)
  expected = _full_logprobs(params, ids, mask, out, 0.7) * np.asarray(out.completion_mask)
  np.testing.assert_allclose(np.asarray(out.logprobs), expected, atol=2e-5)


def test_greedy_equals_argmax_of_full_forward_and_eos_is_kept():
  params = _params()
  cfg = sampler_lib.SamplingConfig(max_new_tokens=6, temperature=0.0, eos_id=63, pad_id=0)
  ids, mask, out = _run(params, cfg)
  # Pick an eos id the greedy path actually emits at step 2 of row 0, then rerun with it.
  eos = int(out.tokens[0, 2])
  cfg = sampler_lib.SamplingConfig(max_new_tokens=6, temperature=0.0, eos_id=eos, pad_id=0)
  ids, mask, out = _run(params, cfg)
  tokens, cmask = np.asarray(out.tokens), np.asarray(out.completion_mask)
  first_eos = int(np.argmax(tokens[0] == eos))
  assert cmask[0, : first_eos + 1].all() and not cmask[0, first_eos + 1 :].any()
  assert int(out.lengths[0]) == first_eos + 1
  # Teacher-forced: one causal forward over prompt + completion gives every step's logits.
  seq = np.concatenate([ids, tokens], axis=1)
  full_mask = np.concatenate([mask, cmask], axis=1)
  logits, _ = MODEL.apply(
      {"params": params}, jnp.asarray(seq), attention_mask=jnp.asarray(full_mask)
  )
  prompt_len = ids.shape[1]
  for t in range(cfg.max_new_tokens):
    nxt = np.argmax(np.asarray(logits)[:, prompt_len - 1 + t], axis=-1)
    alive = cmask[:, t] > 0
    np.testing.assert_array_equal(tokens[alive, t], nxt[alive])


def test_stop_sequence_ends_row():
  params = _params()
  cfg = sampler_lib.SamplingConfig(max_new_tokens=6, temperature=0.0, eos_id=62, pad_id=0)
  _, _, out = _run(params, cfg)
  stop = (int(out.tokens[1, 1]), int(out.tokens[1, 2]))
  cfg = sampler_lib.SamplingConfig(
      max_new_tokens=6, temperature=0.0, eos_id=62, pad_id=0, stop_sequences=(stop,)
  )
  _, _, out2 = _run(params, cfg)
  assert int(out2.lengths[1]) <= 3
  assert tuple(np.asarray(out2.tokens)[1, int(out2.lengths[1]) - 2 : int(out2.lengths[1])]) == stop


def test_filter_logits_top_k_top_p():
  logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]]))
  kept = lambda x: np.asarray(x[0] > -1e8)
  np.testing.assert_array_equal(kept(sampler_lib.filter_logits(logits, 2, 1.0)), [1, 1, 0, 0])
  np.testing.assert_array_equal(kept(sampler_lib.filter_logits(logits, 0, 0.8)), [1, 1, 0, 0])
  np.testing.assert_array_equal(kept(sampler_lib.filter_logits(logits, 0, 0.81)), [1, 1, 1, 0])
  np.testing.assert_array_equal(kept(sampler_lib.filter_logits(logits, 0, 0.1)), [1, 0, 0, 0])


def test_left_pad_and_buckets():
  ids, mask = sampler_lib.left_pad([[1, 2], [3, 4, 5, 6]], 3, pad_id=9)
  np.testing.assert_array_equal(ids, [[9, 1, 2], [4, 5, 6]])
  np.testing.assert_array_equal(mask, [[0, 1, 1], [1, 1, 1]])
  assert (
      sampler_lib.bucket_length(70, (64, 128)) == 128
      and sampler_lib.bucket_length(300, (64, 128)) == 128
  )
  assert (
      sampler_lib.truncate_at_stop("<answer>a</answer> junk", ["</answer>"]) == "<answer>a</answer>"
  )


def _eos_that_stops_rows(params, cfg):
  """A token id the sampled completions emit often: as eos it ends rows at mixed lengths."""
  _, _, out = _run(params, cfg, repeat=3)
  values, counts = np.unique(np.asarray(out.tokens)[:, 1:], return_counts=True)
  return int(values[np.argmax(counts)])


def test_slot_refill_equals_all_rows_at_once():
  params = _params()
  cfg = sampler_lib.SamplingConfig(max_new_tokens=10, temperature=1.0, top_k=40, eos_id=63)
  eos = _eos_that_stops_rows(params, cfg)
  cfg = dataclasses.replace(cfg, eos_id=eos, stop_sequences=((eos + 1, eos + 2),))
  _, _, static = _run(params, cfg, repeat=3)
  lengths = np.asarray(static.lengths)
  assert len(set(lengths.tolist())) > 2 and lengths.min() < cfg.max_new_tokens, lengths
  # The G samples of one prompt differ (each row has its own key).
  assert len({tuple(r) for r in np.asarray(static.tokens)[:3]}) > 1
  for slots in (2, 4):
    _, _, refill = _run(params, cfg, repeat=3, slots=slots)
    np.testing.assert_array_equal(np.asarray(refill.tokens), np.asarray(static.tokens))
    np.testing.assert_array_equal(np.asarray(refill.lengths), lengths)
    np.testing.assert_allclose(
        np.asarray(refill.logprobs), np.asarray(static.logprobs), atol=1e-5, rtol=1e-5
    )


def test_slot_refill_logprobs_equal_full_forward():
  params = _params()
  cfg = sampler_lib.SamplingConfig(max_new_tokens=8, temperature=0.8, top_p=0.95, eos_id=63)
  cfg = dataclasses.replace(cfg, eos_id=_eos_that_stops_rows(params, cfg))
  ids, mask, out = _run(params, cfg, repeat=3, slots=2)
  assert np.asarray(out.lengths).min() < cfg.max_new_tokens
  expected = _full_logprobs(params, ids, mask, out, 0.8) * np.asarray(out.completion_mask)
  np.testing.assert_allclose(np.asarray(out.logprobs), expected, atol=2e-5)
