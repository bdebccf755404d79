"""MER-UniBench from its released layouts, and mode `eval` over a directory of checkpoints.

References: the official AffectGPT code's splits and keys (test1_corpus of MER2023/2024,
session 5 of IEMOCAP's whole_corpus, integer MELD/IEMOCAP labels, ovlabel.csv with
empty lists as neutral), written into small files here; hand-computed scores of known
answers.
"""

import json
import os

import jax
import numpy as np
import pytest

from input_pipeline import unibench
from mer_jax import config_lib
from mer_jax import run_io
from mer_jax.train import benchmark
from mer_jax.train import checkpointing
from mer_jax.train import evaluation
from mer_jax.train import optimizer as optim
from mer_jax.train import state as state_lib
from tests import released_data


@pytest.fixture(scope="module")
def unibench_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("unibench")
  return root, released_data.write_unibench(root)


def test_gold_follows_the_official_splits_and_keys(unibench_root):
  root, expected = unibench_root
  for spec in unibench.selected(""):
    gold = unibench.read_gold(spec, unibench.folder(spec, str(root)))
    assert gold == expected[spec.name], spec.name
  assert "Ses01M_script01_F000" not in unibench.read_gold(
      unibench.SETS["IEMOCAP"], str(root / "iemocap-process")
  )
  spec = unibench.SETS["MER2024"]
  directory = str(root / spec.folder)
  samples = unibench.texts(spec, directory, unibench.read_gold(spec, directory))
  assert [s["subtitle"] for s in samples] == ["Line mer2024_0.", "Line mer2024_1."]  # 'chinese'
  assert samples[0]["labels"] == ["happy"]
  paths = unibench.media_paths(spec, directory, "mer2024_0")
  assert paths["faces"].endswith("mer2024-dataset-process/openface_face/mer2024_0.npy")
  assert os.path.exists(paths["faces"]) and os.path.exists(paths["audio"])
  spec = unibench.SETS["SIMS"]
  directory = str(root / spec.folder)
  a, b = unibench.texts(spec, directory, unibench.read_gold(spec, directory))
  assert a["labels"] == [] and a["valence"] == 1.2 and b["valence"] == -0.8


def test_dataset_selection_and_folders_errors():
  assert [s.name for s in unibench.selected("mer2023, OVMERD")] == ["MER2023", "OVMERD"]
  with pytest.raises(ValueError, match="unknown set 'MER2022'"):
    unibench.selected("MER2022")
  assert unibench.parse_folders("meld=/x/meld") == {"MELD": "/x/meld"}
  with pytest.raises(ValueError, match="is not NAME=DIR"):
    unibench.parse_folders("meld")


def test_official_best_of_epochs_and_table():
  table = {
      "step_1": {"datasets": {"MER2023": {"primary": 0.5}, "SIMS": {"primary": 0.9}}, "mean": 0.7},
      "step_2": {"datasets": {"MER2023": {"primary": 0.7}, "SIMS": {"primary": 0.6}}, "mean": 0.65},
  }
  best = benchmark.official_best(table)
  assert best["datasets"]["MER2023"] == {"primary": 0.7, "checkpoint": "step_2"}
  assert best["datasets"]["SIMS"] == {"primary": 0.9, "checkpoint": "step_1"}
  assert best["mean"] == pytest.approx(0.8)  # above every checkpoint's own mean
  st = dict(benchmark="unibench", extractor="rules", lexicon="builtin", decoding="greedy")
  st.update(max_new_tokens=16, temperature=0.0, level="level1")
  md = benchmark.markdown({"settings": st, "checkpoints": table, "official_best": best})
  assert "| step_1 | 50.00 | 90.00 | 70.00 |" in md
  assert "| *official best-of-epochs* | 70.00 | 90.00 | 80.00 |" in md


def _save_checkpoints(config, workdir, directory):
  """Two checkpoint steps of the test policy, as the training loops save them."""
  from input_pipeline import tokenization
  from mer_jax.train import mesh as mesh_lib
  from mer_jax.train import policy as policy_lib

  mesh = mesh_lib.make_mesh(config.mesh)
  tokenizer = tokenization.get_tokenizer(config, workdir)
  policy = policy_lib.build_policy(config, tokenizer, mesh)
  trainable, _, t_sh, _ = state_lib.split_trainable(policy)
  tx, _ = optim.sft_optimizer(config.train)
  ckpt = checkpointing.Checkpointer(str(directory), every_steps=1, keep=5)
  for step in (1, 2):
    moved = jax.tree_util.tree_map(lambda x, s=step: x + 0.01 * s, trainable)
    state, _ = state_lib.init_state(moved, t_sh, tx, config.seed, mesh)
    ckpt.save(step, state, meta={"frozen_source": policy.frozen_source}, force=True)
  ckpt.close()


def test_eval_scores_every_checkpoint_on_the_nine_sets(
    unibench_root, recipe, tmp_path, monkeypatch
):
  root, gold = unibench_root
  config = recipe("eval", "test")
  config.data.face_or_frame = "face"
  config.eval.benchmark = "unibench"
  config.eval.unibench_root = str(root)
  workdir = tmp_path / "eval"
  _save_checkpoints(config, str(workdir), tmp_path / "ckpts")
  config.checkpoint.init_from = str(tmp_path / "ckpts")
  config_lib.validate(config)  # a directory of checkpoints is fine for mode eval

  def answer(gold_value, right):
    if isinstance(gold_value, float):
      word = "happy" if (gold_value > 0) == right else "sad"
    elif isinstance(gold_value, list):
      word = ", ".join(gold_value) if right else "angry"
    else:
      word = gold_value if right else ("sad" if gold_value != "sad" else "happy")
    return f"<think>x</think><answer>{word}</answer>"

  def fake_generate(ctx, params, samples, *, lora=True, desc="eval"):
    label, name = desc.split()
    right = label == "step_1"  # the first checkpoint answers right, the second wrong
    texts = [answer(gold[name][s["name"]], right) for s in samples]
    return evaluation.Completions([s["name"] for s in samples], texts, [4] * len(texts), 16, 0.1)

  monkeypatch.setattr(evaluation, "generate_completions", fake_generate)
  writer = run_io.RunWriter(str(workdir), tensorboard=False)
  report = benchmark.run(config, str(workdir), writer)
  writer.close()
  assert list(report["checkpoints"]) == ["step_1", "step_2"]
  right, wrong = (report["checkpoints"][c] for c in ("step_1", "step_2"))
  assert set(right["datasets"]) == set(gold) and right["mean"] == pytest.approx(1.0)
  metric = {d: r["metric"] for d, r in right["datasets"].items()}
  assert (
      metric["MER2023"] == "hit_rate"
      and metric["SIMS"] == "waf"
      and metric["OVMERD"] == "ew_f1_level1"
  )
  # Sentiment: gold 0.0 dropped, so 2 of the 2 non-zero clips are scored.
  assert (
      right["datasets"]["CMUMOSI"]["n_samples"] == 2 and right["datasets"]["CMUMOSI"]["acc"] == 1.0
  )
  assert (
      wrong["mean"] == pytest.approx(np.mean([d["primary"] for d in wrong["datasets"].values()]))
      and wrong["mean"] < 0.2
  )
  assert report["official_best"]["mean"] == pytest.approx(1.0)
  saved = json.loads((workdir / "benchmark.json").read_text())
  assert (
      saved["settings"]["extractor"].startswith("rules")
      and saved["settings"]["lexicon"] == "builtin"
  )
  md = (workdir / "benchmark.md").read_text()
  assert "| step_1 |" in md and "official best-of-epochs" in md
  assert (workdir / "step_2" / "MELD" / "predictions.csv").exists()
