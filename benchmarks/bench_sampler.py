"""Sampler throughput, side by side: mer_jax vs transformers `generate` vs tunix's sampler.

Same tiny random Qwen2 weights (built with transformers, saved as a Hugging Face
checkpoint, loaded by each), same left-padded prompts, greedy, a fixed number of new
tokens (no eos on any side). Compilation is excluded from tokens/s and reported on its
own (first call minus the steady-state median). Then a mixed-length rollout (temperature
1, an eos bias that stops rows after a geometric number of tokens): the same rows decoded
all at once (`slots` 0) and with slot refill, with the tokens generated.

    python benchmarks/bench_sampler.py [--batch 8] [--prompt 64] [--new 64] [--layers 4]
        [--hidden 256] [--repeats 5] [--tunix_python /work/scratch/tunix/venv/bin/python]

tunix runs in its own Python (`--tunix_python`, a venv with google-tunix; skipped when
absent) through benchmarks/tunix_side.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import tiny_qwen2  # noqa: E402

from mer_jax.decode import sampler as sampler_lib  # noqa: E402

TUNIX_PYTHON = "/work/scratch/tunix/venv/bin/python"


def timed(fn, repeats: int) -> tuple[float, list[float], object]:
  """(first call seconds, steady-state seconds of `repeats` calls, last output)."""
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return first, times, out


def ours_fn(model, params, ids, mask, cfg, *, repeat=1, slots=0, eos_bias=0.0):
  """A jitted call of our sampler on the plain Qwen2 (optionally with a biased eos logit)."""

  def forward(p, **kw):
    logits, cache = model.apply({"params": p}, **kw)
    if eos_bias:
      logits = logits.at[..., cfg.eos_id].add(eos_bias)
    return logits, cache

  def run(params, ids, mask, rng):
    embeds = model.apply({"params": params}, ids, method=model.embed)
    return sampler_lib.sample(
        forward, model.init_cache, params, embeds, mask, rng, cfg, repeat=repeat, slots=slots
    )

  fn = jax.jit(run)
  return lambda seed=0: fn(params, jnp.asarray(ids), jnp.asarray(mask), jax.random.PRNGKey(seed))


def run_tunix(python: str, spec: dict, mode: str) -> dict | str:
  """tunix_side.py's result, or the reason it could not run."""
  if not os.path.exists(python):
    return f"no tunix Python at {python}"
  with tempfile.TemporaryDirectory() as tmp:
    spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "out.json")
    with open(spec_path, "w") as f:
      json.dump(spec, f)
    side = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tunix_side.py")
    proc = subprocess.run(
        [python, side, mode, spec_path, out_path], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode:
      return "tunix failed: " + proc.stderr.strip().splitlines()[-1] if proc.stderr else "?"
    with open(out_path) as f:
      return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=64)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--vocab", type=int, default=2048)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--mixed_new", type=int, default=256, help="max new tokens, mixed rollout")
  parser.add_argument("--mixed_mean", type=float, default=48.0, help="mean completion length")
  parser.add_argument("--generations", type=int, default=4, help="G of the mixed rollout")
  parser.add_argument("--slots", type=int, default=8, help="slots of the refill run")
  parser.add_argument("--tunix_python", default=TUNIX_PYTHON)
  args = parser.parse_args()

  import torch

  print(f"machine: {tiny_qwen2.machine()}")
  rng = np.random.default_rng(0)
  lengths = rng.integers(args.prompt // 2, args.prompt + 1, args.batch)
  seqs = [rng.integers(10, args.vocab, n).tolist() for n in lengths]
  ids, mask = sampler_lib.left_pad(seqs, args.prompt, pad_id=0)
  no_eos = args.vocab - 1  # tunix's eos (it needs one); the `agree` column shows it never stops

  with tempfile.TemporaryDirectory() as hf_dir:
    hf = tiny_qwen2.build(hf_dir, layers=args.layers, hidden=args.hidden, vocab=args.vocab)
    model, params = tiny_qwen2.load_ours(hf_dir)
    cfg = sampler_lib.SamplingConfig(max_new_tokens=args.new, temperature=0.0, eos_id=-1, pad_id=0)
    first, times, out = timed(ours_fn(model, params, ids, mask, cfg), args.repeats)
    ours = {"first": first, "times": times, "tokens": np.asarray(out.tokens)}

    torch.set_grad_enabled(False)
    gen = functools.partial(
        hf.generate,
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.tensor(mask, dtype=torch.long),
        do_sample=False,
        max_new_tokens=args.new,
        min_new_tokens=args.new,
        pad_token_id=0,
    )
    first, times, hf_out = timed(gen, args.repeats)
    hf_res = {"first": first, "times": times, "tokens": hf_out[:, args.prompt :].numpy()}

    spec = {
        "hf_dir": hf_dir,
        "config": hf.config.to_dict(),
        "prompts": seqs,
        "prompt_len": args.prompt,
        "new_tokens": args.new,
        "eos": no_eos,
        "repeats": args.repeats,
    }
    tunix = run_tunix(args.tunix_python, spec, "sample")

    # Mixed lengths: P(eos) ~ 1 / mean per step on a near-uniform random model.
    bias = math.log(args.vocab / args.mixed_mean)
    mixed_cfg = sampler_lib.SamplingConfig(
        max_new_tokens=args.mixed_new, temperature=1.0, eos_id=no_eos, pad_id=0
    )
    mixed = {}
    for slots in (0, args.slots):
      fn = ours_fn(
          model, params, ids, mask, mixed_cfg, repeat=args.generations, slots=slots, eos_bias=bias
      )
      first, times, out = timed(fn, args.repeats)
      mixed[slots] = {"first": first, "times": times, "lengths": np.asarray(out.lengths)}

  new_tokens = args.batch * args.new
  print(
      f"config: batch {args.batch}, prompt {args.prompt} (left-padded), new {args.new} (greedy, "
      f"no eos), Qwen2 {args.layers}x{args.hidden}, vocab {args.vocab}, torch threads "
      f"{torch.get_num_threads()}; medians of {args.repeats} runs"
  )
  print(f"{'':26}{'tokens/s':>10}{'run s':>9}{'compile s':>11}{'agree':>8}")
  rows = [("mer_jax sampler (jit)", ours), ("transformers generate", hf_res)]
  if isinstance(tunix, dict):
    tunix_tokens = np.asarray([t[: args.new] for t in tunix["tokens"]])
    rows.append(
        (
            "tunix Sampler",
            {"first": tunix["first_s"], "times": tunix["times_s"], "tokens": tunix_tokens},
        )
    )
  for name, r in rows:
    run = tiny_qwen2.median(r["times"])
    agree = float(np.mean(r["tokens"] == ours["tokens"]))
    print(
        f"{name:26}{new_tokens / run:10.1f}{run:9.3f}{max(r['first'] - run, 0.0):11.2f}"
        f"{agree:8.1%}"
    )
  if not isinstance(tunix, dict):
    print(f"tunix Sampler: not run ({tunix})")
  ours_tps = new_tokens / tiny_qwen2.median(ours["times"])
  print(
      f"ratio mer_jax / transformers: {ours_tps * tiny_qwen2.median(hf_res['times']) / new_tokens:.2f}x"
  )
  if isinstance(tunix, dict):
    print(
        f"ratio mer_jax / tunix: {ours_tps * tiny_qwen2.median(tunix['times_s']) / new_tokens:.2f}x"
    )

  lengths = mixed[0]["lengths"]
  assert np.array_equal(lengths, mixed[args.slots]["lengths"]), "refill changed the completions"
  rows_n = len(lengths)
  print(
      f"\nmixed-length rollout: {args.batch} prompts x G {args.generations} = {rows_n} rows, "
      f"max {args.mixed_new} new, lengths min {lengths.min()} / median {int(np.median(lengths))} "
      f"/ max {lengths.max()}, {lengths.sum()} tokens generated (same completions both ways)"
  )
  print(f"{'':30}{'run s':>9}{'tokens/s':>10}{'rows x max / tokens':>22}")
  for slots, r in mixed.items():
    run = tiny_qwen2.median(r["times"])
    label = "all rows at once (slots 0)" if slots == 0 else f"slot refill ({slots} slots)"
    print(
        f"{label:30}{run:9.3f}{lengths.sum() / run:10.1f}{rows_n * lengths.max() / lengths.sum():22.2f}"
    )
  print(f"machine after: {tiny_qwen2.machine()}")


if __name__ == "__main__":
  main()
