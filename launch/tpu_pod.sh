#!/usr/bin/env bash
# Create (optionally), set up and run mer-jax on every worker of a Cloud TPU VM slice.
#
#   launch/tpu_pod.sh create  NAME ZONE ACCELERATOR [VERSION]   # e.g. mer v5litepod-64 us-west4-a
#   launch/tpu_pod.sh install NAME ZONE                         # copy this checkout, pip install on all workers
#   launch/tpu_pod.sh run     NAME ZONE -- MAIN_FLAGS...        # python -m mer_jax.main on all workers
#   launch/tpu_pod.sh delete  NAME ZONE
#
# Example (the paper recipe on a v5p-64 slice, outputs and features straight into a bucket):
#   launch/tpu_pod.sh create mer us-east5-a v5p-64
#   launch/tpu_pod.sh install mer us-east5-a
#   launch/tpu_pod.sh run mer us-east5-a -- --config=configs/grpo.py:paper \
#       --workdir=gs://my-bucket/mer/run1 --config.data.features_dir=gs://my-bucket/mer/features \
#       --config.mesh.data=4 --config.mesh.fsdp=8 --config.model.llm.hf_dir=/ckpt/Qwen2.5-7B-Instruct ...
#
# Every worker runs the same command: JAX finds the other workers itself (Cloud TPU
# metadata, `TPU_WORKER_HOSTNAMES`; mer_jax.main calls jax.distributed.initialize()), each
# worker loads its own rows of every global batch, and process 0 writes the run outputs.
# The data and HF weights must be readable by every worker (the same path on each, or a
# gcsfuse mount); the workdir and features_dir may be gs:// (`install` adds the gcs
# extra). Mesh choices per slice: docs/scaling.md.
#
# `run` restarts the job when it fails (a worker crashed, a maintenance event stopped it):
# it stops what is left of the run on every worker and starts the same command again, which
# resumes from the latest checkpoint in the workdir; up to MER_JAX_MAX_RESTARTS times
# (default 3), MER_JAX_RESTART_DELAY seconds apart (default 60).
set -euo pipefail

cmd=${1:?usage: launch/tpu_pod.sh create|install|run|delete NAME ZONE ...}
name=${2:?TPU name}
zone=${3:?zone}
shift 3
project_flag=${GCP_PROJECT:+--project=$GCP_PROJECT}
remote_dir=${MER_JAX_REMOTE_DIR:-mer-jax}
repo=$(cd "$(dirname "$0")/.." && pwd)

ssh_all() {
  gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" $project_flag --worker=all --command="$1"
}

case "$cmd" in
  create)
    accelerator=${1:?accelerator type, e.g. v5litepod-64 or v5p-128}
    version=${2:-v2-alpha-tpuv5-lite}
    gcloud compute tpus tpu-vm create "$name" --zone="$zone" $project_flag \
      --accelerator-type="$accelerator" --version="$version"
    ;;
  install)
    archive=$(mktemp -t mer_jax.XXXXXX.tar.gz)
    git -C "$repo" archive --format=tar.gz -o "$archive" HEAD
    gcloud compute tpus tpu-vm scp "$archive" "$name:mer-jax.tar.gz" --zone="$zone" $project_flag --worker=all
    ssh_all "mkdir -p $remote_dir && tar -xzf mer-jax.tar.gz -C $remote_dir && cd $remote_dir && \
      python3 -m pip install -q --upgrade pip && python3 -m pip install -q -e '.[tpu,gcs]'"
    rm -f "$archive"
    ;;
  run)
    [[ "${1:-}" == "--" ]] && shift
    # Quote each flag for the remote shell; all workers start together and log to
    # ~/mer_jax.log, each recording its process id so that a restart can stop it.
    args=$(printf ' %q' "$@")
    start="cd $remote_dir && echo \$\$ > ~/mer_jax.pid && \
      MER_JAX_DISTRIBUTED=1 exec python3 -m mer_jax.main$args >> ~/mer_jax.log 2>&1"
    # Stops the recorded process only if it still is ours (pids are reused).
    stop='p=$(cat ~/mer_jax.pid 2>/dev/null) && grep -qa mer_jax.main /proc/$p/cmdline 2>/dev/null && \
      { kill -TERM $p; sleep 30; kill -KILL $p 2>/dev/null; }; rm -f ~/mer_jax.pid; true'
    max_restarts=${MER_JAX_MAX_RESTARTS:-3}
    for ((attempt = 0; ; attempt++)); do
      if ssh_all "$start"; then
        echo "tpu_pod: run finished"
        break
      fi
      if ((attempt >= max_restarts)); then
        echo "tpu_pod: run failed $((attempt + 1)) times; giving up (logs: ~/mer_jax.log on each worker)" >&2
        exit 1
      fi
      echo "tpu_pod: run failed; restarting in ${MER_JAX_RESTART_DELAY:-60}s (restart $((attempt + 1)) of ${max_restarts}), resuming from the workdir" >&2
      ssh_all "$stop" || true
      sleep "${MER_JAX_RESTART_DELAY:-60}"
    done
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone="$zone" $project_flag --quiet
    ;;
  *)
    sed -n '2,26p' "$0"
    exit 2
    ;;
esac
