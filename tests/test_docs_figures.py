"""Figures the README and docs quote that a test can recompute in seconds, so they cannot drift.

(The trained models' figures come from runs: docs/training.md says when and how each was
measured.)
"""

import re

from input_pipeline import synthmer
from mer_jax.train import evaluation


def test_the_quoted_majority_label_baseline_is_what_the_main_job_prints(recipe, repo_root):
  config = recipe("grpo", "demo")  # the README's main job
  baseline = evaluation.majority_baseline(
      synthmer.generate_split(config, "sft", media=False),
      synthmer.generate_split(config, "eval", media=False),
      config.eval.lexicon,
      config.eval.level,
  )
  label, f1 = baseline["majority_label"], f"{baseline['majority_baseline_f1']:.3f}"
  training = (repo_root / "docs" / "training.md").read_text()
  assert f"| majority label (`{label}`) | {f1} |" in training, (label, f1)
  readme = (repo_root / "README.md").read_text()
  assert re.search(rf"majority-label\s+baseline\s+{f1}\b", readme), f1
