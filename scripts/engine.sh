#!/usr/bin/env bash
# Starts a private Docker engine (vfs storage, its own data root and socket) for the tests and
# benchmarks, and builds the local Debian base image the Dockerfiles name, since no image registry
# is reachable here. Idempotent: a running engine and an existing base image are reused.
#
#   scripts/engine.sh start     start dockerd unless its socket answers; prints DOCKER_HOST
#   scripts/engine.sh base      debootstrap + docker import as $BASE_IMAGE unless present
#   scripts/engine.sh stop      stop the engine this script started
set -euo pipefail

ENGINE_DIR=${TM_ENGINE_DIR:-/var/tmp/tm-engine}
SOCK="$ENGINE_DIR/docker.sock"
export DOCKER_HOST="unix://$SOCK"
BASE_IMAGE=${TM_BASE_IMAGE:-debian:bookworm-slim}
SUITE=${TM_BASE_SUITE:-bookworm}

log() { printf 'engine: %s\n' "$*" >&2; }

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
  mkdir -p "$ENGINE_DIR"
  if answers; then log "engine already answers on $SOCK"; echo "$DOCKER_HOST"; return; fi
  command -v dockerd >/dev/null || { log "dockerd missing: apt-get install docker.io"; exit 1; }

  nohup dockerd --storage-driver=vfs --data-root="$ENGINE_DIR/root" --exec-root="$ENGINE_DIR/exec" \
    --host="$DOCKER_HOST" --pidfile="$ENGINE_DIR/dockerd.pid" \
    >"$ENGINE_DIR/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do answers && break; sleep 1; done
  answers || { log "dockerd did not start; last log lines:"; tail -20 "$ENGINE_DIR/dockerd.log" >&2; exit 1; }
  log "engine up on $SOCK"
  echo "$DOCKER_HOST"
}

# The Debian mirror this machine's apt already uses, so no host is written into the project.
mirror() {
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -1 || true)
  [ -n "$uri" ] || { log "no Debian mirror found in apt sources"; exit 1; }
  echo "$uri"
}

base() {
  start >/dev/null
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then log "$BASE_IMAGE present"; return; fi
  command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
  local root="$ENGINE_DIR/rootfs-$SUITE"
  rm -rf "$root"
  log "debootstrap $SUITE from $(mirror) (a few minutes)"
  debootstrap --variant=minbase "$SUITE" "$root" "$(mirror)" >"$ENGINE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$ENGINE_DIR/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  log "imported $BASE_IMAGE"
}

stop() {
  [ -f "$ENGINE_DIR/dockerd.pid" ] && kill "$(cat "$ENGINE_DIR/dockerd.pid")" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  base) base ;;
  stop) stop ;;
  *) echo "usage: $0 start|base|stop" >&2; exit 2 ;;
esac
