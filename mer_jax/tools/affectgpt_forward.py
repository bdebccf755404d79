r"""Parity tool: one clip through mer-jax's AffectGPT, every intermediate the released code has.

    python -m mer_jax.tools.affectgpt_forward --config=configs/eval.py:paper \
      --config.checkpoint.init_from=CKPT.pth --config.model.llm.hf_dir=LLM \
      --config.model.vision.hf_dir=CLIP --config.model.audio.hf_dir=HUBERT \
      --config.data.root=DATA --config.data.subtitles_csv=subtitle_chieng.csv \
      --config.data.face_or_frame=face --name=CLIP_NAME \
      --answer="The character's emotional state is surprised, sad." \
      --max_new_tokens=24 --output=OUT.npz

Computes in float32 (whatever the preset's dtypes) on one device. OUT.npz holds:
  frame_indices [8]             sampled frame / face indices
  vision_feats [8, Dv]          CLIP `get_image_features` per sampled frame
  audio_feats [8, Da]           per-clip HuBERT feature (mean of the last 4 layers, time mean)
  prompt_ids [T]                the inference prompt with the OV question (no bos), as `Chat`
  generated_ids [n]             greedy decoding, ended by the released stop words
  step_logits [n, V]            last-position logits of each step (row 0 = prefill)
  teacher_forced_ids [T']       `<bos>` + prompt + answer + `###` + `<eos>` (released collater)
  teacher_forced_logits [T', V] full logits of the training forward (mask = ids != pad)
  response                      the generated text after the released post-processing
V counts the LLM's vocabulary rows, padding rows included. tests/test_affectgpt_parity.py
compares these with the released code's own outputs (tests/data/affectgpt_ref).
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from input_pipeline import decode
from input_pipeline import preprocess
from input_pipeline import prompts
from input_pipeline import readers
from input_pipeline import tokenization
from mer_jax.train import context as context_lib
from mer_jax.train import mesh as mesh_lib
from mer_jax.train import policy as policy_lib
from mer_jax.train import state as state_lib

_FLAGS: dict = {}  # defined by `_define_flags` when run as a program


def float32_config(config):
  """A copy of `config` that computes and keeps every weight in float32."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.dtype = config.model.param_dtype = config.model.frozen_dtype = "float32"
  return config


def _greedy(policy, params, prompt_ids, vision_feats, audio_feats, max_new: int, stop_seqs, eos):
  """Greedy tokens and the logits of every step, through the KV-cache decode path."""
  model = policy.model
  p = len(prompt_ids)
  total = p + max_new
  ids = jnp.asarray(prompt_ids[None], jnp.int32)

  @jax.jit
  def prefill(params, ids, v, a):
    embeds = model.apply({"params": params}, ids, v, a, method=model.embed_prompt)
    cache = model.apply({"params": params}, 1, total, method=model.init_cache)
    mask = jnp.concatenate([jnp.ones((1, p), jnp.int32), jnp.zeros((1, max_new), jnp.int32)], 1)
    logits, cache = model.apply(
        {"params": params},
        inputs_embeds=embeds,
        positions=jnp.arange(p)[None],
        attention_mask=mask,
        cache=cache,
        method=model.decode,
    )
    return logits[0, -1], cache, mask

  @jax.jit
  def step(params, token, position, mask, cache):
    mask = mask.at[:, position].set(1)
    logits, cache = model.apply(
        {"params": params},
        token[None, None],
        positions=position[None, None],
        attention_mask=mask,
        cache=cache,
        method=model.decode,
    )
    return logits[0, -1], cache, mask

  logits, cache, mask = prefill(params, ids, vision_feats[None], audio_feats[None])
  tokens, rows = [], []
  for i in range(max_new):
    rows.append(np.asarray(logits, np.float32))
    tokens.append(int(np.argmax(rows[-1])))
    if tokens[-1] in eos or any(tuple(tokens[-len(s) :]) == tuple(s) for s in stop_seqs):
      break
    if i + 1 < max_new:
      token = jnp.asarray(tokens[-1], jnp.int32)
      logits, cache, mask = step(params, token, jnp.asarray(p + i, jnp.int32), mask, cache)
  return np.asarray(tokens, np.int64), np.stack(rows)


def affectgpt_forward(config, name: str, answer: str, max_new_tokens: int = 24) -> dict:
  """The arrays of one clip (module docstring); `config` as for `configs/eval.py`."""
  config = float32_config(config)
  d = config.data
  tokenizer = tokenization.get_tokenizer(config)
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, devices=jax.devices()[:1])
  policy = policy_lib.build_policy(config, tokenizer, mesh)
  ctx = context_lib.RunContext(config, "", None, mesh, tokenizer, policy, {})
  init = config.checkpoint.init_from
  params = state_lib.load_trained_params(ctx, init) if init else policy.params

  paths = readers.media_paths(d, d.root, name)
  media = readers.read_media(d, paths["video"], paths["faces"], paths["audio"])
  subtitles_csv = d.subtitles_csv
  if subtitles_csv and not os.path.isabs(subtitles_csv):
    subtitles_csv = os.path.join(d.root, subtitles_csv)
  subtitle = (
      readers.read_csv_column(subtitles_csv, "english").get(name, "") if subtitles_csv else ""
  )
  frames = preprocess.clip_preprocess(media["frames"], int(d.image_size))
  clips = decode.clip_audio(
      media["audio"], int(d.sample_rate), int(d.num_audio_clips), float(d.audio_clip_seconds)
  )
  encoders = policy_lib.build_encoders(config, mesh)
  vision_feats = jax.jit(lambda p, x: encoders.vision.apply({"params": p}, x))(
      encoders.params["vision"], frames[None]
  )[0]
  audio_feats = jax.jit(lambda p, x: encoders.audio.apply({"params": p}, x))(
      encoders.params["audio"], preprocess.wav2vec2_normalize(clips)[None]
  )[0]

  prompt = prompts.build_prompt(subtitle, "labels", d.face_or_frame, d.tokens_per_modality)
  prompt_ids = tokenization.encode_prompt(tokenizer, prompt)
  stops = tokenization.official_stop_sequences(tokenizer)
  eos = set(tokenization.official_eos_ids(tokenizer, config.model.llm.hf_dir))
  generated, step_logits = _greedy(
      policy, params, prompt_ids, vision_feats, audio_feats, max_new_tokens, stops, eos
  )
  tf = tokenization.encode_training_example(tokenizer, prompt, answer, int(1e9))["input_ids"]
  # The released training forward: mask = input_ids.ne(pad) (the final eos is masked),
  # positions = arange(T') (Hugging Face's default).
  mask = (tf != tokenizer.pad_token_id).astype(np.int32)
  positions = np.arange(len(tf))[None]
  tf_logits = jax.jit(
      lambda p, ids, v, a, m, pos: policy.model.apply({"params": p}, ids, v, a, m, positions=pos)
  )(params, tf[None], vision_feats[None], audio_feats[None], mask[None], positions)[0]
  return {
      "frame_indices": np.asarray(media["frame_indices"], np.int64),
      "vision_feats": np.asarray(vision_feats, np.float32),
      "audio_feats": np.asarray(audio_feats, np.float32),
      "prompt_ids": prompt_ids.astype(np.int64),
      "generated_ids": generated,
      "step_logits": step_logits,
      "teacher_forced_ids": tf.astype(np.int64),
      "teacher_forced_logits": np.asarray(tf_logits, np.float32),
      "response": np.array(tokenization.official_response(tokenizer, generated)),
  }


def _define_flags() -> None:
  """Command-line flags, defined only when this module runs as a program, so tests can
  import it next to other tools that define --config."""
  _FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", None, "Recipe, e.g. configs/eval.py:paper."
  )
  _FLAGS["name"] = flags.DEFINE_string("name", None, "Clip name in config.data.root.")
  _FLAGS["answer"] = flags.DEFINE_string(
      "answer", "The character's emotional state is neutral.", "Answer of the teacher-forced pass."
  )
  _FLAGS["max_new"] = flags.DEFINE_integer("max_new_tokens", 24, "Greedy decoding steps at most.")
  _FLAGS["output"] = flags.DEFINE_string("output", None, "The .npz to write.")


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not _FLAGS["name"].value or not _FLAGS["output"].value:
    print("affectgpt_forward: --name and --output are required", file=sys.stderr)
    return 2
  try:
    out = affectgpt_forward(
        _FLAGS["config"].value,
        _FLAGS["name"].value,
        _FLAGS["answer"].value,
        _FLAGS["max_new"].value,
    )
  except (ValueError, OSError, decode.DecodeError) as e:
    print(f"affectgpt_forward: {e}", file=sys.stderr)
    return 1
  np.savez(_FLAGS["output"].value, **out)
  for k, v in out.items():
    print(f"{k}: {v.dtype}{list(v.shape)}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  _define_flags()
  flags.mark_flags_as_required(["config"])
  app.run(main)
