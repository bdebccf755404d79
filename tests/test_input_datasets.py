"""grain pipeline: bucketed padding, exact masks, sharding, determinism and iterator state."""

import numpy as np
import pytest

from input_pipeline import datasets
from input_pipeline import decode
from input_pipeline import features
from input_pipeline import preprocess
from input_pipeline import prompts
from input_pipeline import synthmer
from input_pipeline import tokenization
from input_pipeline.config import default_data_config

pytest.importorskip('transformers')


def make_data(**kw):
  base = dict(
      image_size=32,
      max_length=384,
      length_buckets=[128, 192, 256],
      batch_size=4,
      eval_batch_size=4,
      synthmer=dict(num_sft=24, num_rl=8, num_eval=6, cache_dir=''),
  )
  base.update(kw)
  return default_data_config(**base)


@pytest.fixture(scope='module')
def tokenizer():
  return tokenization.build_synthmer_tokenizer()


@pytest.fixture(scope='module')
def samples():
  return synthmer.generate_split(make_data(), 'sft', cache_dir='')


def test_bucket_length():
  assert datasets.bucket_length(100, [128, 256, 512]) == 128
  assert datasets.bucket_length(128, [128, 256, 512]) == 128
  assert datasets.bucket_length(129, [128, 256, 512]) == 256
  assert datasets.buckets(make_data(max_length=200)) == [128, 192, 200]


def test_train_batch_exact(tokenizer, samples):
  data = make_data(target='think_answer', question='description')
  batch = next(datasets.make_train_iterator(data, samples, tokenizer))
  arrays, meta = datasets.split_meta(batch)
  assert set(arrays) == {'input_ids', 'attention_mask', 'loss_mask', 'frames', 'audio'}
  by_name = {s['name']: s for s in samples}
  rows = []
  for name in meta['name']:
    s = by_name[name]
    prompt = prompts.build_prompt(s['subtitle'], 'description', 'face')
    target = prompts.build_target(s['labels'], s['reason'], 'think_answer')
    rows.append(tokenization.encode_training_example(tokenizer, prompt, target, 384))
  longest = max(len(r['input_ids']) for r in rows)
  t = datasets.bucket_length(longest, [128, 192, 256, 384])
  assert arrays['input_ids'].shape == (4, t) and arrays['input_ids'].dtype == np.int32
  for i, r in enumerate(rows):
    n = len(r['input_ids'])
    np.testing.assert_array_equal(arrays['input_ids'][i, :n], r['input_ids'])
    assert (arrays['input_ids'][i, n:] == tokenizer.pad_token_id).all()
    assert arrays['attention_mask'][i].tolist() == [1] * n + [0] * (t - n)
    np.testing.assert_array_equal(arrays['loss_mask'][i, :n], r['loss_mask'])
    assert arrays['loss_mask'][i, n:].sum() == 0
    masked = arrays['input_ids'][i][arrays['loss_mask'][i] > 0]
    s = by_name[meta['name'][i]]
    assert tokenizer.decode(masked) == (
        f"<think>{s['reason']}</think><answer>{', '.join(s['labels'])}" '</answer>###<|im_end|>'
    )
    np.testing.assert_allclose(arrays['frames'][i], preprocess.clip_preprocess(s['frames'], 32))
    np.testing.assert_allclose(
        arrays['audio'][i],
        preprocess.wav2vec2_normalize(decode.clip_audio(s['audio'], 16000, 8, 2.0)),
    )
  assert arrays['frames'].shape == (4, 8, 3, 32, 32) and arrays['audio'].shape == (4, 8, 32000)
  assert meta['labels'] == [by_name[n]['labels'] for n in meta['name']]


def test_hybrid_questions_and_targets(tokenizer, samples):
  it = datasets.make_train_iterator(make_data(), samples, tokenizer)
  questions = []
  for _ in range(6):
    batch = next(it)
    for i, q in enumerate(batch['meta']['question']):
      questions.append(q)
      text = tokenizer.decode(batch['input_ids'][i][batch['loss_mask'][i] > 0])
      if q == 'labels':
        assert text.startswith("The character's emotional state is ")
      else:
        assert text == batch['meta']['reason'][i] + '###<|im_end|>'
  assert set(questions) == {'labels', 'description'}


def test_iterator_state_and_determinism(tokenizer, samples):
  data = make_data()
  it = datasets.make_train_iterator(data, samples, tokenizer)
  next(it)
  state = it.get_state()
  after = [next(it) for _ in range(3)]
  again = datasets.make_train_iterator(data, samples, tokenizer)
  again.set_state(state)
  for a, b in zip(after, [next(again) for _ in range(3)], strict=True):
    assert a['meta']['name'] == b['meta']['name'] and a['meta']['question'] == b['meta']['question']
    np.testing.assert_array_equal(a['input_ids'], b['input_ids'])
    np.testing.assert_array_equal(a['frames'], b['frames'])
  other = datasets.make_train_iterator(make_data(shuffle_seed=1), samples, tokenizer)
  assert [n for _ in range(3) for n in next(other)['meta']['name']] != [
      n for b in after for n in b['meta']['name']
  ]


def test_process_sharding(tokenizer, samples):
  data = make_data()
  seen = []
  for p in range(2):
    it = datasets.make_train_iterator(
        data, samples, tokenizer, process_index=p, process_count=2, num_epochs=1
    )
    names = [n for batch in it for n in batch['meta']['name']]
    seen.append(set(names))
  assert len(seen[0]) == len(seen[1]) == 12 and not seen[0] & seen[1]
  batch = next(
      datasets.make_train_iterator(data, samples, tokenizer, process_index=1, process_count=2)
  )
  assert batch['input_ids'].shape[0] == 2
  with pytest.raises(ValueError, match='divisible'):
    datasets.make_train_iterator(data, samples, tokenizer, process_index=0, process_count=3)


def test_prompt_only_left_padded(tokenizer, samples):
  batch = next(
      datasets.make_train_iterator(
          make_data(), samples, tokenizer, prompt_only=True, question='labels'
      )
  )
  assert 'loss_mask' not in batch
  t = batch['input_ids'].shape[1]
  assert t in (128, 192, 256, 384)
  for i in range(4):
    n = int(batch['attention_mask'][i].sum())
    assert batch['attention_mask'][i].tolist() == [0] * (t - n) + [1] * n
    # The released inference prompt has no bos: it starts with ###Human:
    assert tokenizer.decode(batch['input_ids'][i, t - n :]).startswith('###Human:')
    assert tokenizer.decode(batch['input_ids'][i, t - n :]).endswith(
        'emotional states of the character. ###Assistant: '
    )


def test_eval_batches_cover_once(tokenizer, samples):
  data = make_data()
  ev = samples[:10]
  names, valid = [], []
  for p in range(2):
    batches = list(datasets.make_eval_batches(data, ev, tokenizer, p, 2))
    assert len(batches) == 3  # ceil(10 / 4) global batches
    for b in batches:
      assert b['input_ids'].shape[0] == 2
      names += b['meta']['name']
      valid += b['meta']['valid']
  assert [n for n, v in zip(names, valid, strict=True) if v] == [s['name'] for s in ev]
  assert sum(valid) == 10 and len(valid) == 12
  assert all(
      q == 'labels'
      for b in datasets.make_eval_batches(data, ev, tokenizer)
      for q in b['meta']['question']
  )
  one = datasets.make_batch(data, ev[:3], tokenizer, question='description')
  assert one['meta']['name'] == [s['name'] for s in ev[:3]] and one['meta']['valid'] == [True] * 3
  assert all(
      tokenizer.decode(row).endswith('provide your reasoning process. ###Assistant: ')
      for row in one['input_ids']
  )


def test_feature_batches(tokenizer, samples, tmp_path):
  rng = np.random.default_rng(0)
  feats = {s['name']: (rng.normal(size=(8, 16)), rng.normal(size=(8, 12))) for s in samples}
  names = list(feats)
  for shard, part in (('a', names[:5]), ('b', names[5:])):
    writer = features.ShardWriter(str(tmp_path), shard)
    for name in part:
      writer.add(name, {}, feats[name][0].astype(np.float32), feats[name][1].astype(np.float16))
    writer.close()
  features.write_manifest(str(tmp_path), {'test': 1})
  data = make_data(features_dir=str(tmp_path))
  batch = next(datasets.make_train_iterator(data, samples, tokenizer))
  assert 'frames' not in batch and 'audio' not in batch
  assert batch['vision_feats'].shape == (4, 8, 16) and batch['audio_feats'].shape == (4, 8, 12)
  assert batch['audio_feats'].dtype == np.float32
  for i, name in enumerate(batch['meta']['name']):
    np.testing.assert_allclose(batch['vision_feats'][i], feats[name][0].astype(np.float32))
    np.testing.assert_allclose(
        batch['audio_feats'][i], feats[name][1].astype(np.float16).astype(np.float32)
    )
  with pytest.raises(KeyError, match="no features for clip 'nope'"):
    datasets.media_arrays({'name': 'nope'}, data)


def test_position_restores_with_another_process_count(tokenizer, samples):
  """3 global batches read by 2 processes, then continued by 1 (and the other way round)."""
  data = make_data()
  single = datasets.make_train_iterator(data, samples, tokenizer)
  expected = [next(single)['meta']['name'] for _ in range(5)]
  pair = [datasets.make_train_iterator(data, samples, tokenizer, p, 2) for p in range(2)]
  for step in range(3):
    assert next(pair[0])['meta']['name'] + next(pair[1])['meta']['name'] == expected[step]
  resumed = datasets.make_train_iterator(data, samples, tokenizer)
  resumed.set_state(pair[1].get_state())
  assert [next(resumed)['meta']['name'] for _ in range(2)] == expected[3:]
  back = [datasets.make_train_iterator(data, samples, tokenizer, p, 2) for p in range(2)]
  state = single.get_state()
  single_next = next(single)['meta']['name']
  for it in back:
    it.set_state(state)
  assert next(back[0])['meta']['name'] + next(back[1])['meta']['name'] == single_next
  with pytest.raises(ValueError, match='saved data position is for global_batch=4'):
    datasets.make_train_iterator(make_data(batch_size=2), samples, tokenizer).set_state(state)


def test_worker_processes_give_the_same_batches(tokenizer, samples):
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
  in_process = datasets.make_train_iterator(make_data(), samples, tokenizer)
  workers = datasets.make_train_iterator(make_data(worker_count=1), samples, tokenizer)
  for _ in range(2):
    a, b = next(in_process), next(workers)
    assert a['meta']['name'] == b['meta']['name'] and a['meta']['question'] == b['meta']['question']
    np.testing.assert_array_equal(a['input_ids'], b['input_ids'])
    np.testing.assert_array_equal(a['audio'], b['audio'])
  assert b['meta']['probes'][0] == {s['name']: s for s in samples}[b['meta']['name'][0]]['probes']
