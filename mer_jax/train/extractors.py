"""Labels (and sentiments) from free-form answers: the evaluation protocol's extractors.

`eval.extractor`:
- `rules` (default, deterministic): the answer parsed directly (`<answer>` tags, else the
  released "The character's emotional state is a, b." sentence,
  `evaluation.predicted_labels`); sentiment from the emotion wheels' valence of the labels
  (`metrics.text_to_sentiment`).
- `llm:HF_DIR`: the official toolkit's two-step extraction (AffectGPT
  `evaluation.py` -> `extract_openset_batchcalling`, `openset_to_sentiment_batchcalling`)
  run by a local Qwen2.5 in HF format with our own sampler: (1) the open-set labels of
  each answer with the toolkit's prompt; (2) for the sentiment sets, positive / negative /
  neutral of those labels with its second prompt. Each prompt is the only user turn of the
  model's chat template; sampling as the toolkit's vLLM call (temperature 0.7, top_p 0.8,
  repetition penalty 1.05, 512 new tokens), batched, deterministic for a seed
  (`config.seed`), cached per input text in `<workdir>/extractions.json`. Answers with
  `<answer>` tags are parsed directly, as the public R1 code (affect_r1) does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from typing import Any, Sequence

from absl import logging
import jax
from tqdm import tqdm

from mer_jax import metrics
from mer_jax import run_io
from mer_jax.decode import sampler as sampler_lib
from mer_jax.hf import loader
from mer_jax.metrics import extract as extract_lib
from mer_jax.models import qwen2
from mer_jax.train import evaluation
from mer_jax.train import mesh as mesh_lib

# The official toolkit's prompts (mer_jax/metrics/extract.py holds them).
OPENSET_PROMPT = extract_lib.LABEL_EXTRACTION_PROMPT
SENTIMENT_PROMPT = extract_lib.SENTIMENT_PROMPT
# The toolkit's vLLM SamplingParams.
TEMPERATURE, TOP_P, REPETITION_PENALTY, MAX_NEW_TOKENS = 0.7, 0.8, 1.05, 512
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


postprocess = extract_lib.postprocess_response


class RulesExtractor:
  description = "rules (answer parsed directly; sentiment from the wheels' valence)"

  def extract(
      self, texts: Sequence[str], sentiment: bool = False
  ) -> tuple[list[list[str]], list[str] | None]:
    """(labels per answer, None: mer_jax.metrics.unibench maps the labels' valence)."""
    del sentiment
    return [evaluation.predicted_labels(t) for t in texts], None


@dataclasses.dataclass
class ChatLLM:
  """A Hugging Face causal LM (Qwen2 layout) that answers single-turn chat prompts."""

  model: Any
  params: Any
  tokenizer: Any
  mesh: Any
  eos_ids: tuple[int, ...]

  @classmethod
  def load(cls, hf_dir: str, mesh) -> "ChatLLM":
    from transformers import AutoTokenizer

    config = loader.config_from_hf_dir(
        hf_dir, dtype="bfloat16" if jax.default_backend() != "cpu" else "float32"
    )
    if type(config) is not qwen2.Qwen2Config:
      raise ValueError(f"config.eval.extractor: {hf_dir} is not a Qwen2 / Qwen2.5 checkpoint")
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    params = loader.load_hf_params(hf_dir, qwen2.Qwen2ForCausalLM, config, mesh=mesh)["params"]
    eos = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>"):
      tid = tokenizer.convert_tokens_to_ids(token)
      if isinstance(tid, int) and tid != tokenizer.unk_token_id:
        eos.add(tid)
    return cls(qwen2.Qwen2ForCausalLM(config), params, tokenizer, mesh, tuple(sorted(eos)))

  def chat_ids(self, prompt: str) -> list[int]:
    """The prompt as the only user turn of the chat template, ready for the answer."""
    text = self.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    return self.tokenizer(text, add_special_tokens=False)["input_ids"]

  def generate(self, prompts: Sequence[str], rng: jax.Array, **kw) -> list[str]:
    """Answers to `prompts` (decoded, special tokens dropped); `generate_ids` arguments."""
    return self.tokenizer.batch_decode(
        self.generate_ids(prompts, rng, **kw), skip_special_tokens=True
    )

  def generate_ids(
      self,
      prompts: Sequence[str],
      rng: jax.Array,
      *,
      temperature: float = TEMPERATURE,
      top_p: float = TOP_P,
      penalty: float = REPETITION_PENALTY,
      max_new_tokens: int = MAX_NEW_TOKENS,
      batch_size: int = 8,
      desc: str = "extract",
  ) -> list[list[int]]:
    """Generated ids (eos / stop included) of each prompt, `batch_size` prompts at a time."""
    cfg = sampler_lib.SamplingConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        eos_id=self.eos_ids[0],
        pad_id=int(self.tokenizer.pad_token_id or self.eos_ids[0]),
        stop_sequences=tuple((i,) for i in self.eos_ids[1:]),
        repetition_penalty=float(penalty),
    )
    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, leave=False):
      chunk = [self.chat_ids(p) for p in prompts[start : start + batch_size]]
      length = sampler_lib.bucket_length(
          max(map(len, chunk)), (64, 128, 256, 512, 1024, 2048, 4096)
      )
      ids, mask = sampler_lib.left_pad(
          chunk + [chunk[-1]] * (batch_size - len(chunk)), length, cfg.pad_id
      )
      tokens, lengths = self._sample(ids, mask, jax.random.fold_in(rng, start), cfg)
      out += [row[: int(n)].tolist() for row, n in zip(tokens, lengths, strict=True)][: len(chunk)]
    return out

  def _sample(self, ids, mask, rng, cfg):
    fn = _sample_fn(self.model, cfg, self.mesh)
    arrays = mesh_lib.put_global_batch({"ids": ids, "mask": mask}, self.mesh)
    result = fn(self.params, arrays["ids"], arrays["mask"], rng)
    return mesh_lib.to_host(result.tokens), mesh_lib.to_host(result.lengths)


_PROGRAMS: dict = {}


def _sample_fn(model, cfg, mesh):
  key = (id(model), cfg, mesh)
  if key not in _PROGRAMS:

    def program(params, ids, mask, rng):
      def forward(params, **kw):
        return model.apply({"params": params}, **kw)

      def make_cache(rows, length):
        return model.apply({"params": params}, rows, length, method=model.init_cache)

      embeds = model.apply({"params": params}, ids, method=model.embed)
      return sampler_lib.sample(forward, make_cache, params, embeds, mask, rng, cfg, prompt_ids=ids)

    _PROGRAMS[key] = jax.jit(program)
  return _PROGRAMS[key]


class LLMExtractor:
  """The official two-step extraction by a local LLM (module doc), cached per input."""

  def __init__(self, llm: ChatLLM, seed: int, cache_path: str = "", name: str = ""):
    self.llm = llm
    self.seed = seed
    self.cache_path = cache_path
    self.cache: dict[str, str] = run_io.read_json(cache_path, {}) if cache_path else {}
    self.description = (
        f"llm:{name or 'local'} (official two-step prompts; T {TEMPERATURE}, top_p {TOP_P}, "
        f"repetition penalty {REPETITION_PENALTY}, {MAX_NEW_TOKENS} new tokens, seed {seed}; "
        "<answer> tags parsed directly)"
    )

  def _ask(self, template: str, inputs: Sequence[str], step: str) -> list[str]:
    keys = [f"{step}\n{x}" for x in inputs]
    todo = sorted({k for k in keys if k not in self.cache})
    if todo:
      digest = int(hashlib.sha256("\n".join(todo).encode()).hexdigest()[:8], 16)
      rng = jax.random.fold_in(jax.random.PRNGKey(self.seed), digest)
      prompts = [template.format(k.split("\n", 1)[1]) for k in todo]
      answers = self.llm.generate(prompts, rng, desc=f"extract {step}")
      self.cache.update({k: postprocess(a) for k, a in zip(todo, answers, strict=True)})
      if self.cache_path and jax.process_index() == 0:
        run_io.atomic_write_json(self.cache_path, self.cache)
      logging.info("extractor: %d %s calls (%d cached)", len(todo), step, len(keys) - len(todo))
    return [self.cache[k] for k in keys]

  def opensets(self, texts: Sequence[str]) -> list[str]:
    """Step 1: the label-list response of each answer (`<answer>` content kept as is)."""
    out = [None] * len(texts)
    ask = []
    for i, t in enumerate(texts):
      m = _ANSWER.search(t)
      if m:
        out[i] = "[" + ", ".join(metrics.parse_labels(m.group(1))) + "]"
      else:
        ask.append(i)
    for i, r in zip(
        ask, self._ask(OPENSET_PROMPT, [texts[i] for i in ask], "openset"), strict=True
    ):
      out[i] = r
    return out

  def extract(
      self, texts: Sequence[str], sentiment: bool = False
  ) -> tuple[list[list[str]], list[str] | None]:
    """(labels per answer, and with `sentiment` step 2 on the step-1 responses)."""
    opensets = self.opensets(texts)
    labels = [metrics.parse_labels(r) for r in opensets]
    if not sentiment:
      return labels, None
    # The responses as they are: mer_jax.metrics.unibench scores 'positive' as positive and
    # anything else as negative, as the toolkit does.
    return labels, self._ask(SENTIMENT_PROMPT, opensets, "sentiment")


def from_config(ctx) -> Any:
  """The extractor of `config.eval.extractor` (the LLM loaded on the run's mesh)."""
  spec = ctx.config.eval.get("extractor", "rules")
  if spec == "rules":
    return RulesExtractor()
  hf_dir = spec[len("llm:") :]
  with run_io.activity(f"loading the extractor LLM from {hf_dir}"):
    llm = ChatLLM.load(hf_dir, ctx.mesh)
  return LLMExtractor(
      llm,
      ctx.config.seed,
      os.path.join(ctx.workdir, "extractions.json"),
      os.path.basename(os.path.normpath(hf_dir)),
  )
