"""grain datasets: sample dicts -> padded, bucketed model batches.

Batch (per host; the global batch is `config.data.batch_size`, each of the
`process_count` hosts gets `batch_size // process_count` rows of it, see
`GlobalBatchSampler`):

  input_ids       int32   [B, T]  training: right-padded; prompt-only: left-padded
  attention_mask  int32   [B, T]  1 on real tokens (eos included), 0 on padding
  loss_mask       float32 [B, T]  training only; 1 on answer, `###` and eos tokens.
                                  Convention: loss at t predicts input_ids[t] from the
                                  logits at t - 1 (use mask[:, 1:] with logits[:, :-1]).
  frames          float32 [B, F, 3, S, S]  CLIP-normalized        } or, with
  audio           float32 [B, C, L]        Wav2Vec2-normalized     } features_dir,
  vision_feats    float32 [B, F, Dv]                               } these two instead
  audio_feats     float32 [B, C, Da]                               }
  meta            dict of host-only lists: name, labels, valence, reason, subtitle,
                  question, cues / probes / valence (None when the sample has none),
                  truncated, valid.

T is the smallest of `config.data.length_buckets` (plus max_length) that holds the
longest row, so jit sees a handful of shapes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping, Sequence

import grain
import numpy as np

from input_pipeline import features
from input_pipeline import prompts
from input_pipeline import tokenization

META_KEYS = (
    'name',
    'labels',
    'valence',
    'reason',
    'subtitle',
    'question',
    'cues',
    'probes',
    'truncated',
    'valid',
)


def _data(config: Any):
  return config.data if hasattr(config, 'data') and not isinstance(config, Mapping) else config


def buckets(data: Any) -> list[int]:
  """Sorted bucket lengths, capped at and including max_length."""
  max_length = int(data.max_length)
  b = sorted(
      {int(x) for x in (data.get('length_buckets') or []) if int(x) <= max_length} | {max_length}
  )
  return b


def bucket_length(length: int, bucket_lengths: Sequence[int]) -> int:
  for b in bucket_lengths:
    if length <= b:
      return b
  return bucket_lengths[-1]


# ----------------------------------------------------------------------------- sources


class SampleSource:
  """grain random-access source over in-memory sample dicts (short repr for grain logs)."""

  def __init__(self, samples: Sequence[Mapping]):
    self._samples = samples

  def __len__(self) -> int:
    return len(self._samples)

  def __getitem__(self, index: int) -> Mapping:
    return self._samples[int(index)]

  def __repr__(self) -> str:
    return f'SampleSource(num_samples={len(self._samples)})'


# ----------------------------------------------------------------------------- per example


def media_arrays(sample: Mapping, data: Any) -> dict:
  """The model-input media of one sample (see module docstring), numpy.

  With `data.features_dir` (a features directory resolved by the run, holding
  manifest.json) these are the clip's encoder features, read by name; no media is opened.
  """
  features_dir = data.get('features_dir')
  if features_dir:
    return features.open_store(features_dir)[sample['name']]
  return features.encoder_inputs(sample, data)


def _meta(sample: Mapping, question: str, truncated: bool) -> dict:
  return dict(
      name=sample['name'],
      labels=list(sample.get('labels') or []),
      valence=sample.get('valence'),
      reason=sample.get('reason') or '',
      subtitle=sample.get('subtitle') or '',
      question=question,
      cues=sample.get('cues'),
      probes=sample.get('probes'),
      truncated=truncated,
      valid=True,
  )


def over_length_names(samples: Sequence[Mapping], config: Any, tokenizer) -> list[str]:
  """Names of the samples with a training sequence longer than `data.max_length`.

  A sample counts when any question it may be asked (both under `question='hybrid'`) gives
  an over-length `[bos] + prompt + target + ### + [eos]`. The released code drops such a
  draw and takes another sample; `data.over_length='drop'` removes the sample up front.
  """
  d = _data(config)
  limit = int(d.max_length)
  asked = ('description', 'labels') if d.question == 'hybrid' else (d.question,)
  names = []
  for sample in samples:
    reason = sample.get('reason') or ''
    for q in dict.fromkeys(prompts.choose_question(q, d.target, reason, None) for q in asked):
      prompt = prompts.build_prompt(
          sample.get('subtitle') or '', q, d.face_or_frame, d.get('tokens_per_modality')
      )
      target = prompts.build_target(sample.get('labels') or [], reason, d.target, q)
      if tokenization.encode_training_example(tokenizer, prompt, target, limit)['truncated']:
        names.append(sample['name'])
        break
  return names


@dataclasses.dataclass
class EncodeExample(grain.transforms.RandomMap):
  """Sample dict -> unpadded example (ids, masks, media, meta).

  The random part is the question of the 'hybrid' setting (uniform per sample and
  epoch, as in the released SFT); grain derives the rng from the sampler seed and the
  record index, so it is reproducible and restored with the iterator state.
  """

  data: Any
  tokenizer: Any
  prompt_only: bool = False
  question: str | None = None

  def random_map(self, sample: Mapping, rng: np.random.Generator) -> dict:
    d = self.data
    reason = sample.get('reason') or ''
    question = prompts.choose_question(self.question or d.question, d.target, reason, rng)
    prompt = prompts.build_prompt(
        sample.get('subtitle') or '', question, d.face_or_frame, d.get('tokens_per_modality')
    )
    if self.prompt_only:
      ids = tokenization.encode_prompt(self.tokenizer, prompt)
      truncated = len(ids) > int(d.max_length)
      ids = ids[-int(d.max_length) :]  # keep the end: the question and ###Assistant:
      example = {'input_ids': ids}
    else:
      target = prompts.build_target(sample.get('labels') or [], reason, d.target, question)
      enc = tokenization.encode_training_example(self.tokenizer, prompt, target, int(d.max_length))
      truncated = enc['truncated']
      example = {'input_ids': enc['input_ids'], 'loss_mask': enc['loss_mask']}
    example.update(media_arrays(sample, d))
    example['meta'] = _meta(sample, question, truncated)
    return example


def collate(
    examples: Sequence[dict], bucket_lengths: Sequence[int], pad_id: int, left_pad: bool
) -> dict:
  """Pad token arrays to the batch's bucket length and stack the rest."""
  lengths = [len(e['input_ids']) for e in examples]
  t = bucket_length(max(lengths), bucket_lengths)
  b = len(examples)
  ids = np.full((b, t), pad_id, np.int32)
  attn = np.zeros((b, t), np.int32)
  has_loss = 'loss_mask' in examples[0]
  loss = np.zeros((b, t), np.float32)
  for i, (e, n) in enumerate(zip(examples, lengths, strict=True)):
    sl = slice(t - n, t) if left_pad else slice(0, n)
    ids[i, sl] = e['input_ids']
    attn[i, sl] = 1
    if has_loss:
      loss[i, sl] = e['loss_mask']
  batch = {'input_ids': ids, 'attention_mask': attn}
  if has_loss:
    batch['loss_mask'] = loss
  for key in ('frames', 'audio', 'vision_feats', 'audio_feats'):
    if key in examples[0]:
      batch[key] = np.stack([e[key] for e in examples]).astype(np.float32)
  batch['meta'] = {k: [e['meta'][k] for e in examples] for k in META_KEYS}
  return batch


@dataclasses.dataclass
class _Collate:
  bucket_lengths: Sequence[int]
  pad_id: int
  left_pad: bool

  def __call__(self, examples):
    return collate(examples, self.bucket_lengths, self.pad_id, self.left_pad)


def pad_tokens(batch: dict, length: int, pad_id: int, left_pad: bool) -> dict:
  """The batch with its token arrays padded to `length` (>= their length); media and meta as is.

  Multi-host runs use it to give every host the same T: each host buckets its own rows.
  """
  t = batch['input_ids'].shape[1]
  if length == t:
    return batch
  if length < t:
    raise ValueError(f'cannot pad a batch of length {t} to {length}')
  out = dict(batch)
  for key, value in (('input_ids', pad_id), ('attention_mask', 0), ('loss_mask', 0)):
    if key in batch:
      widths = ((0, 0), (length - t, 0) if left_pad else (0, length - t))
      out[key] = np.pad(batch[key], widths, constant_values=value)
  return out


def split_meta(batch: dict) -> tuple[dict, dict]:
  """(device arrays, host-only metadata) of a batch."""
  arrays = {k: v for k, v in batch.items() if k != 'meta'}
  return arrays, batch['meta']


def per_process_batch_size(global_batch: int, process_count: int) -> int:
  if global_batch % process_count:
    raise ValueError(
        f'config.data.batch_size={global_batch} is not divisible by the '
        f'{process_count} processes'
    )
  return global_batch // process_count


# ----------------------------------------------------------------------------- loaders


# Records each train iterator reads ahead (in batches of this process) and its read threads.
PREFETCH_BATCHES = 2
READ_THREADS = 2


class GlobalBatchSampler:
  """A grain sampler under which every host reads its own rows of the same global batches.

  All hosts walk one shuffled order of the records (a `grain.samplers.IndexSampler`
  without sharding, so one process reads exactly what it always read). Global batch t
  holds records `t * B ... t * B + B - 1` of that order; this host reads rows `rows` of
  each (its rows in the device layout, `mer_jax.train.mesh.process_rows`). So the global
  batch at every step, and each record's rng (the hybrid question), are the same for any
  number of processes; sharding by record index would give each host other records.

  The data loader asks for position `j * shard_count + shard_index` for its local item j
  (grain's sharded index space); local item j is row `rows[j % b]` of global batch
  `start_step + j // b`, with b = len(rows).
  """

  def __init__(
      self,
      num_records: int,
      global_batch: int,
      rows: Sequence[int],
      shard_options: grain.sharding.ShardOptions,
      seed: int,
      num_epochs: int | None,
      start_step: int = 0,
  ):
    self._inner = grain.samplers.IndexSampler(
        num_records=num_records, shuffle=True, seed=seed, num_epochs=num_epochs
    )
    self._global_batch = int(global_batch)
    self._rows = tuple(int(r) for r in rows)
    self._shard_count = shard_options.shard_count
    self._start = int(start_step)
    self._repr = (
        f'GlobalBatchSampler(num_records={num_records}, global_batch={global_batch}, '
        f'rows={self._rows}, seed={seed}, num_epochs={num_epochs}, start_step={start_step})'
    )
    steps = max(len(self._inner) // self._global_batch - self._start, 0)
    self._len = steps * len(self._rows) * self._shard_count

  def __len__(self) -> int:
    return self._len

  def __repr__(self) -> str:
    return self._repr

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    if index < 0 or index >= self._len:
      raise IndexError(f'sampler index {index} out of range [0, {self._len})')
    step, row = divmod(index // self._shard_count, len(self._rows))
    record = self._inner[(self._start + step) * self._global_batch + self._rows[row]]
    return grain.RecordMetadata(index=index, record_key=record.record_key, rng=record.rng)


class TrainIterator:
  """The batches of `make_train_iterator`, with a position that any process count restores.

  Every process reads its rows of the same global batches (`GlobalBatchSampler`), so the
  position is one number, the global batches read so far; `get_state()` returns it with
  what identifies the stream (records, global batch, seed), and `set_state()` restarts the
  grain loader at that batch, whatever the process count or worker count of the run that
  saved it.
  """

  def __init__(self, make_loader, identity: dict):
    self._make_loader = make_loader  # start step -> grain iterator
    self._identity = dict(identity)
    self._step = 0
    self._it = make_loader(0)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = next(self._it)
    self._step += 1
    return batch

  def get_state(self) -> dict:
    return dict(self._identity, global_batches=self._step)

  def set_state(self, state: Mapping) -> None:
    for key, value in self._identity.items():
      if state.get(key) != value:
        raise ValueError(
            f'the saved data position is for {key}={state.get(key)!r}, but this run has '
            f'{key}={value!r} (another dataset or config.data.batch_size/shuffle_seed)'
        )
    self._step = int(state['global_batches'])
    self._it = self._make_loader(self._step)


def make_train_iterator(
    config: Any,
    samples: Sequence[Mapping] | Any,
    tokenizer,
    process_index: int = 0,
    process_count: int = 1,
    *,
    prompt_only: bool = False,
    question: str | None = None,
    num_epochs: int | None = None,
    rows: Sequence[int] | None = None,
) -> TrainIterator:
  """Shuffled, sharded, infinitely repeating batches; checkpointable.

  Args:
    config: the run config (or config.data).
    samples: a list of sample dicts, or any random-access source of them (e.g.
      `array_record.SampleArrayRecordSource`).
    tokenizer: from `tokenization.get_tokenizer`.
    process_index, process_count: this host's shard (`jax.process_index()`,
      `jax.process_count()`). Every host reads its rows of the same global batches
      (`GlobalBatchSampler`), so the global batch at each step does not depend on the
      number of processes.
    prompt_only: left-padded prompts without targets (GRPO sampling).
    question: overrides config.data.question.
    num_epochs: None repeats forever.
    rows: which rows of each global batch this host reads (the rows its devices hold,
      `mer_jax.train.mesh.process_rows`); default the process-major block
      `process_index * b ... (process_index + 1) * b - 1`.

  With `config.data.worker_count > 0` grain runs the per-example work in worker
  processes; absl flags must be parsed first (true under `absl.app.run`).

  Returns:
    a `TrainIterator`: `next(it)` is a batch (module docstring); `it.get_state()` /
    `it.set_state(state)` save and restore the position (the shuffle order and the
    hybrid question choice are functions of seed and position), for any process count.
  """
  d = _data(config)
  source = SampleSource(samples) if isinstance(samples, (list, tuple)) else samples
  if len(source) == 0:
    raise ValueError('make_train_iterator got no samples')
  batch = per_process_batch_size(int(d.batch_size), process_count)
  if rows is None:
    rows = range(process_index * batch, (process_index + 1) * batch)
  if len(rows) != batch:
    raise ValueError(
        f'rows: {len(rows)} rows given, but each of the {process_count} processes '
        f'reads {batch} rows of the global batch of {d.batch_size}'
    )
  shard_options = grain.sharding.ShardOptions(
      shard_index=process_index, shard_count=process_count, drop_remainder=True
  )
  ops = [
      EncodeExample(d, tokenizer, prompt_only=prompt_only, question=question),
      grain.transforms.Batch(
          batch,
          drop_remainder=True,
          batch_fn=_Collate(buckets(d), tokenizer.pad_token_id, prompt_only),
      ),
  ]

  def make_loader(start_step: int):
    sampler = GlobalBatchSampler(
        len(source),
        int(d.batch_size),
        rows,
        shard_options,
        seed=int(d.shuffle_seed),
        num_epochs=num_epochs,
        start_step=start_step,
    )
    loader = grain.DataLoader(
        data_source=source,
        sampler=sampler,
        operations=ops,
        shard_options=shard_options,
        worker_count=int(d.get('worker_count') or 0),
        # grain's default reads 500 records ahead on 16 threads per iterator: on a small
        # CPU that prefetch (shuffled-index math + encoding) was half the CPU time of a
        # test job.
        read_options=grain.ReadOptions(
            num_threads=READ_THREADS, prefetch_buffer_size=PREFETCH_BATCHES * batch
        ),
    )
    return iter(loader)

  identity = {
      'num_records': len(source),
      'global_batch': int(d.batch_size),
      'seed': int(d.shuffle_seed),
  }
  return TrainIterator(make_loader, identity)


def _resolve_eval_question(d: Any, question: str | None) -> str:
  q = question or d.question
  return 'labels' if q == 'hybrid' else q


def make_batch(
    config: Any,
    samples: Sequence[Mapping],
    tokenizer,
    *,
    prompt_only: bool = True,
    question: str | None = None,
    valid: Sequence[bool] | None = None,
) -> dict:
  """One batch of exactly these samples, in order (left-padded prompts by default).

  For generation outside the iterators (e.g. GRPO re-prompting, demos); `question`
  defaults to config.data.question with 'hybrid' resolved to 'labels'.
  """
  d = _data(config)
  encode = EncodeExample(
      d, tokenizer, prompt_only=prompt_only, question=_resolve_eval_question(d, question)
  )
  rng = np.random.default_rng(0)  # unused: the question is fixed
  examples = [encode.random_map(s, rng) for s in samples]
  for ex, ok in zip(examples, valid if valid is not None else [True] * len(examples), strict=True):
    ex['meta']['valid'] = bool(ok)
  return collate(examples, buckets(d), tokenizer.pad_token_id, prompt_only)


def make_eval_batches(
    config: Any,
    samples: Sequence[Mapping],
    tokenizer,
    process_index: int = 0,
    process_count: int = 1,
    *,
    question: str | None = None,
    prompt_only: bool = True,
    batch_size: int | None = None,
) -> Iterator[dict]:
  """Every sample once, in order, as left-padded prompt batches (generation/eval).

  The global eval batch is `config.data.eval_batch_size`; all hosts yield the same
  number of batches: the sample list is padded (repeating the last sample, with
  `meta['valid'] = False`) to a multiple of the global batch and each host takes its
  contiguous block. `question` defaults to config.data.question, with 'hybrid'
  resolved to 'labels' (the released inference question). With prompt_only=False the
  batches carry training targets (teacher-forced eval loss).
  """
  d = _data(config)
  global_batch = int(batch_size or d.eval_batch_size)
  per_host = per_process_batch_size(global_batch, process_count)
  n = len(samples)
  if n == 0:
    return
  padded = -(-n // global_batch) * global_batch
  per_proc = padded // process_count
  index = list(range(process_index * per_proc, (process_index + 1) * per_proc))
  for start in range(0, len(index), per_host):
    chunk = index[start : start + per_host]
    yield make_batch(
        d,
        [samples[min(i, n - 1)] for i in chunk],
        tokenizer,
        prompt_only=prompt_only,
        question=question,
        valid=[i < n for i in chunk],
    )
