"""GRPO log-probs: projecting only the completion positions vs the whole prompt + completion.

`mer_jax.rl.grpo.completion_logits` runs the LLM over prompt + completion and needs the
logits of the `L` positions that predict completion tokens. Before, the LM head produced
`[N, P + L, V]` float32 logits and the completion part was sliced out; now the hidden
states are sliced first (`Qwen2ForCausalLM(logits_range=...)`). This prints, for the
same random Qwen2 and batch, XLA's temporary memory and the wall time of the jitted
log-prob + entropy computation (forward, and forward + backward) for both, side by side,
and checks that they agree.

    python benchmarks/bench_completion_logits.py [--batch 4] [--prompt 512] [--completion 64] [--vocab 32000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # run from a checkout

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mer_jax.models.qwen2 import Qwen2Config  # noqa: E402
from mer_jax.models.qwen2 import Qwen2ForCausalLM  # noqa: E402
from mer_jax.rl.grpo import logprobs_and_entropy  # noqa: E402


def _fn(model, p: int, length: int, sliced: bool):
  def logprob_sum(params, ids, mask):
    kw = dict(logits_range=(p - 1, p + length - 1)) if sliced else {}
    logits, _ = model.apply(params, ids, attention_mask=mask, **kw)
    if not sliced:
      logits = logits[:, p - 1 : p + length - 1]
    logp, ent = logprobs_and_entropy(logits, ids[:, p:])
    return logp.sum(), (logp, ent)

  return logprob_sum


def _measure(fn, *args, repeats: int):
  compiled = jax.jit(fn).lower(*args).compile()
  mem = compiled.memory_analysis()
  temp = getattr(mem, "temp_size_in_bytes", float("nan")) if mem is not None else float("nan")
  out = compiled(*args)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(repeats):
    out = compiled(*args)
  jax.block_until_ready(out)
  return out, temp / 2**20, (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--batch", type=int, default=4)
  ap.add_argument("--prompt", type=int, default=512)
  ap.add_argument("--completion", type=int, default=64)
  ap.add_argument("--vocab", type=int, default=32000)
  ap.add_argument("--hidden", type=int, default=128)
  ap.add_argument("--layers", type=int, default=2)
  ap.add_argument("--repeats", type=int, default=3)
  args = ap.parse_args()

  config = Qwen2Config(
      vocab_size=args.vocab,
      hidden_size=args.hidden,
      intermediate_size=2 * args.hidden,
      num_hidden_layers=args.layers,
      num_attention_heads=4,
      num_key_value_heads=2,
      max_position_embeddings=args.prompt + args.completion,
  )
  model = Qwen2ForCausalLM(config)
  rng = np.random.default_rng(0)
  n, p, length = args.batch, args.prompt, args.completion
  ids = jnp.asarray(rng.integers(0, args.vocab, (n, p + length)), jnp.int32)
  mask = jnp.ones((n, p + length), jnp.int32)
  params = model.init(jax.random.PRNGKey(0), ids[:, :2])

  print(
      f"N={n} prompt={p} completion={length} vocab={args.vocab} hidden={args.hidden} layers={args.layers}"
  )
  print(
      f"{'computation':<22}{'full temp MiB':>15}{'sliced temp MiB':>17}{'ratio':>8}"
      f"{'full ms':>10}{'sliced ms':>11}{'speedup':>9}"
  )
  for name, wrap in (
      ("forward", lambda f: f),
      ("forward + backward", lambda f: jax.grad(f, has_aux=True)),
  ):
    results = []
    for sliced in (False, True):
      results.append(
          _measure(wrap(_fn(model, p, length, sliced)), params, ids, mask, repeats=args.repeats)
      )
    (out_full, mem_full, ms_full), (out_sliced, mem_sliced, ms_sliced) = results
    if name == "forward":
      for a, b in zip(out_full[1], out_sliced[1], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    print(
        f"{name:<22}{mem_full:>15.1f}{mem_sliced:>17.1f}{mem_full / max(mem_sliced, 1e-9):>8.1f}"
        f"{ms_full:>10.1f}{ms_sliced:>11.1f}{ms_full / ms_sliced:>9.2f}"
    )
  print("log-probs and entropies agree (rtol 1e-5)")


if __name__ == "__main__":
  main()
