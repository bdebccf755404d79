"""OPPO sentence embedder: packaged all-MiniLM-L6-v2 in our Flax BERT vs sentence-transformers."""

import numpy as np
import pytest

from mer_jax.rl import embeddings
from tests import hf_fixtures

hf_fixtures.require_minilm()

SENTENCES = [
    "the corners of his mouth turn up into a smile",
    "her voice trembles",
    "In the audio, his voice is loud and harsh and he speaks fast.",
    "Although she is smiling, the trembling voice reveals nervousness, so she is probably embarrassed.",
    "calm",
    " ".join(["a very long clause about a furrowed brow"] * 40),  # truncated at 256 tokens
]


@pytest.fixture(scope="module")
def embedder():
  return embeddings.get_embedder("minilm")


def test_parity_with_sentence_transformers(embedder, monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  st = pytest.importorskip("sentence_transformers")
  ref = st.SentenceTransformer(embeddings.minilm_dir(), device="cpu").encode(
      SENTENCES, convert_to_numpy=True
  )
  ours = embedder.encode(SENTENCES)
  assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
  np.testing.assert_allclose(ours, ref, atol=2e-6)
  # Batching/bucketing does not change a row: one at a time gives the same vectors.
  fresh = embeddings.SentenceEmbedder(embeddings.minilm_dir())
  single = np.concatenate([fresh.encode([s]) for s in SENTENCES])
  np.testing.assert_allclose(single, ref, atol=2e-6)
  # Cosines order as expected: a paraphrase beats an unrelated audio cue.
  a, b, c = embedder.encode(["his mouth curves into a smile", SENTENCES[0], SENTENCES[1]])
  assert a @ b > 0.6 > a @ c


def test_cue_embeddings_are_cached_on_disk(embedder, tmp_path):
  texts = ["his brows are furrowed", "her voice is low and weak"]
  first = embeddings.cached_embeddings(embedder, texts, str(tmp_path), "unit")
  files = list(tmp_path.iterdir())
  assert len(files) == 1 and files[0].name.startswith("cue_embeddings-unit-")
  np.save(files[0], np.zeros_like(first))  # a second call must read the file, not recompute
  again = embeddings.cached_embeddings(embedder, texts, str(tmp_path), "unit")
  assert np.all(again == 0)
  other = embeddings.cached_embeddings(embedder, texts + ["he shouts"], str(tmp_path), "unit")
  assert len(list(tmp_path.iterdir())) == 2 and other.shape == (3, 384)


_TWO_PROCESSES = """
import sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
import numpy as np
from mer_jax.rl import embeddings
e = embeddings.get_embedder("minilm").encode(["her voice trembles"])
np.save(sys.argv[3], e)
"""


def test_embedder_works_on_every_process(embedder, tmp_path, repo_root):
  """Process 1 of a 2-process job embeds like a single process (OPPO rewards on every host)."""
  import os
  import socket
  import subprocess
  import sys

  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(repo_root))
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  procs = [
      subprocess.Popen(
          [
              sys.executable,
              "-c",
              _TWO_PROCESSES,
              f"127.0.0.1:{port}",
              str(i),
              tmp_path / f"{i}.npy",
          ],
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      for i in range(2)
  ]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outs)
  single = embedder.encode(["her voice trembles"])
  for i in range(2):
    np.testing.assert_allclose(np.load(tmp_path / f"{i}.npy"), single, atol=1e-6)
