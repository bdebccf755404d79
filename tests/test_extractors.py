"""The evaluation protocol's label extractors: the official two-step LLM extraction.

References: transformers `generate` (greedy, repetition penalty) on a tiny random Qwen2
with a chat template, for our sampler-driven chat LLM; canned LLM answers for the
two-step logic (answer tags, caching, the sentiment step's input).
"""

import jax
import numpy as np
import pytest

from mer_jax.train import extractors
from mer_jax.train import mesh as mesh_lib
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _llm_dir(tmp_path):
  """A tiny random Qwen2 with a byte-level BPE tokenizer and a Qwen-style chat template."""
  from input_pipeline import tokenization

  tokenizer = tokenization.build_synthmer_tokenizer()
  hf_dir, hf = fx.make_qwen2(str(tmp_path / "qwen"), vocab_size=len(tokenizer) + 8)
  tokenizer.chat_template = CHAT_TEMPLATE
  tokenizer.save_pretrained(hf_dir)
  return hf_dir, hf


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
  hf_dir, hf = _llm_dir(tmp_path_factory.mktemp("extractor_llm"))
  mesh = mesh_lib.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
  return extractors.ChatLLM.load(hf_dir, mesh), hf


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_chat_generation_equals_transformers(llm, penalty):
  ours, hf = llm
  # The second prompt holds the tokens the unpenalized model repeats ('clues', 'the'), so
  # the penalty on prompt tokens changes the answer.
  prompts = ["please identify the emotional states", "she smiles ; clues clues the assistant"]
  got = ours.generate_ids(
      prompts, jax.random.PRNGKey(0), temperature=0.0, penalty=penalty, max_new_tokens=16
  )
  for prompt, ids_out in zip(prompts, got, strict=True):
    ids = torch.tensor([ours.chat_ids(prompt)])
    with torch.no_grad():
      out = hf.generate(
          ids,
          attention_mask=torch.ones_like(ids),
          max_new_tokens=16,
          do_sample=False,
          repetition_penalty=penalty,
          eos_token_id=list(ours.eos_ids),
          pad_token_id=ours.tokenizer.pad_token_id,
      )
    assert ids_out == out[0, ids.shape[1] :].tolist(), (penalty, prompt)


def test_sampling_is_deterministic_for_a_seed(llm):
  ours, _ = llm
  prompts = ["she smiles", "please identify"] * 2
  a = ours.generate(prompts, jax.random.PRNGKey(1), max_new_tokens=8)
  b = ours.generate(prompts, jax.random.PRNGKey(1), max_new_tokens=8)
  c = ours.generate(prompts, jax.random.PRNGKey(2), max_new_tokens=8)
  assert a == b and a != c


class _CannedLLM:
  """Answers step 1 with '[a, b]' built from the words of the input, step 2 by rule."""

  def __init__(self):
    self.prompts = []

  def generate(self, prompts, rng, desc=""):
    del rng, desc
    self.prompts += prompts
    out = []
    for p in prompts:
      inp = p.rsplit("Input: ", 1)[1].rsplit("; Output: ", 1)[0]
      if p.startswith("Please act as an expert"):  # sentiment step
        out.append("Output: positive" if "happy" in inp else "negative\n")  # post-processed
      else:
        words = [w for w in ("happy", "sad", "angry") if w in inp]
        out.append("Output: [" + ", ".join(words) + "]")
    return out


def test_two_step_extraction_caches_and_parses_answer_tags(tmp_path):
  canned = _CannedLLM()
  cache = tmp_path / "extractions.json"
  ext = extractors.LLMExtractor(canned, seed=0, cache_path=str(cache), name="canned")
  texts = [
      "She is happy, maybe a little sad.",
      "<think>x</think><answer>angry, Sad</answer>",
      "She is happy, maybe a little sad.",
  ]
  labels, sentiments = ext.extract(texts, sentiment=True)
  assert labels == [["happy", "sad"], ["angry", "sad"], ["happy", "sad"]]
  assert sentiments == ["positive", "negative", "positive"]
  # Step 1 ran once for the one distinct free-form answer; the tagged one was parsed.
  step1 = [p for p in canned.prompts if p.startswith("Please assume")]
  assert step1 == [extractors.OPENSET_PROMPT.format(texts[0])]
  # Step 2 read the step-1 responses (after the toolkit's post-processing).
  step2 = [p for p in canned.prompts if p.startswith("Please act")]
  assert sorted(step2) == sorted(
      extractors.SENTIMENT_PROMPT.format(x) for x in ("[happy, sad]", "[angry, sad]")
  )
  again = extractors.LLMExtractor(_CannedLLM(), seed=0, cache_path=str(cache))
  assert again.extract(texts, sentiment=True) == (labels, sentiments)
  assert again.llm.prompts == []  # everything came from the cache file


def test_postprocess_matches_the_toolkit():
  assert extractors.postprocess("Output: [happy, sad]\n") == "[happy, sad]"
  assert extractors.postprocess("  输出：[calm]") == "[calm]"
  assert extractors.OPENSET_PROMPT.format("x").endswith("Input: x; Output: ")
  assert np.all([" " * 12 + "Input:" in extractors.SENTIMENT_PROMPT])
