"""Cluster launch: layout validation before any work, launchers, mesh suggestions in the docs."""

import dataclasses
import itertools
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import pytest

from mer_jax import config_lib
from mer_jax import distributed

REPO = pathlib.Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "recipe_name,overrides,devices,processes,message",
    [
        # The paper batch of 3 on two 8-GPU nodes: refused before data or weights are read.
        ("sft", {}, 16, 2, "config.data.batch_size = 3 does not split over data x fsdp = 16"),
        (
            "grpo",
            {"data.batch_size": 16, "data.eval_batch_size": 16},
            16,
            2,
            "prompts_per_step = 1",
        ),
        ("sft", {"mesh.fsdp": 4}, 16, 2, "config.mesh {'data': 1, 'fsdp': 4, 'tensor': 1} needs 4"),
        ("sft", {"mesh.fsdp": 1, "mesh.tensor": -1}, 16, 2, "data x fsdp = 1 must be a multiple"),
    ],
)
def test_layout_errors_name_the_field(recipe, recipe_name, overrides, devices, processes, message):
  config = recipe(recipe_name, "paper")
  for field, value in overrides.items():
    section, leaf = field.split(".")
    config[section][leaf] = value
  with pytest.raises(config_lib.ConfigError) as info:
    config_lib.validate_layout(config, devices, processes)
  assert message in str(info.value) and "\n" not in str(info.value)


def test_layout_accepts_what_splits(recipe):
  config = recipe("grpo", "paper")
  config.data.batch_size = config.data.eval_batch_size = 48
  config.grpo.prompts_per_step = 16
  assert config_lib.validate_layout(config, 16, 2) == (1, 16, 1)
  config.data.batch_size = 3  # one process may run any batch (it falls back to fewer axes)
  assert config_lib.validate_layout(config, 8, 1) == (1, 8, 1)


def test_tokenizer_is_checked_up_front(recipe, tmp_path):
  config = recipe("sft", "test")
  config.data.tokenizer = str(tmp_path / "missing")
  with pytest.raises(config_lib.ConfigError, match="config.data.tokenizer: directory"):
    config_lib.validate(config)
  config.data.tokenizer = str(tmp_path)
  with pytest.raises(config_lib.ConfigError, match="holds none of tokenizer.json"):
    config_lib.validate(config)
  (tmp_path / "tokenizer.json").write_text("{}")
  config_lib.validate(config)


def test_main_refuses_a_bad_layout_before_writing(tmp_path):
  """One line, exit 2, no workdir: the mesh does not fit the devices of this machine."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
  run = subprocess.run(
      [
          sys.executable,
          "-m",
          "mer_jax.main",
          "--config=configs/sft.py:test",
          "--config.mesh.fsdp=4",
          f"--workdir={tmp_path}/w",
      ],
      cwd=REPO,
      env=env,
      capture_output=True,
      text=True,
      timeout=120,
  )
  assert run.returncode == 2, run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith("config error")]
  assert errors == [
      "config error: config.mesh {'data': 1, 'fsdp': 4, 'tensor': 1} needs 4 devices, "
      "but 2 are available"
  ], run.stderr
  assert not (tmp_path / "w").exists()


def test_local_device_ids(monkeypatch):
  monkeypatch.setenv("MER_JAX_LOCAL_DEVICE_IDS", "0,1,2,3,4,5,6,7")
  assert distributed.local_device_ids() == list(range(8))
  monkeypatch.setenv("MER_JAX_LOCAL_DEVICE_IDS", "")
  assert distributed.local_device_ids() is None


# ----------------------------------------------------------------------------- SLURM


def _fake_bin(tmp_path) -> pathlib.Path:
  """`srun` runs its command; `scontrol` records its arguments; `python` is a fake trainer."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "srun").write_text('#!/usr/bin/env bash\nshift\nexec "$@"\n')
  (bin_dir / "scontrol").write_text(f'#!/usr/bin/env bash\necho "$@" >> {tmp_path}/scontrol\n')
  # Records the GPUs it was given and its flags, saves on SIGTERM, exits like an interrupted run.
  (bin_dir / "fake_python").write_text(
      "#!/usr/bin/env bash\n"
      f'echo "$MER_JAX_LOCAL_DEVICE_IDS $*" > {tmp_path}/trainer\n'
      f"trap 'sleep 1; echo saved >> {tmp_path}/trainer; exit 3' TERM\n"
      "while true; do sleep 0.1; done\n"
  )
  for f in bin_dir.iterdir():
    f.chmod(0o755)
  return bin_dir


def test_slurm_gives_all_gpus_and_requeues_at_the_time_limit(tmp_path):
  bin_dir = _fake_bin(tmp_path)
  env = dict(
      os.environ,
      PATH=f"{bin_dir}:{os.environ['PATH']}",
      PYTHON="fake_python",
      SLURM_JOB_ID="42",
      SLURM_JOB_NUM_NODES="2",
      SLURM_GPUS_ON_NODE="8",
      MER_JAX_DIR=str(tmp_path),
  )
  env.pop("MER_JAX_LOCAL_DEVICE_IDS", None)
  job = subprocess.Popen(
      ["bash", str(REPO / "launch" / "slurm_gpu.sbatch"), "--config=configs/sft.py:paper"],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )
  deadline = time.time() + 20
  while not (tmp_path / "trainer").exists() and time.time() < deadline:
    time.sleep(0.1)
  assert (tmp_path / "trainer").read_text().split() == [
      "0,1,2,3,4,5,6,7",
      "-m",
      "mer_jax.main",
      "--config=configs/sft.py:paper",
  ]
  job.send_signal(signal.SIGUSR1)  # what `--signal=B:USR1@300` sends before the time limit
  out, _ = job.communicate(timeout=30)
  assert job.returncode == 3, out
  assert (tmp_path / "trainer").read_text().strip().endswith("saved"), out
  assert (tmp_path / "scontrol").read_text().split() == ["requeue", "42"]


def test_slurm_script_asks_for_requeue_and_a_signal():
  text = (REPO / "launch" / "slurm_gpu.sbatch").read_text()
  assert "#SBATCH --requeue" in text and "#SBATCH --signal=B:USR1@" in text
  assert "#SBATCH --ntasks-per-node=1" in text


# ----------------------------------------------------------------------------- TPU meshes


@dataclasses.dataclass(frozen=True)
class _FakeTpu:
  id: int
  coords: tuple
  device_kind: str
  process_index: int
  core_on_chip: int = 0
  slice_index: int = 0
  platform: str = "tpu"


# accelerator type -> (device kind, physical chip topology x, y, z)
TOPOLOGIES = {
    "v5p-32": ("TPU v5p", (2, 2, 4)),
    "v5p-64": ("TPU v5p", (2, 4, 4)),
    "v5p-128": ("TPU v5p", (4, 4, 4)),
    "v5litepod-64": ("TPU v5 lite", (8, 8, 1)),
}


def _devices(accelerator: str) -> list:
  kind, topo = TOPOLOGIES[accelerator]
  coords = [(x, y, z) for z, y, x in itertools.product(*[range(t) for t in topo[::-1]])]
  return [_FakeTpu(i, c, kind, i // 4) for i, c in enumerate(coords)]


def _doc_meshes() -> list[tuple[str, tuple[int, int, int]]]:
  """(accelerator, mesh) of every `data:N,fsdp:M[,tensor:K]` in the TPU rows of docs/scaling.md."""
  out = []
  for line in (REPO / "docs" / "scaling.md").read_text().splitlines():
    accel = re.match(r"\| TPU (v5p-\d+|v5litepod-\d+)", line)
    if not accel:
      continue
    for spec in re.findall(r"`(data:[^`]+)`", line):
      sizes = dict(kv.split(":") for kv in spec.split(","))
      out.append((accel.group(1), tuple(int(sizes.get(a, 1)) for a in ("data", "fsdp", "tensor"))))
  return out


def test_docs_suggest_meshes_that_jax_make_mesh_accepts():
  meshes = _doc_meshes()
  assert {a for a, _ in meshes} >= {"v5p-128", "v5litepod-64"}, meshes
  auto = (jax.sharding.AxisType.Auto,) * 3
  for accelerator, shape in meshes:
    jax.make_mesh(shape, ("data", "fsdp", "tensor"), auto, devices=_devices(accelerator))
  # The check has teeth: 8 x 8 does not map onto the 4 x 4 x 4 chips of a v5p-128.
  with pytest.raises(NotImplementedError, match="Failed to find assignment"):
    jax.make_mesh((8, 8, 1), ("data", "fsdp", "tensor"), auto, devices=_devices("v5p-128"))
