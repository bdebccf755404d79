#!/usr/bin/env bash
# N processes of mer_jax.main on this machine as one multi-process JAX job, on CPU.
#
#   launch/local_multiprocess.sh [-n NUM_PROCESSES] [-d DEVICES_PER_PROCESS] -- MAIN_FLAGS...
#   launch/local_multiprocess.sh -n 2 -d 2 -- --config=configs/sft.py:test --workdir=/tmp/run
#
# Each process gets DEVICES_PER_PROCESS fake CPU devices and joins the coordinator on a
# free 127.0.0.1 port (jax.distributed, gloo collectives); together they run exactly the
# program a pod or cluster runs. Logs go to $MER_JAX_LOG_DIR (default: a new temp dir),
# one file per process. Exits 0 when every process succeeds; when one fails, the others
# are stopped (they would wait on it forever in a collective) and the tails of all logs
# are printed.
set -euo pipefail

num_processes=2
devices=2
while getopts "n:d:h" opt; do
  case "$opt" in
    n) num_processes=$OPTARG ;;
    d) devices=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift

python=${PYTHON:-python}
repo=$(cd "$(dirname "$0")/.." && pwd)
log_dir=${MER_JAX_LOG_DIR:-$(mktemp -d -t mer_jax_local.XXXXXX)}
mkdir -p "$log_dir"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Our device count replaces any inherited one (e.g. from a test harness).
xla_flags="$(echo "${XLA_FLAGS:-}" | sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g') \
--xla_force_host_platform_device_count=${devices}"

echo "local_multiprocess: ${num_processes} processes x ${devices} CPU devices, coordinator 127.0.0.1:${port}, logs in ${log_dir}"
pids=()
for ((i = 0; i < num_processes; i++)); do
  (cd "$repo" && XLA_FLAGS="$xla_flags" JAX_PLATFORMS=cpu exec "$python" -m mer_jax.main "$@" \
      --jax_coordinator_address="127.0.0.1:${port}" --jax_num_processes="$num_processes" \
      --jax_process_id="$i") >"${log_dir}/process_${i}.log" 2>&1 &
  pids+=($!)
done

status=0
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  still=()
  for pid in "${running[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      still+=("$pid")
    elif ! wait "$pid" && ((status == 0)); then
      status=1
      kill "${pids[@]}" 2>/dev/null || true
    fi
  done
  running=("${still[@]+"${still[@]}"}")
  ((${#running[@]} > 0)) && sleep 1
done

if ((status != 0)); then
  for ((i = 0; i < num_processes; i++)); do
    echo "----- process ${i} (${log_dir}/process_${i}.log), last lines:"
    tail -n 25 "${log_dir}/process_${i}.log" | tr '\r' '\n' | tail -n 25
  done
  echo "local_multiprocess: FAILED" >&2
  exit 1
fi
echo "local_multiprocess: all ${num_processes} processes finished"
