"""Tokenizers and token-level training examples.

`config.data.tokenizer` is a Hugging Face tokenizer directory (e.g. Qwen2.5; empty = the
LLM's own, `config.model.llm.hf_dir`) or
'synthmer': a small byte-level BPE trained at run time on the synthmer text and the
prompt templates, saved into `<workdir>/tokenizer` as a `PreTrainedTokenizerFast` dir.

Training sequence (released AffectGPT collater): `[bos] + prompt + target + '###' + [eos]`,
prompt and `target###` tokenized separately without special tokens. The inference prompt
(released `Chat`) is the prompt alone: NO bos, the ids start with `###`. `loss_mask[t] = 1`
when `input_ids[t]` is a target token (answer, `###`, eos): the loss at position t
scores the prediction of `input_ids[t]` from the logits at position t - 1, i.e.
`loss = sum(mask[:, 1:] * nll(logits[:, :-1], input_ids[:, 1:]))`.
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath
import numpy as np

from input_pipeline import files
from input_pipeline import prompts

BOS = '<|im_start|>'
EOS = '<|im_end|>'
# Plain (non-special) added tokens of the synthmer tokenizer: the R1 tags and the answer
# end marker stay single tokens, which keeps the tiny demo model's job short.
SYNTHMER_ADDED = ('<think>', '</think>', '<answer>', '</answer>', prompts.END_OF_ANSWER)
SYNTHMER_VOCAB_SIZE = 1536


def _corpus() -> list[str]:
  from input_pipeline import synthmer

  lines = synthmer.text_corpus()
  for face_or_frame in ('face', 'frame'):
    for question in prompts.QUESTIONS:
      lines.append(prompts.build_prompt('', question, face_or_frame))
  lines.append(prompts.build_target(['happy'], '', 'hybrid', 'labels'))
  lines.append('neutral, positive, negative, yes, no, Yes, No')
  return lines


def build_synthmer_tokenizer(vocab_size: int = SYNTHMER_VOCAB_SIZE):
  """A deterministic byte-level BPE tokenizer (`PreTrainedTokenizerFast`)."""
  from tokenizers import Tokenizer
  from tokenizers import decoders
  from tokenizers import models
  from tokenizers import pre_tokenizers
  from tokenizers import trainers
  from transformers import PreTrainedTokenizerFast

  specials = [BOS, EOS, *prompts.PLACEHOLDER_TOKENS]
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size,
      special_tokens=specials,
      show_progress=False,
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
  )
  tok.train_from_iterator(_corpus(), trainer=trainer)
  tok.add_tokens(list(SYNTHMER_ADDED))
  return PreTrainedTokenizerFast(
      tokenizer_object=tok,
      bos_token=BOS,
      eos_token=EOS,
      pad_token=EOS,
      additional_special_tokens=list(prompts.PLACEHOLDER_TOKENS),
  )


def _prepare_hf(tokenizer):
  """Add the five placeholders; bos <|im_start|>, eos = pad = <|im_end|> when present."""
  vocab = tokenizer.get_vocab()
  missing = [t for t in prompts.PLACEHOLDER_TOKENS if t not in vocab]
  if missing:
    tokenizer.add_tokens(missing, special_tokens=True)
  if BOS in vocab:
    tokenizer.bos_token = BOS
  if EOS in vocab:
    tokenizer.eos_token = EOS
  if tokenizer.bos_token is None or tokenizer.eos_token is None:
    raise ValueError('the tokenizer needs bos and eos tokens (AffectGPT sequence layout)')
  tokenizer.pad_token = tokenizer.eos_token
  return tokenizer


def get_tokenizer(config: Any, workdir: str | None = None):
  """The tokenizer named by `config.data.tokenizer` (see module docstring).

  For 'synthmer' the tokenizer is built once and saved in `<workdir>/tokenizer`; later
  runs (resume, eval) load that copy, so ids never change under a checkpoint.
  """
  from transformers import AutoTokenizer
  from transformers import PreTrainedTokenizerFast

  data = config.data if hasattr(config, 'data') else config
  name = data.tokenizer
  if not name and hasattr(config, 'model'):
    name = config.model.llm.hf_dir
  if not name:
    raise ValueError('config.data.tokenizer is empty and config.model.llm.hf_dir too: name one')
  if name == 'synthmer':
    path = os.path.join(workdir, 'tokenizer') if workdir else None  # workdir: local or gs://
    if path and epath.Path(path, 'tokenizer.json').exists():
      return PreTrainedTokenizerFast.from_pretrained(files.local_dir(path))
    tokenizer = build_synthmer_tokenizer()
    if path:
      files.write_dir(path, tokenizer.save_pretrained)
    return tokenizer
  return _prepare_hf(AutoTokenizer.from_pretrained(name))


def placeholder_ids(tokenizer) -> dict[str, int]:
  """Placeholder token -> id (the model finds fused-feature positions with these)."""
  return {t: tokenizer.convert_tokens_to_ids(t) for t in prompts.PLACEHOLDER_TOKENS}


def _ids(tokenizer, text: str) -> list[int]:
  return tokenizer(text, add_special_tokens=False)['input_ids']


def encode_prompt(tokenizer, prompt: str) -> np.ndarray:
  """int32 [L]: the generation context, the prompt alone (the released `Chat` adds no bos)."""
  return np.asarray(_ids(tokenizer, prompt), np.int32)


def encode_training_example(tokenizer, prompt: str, target: str, max_length: int) -> dict:
  """One training sequence, unpadded.

  Returns:
    input_ids int32 [L] = `[bos] + prompt + (target + '###') + [eos]`, L <= max_length;
    loss_mask float32 [L], 1 on the target, `###` and eos tokens;
    truncated: bool, True when the sequence was cut at max_length (from the end, so
    the prompt and its placeholders survive; the released code drops such samples).
  """
  prompt_ids = np.asarray([tokenizer.bos_token_id] + _ids(tokenizer, prompt), np.int32)
  target_ids = _ids(tokenizer, target + prompts.END_OF_ANSWER) + [tokenizer.eos_token_id]
  ids = np.concatenate([prompt_ids, np.asarray(target_ids, np.int32)])
  mask = np.concatenate(
      [np.zeros(len(prompt_ids), np.float32), np.ones(len(target_ids), np.float32)]
  )
  truncated = len(ids) > max_length
  return dict(input_ids=ids[:max_length], loss_mask=mask[:max_length], truncated=truncated)


def official_stop_sequences(tokenizer) -> tuple[tuple[int, ...], ...]:
  """The released `Chat`'s stop words: eos, `###`, and `##` `#` / `#` `##` as split in words.

  (`###` alone is one token, but after a letter the tokenizer may split it in two.)
  """
  three = _ids(tokenizer, prompts.END_OF_ANSWER)[0]
  two = _ids(tokenizer, 'a##')[1]
  one = _ids(tokenizer, 'a#')[1]
  return ((int(tokenizer.eos_token_id),), (three,), (two, one), (one, two))


def official_eos_ids(tokenizer, llm_dir: str = '') -> tuple[int, ...]:
  """Ids that end generation in the released code: the tokenizer's eos and those of the
  LLM's generation_config.json (Qwen2.5: `<|im_end|>` and `<|endoftext|>`)."""
  ids = [int(tokenizer.eos_token_id)]
  path = os.path.join(llm_dir, 'generation_config.json') if llm_dir else ''
  if path and os.path.exists(path):
    with open(path) as f:
      eos = json.load(f).get('eos_token_id')
    ids += [int(i) for i in (eos if isinstance(eos, list) else [eos] if eos is not None else [])]
  return tuple(dict.fromkeys(ids))


def official_response(tokenizer, token_ids) -> str:
  """The released post-processing of generated ids (stop token included).

  decode with special tokens, keep what follows bos and precedes eos, cut at the last
  `###`, keep what follows the last `Assistant:`, strip.
  """
  text = tokenizer.decode([int(i) for i in token_ids], skip_special_tokens=False)
  if tokenizer.bos_token and tokenizer.bos_token in text:
    text = text.split(tokenizer.bos_token)[1]
  if tokenizer.eos_token and tokenizer.eos_token in text:
    text = text.split(tokenizer.eos_token)[0]
  text = text.rsplit(prompts.END_OF_ANSWER, 1)[0]
  return text.split('Assistant:')[-1].strip()
