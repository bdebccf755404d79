"""Multi-host correctness and resume: the same features, global batches, losses and rewards
for any number of processes, and after a SIGKILL.

The end-to-end tests run the GRPO job (`configs/grpo.py:test`: SFT cold start, its
evaluation, GRPO, evaluation) and the OPPO job (OPPO's loss, reward and MEP from the GRPO
job's SFT checkpoint, so SFT is checked once), each launched three times:

1. 1 process x 4 fake CPU devices, uninterrupted: the reference;
2. 2 processes x 2 devices (`launch/local_multiprocess.sh`: real `jax.distributed` with
   gloo collectives on 127.0.0.1, the same fsdp 2 x tensor 2 mesh), SIGKILLed (every
   process) right after its RL checkpoint KILL_AT is complete; the first 2-process run
   has its own features pass (the processes encode disjoint shards), the OPPO runs read
   the features of the GRPO runs with the same process count;
3. the same command in 1 process on the killed run's workdir: it resumes there.

Everything logged before the kill (SFT losses, the SFT evaluation, RL steps 1..KILL_AT)
compares 2 processes with 1; everything after it the resume from a SIGKILL, with another
process count, too. metrics.jsonl (losses, rewards and each component, advantages, KL,
entropy, MEP), the features and the predictions of both evaluations must be equal. In
these runs (tests/run_hooks.py) the `format` reward, always 0 for random-init policies,
scores a hash of each completion and its clip, so groups have reward variance and a
reward attached to the wrong completion, group or process changes the losses.
"""

import json
import os
import pathlib
import resource
import signal
import subprocess
import sys
import time

import grain
import numpy as np
import pytest

from input_pipeline import datasets
from input_pipeline import features
from mer_jax import run_io
from tests import run_hooks

REPO = pathlib.Path(__file__).resolve().parents[1]
SFT_STEPS, RL_STEPS, KILL_AT = 4, 4, 2
# The test preset where it does not matter: few generated clips, a short evaluation.
OVERRIDES = (
    f"--config.train.steps={SFT_STEPS}",
    f"--config.grpo.steps={RL_STEPS}",
    f"--config.checkpoint.every_steps={KILL_AT}",
    "--config.data.synthmer.num_sft=16",
    "--config.data.synthmer.num_eval=4",
    "--config.eval.max_new_tokens=4",
    # 16 + 8 + 4 clips in 7 shards of 4: process 0 encodes 4 shards, process 1 three.
    "--config.data.features_shard_clips=4",
    # Batches split 2 ways (one half per process), heads 2 ways within a process.
    "--config.mesh.fsdp=2",
    "--config.mesh.tensor=2",
)
JOBS = {
    "grpo": ("--config=configs/grpo.py:test",),
    # PAPO scope: the masked-modality KL on every completion token (random-init policies
    # write no think clauses for the routed scope to find), at a weight that shows.
    "oppo": (
        "--config=configs/oppo.py:test",
        "--config.oppo.loss_scope=all",
        "--config.oppo.loss_beta=1.0",
        # The GRPO job's data, so that both read the same features.
        "--config.data.synthmer.sft_face_only_rate=0.6",
    ),
}
# Wall-clock and CPU figures of each launch, printed at the end of the module (pytest -s).
TIMINGS: list[str] = []


def _gloo_missing() -> str | None:
  try:
    from jax._src.lib import _jax
  except ImportError:
    return "this jaxlib does not expose its C++ module"
  if not hasattr(_jax, "make_gloo_tcp_collectives"):
    return "this jaxlib has no gloo CPU collectives (needed for multi-process JAX on CPU)"
  return None


def _global_batches(sampler_rows, process_count, steps=4, batch=4, num_records=10, num_epochs=None):
  """Per step, the record keys and rng draws each process reads, in global-batch row order."""
  per_step = [[None] * batch for _ in range(steps)]
  for p, rows in enumerate(sampler_rows):
    options = grain.sharding.ShardOptions(
        shard_index=p, shard_count=process_count, drop_remainder=True
    )
    sampler = datasets.GlobalBatchSampler(
        num_records, batch, rows, options, seed=3, num_epochs=num_epochs
    )
    for j in range(steps * len(rows)):  # the loader's local item j is sampler[j * count + p]
      record = sampler[j * process_count + p]
      step, r = divmod(j, len(rows))
      per_step[step][rows[r]] = (record.record_key, record.rng.integers(1 << 30))
  return per_step


@pytest.mark.parametrize("layout", [((0, 1), (2, 3)), ((0, 2), (1, 3)), ((1,), (3,), (0,), (2,))])
def test_global_batch_is_the_same_for_any_process_layout(layout):
  single = _global_batches([(0, 1, 2, 3)], 1)
  assert _global_batches(list(layout), len(layout)) == single
  keys = [k for step in single for k, _ in step]
  assert (
      sorted(keys[:8]) != keys[:8] and len(set(keys[:8])) == 8
  )  # shuffled, no repeats in an epoch


def test_finite_epochs_drop_the_partial_global_batch():
  options = grain.sharding.ShardOptions(shard_index=1, shard_count=2, drop_remainder=True)
  sampler = datasets.GlobalBatchSampler(10, 4, (2, 3), options, seed=0, num_epochs=1)
  assert len(sampler) == 2 * 2 * 2  # 2 global batches of 10 records, 2 rows each, 2 shards
  with pytest.raises(IndexError):
    sampler[len(sampler)]


def test_pad_tokens():
  batch = {
      "input_ids": np.array([[5, 6, 1]]),
      "attention_mask": np.array([[1, 1, 0]]),
      "loss_mask": np.array([[0.0, 1.0, 0.0]]),
      "vision_feats": np.zeros((1, 2, 3)),
  }
  right = datasets.pad_tokens(batch, 5, pad_id=1, left_pad=False)
  np.testing.assert_array_equal(right["input_ids"], [[5, 6, 1, 1, 1]])
  np.testing.assert_array_equal(right["loss_mask"], [[0, 1, 0, 0, 0]])
  left = datasets.pad_tokens(batch, 4, pad_id=9, left_pad=True)
  np.testing.assert_array_equal(left["input_ids"], [[9, 5, 6, 1]])
  np.testing.assert_array_equal(left["attention_mask"], [[0, 1, 1, 0]])
  assert left["vision_feats"] is batch["vision_feats"]


def _env(base: pathlib.Path, devices: int, **extra: str) -> dict:
  env = dict(os.environ)
  flags = [
      f
      for f in env.get("XLA_FLAGS", "").split()
      if not f.startswith("--xla_force_host_platform_device_count")
  ]
  env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={devices}"])
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHON"] = sys.executable
  hooks = run_hooks.sitecustomize_dir(base / "hooks")
  env["PYTHONPATH"] = os.pathsep.join([str(hooks), str(REPO), env.get("PYTHONPATH", "")])
  env["MER_JAX_TEST_TEXT_REWARD"] = "1"
  env.update(extra)
  return env


def _launch(name: str, command: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
  """Runs `command` in its own process group (killed whole on timeout); records its cost."""
  t0, before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
  proc = subprocess.Popen(
      command,
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      start_new_session=True,
  )
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    pytest.fail(f"{name} ran past {timeout}s:\n{out[-4000:]}")
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
  TIMINGS.append(f"{name}: {time.time() - t0:.0f}s wall, {cpu:.0f} CPU-s")
  return subprocess.CompletedProcess(command, proc.returncode, out)


def _run(base, mode: str, workdir: pathlib.Path, processes: int, *extra: str, **env: str):
  """`mode`'s test job on 4 fake CPU devices in 1 or 2 processes in `workdir`
  (`<mode>-1x4` or `<mode>-2x2`), features in `base/1x4-features` or `base/2x2-features`
  by the workdir (a resume keeps its run's), shared by the GRPO and OPPO jobs."""
  features_dir = base / f"{workdir.name.rsplit('-', 1)[1]}-features"
  args = [*JOBS[mode], *OVERRIDES, *extra, f"--workdir={workdir}"]
  args.append(f"--config.data.features_dir={features_dir}")
  name = f"{mode} {workdir.name} in {processes} process(es)"
  if processes == 1:
    command = [sys.executable, "-m", "mer_jax.main", *args]
    return _launch(name, command, _env(base, 4, **env), timeout=600)
  env = dict(env, MER_JAX_LOG_DIR=str(base / f"logs-{mode}"))
  command = ["bash", str(REPO / "launch" / "local_multiprocess.sh"), "-n", "2", "-d", "2", "--"]
  return _launch(name, [*command, *args], _env(base, 2, **env), timeout=900)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """A directory shared by the module's jobs; its `grpo-1x4` is the GRPO job in 1 process
  (the GRPO test's reference; its SFT checkpoint is the OPPO job's cold start)."""
  reason = _gloo_missing()
  if reason:
    pytest.skip(reason)
  base = tmp_path_factory.mktemp("multihost")
  run = _run(base, "grpo", base / "grpo-1x4", 1)
  assert run.returncode == 0, run.stdout[-6000:]
  return base


def _stored_features(features_dir) -> dict:
  (key_dir,) = [d for d in features_dir.iterdir() if d.is_dir()]
  store = features.FeatureStore(str(key_dir))
  manifest = features.load_manifest(str(key_dir))
  return {name: store[name] for name in manifest.clips}


# Wall-clock figures of a step, not results.
_TIMING_KEYS = ("step_time_s", "rollout_s", "tokens_per_s", "samples_per_sec")


def _metrics(workdir) -> dict[tuple[str, int], dict[str, float]]:
  """(phase, step) -> the logged figures (phase: `sft`, `grpo`, `eval_sft`, ...)."""
  out: dict[tuple[str, int], dict[str, float]] = {}
  for r in run_io.read_metrics(str(workdir)):
    for k, v in r.items():
      if k != "step" and isinstance(v, (int, float)) and not k.endswith(_TIMING_KEYS):
        phase = k.split("/", 1)[0]
        figures = out.setdefault((phase, r["step"]), {})
        assert k not in figures, f"{k} written more than once at step {r['step']}"
        figures[k] = float(v)
  return out


def _assert_same_metrics(a: dict, b: dict, what: str) -> None:
  assert sorted(a) == sorted(b), (what, sorted(a), sorted(b))
  for key in sorted(a):
    assert sorted(a[key]) == sorted(b[key]), (what, key)
    for k in a[key]:
      assert abs(a[key][k] - b[key][k]) <= 1e-5 * max(
          1.0, abs(a[key][k])
      ), f"{what}: {key} {k}: {a[key][k]} vs {b[key][k]}"


def _sft_checkpoint(base):
  return base / "grpo-1x4" / "sft" / "checkpoints" / str(SFT_STEPS)


@pytest.mark.parametrize("mode", ["grpo", "oppo"])
def test_rl_job_equal_for_1x4_and_2x2_killed_then_resumed_in_1x4(mode, base):
  # OPPO starts from the GRPO job's SFT checkpoint (SFT, its resume and its process
  # counts are checked once, with GRPO) and reads the features the GRPO runs wrote.
  extra = () if mode == "grpo" else (f"--config.grpo.init_checkpoint={_sft_checkpoint(base)}",)
  single, multi = base / f"{mode}-1x4", base / f"{mode}-2x2"
  if mode != "grpo":
    run = _run(base, mode, single, 1, *extra)
    assert run.returncode == 0, run.stdout[-6000:]
  # 2 processes, both SIGKILLed as soon as RL checkpoint KILL_AT is on disk.
  kill = f"{multi / mode / 'checkpoints'}:{KILL_AT}"
  encoded = not (base / "2x2-features").exists()
  killed = _run(base, mode, multi, 2, *extra, MER_JAX_TEST_KILL_AFTER=kill)
  logs = [(base / f"logs-{mode}" / f"process_{i}.log").read_text() for i in range(2)]
  assert killed.returncode != 0 and "Traceback" not in "".join(logs), killed.stdout[-6000:]
  before_kill = _metrics(multi)
  # The same command in one process resumes the 2-process run.
  resumed = _run(base, mode, multi, 1, *extra)
  assert resumed.returncode == 0, resumed.stdout[-6000:]

  a, b = _metrics(single), _metrics(multi)
  # Processes alone: everything logged before the kill (SFT, its evaluation, RL 1..KILL_AT).
  _assert_same_metrics(
      {k: a[k] for k in before_kill}, before_kill, "1 process vs 2 processes (before the kill)"
  )
  assert max(s for p, s in before_kill if p == mode) == KILL_AT  # killed right after it
  # After the resume in one process, the run continues as if uninterrupted.
  _assert_same_metrics(a, b, "1 process vs 2 processes killed and resumed in 1")
  sft_steps = list(range(1, SFT_STEPS + 1)) if mode == "grpo" else []
  assert sorted(s for p, s in a if p == "sft") == sft_steps
  assert sorted(s for p, s in a if p == mode) == list(range(1, RL_STEPS + 1))
  assert all(a[mode, s][f"{mode}/advantage_std"] > 0 for s in range(1, RL_STEPS + 1))
  if mode == "grpo":
    assert a["sft", SFT_STEPS]["sft/loss"] < a["sft", 1]["sft/loss"]
  else:
    assert all(a[mode, s]["oppo/omni/kl_video"] > 0 for s in range(1, RL_STEPS + 1))
    assert "mep_sft/utilization_recall" in a["mep_sft", 0]
  if encoded:
    # The two processes encoded disjoint shards of the clips into one manifest whose
    # features equal those of the single process.
    one = _stored_features(base / "1x4-features")
    two = _stored_features(base / "2x2-features")
    assert sorted(one) == sorted(two) and len(one) == 28
    for name in one:
      for key in features.FEATURE_KEYS:
        np.testing.assert_allclose(one[name][key], two[name][key], atol=1e-5)
    assert "(4 shards)" in logs[0] and "(3 shards)" in logs[1], logs
  for phase in ("sft", mode):
    # Process 0 alone wrote the run outputs (one evaluation line).
    lines = [r for r in run_io.read_metrics(str(multi)) if f"eval_{phase}/ew_f1" in r]
    assert len(lines) == 1 and lines[0][f"eval_{phase}/num_samples"] == 4
    # The same greedy completions for the same clips.
    read = lambda d, phase=phase: sorted((d / phase / "predictions.csv").read_text().splitlines())
    assert read(single) == read(multi)
  # The data position of a 2-process checkpoint: one JSON for all processes.
  for phase, step in ((("sft", SFT_STEPS),) if mode == "grpo" else ()) + ((mode, KILL_AT),):
    position = json.loads(
        (multi / phase / "checkpoints" / str(step) / "data" / "metadata").read_text()
    )
    assert position["global_batches"] == step


def teardown_module():
  if TIMINGS:
    print("\nmultihost launches: " + "; ".join(TIMINGS))
