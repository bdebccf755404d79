"""Prompts (verbatim from design.md), targets, the synthmer tokenizer and label masks."""

import numpy as np
import pytest

from input_pipeline import prompts
from input_pipeline import tokenization

pytest.importorskip('transformers')

FACE_PROMPT = (
    '###Human: The audio and video merged info is: <Multi><MultiHere></Multi>. The audio content '
    'is as follows: <Audio><AudioHere></Audio>. Meanwhile, we uniformly sample raw frames from '
    'the video and extract faces from these frames: <Video><FaceHere></Video>. The subtitle of '
    'this video is: <Subtitle>I lost the keys.</Subtitle>. Now, please answer my question based '
    "on all the provided information. Please infer the person's emotional state and provide your "
    'reasoning process. ###Assistant: '
)


def test_face_prompt_verbatim():
  assert (
      prompts.build_prompt(
          'I lost the keys.', 'description', 'face', {'multi': 1, 'audio': 1, 'video': 1}
      )
      == FACE_PROMPT
  )


def test_frame_prompt_and_token_copies():
  p = prompts.build_prompt('Hi.', 'labels', 'frame', {'multi': 2, 'audio': 3, 'video': 4})
  assert (
      'Meanwhile, we uniformly sample raw frames from the video: '
      '<Video><FrameHere><FrameHere><FrameHere><FrameHere></Video>. '
  ) in p
  assert '<Multi><MultiHere><MultiHere></Multi>' in p
  assert '<Audio>' + '<AudioHere>' * 3 + '</Audio>' in p
  assert '<FaceHere>' not in p
  assert p.endswith(
      'Please recognize all possible emotional states of the character. ###Assistant: '
  )
  with pytest.raises(ValueError):
    prompts.build_prompt('Hi.', 'labels', 'faces', None)


def test_targets():
  assert (
      prompts.build_target(['happy', 'nervous'], 'He smiles.', 'think_answer')
      == '<think>He smiles.</think><answer>happy, nervous</answer>'
  )
  assert prompts.build_target([], 'x', 'answer') == '<answer>neutral</answer>'
  assert (
      prompts.build_target(['sad'], 'r', 'hybrid', 'labels')
      == "The character's emotional state is sad."
  )
  assert prompts.build_target(['sad'], ' He cries. ', 'hybrid', 'description') == 'He cries.'


def test_choose_question():
  rng = np.random.default_rng(0)
  picks = {prompts.choose_question('hybrid', 'hybrid', 'reason', rng) for _ in range(50)}
  assert picks == {'description', 'labels'}
  # No reason text: a description question cannot be answered under the hybrid target.
  assert {prompts.choose_question('hybrid', 'hybrid', '', rng) for _ in range(20)} == {'labels'}
  assert prompts.choose_question('description', 'think_answer', '', rng) == 'description'


@pytest.fixture(scope='module')
def tokenizer():
  return tokenization.build_synthmer_tokenizer()


def test_synthmer_tokenizer_specials(tokenizer, tmp_path):
  assert len(tokenizer) < 2048
  assert tokenizer.bos_token == '<|im_start|>'
  assert tokenizer.eos_token == tokenizer.pad_token == '<|im_end|>'
  ids = tokenization.placeholder_ids(tokenizer)
  assert len(set(ids.values())) == 5
  text = prompts.build_prompt(
      'Ugh, what is that smell?', 'labels', 'face', {'multi': 1, 'audio': 2, 'video': 1}
  )
  enc = tokenizer(text, add_special_tokens=False)['input_ids']
  assert enc.count(ids['<AudioHere>']) == 2 and enc.count(ids['<FaceHere>']) == 1
  assert tokenizer.decode(enc) == text  # byte-level BPE is lossless
  for tag in ('<think>', '</think>', '<answer>', '</answer>', '###'):
    assert len(tokenizer(tag, add_special_tokens=False)['input_ids']) == 1


def test_get_tokenizer_saves_and_reloads(tmp_path):
  import ml_collections

  config = ml_collections.ConfigDict({'data': {'tokenizer': 'synthmer'}})
  tok1 = tokenization.get_tokenizer(config, str(tmp_path))
  assert (tmp_path / 'tokenizer' / 'tokenizer.json').exists()
  tok2 = tokenization.get_tokenizer(config, str(tmp_path))
  text = FACE_PROMPT + '<think>x</think><answer>joy</answer>###'
  assert tok1(text)['input_ids'] == tok2(text)['input_ids']


def test_training_example_mask_exact(tokenizer):
  prompt = prompts.build_prompt('Hi.', 'labels', 'face')
  target = prompts.build_target(['happy', 'sad'], 'He smiles.', 'think_answer')
  ex = tokenization.encode_training_example(tokenizer, prompt, target, 1024)
  p = tokenizer(prompt, add_special_tokens=False)['input_ids']
  t = tokenizer(target + '###', add_special_tokens=False)['input_ids']
  expected = [tokenizer.bos_token_id] + p + t + [tokenizer.eos_token_id]
  assert ex['input_ids'].tolist() == expected
  assert ex['input_ids'].dtype == np.int32 and ex['loss_mask'].dtype == np.float32
  assert ex['loss_mask'].tolist() == [0.0] * (1 + len(p)) + [1.0] * (len(t) + 1)
  assert not ex['truncated']
  # The masked tokens decode to exactly answer + ### + eos.
  masked = ex['input_ids'][ex['loss_mask'] > 0]
  assert tokenizer.decode(masked) == target + '###<|im_end|>'
  cut = tokenization.encode_training_example(tokenizer, prompt, target, len(expected) - 3)
  assert cut['truncated'] and len(cut['input_ids']) == len(expected) - 3
  assert cut['input_ids'].tolist() == expected[:-3]


def test_hf_tokenizer_dir_gets_placeholders_and_qwen_specials(tmp_path):
  """An HF tokenizer dir without placeholders (like Qwen2.5) is prepared as the released code does."""
  import ml_collections
  from tokenizers import Tokenizer
  from tokenizers import models
  from tokenizers import pre_tokenizers
  from tokenizers import trainers
  from transformers import PreTrainedTokenizerFast

  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  trainer = trainers.BpeTrainer(
      vocab_size=400,
      special_tokens=['<|endoftext|>', '<|im_start|>', '<|im_end|>'],
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False,
  )
  tok.train_from_iterator(['hello world, the subtitle of this video'], trainer=trainer)
  base_size = tok.get_vocab_size()
  # Qwen2.5-Instruct ships eos <|im_end|>, pad <|endoftext|> and no bos token.
  PreTrainedTokenizerFast(
      tokenizer_object=tok, eos_token='<|im_end|>', pad_token='<|endoftext|>'
  ).save_pretrained(tmp_path / 'qwen_like')
  config = ml_collections.ConfigDict({'data': {'tokenizer': str(tmp_path / 'qwen_like')}})
  t = tokenization.get_tokenizer(config, str(tmp_path / 'work'))
  assert (t.bos_token, t.eos_token, t.pad_token) == ('<|im_start|>', '<|im_end|>', '<|im_end|>')
  ids = tokenization.placeholder_ids(t)
  assert sorted(ids.values()) == list(range(base_size, base_size + 5))  # appended
  enc = t(prompts.build_prompt('hello', 'labels', 'frame'), add_special_tokens=False)['input_ids']
  assert (
      enc.count(ids['<FrameHere>'])
      == enc.count(ids['<MultiHere>'])
      == enc.count(ids['<AudioHere>'])
      == 1
  )
  assert not (tmp_path / 'work' / 'tokenizer').exists()  # only the synthmer tokenizer is saved
