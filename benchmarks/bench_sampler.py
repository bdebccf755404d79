"""Sampler throughput: our jitted KV-cache sampler vs `transformers` `generate` (PyTorch CPU).

Same random Qwen2 weights (built with transformers, loaded into ours), same left-padded
batch, greedy, a fixed number of new tokens (no early eos on either side). Prints the
generated tokens/s of both and their ratio, and checks the two greedy outputs agree.

    python benchmarks/bench_sampler.py [--batch 8] [--prompt 64] [--new 64] [--layers 4] [--hidden 256]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time

sys.path.insert(
    0, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
)  # run from a checkout

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _hf_model(args, out_dir: str):
  import torch
  import transformers

  torch.manual_seed(0)
  cfg = transformers.Qwen2Config(
      vocab_size=args.vocab,
      hidden_size=args.hidden,
      intermediate_size=2 * args.hidden,
      num_hidden_layers=args.layers,
      num_attention_heads=8,
      num_key_value_heads=2,
      max_position_embeddings=1024,
      tie_word_embeddings=False,
  )
  model = transformers.Qwen2ForCausalLM(cfg).eval()
  model.save_pretrained(out_dir)
  return model


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--prompt", type=int, default=64)
  parser.add_argument("--new", type=int, default=64)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--vocab", type=int, default=2048)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  import torch

  from mer_jax.decode import sampler as sampler_lib
  from mer_jax.hf import loader
  from mer_jax.models import qwen2

  rng = np.random.default_rng(0)
  lengths = rng.integers(args.prompt // 2, args.prompt + 1, args.batch)
  seqs = [rng.integers(10, args.vocab, n).tolist() for n in lengths]
  ids, mask = sampler_lib.left_pad(seqs, args.prompt, pad_id=0)

  with tempfile.TemporaryDirectory() as tmp:
    hf = _hf_model(args, tmp)
    config = loader.config_from_hf_dir(tmp, scan_layers=True)
    params = loader.load_hf_params(tmp, qwen2.Qwen2ForCausalLM, config)["params"]
  model = qwen2.Qwen2ForCausalLM(config)
  cfg = sampler_lib.SamplingConfig(max_new_tokens=args.new, temperature=0.0, eos_id=-1, pad_id=0)

  def run(params, ids, mask):
    embeds = model.apply({"params": params}, ids, method=model.embed)
    cache = model.init_cache(ids.shape[0], ids.shape[1] + args.new)
    forward = lambda p, **kw: model.apply({"params": p}, **kw)
    return sampler_lib.sample(forward, params, embeds, mask, cache, jax.random.PRNGKey(0), cfg)

  ours_fn = jax.jit(run)
  out = ours_fn(params, jnp.asarray(ids), jnp.asarray(mask))
  jax.block_until_ready(out.tokens)
  t_ours = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    out = ours_fn(params, jnp.asarray(ids), jnp.asarray(mask))
    jax.block_until_ready(out.tokens)
    t_ours.append(time.perf_counter() - t0)

  torch.set_grad_enabled(False)
  t_hf = []
  ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
  gen = functools.partial(
      hf.generate,
      input_ids=ids_t,
      attention_mask=mask_t,
      do_sample=False,
      max_new_tokens=args.new,
      min_new_tokens=args.new,
      pad_token_id=0,
  )
  hf_out = gen()
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    hf_out = gen()
    t_hf.append(time.perf_counter() - t0)

  new_tokens = args.batch * args.new
  ours_tps, hf_tps = new_tokens / min(t_ours), new_tokens / min(t_hf)
  agree = float(np.mean(np.asarray(out.tokens) == hf_out[:, args.prompt :].numpy()))
  print(
      f"config: batch {args.batch}, prompt {args.prompt} (left-padded), new {args.new}, "
      f"Qwen2 {args.layers}x{args.hidden}, vocab {args.vocab}, torch threads {torch.get_num_threads()}"
  )
  print(f"{'':24}{'tokens/s':>12}{'seconds':>10}")
  print(f"{'mer_jax sampler (jit)':24}{ours_tps:12.1f}{min(t_ours):10.3f}")
  print(f"{'transformers generate':24}{hf_tps:12.1f}{min(t_hf):10.3f}")
  print(
      f"ratio (ours / transformers): {ours_tps / hf_tps:.2f}x; greedy tokens agree on {agree:.1%}"
  )


if __name__ == "__main__":
  main()
