"""mer-jax vs the released AffectGPT code: a released checkpoint in, one clip through.

The reference arrays in tests/data/affectgpt_ref were written by the released code
(MERTools MER2025_Track23) on the tiny models and clip that tests/affectgpt_fixtures.py
rebuilds here (README.md there says how). Frame indices, prompt / training ids and greedy
tokens must be equal; features and logits agree to 1e-4 relative.
"""

import json

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("cv2")

import affectgpt_fixtures as fx  # noqa: E402
from hf_fixtures import rel_max_diff  # noqa: E402

from mer_jax.hf import affectgpt_release  # noqa: E402
from mer_jax.tools import affectgpt_forward as tool  # noqa: E402

EXACT = ("frame_indices", "prompt_ids", "generated_ids", "teacher_forced_ids")
CLOSE = ("vision_feats", "audio_feats", "step_logits", "teacher_forced_logits")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
  return fx.write_release(tmp_path_factory.mktemp("release"))


@pytest.mark.parametrize("face_or_frame", ["face", "frame"])
def test_matches_the_released_code(recipe, release, face_or_frame):
  ref = np.load(fx.REF_DIR / f"{face_or_frame}.npz")
  out = tool.affectgpt_forward(
      fx.eval_config(recipe, release, face_or_frame), fx.NAME, fx.ANSWER, 24
  )
  for key in EXACT:
    np.testing.assert_array_equal(out[key], ref[key], err_msg=key)
  assert str(out["response"]) == str(ref["response"])  # the released post-processing
  for key in CLOSE:
    assert out[key].shape == ref[key].shape, key
    assert rel_max_diff(out[key], ref[key]) < 1e-4, (key, rel_max_diff(out[key], ref[key]))
  # The released training loss (mean NLL of answer, ###, eos) from our logits.
  logits, ids = out["teacher_forced_logits"].astype(np.float64), out["teacher_forced_ids"]
  top = logits.max(-1, keepdims=True)
  logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
  prompt_len = 1 + len(out["prompt_ids"])  # bos + prompt
  targets = ids[prompt_len:]
  nll = -logp[prompt_len - 1 : -1][np.arange(len(targets)), targets]
  np.testing.assert_allclose(nll.mean(), float(ref["teacher_forced_loss"]), rtol=1e-4)


def test_released_qformer_keys_are_exactly_our_qformer_leaves():
  """Every trainable key of the released Q-Former variant maps onto one of our leaves."""
  official = json.loads((fx.REF_DIR / "qformer_keys.json").read_text())
  ours = {}
  # Our Q-Former fusion with the reference's sizes (3/2/4 queries, BERT hidden 32, 2 layers).
  import jax

  from mer_jax.models import fusion

  cfg = fusion.FusionConfig(
      fusion_type="qformer",
      llm_hidden=64,
      tokens={"video": 3, "audio": 2, "multi": 4},
      qformer_layers=2,
      qformer_hidden=32,
      qformer_heads=4,
      num_queries={"video": 3, "audio": 2, "multi": 4},
  )
  abstract = jax.eval_shape(
      lambda r: fusion.PreFusion(cfg).init(r, np.zeros((1, 8, 24)), np.zeros((1, 8, 40))),
      jax.random.key(0),
  )
  from flax import traverse_util
  import flax.linen as nn

  for path, leaf in traverse_util.flatten_dict(nn.unbox(abstract)["params"]).items():
    keys, transform = affectgpt_release.released_keys(("fusion",) + path, 2)
    (key,) = keys
    ours[key] = list(transform(np.zeros(official[key] if key in official else leaf.shape)).shape)
    assert ours[key] == list(leaf.shape), (key, ours[key], leaf.shape)
  lora = {k for k in official if k.startswith("llama_model.")}
  dropped = {k for k in official if k.startswith("image_llama_proj.")}
  assert set(official) - lora - dropped == set(ours)
