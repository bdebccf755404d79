"""Policy generation on the mesh: the decode layout (LoRA merged, weights resharded) samples what
the training layout samples; slot refill on the mesh gives the same completions."""

import dataclasses

from flax import traverse_util
import jax
import numpy as np
import pytest

from input_pipeline import datasets
from mer_jax.decode import generation
from mer_jax.decode import layout as layout_lib
from mer_jax.train import mesh as mesh_lib

G = 2


@pytest.fixture(scope="module")
def ctx(recipe, run_context, tmp_path_factory):
  config = recipe("grpo", "test")
  config.data.synthmer.num_sft = 4
  config.data.synthmer.num_rl = 8
  config.data.synthmer.num_eval = 4
  config.mesh.data, config.mesh.fsdp = 2, 4
  workdir = tmp_path_factory.mktemp("generation_ctx")
  with run_context(config, workdir, roles=("rl",)) as ctx:
    yield ctx


def _trained_params(ctx):
  """The policy with non-zero LoRA B (a fresh adapter is the identity: merging would be a no-op)."""
  flat = traverse_util.flatten_dict(ctx.policy.params)
  rng = np.random.default_rng(0)
  for path, x in flat.items():
    if path[-1] == "lora_b":
      noise = rng.normal(0.0, 0.05, x.shape).astype(x.dtype)
      flat[path] = jax.device_put(noise, x.sharding)
  return traverse_util.unflatten_dict(flat)


def _prompts(ctx, rows=4):
  config = ctx.config.copy_and_resolve_references()
  config.data.batch_size = rows
  it = datasets.make_train_iterator(
      config, ctx.samples["rl"], ctx.tokenizer, prompt_only=True, question="labels"
  )
  arrays, _ = datasets.split_meta(next(it))
  return arrays


def _sampling(ctx, temperature, max_new=12):
  return generation.sampling_config(
      ctx.tokenizer, max_new_tokens=max_new, temperature=temperature, top_k=50
  )


def test_decode_layout_replicates_weights_and_samples_like_training_layout(ctx):
  params, batch = _trained_params(ctx), _prompts(ctx)
  settings = layout_lib.DecodeSettings(layout="replicated")
  decoder = generation.prepare(ctx.policy.model, params, ctx.mesh, settings)
  flat = traverse_util.flatten_dict(decoder.params)
  assert not any(p[-1] in ("lora_a", "lora_b") for p in flat)
  for path, x in flat.items():
    spec = [
        a for axes in x.sharding.spec if axes for a in ((axes,) if isinstance(axes, str) else axes)
    ]
    assert "fsdp" not in spec and "data" not in spec, (path, x.sharding.spec)
  trained = traverse_util.flatten_dict(params)
  assert any("fsdp" in str(x.sharding.spec) for x in trained.values())  # training is sharded
  cfg = _sampling(ctx, temperature=0.0)
  rng = jax.random.PRNGKey(3)
  for lora in (True, False):
    ours = generation.prepare(ctx.policy.model, params, ctx.mesh, settings, lora=lora)
    ref = generation.prepare(ctx.policy.model, params, ctx.mesh, lora=lora)  # training layout
    got, want = ours.generate(batch, rng, cfg, repeat=G), ref.generate(batch, rng, cfg, repeat=G)
    np.testing.assert_array_equal(got["tokens"], want["tokens"])
    np.testing.assert_allclose(got["logprobs"], want["logprobs"], atol=2e-4)
  # The adapters matter: the base model scores its tokens differently.
  base = generation.prepare(ctx.policy.model, params, ctx.mesh, settings, lora=False)
  pair = base.generate(batch, rng, cfg)["logprobs"], decoder.generate(batch, rng, cfg)["logprobs"]
  assert np.max(np.abs(pair[0] - pair[1])) > 1e-2


def test_slot_refill_on_the_mesh_equals_all_rows(ctx):
  params, batch = _trained_params(ctx), _prompts(ctx, rows=8)
  cfg = dataclasses.replace(_sampling(ctx, temperature=1.0, max_new=16), eos_id=-1)
  # Stop rows early and unevenly: the most frequent sampled token ends a row.
  settings = layout_lib.DecodeSettings(layout="replicated")
  rng = jax.random.PRNGKey(5)
  full = generation.generate(
      ctx.policy.model, params, batch, rng, cfg, ctx.mesh, repeat=G, settings=settings
  )
  values, counts = np.unique(full["tokens"][:, 1:], return_counts=True)
  cfg = dataclasses.replace(cfg, eos_id=int(values[np.argmax(counts)]))
  full = generation.generate(
      ctx.policy.model, params, batch, rng, cfg, ctx.mesh, repeat=G, settings=settings
  )
  assert len(set(full["lengths"].tolist())) > 1, full["lengths"]
  refill = generation.generate(
      ctx.policy.model,
      params,
      batch,
      rng,
      cfg,
      ctx.mesh,
      repeat=G,
      settings=dataclasses.replace(settings, slots=mesh_lib.batch_divisor(ctx.mesh)),
  )
  np.testing.assert_array_equal(refill["tokens"], full["tokens"])
  np.testing.assert_array_equal(refill["lengths"], full["lengths"])
  np.testing.assert_allclose(refill["logprobs"], full["logprobs"], atol=1e-5)
