"""Up-front validation of run configs: fail in one line that names the field.

`validate(config)` runs before anything heavy (no JAX work, no data loading). Each check
names the dotted field, what it must be and what it got, so a typo in a command line
override is caught before a 20-minute job starts.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterable, Mapping

from etils import epath
import ml_collections

from mer_jax.modes import MODES

PRESETS = ("demo", "test", "paper")
REWARD_NAMES = ("format", "accuracy", "alignment", "dual", "perception", "omni")
# Files of which a Hugging Face tokenizer directory holds at least one.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


# Fields a rerun in the same workdir may change while it resumes: how long the run trains,
# how often it logs and checkpoints, and the hardware it runs on; never what a step
# computes. Any other difference is refused (`resume_conflicts`).
RESUMABLE_FIELDS = (
    "train.steps",
    "grpo.steps",
    "train.log_every",
    "grpo.log_every",
    "checkpoint.every_steps",
    "checkpoint.keep",
    "data.worker_count",
    "mesh.data",
    "mesh.fsdp",
    "mesh.tensor",
)


class ConfigError(ValueError):
  """A config field has a bad value; the message names the field."""


def changed_fields(old: Mapping, new: Mapping, prefix: str = "") -> list[tuple[str, Any, Any]]:
  """(dotted field, old value, new value) of every leaf that differs between two config dicts.

  Both are JSON-like (as in config.json); a field missing on one side has value None there.
  """
  out = []
  for key in sorted(set(old) | set(new), key=str):
    a, b = old.get(key), new.get(key)
    field = f"{prefix}{key}"
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      out.extend(changed_fields(a, b, f"{field}."))
    elif a != b:
      out.append((field, a, b))
  return out


def resume_conflicts(old: Mapping, new: Mapping) -> str:
  """'' when a run with config `old` may resume with config `new`, else the differing fields.

  Example: "train.peak_lr 0.001 -> 0.01, seed 0 -> 1".
  """
  fixed = [c for c in changed_fields(old, new) if c[0] not in RESUMABLE_FIELDS]
  shown = ", ".join(f"{f} {a!r} -> {b!r}" for f, a, b in fixed[:6])
  return shown + (f" and {len(fixed) - 6} more" if len(fixed) > 6 else "")


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
  node: Any = config
  for part in field.split("."):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise ConfigError(f"config.{field} is missing") from None
  return node


def _has(config: ml_collections.ConfigDict, section: str) -> bool:
  return section in config


def _check(config, field: str, ok: Callable[[Any], bool], what: str) -> Any:
  value = _get(config, field)
  try:
    good = ok(value)
  except (TypeError, ValueError):
    good = False
  if not good:
    raise ConfigError(f"config.{field} must be {what}, got {value!r}")
  return value


def _one_of(config, field: str, choices: Iterable[str]) -> str:
  choices = tuple(choices)
  return _check(config, field, lambda v: v in choices, "one of " + ", ".join(map(repr, choices)))


def _int(config, field: str, minimum: int) -> int:
  return _check(
      config,
      field,
      lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum,
      f"an integer >= {minimum}",
  )


def _number(
    config, field: str, lo: float, hi: float = float("inf"), hi_open: bool = False
) -> float:
  def ok(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      return False
    return lo <= v < hi if hi_open else lo <= v <= hi

  bound = f"in [{lo}, {hi}{')' if hi_open else ']'}"
  return _check(config, field, ok, f"a number {bound}")


def _existing_path(config, field: str, required: bool, base: str = "", is_dir: bool = False) -> str:
  value = _get(config, field)
  if not isinstance(value, str):
    raise ConfigError(f"config.{field} must be a path string, got {value!r}")
  if not value:
    if required:
      raise ConfigError(f"config.{field} is required here but empty")
    return value
  remote = "://" in value
  path = value if remote or os.path.isabs(value) or not base else os.path.join(base, value)
  try:
    p = epath.Path(path)
    exists = p.is_dir() if is_dir else p.exists()
  except Exception as e:  # noqa: BLE001 - e.g. gs:// without gcsfs or credentials
    raise ConfigError(
        f"config.{field}: cannot check {path!r}: {type(e).__name__}: {str(e).splitlines()[0]}"
        + (" (gs:// needs the gcs extra: pip install mer-jax[gcs])" if remote else "")
    ) from None
  if not exists:
    kind = "directory" if is_dir else "file"
    raise ConfigError(f"config.{field}: {kind} {path!r} does not exist")
  return value


def _checkpoint_path(config, field: str, required: bool, many: bool = False) -> str:
  """A checkpoint step directory of ours, or a released AffectGPT `.pth` file; with `many`,
  also a directory of checkpoints (`checkpoints_in`)."""
  value = _get(config, field)
  if isinstance(value, str) and value.endswith((".pth", ".pt")):
    return _existing_path(config, field, required)
  value = _existing_path(config, field, required, is_dir=True)
  if many and value and checkpoints_in(value):
    return value
  problem = checkpoint_step_problem(value) if value else ""
  if problem:
    raise ConfigError(f"config.{field}: {value.rstrip('/')} {problem}")
  return value


def checkpoints_in(path: str) -> list[str]:
  """The checkpoints a directory holds, oldest first, or [] if it is not such a directory.

  A run's `checkpoints/` (step subdirectories; incomplete steps are left out) or a folder
  of released `checkpoint_*.pth` files (one per epoch). A run directory is not one: it
  may hold several phases' checkpoints (sft/checkpoints, checkpoints).
  """
  root = epath.Path(path)  # local or gs://
  if not root.is_dir():
    return []
  names = [p.name for p in root.iterdir()]
  steps = sorted(int(d) for d in names if d.isdigit())
  found = [os.path.join(path, str(s)) for s in steps]
  found = [s for s in found if not checkpoint_step_problem(s)]
  if found:
    return found
  released = sorted(f for f in names if f.startswith("checkpoint_") and f.endswith((".pth", ".pt")))
  return [os.path.join(path, f) for f in released]


def _latest_step(directory: str) -> str | None:
  steps = [int(p.name) for p in epath.Path(directory).iterdir() if p.name.isdigit()]
  return os.path.join(directory, str(max(steps))) if steps else None


def checkpoint_step_problem(path: str) -> str:
  """What keeps `path` from being a complete checkpoint step directory, '' if nothing.

  A step is `<checkpoints>/<step>/` with `state/` (Orbax writes `_CHECKPOINT_METADATA`
  and `state/_METADATA` when the save completes; an unfinished save is a
  `<step>.orbax-checkpoint-tmp-*` directory). Reads only the file system, so it runs in
  `validate` before any work; data that is cut short inside the array files is found
  when the state is restored (`mer_jax.train.state.load_trained_params`).
  """
  path = path.rstrip("/")
  name = os.path.basename(path)
  root = epath.Path(path)  # local or gs://
  if ".orbax-checkpoint-tmp" in name:
    return "is an unfinished save (Orbax's temporary directory); use a completed step"
  if not name.isdigit():
    latest = _latest_step(path)
    if latest:
      return f"holds checkpoint steps, not one step; use one, e.g. the latest: {latest}"
    runs = [os.path.join(path, "checkpoints")] + [
        os.path.join(path, p.name, "checkpoints") for p in sorted(root.iterdir())
    ]
    latest = [s for s in (_latest_step(r) for r in runs if epath.Path(r).is_dir()) if s]
    if latest:
      return f"is a run directory, not a checkpoint step; use e.g. {' or '.join(latest)}"
    return "is not a checkpoint step directory (expected .../checkpoints/<step> holding state/)"
  if not (root / "state").is_dir():
    return "has no state/ directory (a partial copy, or not a mer-jax checkpoint step)"
  for marker in ("_CHECKPOINT_METADATA", os.path.join("state", "_METADATA")):
    file = root / marker
    if not file.is_file() or not file.stat().length:
      return f"is incomplete: {marker} is missing or empty (the save did not finish, or a partial copy)"
    try:
      json.loads(file.read_text())
    except (OSError, ValueError) as e:
      return f"is damaged: {marker} is not readable JSON ({e})"
  return ""


def _validate_model(config) -> None:
  for part in ("llm", "vision", "audio"):
    hf_dir = _existing_path(config, f"model.{part}.hf_dir", required=False, is_dir=True)
    if hf_dir and not os.path.exists(os.path.join(hf_dir, "config.json")):
      raise ConfigError(f"config.model.{part}.hf_dir: {hf_dir!r} has no config.json")
    arch = _get(config, f"model.{part}.arch")
    arch_file = _get(config, f"model.{part}.arch_file")
    if not hf_dir and not arch_file and not arch:
      raise ConfigError(f"config.model.{part}: set hf_dir, arch_file or arch")
  if config.preset == "paper" and not config.model.llm.hf_dir:
    raise ConfigError(
        "config.model.llm.hf_dir is required by the paper preset "
        "(path to Qwen2.5-7B-Instruct in Hugging Face format)"
    )
  _one_of(config, "model.llm.trainable", ("lora", "full"))
  _int(config, "model.audio.num_last_layers", 1)
  _one_of(config, "model.fusion.type", ("attention", "qformer", "mean", "none"))
  _one_of(config, "model.fusion.init", ("torch", "normal"))
  _int(config, "model.fusion.qformer_layers", 1)
  _int(config, "model.lora.rank", 0)
  _number(config, "model.lora.alpha", 0.0)
  _number(config, "model.lora.dropout", 0.0, 1.0, hi_open=True)
  targets = _get(config, "model.lora.targets")
  allowed = {"q", "k", "v", "o", "gate", "up", "down"}
  if not set(targets) <= allowed:
    raise ConfigError(
        f"config.model.lora.targets must be a subset of {sorted(allowed)}, "
        f"got {tuple(targets)!r}"
    )
  for field in ("model.dtype", "model.param_dtype", "model.frozen_dtype"):
    _one_of(config, field, ("float32", "bfloat16", "float16"))
  _check(config, "model.scan_layers", lambda v: isinstance(v, bool), "a bool")
  _one_of(config, "model.remat_policy", ("none", "full", "dots"))


def _validate_data(config) -> None:
  source = _one_of(config, "data.source", ("synthmer", "released"))
  _one_of(config, "data.face_or_frame", ("face", "frame"))
  _one_of(config, "data.question", ("hybrid", "description", "labels"))
  target = _one_of(config, "data.target", ("think_answer", "answer", "hybrid"))
  _one_of(config, "data.over_length", ("drop", "cut"))
  for field in (
      "num_frames",
      "num_audio_clips",
      "sample_rate",
      "image_size",
      "max_length",
      "batch_size",
      "eval_batch_size",
  ):
    _int(config, f"data.{field}", 1)
  _int(config, "data.worker_count", 0)
  _int(config, "data.decode_workers", 0)
  _int(config, "data.features_batch_size", 1)
  _int(config, "data.features_shard_clips", 1)
  _check(config, "data.features_dir", lambda v: isinstance(v, str), "a path string")
  _number(config, "data.audio_clip_seconds", 0.1)
  buckets = _get(config, "data.length_buckets")
  if (
      not buckets
      or any(not isinstance(b, int) or b < 1 for b in buckets)
      or list(buckets) != sorted(buckets)
      or buckets[-1] > config.data.max_length
  ):
    raise ConfigError(
        "config.data.length_buckets must be increasing positive integers "
        f"<= data.max_length ({config.data.max_length}), got {tuple(buckets)!r}"
    )
  tpm = _get(config, "data.tokens_per_modality")
  if set(tpm.keys()) != {"multi", "audio", "video"} or any(
      not isinstance(v, int) or v < 0 for v in tpm.values()
  ):
    raise ConfigError(
        "config.data.tokens_per_modality must map multi, audio, video to "
        f"integers >= 0, got {dict(tpm)!r}"
    )
  if source == "released":
    for field in ("root", "labels_csv", "subtitles_csv", "eval_labels_csv", "reasons_csv"):
      if "://" in str(config.data[field]):
        raise ConfigError(
            f"config.data.{field}: media and label files are read from a local path "
            "(mount a bucket with gcsfuse); features_dir and the workdir may be gs://"
        )
    # MER-UniBench scoring reads its own folders (eval.unibench_root), not data.root.
    unibench = config.mode == "eval" and config.eval.get("benchmark") == "unibench"
    root = _existing_path(config, "data.root", required=not unibench, is_dir=True)
    needs_train = config.mode in ("sft", "grpo", "oppo")
    needs_eval = config.mode not in ("export_hf", "predict", "features") and not unibench
    validation = config.eval.get("split") == "validation"
    _existing_path(config, "data.labels_csv", required=needs_train, base=root)
    _existing_path(config, "data.subtitles_csv", required=not unibench, base=root)
    # The RL and held-out/validation splits: files under their own root (or data.root).
    for prefix, labels, required in (
        ("rl", "rl_labels_csv", False),
        ("eval", "eval_labels_csv", needs_eval and not validation),
        ("eval", "val_labels_csv", needs_eval and validation),
    ):
      base = _existing_path(config, f"data.{prefix}_root", required=False, is_dir=True) or root
      _existing_path(config, f"data.{labels}", required=required, base=base)
      for kind in ("reasons_csv", "subtitles_csv"):
        _existing_path(config, f"data.{prefix}_{kind}", required=False, base=base)
    if config.mode == "features" and not (config.data.labels_csv or config.data.eval_labels_csv):
      raise ConfigError(
          "config.data.labels_csv and config.data.eval_labels_csv are both empty: "
          "mode features needs a split to encode"
      )
    _existing_path(
        config,
        "data.reasons_csv",
        required=needs_train and target in ("think_answer", "hybrid"),
        base=root,
    )
  else:
    s = "data.synthmer"
    for field in ("num_sft", "num_rl", "num_eval", "num_val", "frame_size"):
      _int(config, f"{s}.{field}", 1)
    _number(config, f"{s}.audio_seconds", 0.5)
    _number(config, f"{s}.sft_label_noise", 0.0, 1.0)
    _number(config, f"{s}.sft_face_only_rate", 0.0, 1.0)
    _number(config, f"{s}.conflict_rate", 0.0, 1.0)


def _validate_tokenizer(config) -> None:
  name = _get(config, "data.tokenizer")
  if name == "synthmer":
    return
  if not isinstance(name, str):
    raise ConfigError(f"config.data.tokenizer must be a directory or 'synthmer', got {name!r}")
  name = name or config.model.llm.hf_dir  # '' = the LLM's own tokenizer
  if not name:
    raise ConfigError(
        "config.data.tokenizer is required here: a Hugging Face tokenizer directory "
        "(or set config.model.llm.hf_dir, whose tokenizer is then used) or 'synthmer'"
    )
  if name.startswith("gs://"):
    return
  if not os.path.isdir(name):
    raise ConfigError(f"config.data.tokenizer: directory {name!r} does not exist")
  if not any(os.path.exists(os.path.join(name, f)) for f in TOKENIZER_FILES):
    raise ConfigError(f"config.data.tokenizer: {name!r} holds none of {', '.join(TOKENIZER_FILES)}")


def _validate_train(config) -> None:
  _int(config, "train.steps", 1)
  _number(config, "train.init_lr", 0.0)
  _number(config, "train.peak_lr", 0.0)
  _number(config, "train.min_lr", 0.0)
  _int(config, "train.warmup_steps", 0)
  _one_of(config, "train.schedule", ("constant", "cosine", "linear"))
  _number(config, "train.weight_decay", 0.0)
  _number(config, "train.b1", 0.0, 1.0, hi_open=True)
  _number(config, "train.b2", 0.0, 1.0, hi_open=True)
  _number(config, "train.grad_clip", 0.0)
  accum = _int(config, "train.grad_accum", 1)
  if config.data.batch_size % accum:
    raise ConfigError(
        f"config.data.batch_size ({config.data.batch_size}) must be divisible by "
        f"config.train.grad_accum ({accum})"
    )
  _int(config, "train.log_every", 1)
  _one_of(config, "train.split", ("sft", "rl"))
  _int(config, "checkpoint.every_steps", 0)
  _int(config, "checkpoint.keep", 1)
  if config.mode in ("grpo", "oppo") and config.checkpoint.init_from:
    raise ConfigError(
        f"config.checkpoint.init_from is not used by mode {config.mode}: its cold-start "
        "checkpoint is config.grpo.init_checkpoint"
    )
  _checkpoint_path(
      config,
      "checkpoint.init_from",
      required=config.mode == "export_hf" or (config.mode == "eval" and config.preset == "paper"),
      many=config.mode == "eval",  # mode eval scores every checkpoint of a directory
  )


def _validate_mesh(config) -> None:
  fills = 0
  for axis in ("data", "fsdp", "tensor"):
    size = _check(
        config,
        f"mesh.{axis}",
        lambda v: isinstance(v, int) and (v == -1 or v >= 1),
        "a positive integer or -1 (fill)",
    )
    fills += size == -1
  if fills > 1:
    raise ConfigError("config.mesh: at most one of data, fsdp, tensor may be -1")


def _validate_eval(config) -> None:
  _int(config, "eval.every_steps", 0)
  _int(config, "eval.max_new_tokens", 1)
  _number(config, "eval.temperature", 0.0)
  _one_of(config, "eval.decoding", ("greedy", "official"))
  _int(config, "eval.num_samples", 0)
  _one_of(config, "eval.level", ("level1", "level2"))
  _one_of(config, "eval.split", ("heldout", "validation"))
  lexicon = _get(config, "eval.lexicon")
  if lexicon != "builtin":
    if not (isinstance(lexicon, str) and lexicon.startswith("official:")):
      raise ConfigError(f"config.eval.lexicon must be 'builtin' or 'official:DIR', got {lexicon!r}")
    if not os.path.isdir(lexicon[len("official:") :]):
      raise ConfigError(
          f"config.eval.lexicon: directory {lexicon[len('official:'):]!r} does not exist"
      )
  benchmark = _one_of(config, "eval.benchmark", ("heldout", "unibench"))
  if benchmark == "unibench" and config.mode == "eval":
    from input_pipeline import unibench  # no JAX: plain file-layout tables

    root = _existing_path(config, "eval.unibench_root", required=False, is_dir=True)
    try:
      sets = unibench.selected(config.eval.unibench_datasets)
      folders = unibench.parse_folders(config.eval.unibench_folders)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    for spec in sets:
      directory = unibench.folder(spec, root, folders)
      if not root and spec.name not in folders:
        raise ConfigError(
            "config.eval.unibench_root is required by eval.benchmark='unibench' "
            f"(or name every set in config.eval.unibench_folders; {spec.name} is missing)"
        )
      if not os.path.isfile(os.path.join(directory, spec.labels)):
        raise ConfigError(
            f"config.eval.unibench_root: {spec.name} needs {os.path.join(directory, spec.labels)}"
        )
  extractor = _get(config, "eval.extractor")
  if extractor != "rules":
    if not (isinstance(extractor, str) and extractor.startswith("llm:")):
      raise ConfigError(f"config.eval.extractor must be 'rules' or 'llm:HF_DIR', got {extractor!r}")
    llm_dir = extractor[len("llm:") :]
    if not os.path.isfile(os.path.join(llm_dir, "config.json")):
      raise ConfigError(f"config.eval.extractor: {llm_dir!r} is not a Hugging Face model directory")


def _validate_decode(config) -> None:
  _one_of(config, "decode.layout", ("replicated", "train"))
  _one_of(config, "decode.dtype", ("", "float32", "bfloat16"))
  _one_of(config, "decode.lora", ("merge", "adapter"))
  _int(config, "decode.slots", 0)


def _validate_grpo(config) -> None:
  g = "grpo"
  _checkpoint_path(config, f"{g}.init_checkpoint", required=config.preset == "paper")
  for field in (
      "steps",
      "prompts_per_step",
      "num_iterations",
      "grad_accum",
      "max_new_tokens",
      "log_every",
  ):
    _int(config, f"{g}.{field}", 1)
  _int(config, f"{g}.num_generations", 2)
  _int(config, f"{g}.warmup_steps", 0)
  _int(config, f"{g}.top_k", 0)
  _number(config, f"{g}.lr", 0.0)
  _number(config, f"{g}.weight_decay", 0.0)
  _number(config, f"{g}.grad_clip", 0.0)
  _number(config, f"{g}.temperature", 0.0)
  _number(config, f"{g}.top_p", 0.0, 1.0)
  if config.grpo.top_p == 0.0:
    raise ConfigError("config.grpo.top_p must be in (0, 1], got 0.0")
  _number(config, f"{g}.clip_eps", 0.0, 1.0)
  _number(config, f"{g}.clip_eps_high", 0.0, 1.0)
  _number(config, f"{g}.beta", 0.0)
  _one_of(config, f"{g}.kl_estimator", ("k3",))
  _one_of(config, f"{g}.loss_agg", ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"))
  _check(config, f"{g}.scale_rewards", lambda v: isinstance(v, bool), "a bool")
  _one_of(config, f"{g}.length_penalty", ("none", "p1", "p2", "p3", "p3_shifted"))
  _one_of(config, f"{g}.schedule", ("constant", "linear"))
  _one_of(config, f"{g}.beta_schedule", ("constant", "decay_to_quarter"))
  _one_of(config, f"{g}.judge", ("cue_overlap", "llm"))
  rewards = _get(config, f"{g}.rewards")
  for name, weight in rewards.items():
    if name not in REWARD_NAMES:
      raise ConfigError(
          f"config.grpo.rewards: unknown reward {name!r}; known: {', '.join(REWARD_NAMES)}"
      )
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
      raise ConfigError(f"config.grpo.rewards.{name} must be a number, got {weight!r}")
  if not rewards:
    raise ConfigError("config.grpo.rewards must name at least one reward")
  if config.data.batch_size < 1:
    raise ConfigError("config.data.batch_size must be >= 1")


def _validate_oppo(config) -> None:
  o = "oppo"
  _number(config, f"{o}.alpha", 0.0)
  _number(config, f"{o}.delta", 0.0, 1.0, hi_open=True)
  _number(config, f"{o}.rho", 0.0, 1.0)
  _number(config, f"{o}.loss_beta", 0.0)
  _one_of(config, f"{o}.loss_scope", ("routed", "all"))
  _one_of(config, f"{o}.cue_extractor", ("rules", "llm"))
  _one_of(config, f"{o}.probe_answerer", ("reasoning", "ask"))
  _one_of(config, f"{o}.loss_kl", ("exact", "k1"))
  _check(config, f"{o}.masked_grad", lambda v: isinstance(v, bool), "a bool")
  _one_of(config, f"{o}.loss_norm", ("grpo", "modality_mean"))
  _one_of(config, f"{o}.omni_form", ("paper", "public"))
  _check(config, f"{o}.embedding_instruction", lambda v: isinstance(v, str), "a string")
  _number(config, f"{o}.utilization_threshold", -1.0, 1.0)
  model = _get(config, f"{o}.embedding_model")
  if model != "minilm":
    _existing_path(config, f"{o}.embedding_model", required=True, is_dir=True)


def batch_fields(config) -> dict[str, int]:
  """Every global batch the run splits over the mesh: field description -> rows."""
  fields = {
      "config.data.batch_size": int(config.data.batch_size),
      "config.data.eval_batch_size": int(config.data.eval_batch_size),
  }
  if config.mode in ("grpo", "oppo"):
    g = config.grpo
    fields["config.grpo.prompts_per_step"] = int(g.prompts_per_step)
    fields["config.grpo.prompts_per_step x num_generations"] = int(
        g.prompts_per_step * g.num_generations
    )
  if config.mode in ("export_hf", "features"):
    fields = {}
  return fields


def validate_layout(config, num_devices: int, num_processes: int) -> tuple[int, int, int]:
  """Checks the mesh and batch sizes against the devices and processes; returns the mesh shape.

  Runs once JAX knows its devices, before any data or weights are read. A single process
  may run a batch that data x fsdp does not divide (it falls back to fewer batch axes);
  with several processes every host feeds its own rows, so each batch must split evenly.
  """
  from mer_jax.train import mesh as mesh_lib  # JAX is initialized by now

  try:
    shape = mesh_lib.mesh_shape(config.mesh, num_devices)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if num_processes == 1:
    return shape
  ways = shape[0] * shape[1]
  if ways % num_processes:
    raise ConfigError(
        f"config.mesh: data x fsdp = {ways} must be a multiple of the {num_processes} "
        f"processes (each process feeds the batch rows of its own devices); mesh {shape}"
    )
  for field, rows in batch_fields(config).items():
    if rows % ways:
      raise ConfigError(
          f"{field} = {rows} does not split over data x fsdp = {ways} devices of this "
          f"{num_processes}-process mesh; use a multiple of {ways} (e.g. {ways * -(-rows // ways)})"
      )
  return shape


def fidelity_warnings(config) -> list[str]:
  """Settings of a valid config under which its numbers are not comparable to the papers'."""
  out = []
  if config.preset == "paper" and config.eval.lexicon == "builtin":
    out.append(
        "config.eval.lexicon='builtin': emotion-wheel scores are NOT comparable to the papers' "
        "(pass --config.eval.lexicon=official:DIR with the released emotion-wheel files)"
    )
  return out


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks every field the run will read; raises ConfigError naming the first bad one."""
  _one_of(config, "mode", MODES)
  _one_of(config, "preset", PRESETS)
  _int(config, "seed", 0)
  _validate_model(config)
  _validate_data(config)
  _validate_tokenizer(config)
  _validate_train(config)
  _validate_mesh(config)
  _validate_eval(config)
  _validate_decode(config)
  if config.mode in ("grpo", "oppo"):
    if not _has(config, "grpo"):
      raise ConfigError(
          f"config.grpo is missing; mode {config.mode!r} needs configs/grpo.py or configs/oppo.py"
      )
    _validate_grpo(config)
  if config.mode == "oppo":
    if not _has(config, "oppo"):
      raise ConfigError("config.oppo is missing; mode 'oppo' needs configs/oppo.py")
    _validate_oppo(config)
  return config
