#!/usr/bin/env bash
# overlay2 against vfs for the private engine, side by side in one run: the time and disk that
# loading an image, a small build on top of it and starting N containers from it take with each
# storage driver. vfs copies a whole image per container and per build step; overlay2 mounts
# layers. Figures, not assertions: docs/benchmarks.md keeps them with the date and machine.
#
#   scripts/bench_storage_driver.sh [image] [containers]
#
# The image is taken from the running private engine (`docker save`), which is then STOPPED for
# the measurement (never two engines at once on this 2-core machine) and started again after.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${1:-debian:trixie-slim}
COUNT=${2:-10}
MAIN_SOCK=${TM_ENGINE_DIR:-/var/tmp/tm-engine}/docker.sock
WORK=$(mktemp -d /var/tmp/tm-bench-driver.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

log() { printf 'bench-driver: %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.1f", a - b }'; }

log "saving $IMAGE from the private engine"
DOCKER_HOST="unix://$MAIN_SOCK" docker save "$IMAGE" -o "$WORK/image.tar"
log "stopping the private engine for the measurement"
bash scripts/engine.sh stop
for _ in $(seq 1 30); do DOCKER_HOST="unix://$MAIN_SOCK" docker version >/dev/null 2>&1 || break; sleep 1; done

measure() {
  local driver=$1 dir="$WORK/$1"
  mkdir -p "$dir"
  local sock="$dir/docker.sock"
  dockerd --storage-driver="$driver" --data-root="$dir/root" --exec-root="$dir/exec" \
    --host="unix://$sock" --pidfile="$dir/dockerd.pid" --bridge=none --iptables=false >"$dir/log" 2>&1 &
  export DOCKER_HOST="unix://$sock"
  for _ in $(seq 1 60); do docker version >/dev/null 2>&1 && break; sleep 1; done
  local t
  t=$(now); docker load -q -i "$WORK/image.tar" >/dev/null; local load_s; load_s=$(elapsed "$t")
  printf 'FROM %s\nRUN dd if=/dev/zero of=/blob bs=1M count=64 status=none\nRUN touch /second-step\n' "$IMAGE" \
    >"$dir/Dockerfile"
  t=$(now); DOCKER_BUILDKIT=0 docker build -q -t bench-driver "$dir" >/dev/null; local build_s
  build_s=$(elapsed "$t")
  t=$(now)
  for i in $(seq 1 "$COUNT"); do docker run -d --network none --name "c$i" bench-driver sleep 600 >/dev/null; done
  local run_s; run_s=$(elapsed "$t")
  local disk_mib; disk_mib=$(du -sm "$dir/root" | cut -f1)
  t=$(now); docker rm -f $(docker ps -aq) >/dev/null; local rm_s; rm_s=$(elapsed "$t")
  kill "$(cat "$dir/dockerd.pid")"; wait 2>/dev/null || true
  unset DOCKER_HOST
  printf '%-9s %8.1f %8.1f %10.1f %8.1f %9s\n' "$driver" "$load_s" "$build_s" "$run_s" "$rm_s" "$disk_mib"
}

{
  echo "image $IMAGE, $COUNT containers, $(nproc) cores, $(uname -r), $(date -u +%F)"
  printf '%-9s %8s %8s %10s %8s %9s\n' driver load_s build_s "run_${COUNT}_s" rm_s disk_mib
  measure overlay2
  measure vfs
} | tee "$WORK/result"
log "starting the private engine again"
bash scripts/engine.sh start >/dev/null
cat "$WORK/result" >"${TM_BENCH_OUT:-/dev/null}"
