#!/usr/bin/env python
"""Per-sample EW reward throughput: EWRewardScorer vs a plain-Python scorer.

  python benchmarks/bench_ew_reward.py [--lexicon builtin|official:DIR]
      [--batch 1024] [--group 4] [--batches 50] [--seed 0]

Workload: GRPO-shaped batches of B prompts x G sampled answers.  Each prompt
has one ground-truth label string (repeated G times, as the trainer passes
it); answers are fresh strings (``"happy, nervous"`` / ``"['happy', 'sad']"``
with random wheel words, synonyms, inflected forms and unknown words), so the
answer side is parsed cold every time unless a string repeats.  Both scorers
run in-process on one core.  Prints rewards/s of each and the ratio, and
checks that both give the same rewards.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from mer_jax.metrics import EWRewardScorer  # noqa: E402
from mer_jax.metrics import load_lexicon  # noqa: E402
from mer_jax.metrics.scoring import reference_reward  # noqa: E402


def make_batches(lexicon, n_batches, batch, group, seed):
  rng = random.Random(seed)
  vocab = sorted(lexicon.format2roots)
  junk = ['neutral', 'unknownish', 'calm-ish', 'meh', 'blah']

  def answer(k):
    labels = [rng.choice(vocab) if rng.random() > 0.1 else rng.choice(junk) for _ in range(k)]
    if rng.random() < 0.5:
      return ', '.join(labels)
    return str([x.capitalize() if rng.random() < 0.3 else x for x in labels])

  out = []
  for _ in range(n_batches):
    gts, preds = [], []
    for _ in range(batch):
      gt = answer(rng.randint(1, 5))
      for _ in range(group):
        gts.append(gt)
        preds.append(answer(rng.randint(1, 6)))
    out.append((gts, preds))
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  ap.add_argument('--lexicon', default='builtin')
  ap.add_argument('--batch', type=int, default=1024)
  ap.add_argument('--group', type=int, default=4)
  ap.add_argument('--batches', type=int, default=50)
  ap.add_argument('--reference-batches', type=int, default=3)
  ap.add_argument('--seed', type=int, default=0)
  args = ap.parse_args(argv)

  lex = load_lexicon(args.lexicon)
  data = make_batches(lex, args.batches, args.batch, args.group, args.seed)
  n = args.batch * args.group

  scorer = EWRewardScorer(lex)
  scorer.reward(*data[0])  # warm numpy, not the answer cache
  t0 = time.perf_counter()
  ours = [scorer.reward(g, p) for g, p in data]
  t_ours = time.perf_counter() - t0
  rate_ours = n * len(data) / t_ours

  ref_data = data[: args.reference_batches]
  t0 = time.perf_counter()
  ref = [
      np.array([reference_reward(g, p, lex) for g, p in zip(gs, ps, strict=True)])
      for gs, ps in ref_data
  ]
  t_ref = time.perf_counter() - t0
  rate_ref = n * len(ref_data) / t_ref

  max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, ref, strict=True))
  print(f'lexicon: {lex.name}  workload: {len(data)} batches of B={args.batch} x G={args.group}')
  print(f'EWRewardScorer (int tables, numpy popcount): {rate_ours:12,.0f} rewards/s')
  print(f'plain Python (string lookups per call):     {rate_ref:12,.0f} rewards/s')
  print(
      f'ratio: {rate_ours / rate_ref:.1f}x   max |diff| = {max_diff:.2e}   '
      f'mean reward = {np.mean(np.concatenate(ours)):.4f}'
  )
  return 0 if max_diff < 1e-6 else 1


if __name__ == '__main__':
  sys.exit(main())
