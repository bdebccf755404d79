"""Recipes load for every preset, and validation names the bad field in one line."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from mer_jax import config_lib
from mer_jax import run_io

RECIPES = ("sft", "grpo", "oppo", "eval")


def load_recipe(repo_root, name, arg=None):
  spec = importlib.util.spec_from_file_location(
      f"recipe_{name}", repo_root / "configs" / f"{name}.py"
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("preset", [None, "demo", "test"])
def test_cpu_presets_validate(repo_root, recipe, preset):
  config = load_recipe(repo_root, recipe, preset)
  assert config.preset == (preset or "demo")
  assert config.mode == recipe
  config_lib.validate(config)


@pytest.mark.parametrize("recipe", RECIPES)
def test_paper_preset_needs_user_weights(repo_root, recipe):
  config = load_recipe(repo_root, recipe, "paper")
  assert config.model.llm.arch_file.endswith("qwen2.5-7b-instruct.json")
  assert config.data.source == "released"
  with pytest.raises(config_lib.ConfigError, match=r"config\.(model\.llm\.hf_dir|data\.root)"):
    config_lib.validate(config)


def test_paper_hyperparameters_follow_the_papers(repo_root):
  grpo = load_recipe(repo_root, "grpo", "paper")
  assert (
      grpo.model.lora.rank == 16
      and grpo.model.lora.alpha == 32.0
      and grpo.model.lora.dropout == 0.05
  )
  assert (
      grpo.train.peak_lr == 1e-5 and grpo.train.init_lr == 1e-6 and grpo.train.weight_decay == 0.05
  )
  assert grpo.data.batch_size == 3 and grpo.data.max_length == 1024
  assert (
      grpo.grpo.num_generations == 4 and grpo.grpo.beta == 0.0 and grpo.grpo.length_penalty == "p3"
  )
  oppo = load_recipe(repo_root, "oppo", "paper")
  assert (oppo.oppo.alpha, oppo.oppo.delta, oppo.oppo.rho, oppo.oppo.loss_beta) == (
      0.5,
      0.5,
      0.7,
      8e-3,
  )
  assert oppo.grpo.lr == 2e-6 and oppo.grpo.beta == 0.04


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("train.steps", 0, "config.train.steps must be an integer >= 1, got 0"),
        ("train.warmup_steps", -5, "config.train.warmup_steps must be an integer >= 0, got -5"),
        ("model.fusion.type", "conv", "config.model.fusion.type must be one of"),
        ("data.source", "youtube", "config.data.source must be one of"),
        ("data.length_buckets", (128, 64), "config.data.length_buckets must be increasing"),
        ("mesh.tensor", 0, "config.mesh.tensor must be a positive integer or -1"),
        ("grpo.num_generations", 1, "config.grpo.num_generations must be an integer >= 2"),
        ("grpo.top_p", 0.0, "config.grpo.top_p must be in (0, 1]"),
        (
            "grpo.rewards",
            {"accuracy": 1.0, "speed": 1.0},
            "config.grpo.rewards: unknown reward 'speed'",
        ),
        (
            "eval.lexicon",
            "official:/nonexistent",
            "config.eval.lexicon: directory '/nonexistent' does not exist",
        ),
        ("model.lora.targets", ("q", "qkv"), "config.model.lora.targets must be a subset"),
    ],
)
def test_bad_values_name_the_field(repo_root, field, value, message):
  config = load_recipe(repo_root, "grpo", "test")
  section, _, leaf = field.rpartition(".")
  node = config
  for part in section.split("."):
    node = node[part]
  with node.unlocked() if hasattr(node, "unlocked") else _null():
    node[leaf] = value
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate(config)
  assert message in str(info.value)
  assert "\n" not in str(info.value)


class _null:

  def __enter__(self):
    return self

  def __exit__(self, *args):
    return False


def test_unknown_preset_is_rejected(repo_root):
  with pytest.raises(ValueError, match="unknown config preset 'huge'"):
    load_recipe(repo_root, "sft", "huge")


def _main(repo_root, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
      [sys.executable, "-m", "mer_jax.main", *args],
      cwd=repo_root,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )


@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["--config=configs/sft.py:huge"],
            "config error: --config=configs/sft.py: ValueError: unknown config preset 'huge'",
        ),
        (
            ["--config=configs/sft.py:test", "--config.train.stpes=3"],
            "config error: unknown config field 'stpes' (did you mean 'steps'?)",
        ),
        (
            ["--config=configs/sft.py:test", "--config.train.steps=abc"],
            "config error: flag --config.train.steps=abc: invalid literal",
        ),
        (
            ["--config=configs/sft.py:test", "--config.train.steps=-1"],
            "config error: config.train.steps must be an integer >= 1, got -1",
        ),
    ],
)
def test_main_reports_config_errors_in_one_line(repo_root, tmp_path, args, expected):
  result = _main(repo_root, *args, f"--workdir={tmp_path}/w")
  assert result.returncode == 2, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("config error")]
  assert len(errors) == 1 and errors[0].startswith(expected), result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "w").exists()  # nothing written before validation passed


def test_run_writer_outputs(tmp_path, repo_root):
  config = load_recipe(repo_root, "sft", "test")
  writer = run_io.RunWriter(str(tmp_path))
  writer.write_config(config)
  writer.write_metrics(1, {"train/loss": 2.5, "train/lr": 1e-6})
  writer.write_metrics(2, {"train/loss": float("nan")})
  writer.write_metrics(3, {"train/loss": 1.5})
  writer.truncate_metrics(after_step=2)
  writer.update_summary("sft", {"ew_f1": 0.5})
  writer.update_summary("sft", {"format_rate": 1.0})
  writer.update_summary("data", {"skipped": [{"name": "a", "reason": "missing audio"}]})
  writer.close()
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == config.train.steps
  records = run_io.read_metrics(str(tmp_path))
  assert [r["step"] for r in records] == [1, 2]
  assert records[0]["train/loss"] == 2.5 and records[1]["train/loss"] == "nan"
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary == {
      "sft": {"ew_f1": 0.5, "format_rate": 1.0},
      "data": {"skipped": [{"name": "a", "reason": "missing audio"}]},
  }
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))
  # One metrics line in log.txt per minute at most: the first of the three steps.
  log = (tmp_path / "log.txt").read_text().splitlines()
  assert [line.split(" INFO ", 1)[1] for line in log if "step " in line] == [
      "step 1: train/loss=2.5 train/lr=1e-06"
  ]


def test_secondary_process_writes_nothing(tmp_path):
  writer = run_io.RunWriter(str(tmp_path / "w"), is_primary=False)
  writer.write_metrics(1, {"x": 1.0})
  writer.update_summary("sft", {"x": 1})
  writer.close()
  assert not (tmp_path / "w").exists()
