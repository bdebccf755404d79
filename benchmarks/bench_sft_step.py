"""LoRA SFT step throughput, side by side: mer_jax vs transformers + peft, same tiny Qwen2 on CPU.

Same weights (built with transformers), same batch of random token rows, LoRA rank 8 on
q/k/v/o/gate/up/down (alpha 16, no dropout), next-token cross-entropy over every
position, AdamW on the adapters. mer_jax: `train_step.make_train_step` jitted (the step the
SFT job runs, on the plain Qwen2); transformers: forward with labels, backward, AdamW.
Prints trained tokens/s (medians after a first step, which holds the compile) and the two
first-step losses, which must agree (same weights, fresh adapters are the identity).

    python benchmarks/bench_sft_step.py [--batch 8] [--length 256] [--steps 5]
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

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import tiny_qwen2  # noqa: E402

from mer_jax.hf import loader  # noqa: E402
from mer_jax.models import lora as lora_lib  # noqa: E402
from mer_jax.models import qwen2  # noqa: E402
from mer_jax.train import train_step as ts  # noqa: E402

RANK, ALPHA = 8, 16.0


def run_ours(hf_dir: str, ids: np.ndarray, steps: int) -> tuple[list[float], float, float]:
  config = loader.config_from_hf_dir(hf_dir, scan_layers=True, lora_rank=RANK, lora_alpha=ALPHA)
  params = loader.load_hf_params(hf_dir, qwen2.Qwen2ForCausalLM, config)["params"]
  model = qwen2.Qwen2ForCausalLM(config)
  trainable, frozen = lora_lib.split_params(params, lora_lib.trainable_mask(params))

  def loss_fn(trainable, frozen, batch, rng):
    del rng
    logits, _ = model.apply({"params": lora_lib.combine_params(trainable, frozen)}, batch["ids"])
    s, c = ts.token_cross_entropy(logits, batch["ids"], jnp.ones_like(batch["ids"]))
    return s, c, {}

  tx = optax.adamw(1e-4)
  step = jax.jit(ts.make_train_step(loss_fn, tx, None), donate_argnums=(0,))
  state = jax.device_put(ts.init_train_state(trainable, tx, 0), jax.devices()[0])
  batch = {"ids": jnp.asarray(ids)}
  times, first_loss = [], None
  for i in range(steps + 1):
    t0 = time.perf_counter()
    state, metrics = step(state, frozen, batch)
    loss = float(metrics["loss"])
    times.append(time.perf_counter() - t0)
    first_loss = loss if i == 0 else first_loss
  return times[1:], times[0], first_loss


def run_torch(hf, ids: np.ndarray, steps: int) -> tuple[list[float], float, float]:
  import peft
  import torch

  torch.set_grad_enabled(True)
  targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
  model = peft.get_peft_model(
      hf.train(),
      peft.LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=targets),
  )
  opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
  x = torch.tensor(ids, dtype=torch.long)
  times, first_loss = [], None
  for i in range(steps + 1):
    t0 = time.perf_counter()
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    times.append(time.perf_counter() - t0)
    first_loss = float(loss) if i == 0 else first_loss
  return times[1:], times[0], first_loss


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--length", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--vocab", type=int, default=2048)
  parser.add_argument("--steps", type=int, default=5)
  args = parser.parse_args()

  try:
    import peft  # noqa: F401
  except ImportError:
    sys.exit("transformers + peft side needs `peft` (pip install peft; e.g. in a scratch venv)")
  import torch

  print(f"machine: {tiny_qwen2.machine()}")
  ids = np.random.default_rng(0).integers(10, args.vocab, (args.batch, args.length))
  with tempfile.TemporaryDirectory() as hf_dir:
    hf = tiny_qwen2.build(hf_dir, layers=args.layers, hidden=args.hidden, vocab=args.vocab)
    ours, ours_first, ours_loss = run_ours(hf_dir, ids, args.steps)
  theirs, theirs_first, theirs_loss = run_torch(hf, ids, args.steps)
  tokens = args.batch * args.length
  print(
      f"config: batch {args.batch} x {args.length} tokens, Qwen2 {args.layers}x{args.hidden}, "
      f"vocab {args.vocab}, LoRA r{RANK} on 7 projections, AdamW; torch threads "
      f"{torch.get_num_threads()}; medians of {args.steps} steps after the first"
  )
  print(f"{'':24}{'tokens/s':>10}{'step s':>9}{'first step s':>14}{'first loss':>12}")
  for name, t, first, loss in (
      ("mer_jax (jit)", ours, ours_first, ours_loss),
      ("transformers + peft", theirs, theirs_first, theirs_loss),
  ):
    run = tiny_qwen2.median(t)
    print(f"{name:24}{tokens / run:10.1f}{run:9.3f}{first:14.2f}{loss:12.4f}")
  print(
      f"ratio mer_jax / transformers+peft: {tiny_qwen2.median(theirs) / tiny_qwen2.median(ours):.2f}x"
  )
  print(f"machine after: {tiny_qwen2.machine()}")


if __name__ == "__main__":
  main()
