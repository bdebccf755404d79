#!/usr/bin/env bash
# Create (optionally), set up and run mer-jax on every worker of a Cloud TPU VM slice.
#
#   launch/tpu_pod.sh create  NAME ZONE ACCELERATOR [VERSION]   # e.g. mer v5litepod-64 us-west4-a
#   launch/tpu_pod.sh install NAME ZONE                         # copy this checkout, pip install on all workers
#   launch/tpu_pod.sh run     NAME ZONE -- MAIN_FLAGS...        # python -m mer_jax.main on all workers
#   launch/tpu_pod.sh delete  NAME ZONE
#
# Example (the paper recipe on a v5e-64 slice, outputs in a bucket mounted with gcsfuse
# at /gcs/my-bucket on every worker; the run writers use plain file I/O):
#   launch/tpu_pod.sh create mer us-west4-a v5litepod-64
#   launch/tpu_pod.sh install mer us-west4-a
#   launch/tpu_pod.sh run mer us-west4-a -- --config=configs/grpo.py:paper \
#       --workdir=/gcs/my-bucket/mer/run1 --config.mesh.data=4 --config.mesh.fsdp=16 \
#       --config.model.llm.hf_dir=/ckpt/Qwen2.5-7B-Instruct ...
#
# Every worker runs the same command: JAX finds the other workers itself (Cloud TPU
# metadata, `TPU_WORKER_HOSTNAMES`; mer_jax.main calls jax.distributed.initialize()), each
# worker loads its own rows of every global batch, and process 0 writes the run outputs.
# The workdir, data and HF weights must be readable by every worker (a gcsfuse-mounted
# bucket, or the same path copied to each worker). Mesh choices per slice: docs/scaling.md.
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
      python3 -m pip install -q --upgrade pip && python3 -m pip install -q -e '.[tpu]'"
    rm -f "$archive"
    ;;
  run)
    [[ "${1:-}" == "--" ]] && shift
    # Quote each flag for the remote shell; all workers start together and log to ~/mer_jax.log.
    args=$(printf ' %q' "$@")
    ssh_all "cd $remote_dir && MER_JAX_DISTRIBUTED=1 python3 -m mer_jax.main$args 2>&1 | tee ~/mer_jax.log"
    ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone="$zone" $project_flag --quiet
    ;;
  *)
    sed -n '2,21p' "$0"
    exit 2
    ;;
esac
