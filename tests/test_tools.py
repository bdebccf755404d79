"""CLIs: `hf_forward` on tiny checkpoints of every architecture, `param_count` on the paper config."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mer_jax.tools import hf_forward
from tests import hf_fixtures as fx

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_CONFIGS = os.path.join(REPO, "mer_jax", "models", "configs")


def _inputs(kind):
  rng = np.random.RandomState(0)
  if kind in ("qwen2", "bert"):
    return rng.randint(0, 128, (2, 5)).astype(np.int64)
  if kind == "clip":
    return rng.randn(2, 3, 32, 32).astype(np.float32)
  return rng.randn(2, 1200).astype(np.float32)


def _reference(kind, hf, x):
  with torch.no_grad():
    if kind == "qwen2":
      return hf(input_ids=torch.tensor(x)).logits.numpy()
    if kind == "clip":
      return hf(pixel_values=torch.tensor(x)).image_embeds.numpy()
    if kind == "hubert":
      return hf(input_values=torch.tensor(x)).last_hidden_state.numpy()
    return hf(input_ids=torch.tensor(x)).last_hidden_state.numpy()


@pytest.mark.parametrize("kind", ["qwen2", "clip", "hubert", "bert"])
def test_hf_forward_matches_transformers(tmp_path, kind):
  makers = {
      "qwen2": fx.make_qwen2,
      "clip": fx.make_clip_vision,
      "bert": fx.make_bert,
      "hubert": lambda d: fx.make_hubert(d, large=True),
  }
  hf_dir, hf = makers[kind](str(tmp_path / "ckpt"))
  x = _inputs(kind)
  np.save(tmp_path / "x.npy", x)
  hf_forward.main(
      ["--hf-dir", hf_dir, "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]
  )
  y = np.load(tmp_path / "y.npy")
  ref = _reference(kind, hf, x)
  assert y.shape == ref.shape and y.dtype == np.float32
  assert fx.rel_max_diff(y, ref) <= 1e-4


def _hf_count(cls_name, config_cls_name, file):
  with open(os.path.join(PAPER_CONFIGS, file)) as f:
    d = json.load(f)
  with torch.device("meta"):
    model = getattr(transformers, cls_name)(getattr(transformers, config_cls_name).from_dict(d))
  return sum(p.numel() for p in model.parameters())


def test_param_count_paper_matches_transformers():
  out = subprocess.run(
      [
          sys.executable,
          "-m",
          "mer_jax.tools.param_count",
          "--config=configs/grpo.py:paper",
          "--json",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      check=True,
  )
  counts = json.loads(out.stdout.strip().splitlines()[-1])
  assert set(counts) == {"llm", "vision", "audio", "fusion", "lora", "trainable", "total"}
  assert counts["llm"] == _hf_count("Qwen2ForCausalLM", "Qwen2Config", "qwen2.5-7b-instruct.json")
  assert counts["vision"] == _hf_count(
      "CLIPVisionModelWithProjection", "CLIPVisionConfig", "clip-vit-large-patch14-vision.json"
  )
  assert counts["audio"] == _hf_count("HubertModel", "HubertConfig", "hubert-large.json")
  # r=16 on q,k,v,o,gate,up,down of 28 layers: r * (in + out) per adapted Dense.
  e, kv, m = 3584, 512, 18944
  assert counts["lora"] == 28 * 16 * (2 * (e + e) + 2 * (e + kv) + 3 * (e + m))
  assert counts["fusion"] > 0
  assert counts["trainable"] == counts["lora"] + counts["fusion"]
  assert counts["total"] == sum(counts[k] for k in ("llm", "vision", "audio", "fusion", "lora"))
