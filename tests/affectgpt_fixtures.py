"""The tiny "released AffectGPT" used by the parity tests (tests/data/affectgpt_ref/).

Everything the released code and mer-jax both read is rebuilt here from numpy, so the
weights never need to be committed: the Hugging Face directories of a tiny Qwen2
(+ the committed tokenizer files), a tiny CLIP and a tiny HuBERT-Large-style encoder, the
Q-Former's BERT config, and the media of one clip (OpenFace faces, a stereo 44.1 kHz wav,
the committed mp4, a subtitle with non-ASCII text). The same function wrote the inputs of
the reference run (tests/data/affectgpt_ref/README.md), so both sides see identical bytes.

Weights are drawn from `np.random.default_rng(crc32(name))` and rounded to float16: the
released code loads the LLM with `torch_dtype=float16`, so fp16-exact values make that
load lossless and the float32 comparison meaningful.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import zlib

import numpy as np

REF_DIR = pathlib.Path(__file__).resolve().parent / "data" / "affectgpt_ref"
NAME = "sample_00000007"
SUBTITLE = "Él dijo: «¿Qué pasa?» — 你好，真的吗？ I can't believe it…"
ANSWER = "The character's emotional state is surprised, sad."
NUM_FACES = 13
FACE_HW = (90, 70)
WAV_SECONDS = 3.3
WAV_RATE = 44100


def _values(name: str, shape, norm_like: bool) -> np.ndarray:
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  x = rng.normal(size=shape)
  x = 1.0 + 0.1 * x if norm_like else 0.1 * x
  return np.asarray(x, np.float16).astype(np.float32)


def _norm_like(name: str) -> bool:
  return "norm" in name.lower() or name.endswith(("original0", "weight_g"))


def write_weights(out_dir: pathlib.Path, shapes: dict[str, list[int]], zero_rows=None) -> None:
  """Random fp16-exact weights; `zero_rows[name] = n` zeroes rows n.. (the LM head's padding
  rows, which no tokenizer id reaches, as in Qwen2.5's 152064-row head)."""
  from safetensors.numpy import save_file

  tensors = {k: _values(k, tuple(s), _norm_like(k)) for k, s in sorted(shapes.items())}
  for name, start in (zero_rows or {}).items():
    tensors[name][start:] = 0.0
  save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})


def write_models(root) -> dict[str, str]:
  """Writes llm/, clip/, hubert/ and bert-base-uncased/ under `root`; returns their paths."""
  root = pathlib.Path(root)
  spec = json.loads((REF_DIR / "models.json").read_text())
  out = {}
  for name, entry in spec.items():
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for fname, content in entry["files"].items():
      (d / fname).write_text(json.dumps(content, indent=2, ensure_ascii=False))
    if entry.get("shapes"):
      write_weights(d, entry["shapes"], entry.get("zero_rows"))
    out[name] = str(d)
  for fname in os.listdir(REF_DIR / "tokenizer"):
    shutil.copy(REF_DIR / "tokenizer" / fname, root / "llm" / fname)
  return out


def faces() -> np.ndarray:
  """uint8 [13, 90, 70, 3]: OpenFace-style crops (not 224x224, so the resize matters)."""
  rng = np.random.default_rng(11)
  return rng.integers(0, 256, size=(NUM_FACES, *FACE_HW, 3), dtype=np.uint8)


def stereo_wave() -> np.ndarray:
  """int16 [N, 2]: 3.3 s at 44.1 kHz, two different channels, non-stationary on purpose.

  The loudness grows 12x over the clip and the DC offset drifts, so per-clip mean removal
  and one normalisation over all 8 clips (vs one per clip) change HuBERT's input visibly.
  """
  rng = np.random.default_rng(12)
  t = np.arange(int(WAV_SECONDS * WAV_RATE)) / WAV_RATE
  gain = np.linspace(0.08, 1.0, t.size)
  dc = np.linspace(-0.25, 0.3, t.size)
  left = gain * (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.normal(size=t.shape)) + dc
  right = (
      gain * (0.2 * np.sin(2 * np.pi * 330 * t + 1.0) + 0.05 * rng.normal(size=t.shape)) - dc / 2
  )
  return np.round(np.stack([left, right], axis=1) * 20000).astype(np.int16)


def write_dataset(root) -> dict[str, str]:
  """The released layout for one clip: video/, audio/, openface_face/, subtitle csv."""
  import soundfile as sf

  root = pathlib.Path(root)
  for sub in ("video", "audio", f"openface_face/{NAME}"):
    (root / sub).mkdir(parents=True, exist_ok=True)
  np.save(root / "openface_face" / NAME / f"{NAME}.npy", faces())
  sf.write(root / "audio" / f"{NAME}.wav", stereo_wave(), WAV_RATE, subtype="PCM_16")
  shutil.copy(REF_DIR / "clip.mp4", root / "video" / f"{NAME}.mp4")
  with open(root / "subtitle_chieng.csv", "w", encoding="utf-8", newline="") as f:
    f.write("name,chinese,english\n")
    f.write(f'{NAME},你好,"{SUBTITLE}"\n')
  return {"root": str(root), "name": NAME}


def write_release(root: pathlib.Path) -> dict[str, dict[str, str]]:
  """The tiny released models and dataset under `root`: {"models": ..., "data": ...}."""
  return {"models": write_models(root / "models"), "data": write_dataset(root / "data")}


def eval_config(recipe, release: dict, face_or_frame: str):
  """configs/eval.py:paper pointed at `release` (write_release) and the reference checkpoint."""
  c = recipe("eval", "paper")
  m = release["models"]
  c.checkpoint.init_from = str(REF_DIR / "checkpoint_000003_loss_0.500.pth")
  c.model.llm.hf_dir, c.model.vision.hf_dir, c.model.audio.hf_dir = m["llm"], m["clip"], m["hubert"]
  c.model.lora.rank = 4
  c.data.root = release["data"]["root"]
  c.data.subtitles_csv = "subtitle_chieng.csv"
  c.data.face_or_frame = face_or_frame
  return c
