#!/usr/bin/env bash
# Starts a private Docker engine (overlay2 storage where the kernel mounts it, else vfs; its own
# data root and socket) for the tests and
# benchmarks, and builds the local Debian base images the Dockerfiles name, since no image registry
# is reachable here. Idempotent: a running engine and existing base images are reused.
#
#   scripts/engine.sh start     start dockerd unless its socket answers; prints DOCKER_HOST
#   scripts/engine.sh base      debootstrap + docker import of each of $BASES unless present
#   scripts/engine.sh golang    build $GO_IMAGE (the Caddy Dockerfile's builder base) from the base
#                               image and this machine's Go toolchain, unless present
#   scripts/engine.sh stop      stop the engine this script started
set -euo pipefail

ENGINE_DIR=${TM_ENGINE_DIR:-/var/tmp/tm-engine}
SOCK="$ENGINE_DIR/docker.sock"
export DOCKER_HOST="unix://$SOCK"
# image=suite: bookworm for Caddy, Headscale and the Go builder; trixie for Samba (images/samba:
# Samba 4.22.6 or later, which current macOS needs; bookworm has 4.17), the status image and the
# conformance tier's smbtorture (tests/images/smbtorture).
BASES=${TM_BASES:-debian:bookworm-slim=bookworm debian:trixie-slim=trixie}
BASE_IMAGE=debian:bookworm-slim

log() { printf 'engine: %s\n' "$*" >&2; }

# The machine's Go toolchain, wherever PATH left it out.
if [ -d /usr/local/go/bin ]; then PATH="$PATH:/usr/local/go/bin"; fi

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# overlay2 mounts one layer per image layer; vfs copies a whole image per container and per build
# step (scripts/bench_storage_driver.sh puts both side by side). overlay2 needs a data root on a filesystem
# that can be overlay's upper layer (not overlayfs itself) and a kernel that mounts it: tried
# once with a real mount, else vfs. TM_STORAGE_DRIVER forces one.
storage_driver() {
  if [ -n "${TM_STORAGE_DRIVER:-}" ]; then echo "$TM_STORAGE_DRIVER"; return; fi
  local probe="$ENGINE_DIR/overlay-probe"
  rm -rf "$probe"; mkdir -p "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" 2>/dev/null; then
    umount "$probe/merged"; rm -rf "$probe"; echo overlay2
  else
    rm -rf "$probe"; echo vfs
  fi
}

start() {
  mkdir -p "$ENGINE_DIR"
  if answers; then log "engine already answers on $SOCK"; echo "$DOCKER_HOST"; return; fi
  command -v dockerd >/dev/null || { log "dockerd missing: apt-get install docker.io"; exit 1; }

  local driver
  driver=$(storage_driver)
  (
    # The daemon outlives this script: it must not keep a descriptor it inherited (a caller's
    # `flock` on a lock file would otherwise stay held for as long as the engine runs).
    for fd in $(ls /proc/$BASHPID/fd); do if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi; done 2>/dev/null
    exec nohup dockerd --storage-driver="$driver" --data-root="$ENGINE_DIR/root" --exec-root="$ENGINE_DIR/exec" \
      --host="$DOCKER_HOST" --pidfile="$ENGINE_DIR/dockerd.pid" \
      >"$ENGINE_DIR/dockerd.log" 2>&1 </dev/null
  ) &
  for _ in $(seq 1 60); do answers && break; sleep 1; done
  answers || { log "dockerd did not start; last log lines:"; tail -20 "$ENGINE_DIR/dockerd.log" >&2; exit 1; }
  log "engine up on $SOCK (storage driver $driver)"
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

# The security archive beside it, if apt's sources name one (as the registry's debian images
# have it: Samba's security fixes arrive there first).
security_mirror() {
  grep -hE '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}' | grep security | head -1 || true
}

# One base image: a minimal debootstrap of `suite` with the sources the registry's image has
# (suite, suite-updates, suite-security), imported as `image`.
base_image() {
  local image=$1 suite=$2
  if docker image inspect "$image" >/dev/null 2>&1; then log "$image present"; return; fi
  command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
  local root="$ENGINE_DIR/rootfs-$suite" uri security started
  uri=$(mirror)
  security=$(security_mirror)
  started=$(date +%s)
  rm -rf "$root"
  log "debootstrap $suite from $uri (a few minutes)"
  debootstrap --variant=minbase "$suite" "$root" "$uri" >"$ENGINE_DIR/debootstrap-$suite.log" 2>&1 \
    || { tail -20 "$ENGINE_DIR/debootstrap-$suite.log" >&2; exit 1; }
  {
    echo "deb $uri $suite main"
    echo "deb $uri $suite-updates main"
    if [ -n "$security" ]; then echo "deb $security $suite-security main"; fi
  } >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | docker import - "$image" >/dev/null
  rm -rf "$root"
  log "imported $image in $(($(date +%s) - started)) s"
}

base() {
  start >/dev/null
  local pair
  for pair in $BASES; do base_image "${pair%%=*}" "${pair#*=}"; done
}

# The Caddy Dockerfile builds FROM golang:<version>-bookworm; with no registry, the same name is
# made here from the Debian base and the Go toolchain installed on this machine.
GO_IMAGE=${TM_GO_IMAGE:-golang:1.26-bookworm}
golang() {
  start >/dev/null
  base_image "$BASE_IMAGE" bookworm
  if docker image inspect "$GO_IMAGE" >/dev/null 2>&1; then log "$GO_IMAGE present"; return; fi
  command -v go >/dev/null || { log "no Go toolchain on this machine to make $GO_IMAGE from"; exit 1; }
  local goroot ctx
  goroot=$(go env GOROOT)
  ctx=$(mktemp -d)
  cp -a "$goroot" "$ctx/go"
  rm -rf "$ctx/go/pkg/obj" "$ctx/go/test" "$ctx/go/api"
  # This machine's trust store: where the module proxy is reached through a TLS-inspecting
  # gateway, its CA is in here and not in Debian's bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE_IMAGE
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
  log "building $GO_IMAGE from $BASE_IMAGE + $(go version)"
  docker build -q -t "$GO_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

stop() {
  [ -f "$ENGINE_DIR/dockerd.pid" ] && kill "$(cat "$ENGINE_DIR/dockerd.pid")" 2>/dev/null || true
}

case "${1:-}" in
  start) start ;;
  base) base ;;
  golang) golang ;;
  stop) stop ;;
  *) echo "usage: $0 start|base|golang|stop" >&2; exit 2 ;;
esac
