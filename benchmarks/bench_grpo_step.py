"""One GRPO step, side by side: mer_jax's pieces vs tunix's GRPOLearner, same tiny Qwen2 on CPU.

Both: B prompts x G completions, temperature 1, up to `--new` tokens (same eos id), the
same host reward (a function of the completion text), GRPO loss with eps 0.2 and no KL,
one AdamW update of every weight (full fine-tuning), one policy iteration per rollout.
mer_jax runs its library code on the plain Qwen2: the slot-refill sampler
(`mer_jax.decode.sampler`), group advantages, `losses.grpo_loss` inside
`train_step.make_train_step` (completion-only logits), and reports the split of a step:
decode, host reward, update (log-probs + gradient + AdamW). tunix's per-step time comes
from the reward calls' timestamps (one call per step); its first step includes compiles.

    python benchmarks/bench_grpo_step.py [--prompts 4] [--generations 4] [--new 64] [--steps 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # benchmarks/

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import bench_sampler  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import tiny_qwen2  # noqa: E402

from mer_jax.decode import sampler as sampler_lib  # noqa: E402
from mer_jax.rl import advantages as adv_lib  # noqa: E402
from mer_jax.rl import losses as losses_lib  # noqa: E402
from mer_jax.train import train_step as ts  # noqa: E402


def reward(text: str) -> float:
  """The host reward both sides use (same as tunix_side.py)."""
  return float(len(text.split()) % 5) / 4.0


def our_step_fns(model, args, eos: int):
  cfg = sampler_lib.SamplingConfig(max_new_tokens=args.new, temperature=1.0, eos_id=eos, pad_id=0)

  @jax.jit
  def rollout(params, ids, mask, rng):
    embeds = model.apply({"params": params}, ids, method=model.embed)
    forward = lambda p, **kw: model.apply({"params": p}, **kw)
    return sampler_lib.sample(
        forward, model.init_cache, params, embeds, mask, rng, cfg, repeat=args.generations
    )

  def loss_fn(trainable, frozen, batch, rng):
    del frozen, rng
    p = batch["prompt"].shape[1]
    ids = jnp.concatenate([batch["prompt"], batch["completion"]], axis=1)
    mask = jnp.concatenate([batch["prompt_mask"], batch["completion_mask"]], axis=1)
    logits, _ = model.apply(
        {"params": trainable}, ids, attention_mask=mask, logits_range=(p - 1, ids.shape[1] - 1)
    )
    logp = jax.nn.log_softmax(logits, axis=-1)
    logp = jnp.take_along_axis(logp, batch["completion"][..., None], axis=-1)[..., 0]
    out = losses_lib.grpo_loss(
        logp, batch["advantages"], batch["completion_mask"], clip_eps=0.2, beta=0.0
    )
    return out.loss_sum, out.denominator, {}

  tx = optax.adamw(1e-4)
  step = ts.make_train_step(loss_fn, tx, None)

  @jax.jit
  def update(state, batch, rewards):
    grid = rewards.reshape(-1, args.generations)
    batch = {**batch, "advantages": adv_lib.group_advantages(grid).reshape(-1)}
    return step(state, {}, batch)

  return rollout, update, tx


def run_ours(model, params, ids, mask, args, eos: int) -> dict:
  rollout, update, tx = our_step_fns(model, args, eos)
  # committed to the device, so the second step does not recompile for an uncommitted scalar
  state = jax.device_put(ts.init_train_state(params, tx, 0), jax.devices()[0])
  rep = lambda x: jnp.repeat(jnp.asarray(x), args.generations, axis=0)
  split = {"decode": [], "reward": [], "update": []}
  compile_s = None
  for i in range(args.steps + 1):
    t0 = time.perf_counter()
    out = jax.block_until_ready(rollout(state.trainable, ids, mask, jax.random.PRNGKey(i)))
    t1 = time.perf_counter()
    tokens, lengths = np.asarray(out.tokens), np.asarray(out.lengths)
    texts = [" ".join(map(str, row[:n])) for row, n in zip(tokens, lengths, strict=True)]
    rewards = np.asarray([reward(t) for t in texts], np.float32)
    t2 = time.perf_counter()
    batch = {
        "prompt": rep(ids),
        "prompt_mask": rep(mask),
        "completion": out.tokens,
        "completion_mask": out.completion_mask,
    }
    state, metrics = update(state, batch, jnp.asarray(rewards))
    jax.block_until_ready(metrics["loss"])
    t3 = time.perf_counter()
    if i == 0:
      compile_s = t3 - t0
      continue
    split["decode"].append(t1 - t0)
    split["reward"].append(t2 - t1)
    split["update"].append(t3 - t2)
  steps = [sum(x) for x in zip(*split.values(), strict=True)]
  return {"first": compile_s, "steps": steps, "split": split, "tokens": int(lengths.sum())}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--prompts", type=int, default=4)
  parser.add_argument("--generations", type=int, default=4)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=64)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--vocab", type=int, default=2048)
  parser.add_argument("--steps", type=int, default=6, help="timed steps after the first")
  parser.add_argument("--tunix_python", default=bench_sampler.TUNIX_PYTHON)
  args = parser.parse_args()

  print(f"machine: {tiny_qwen2.machine()}")
  rng = np.random.default_rng(0)
  lengths = rng.integers(args.prompt // 2, args.prompt + 1, args.prompts)
  seqs = [rng.integers(10, args.vocab, n).tolist() for n in lengths]
  ids, mask = sampler_lib.left_pad(seqs, args.prompt, pad_id=0)
  eos = args.vocab - 1
  with tempfile.TemporaryDirectory() as hf_dir:
    hf = tiny_qwen2.build(hf_dir, layers=args.layers, hidden=args.hidden, vocab=args.vocab)
    model, params = tiny_qwen2.load_ours(hf_dir)
    ours = run_ours(model, params, ids, mask, args, eos)
    spec = {
        "hf_dir": hf_dir,
        "config": hf.config.to_dict(),
        "prompts": seqs,
        "prompt_len": args.prompt,
        "new_tokens": args.new,
        "eos": eos,
        "prompts_per_step": args.prompts,
        "num_generations": args.generations,
        "steps": args.steps + 1,
    }
    tunix = bench_sampler.run_tunix(args.tunix_python, spec, "grpo")

  print(
      f"config: {args.prompts} prompts x G {args.generations}, prompt {args.prompt}, up to "
      f"{args.new} new tokens, Qwen2 {args.layers}x{args.hidden}, vocab {args.vocab}, full "
      f"fine-tuning, AdamW; medians over {args.steps} steps after the first"
  )
  step = tiny_qwen2.median(ours["steps"])
  print(f"{'':24}{'steps/s':>9}{'step s':>9}{'first step s':>14}")
  print(f"{'mer_jax':24}{1 / step:9.3f}{step:9.3f}{ours['first']:14.1f}")
  if isinstance(tunix, dict):
    stamps = np.asarray(tunix["reward_stamps"])
    tunix_step = tiny_qwen2.median(np.diff(stamps)[1:]) if len(stamps) > 2 else float("nan")
    print(f"{'tunix GRPOLearner':24}{1 / tunix_step:9.3f}{tunix_step:9.3f}{stamps[0]:14.1f}")
    print(f"ratio mer_jax / tunix steps/s: {tunix_step / step:.2f}x")
  else:
    print(f"tunix GRPOLearner: not run ({tunix})")
  parts = {k: tiny_qwen2.median(v) for k, v in ours["split"].items()}
  print(
      "mer_jax split (median s): "
      + ", ".join(f"{k} {v:.3f} ({v / sum(parts.values()):.0%})" for k, v in parts.items())
      + f"; last rollout generated {ours['tokens']} tokens"
  )
  print(f"machine after: {tiny_qwen2.machine()}")


if __name__ == "__main__":
  main()
