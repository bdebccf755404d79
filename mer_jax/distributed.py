"""Starting JAX for a run: persistent compile cache and the multi-process runtime.

Kept free of absl flag definitions so that tests and tools can import it next to any
entry point (two modules defining `--config` cannot be imported in one process).
"""

from __future__ import annotations

import os


class UsageError(ValueError):
  """Bad multi-process settings (flags or environment); main prints it as one line."""


def initialize(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> None:
  """Configures JAX before first use: compile cache, multi-process runtime.

  The three arguments are main's `--jax_*` flags; all None = single process unless a
  cluster (SLURM, Cloud TPU, `MER_JAX_DISTRIBUTED=1`) is detected.
  """
  import jax

  cache_dir = os.environ.get(
      "MER_JAX_COMPILATION_CACHE",
      os.path.join(os.path.expanduser("~"), ".cache", "mer_jax", "jax_cache"),
  )
  if cache_dir:
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  multi = coordinator_address is not None or num_processes is not None
  if multi:
    if coordinator_address is None or num_processes is None or process_id is None:
      raise UsageError(
          "multi-process runs need --jax_coordinator_address, --jax_num_processes "
          "and --jax_process_id together"
      )
    if (
        jax.config.jax_platforms in (None, "", "cpu")
        or os.environ.get("JAX_PLATFORMS", "") == "cpu"
    ):
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids(),
    )
  elif (
      os.environ.get("SLURM_JOB_ID")
      or os.environ.get("TPU_WORKER_HOSTNAMES")
      or os.environ.get("MER_JAX_DISTRIBUTED") == "1"
  ):
    # Cluster auto-detection (SLURM, Cloud TPU; launch/tpu_pod.sh sets MER_JAX_DISTRIBUTED
    # because ssh sessions on TPU VM workers need not export TPU_WORKER_HOSTNAMES).
    jax.distributed.initialize(local_device_ids=local_device_ids())


def local_device_ids() -> list[int] | None:
  """The accelerators this process drives, from `$MER_JAX_LOCAL_DEVICE_IDS` ("0,1,...,7").

  Under SLURM, `jax.distributed.initialize()` assumes one process per GPU and gives each
  process only the GPU numbered by its local task id; launch/slurm_gpu.sbatch runs one
  process per node and sets this variable so that the process drives all of the node's GPUs.
  """
  value = os.environ.get("MER_JAX_LOCAL_DEVICE_IDS", "").strip()
  if not value:
    return None
  try:
    return [int(v) for v in value.split(",")]
  except ValueError:
    raise UsageError(
        f"MER_JAX_LOCAL_DEVICE_IDS must be comma-separated integers, got {value!r}"
    ) from None
