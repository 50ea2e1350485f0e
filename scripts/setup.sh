#!/usr/bin/env bash
# One command, as root on a fresh Debian machine, for everything the full test suite needs:
# apt packages, the .venv with pinned Python packages, the Pulumi tools (scripts/pulumi-tools.sh),
# the private Docker engine and the base images the Dockerfiles name. Every step is idempotent
# and cached, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
log() { printf 'setup [%4ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }

export DEBIAN_FRONTEND=noninteractive
log "apt packages"
apt-get update -qq
# smbclient (healthchecks, e2e), the Docker engine, debootstrap (base image where no registry is
# reachable), git (the docker provider's patches), prometheus (promtool: the alert rules' tests),
# chromium and chromium-driver (the status page's browser test), btrfs-progs (the quota tests'
# loop-mounted btrfs storage root and scripts/migrate_share_to_subvolume.sh). testparm and smbtorture come from
# the Samba image's own Debian release, in containers (tests/conformance), not from this machine.
apt-get install -y -qq --no-install-recommends smbclient docker.io \
  debootstrap git ca-certificates prometheus chromium chromium-driver btrfs-progs >/dev/null

# The machine's toolchains, wherever its PATH left them out.
for dir in /usr/local/go/bin /root/.pyenv/shims; do if [ -d "$dir" ]; then PATH="$PATH:$dir"; fi; done
export PATH
PYTHON=$(command -v python3.11 || command -v python3)
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version'
log "python venv (.venv)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q -r requirements-dev.txt

log "pulumi tools"
bash scripts/pulumi-tools.sh

log "docker engine and base images"
bash scripts/engine.sh start >/dev/null
bash scripts/engine.sh golang
# The trixie base too (images/samba, tests/images/smbtorture), after the Go builder others wait for.
bash scripts/engine.sh base
log "ready: .venv/bin/python -m pytest"
