#!/usr/bin/env bash
# Puts the real Pulumi engine in reach where it is not installed: the CLI v3.274.1, the Python
# language host, and the docker (5.2.0) and tailscale (0.29.2) provider plugins that the pinned
# Python SDKs ask for. On a normal machine `pulumi` installs its plugins itself; where the Go module
# proxy is the only registry, they are built from it plus the sources in ../shared/vendor (read at
# build time only, never copied into this repository).
#
#   scripts/pulumi-tools.sh          build what is missing (cached), then print where it is
#   scripts/pulumi-tools.sh dir      print the cache directory for this script's inputs
#   scripts/pulumi-tools.sh env      print the shell exports that put the tools in use:
#                                    eval "$(scripts/pulumi-tools.sh env)"
#
# Results are cached under $TM_TOOLS_CACHE/<hash of the versions, the build steps below, the vendor
# tarballs and the Go version>, so a second run takes seconds and a changed input builds afresh.
set -euo pipefail

PULUMI_VERSION=v3.274.1
DOCKER_PROVIDER=5.2.0
TAILSCALE_PROVIDER=0.29.2

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
VENDOR=${TM_VENDOR_DIR:-$REPO/../shared/vendor}
CACHE_ROOT=${TM_TOOLS_CACHE:-/var/tmp/tm-tools}
START=$(date +%s)

log() { printf 'pulumi-tools [%4ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The machine's Go toolchain, wherever PATH left it out.
for dir in /usr/local/go/bin "$HOME/go/bin"; do [ -d "$dir" ] && PATH="$PATH:$dir"; done
export PATH

# Already installed the normal way: a pulumi on PATH with both plugins at the wanted versions.
installed_normally() {
  [ -z "${TM_TOOLS_FORCE_BUILD:-}" ] || return 1
  command -v pulumi >/dev/null 2>&1 || return 1
  case "$(command -v pulumi)" in "$CACHE_ROOT"/*) return 1 ;; esac
  local plugins
  plugins=$(pulumi plugin ls 2>/dev/null) || return 1
  grep -Eq "^docker +resource +$DOCKER_PROVIDER " <<<"$plugins" \
    && grep -Eq "^tailscale +resource +$TAILSCALE_PROVIDER " <<<"$plugins"
}

# The inputs: the versions, the build functions' own text, the vendor tarballs, the Go toolchain.
cache_key() {
  {
    echo "$PULUMI_VERSION $DOCKER_PROVIDER $TAILSCALE_PROVIDER"
    declare -f clean build_cli build_language_host embed_schema build_docker_provider build_tailscale_provider install_plugins
    for f in pulumi-language-python-1b594989.tar.gz pulumi-docker-237b7899-provider-patches.tar.gz \
      terraform-provider-docker-5074970c.tar.gz pulumi-tailscale-f4935cef-provider.tar.gz \
      terraform-provider-tailscale-v0.29.2.tar.gz; do
      [ -f "$VENDOR/$f" ] || die "missing $VENDOR/$f (see ../shared/vendor/README.md)"
      sha256sum <"$VENDOR/$f"
    done
    go version
  } | sha256sum | cut -c1-16
}

# Runs a long step with a line a minute, so a cold build (~20 min) never looks hung.
step() {
  local name=$1; shift
  local stamp="$DIR/.done-$name"
  if [ -f "$stamp" ]; then log "$name: cached"; return; fi
  log "$name: start"
  local t0; t0=$(date +%s)
  ( while sleep 60; do log "$name: still running ($(( ($(date +%s) - t0) / 60 )) min)"; done ) &
  local ticker=$!
  local status=0
  "$@" >"$DIR/log-$name.txt" 2>&1 || status=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    tail -30 "$DIR/log-$name.txt" >&2
    die "$name failed (exit $status); full log: $DIR/log-$name.txt"
  fi
  touch "$stamp"
  log "$name: done in $(($(date +%s) - t0)) s"
}

LDFLAGS_VERSION="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION"

# Module cache copies are read-only: make them writable before removing them.
clean() { for d in "$@"; do if [ -e "$d" ]; then chmod -R u+w "$d" && rm -rf "$d"; fi; done; }

module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

# 1. The CLI. pkg's go.mod replaces sdk with ../sdk, so `go install` refuses it: build from copies.
build_cli() {
  clean "$DIR/src/pkg" "$DIR/src/sdk"
  mkdir -p "$DIR/src" "$DIR/bin"
  cp -r "$(module_dir "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION")" "$DIR/src/pkg"
  cp -r "$(module_dir "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION")" "$DIR/src/sdk"
  chmod -R u+w "$DIR/src"
  (cd "$DIR/src/pkg" && go build -trimpath -tags osusergo,grpcnotrace \
    -ldflags "-s -w $LDFLAGS_VERSION" -o "$DIR/bin/pulumi" ./cmd/pulumi)
  "$DIR/bin/pulumi" version
}

# 2. The Python language host, inside the sdk copy so its go.mod's replaces land on pkg and sdk.
build_language_host() {
  local dir="$DIR/src/sdk/python/cmd/pulumi-language-python"
  clean "$dir"; mkdir -p "$dir"
  tar -xzf "$VENDOR/pulumi-language-python-1b594989.tar.gz" -C "$dir"
  (cd "$dir" \
    && go mod edit -require "github.com/pulumi/pulumi/pkg/v3@$PULUMI_VERSION" \
         -require "github.com/pulumi/pulumi/sdk/v3@$PULUMI_VERSION" \
    && go mod tidy \
    && go build -trimpath -tags osusergo,grpcnotrace -ldflags "-s -w $LDFLAGS_VERSION" \
         -o "$DIR/bin/pulumi-language-python" .)
  install -m 0755 "$DIR/src/sdk/python/cmd/pulumi-language-python-exec" "$DIR/bin/"
  install -m 0755 "$DIR/src/sdk/python/dist/pulumi-resource-pulumi-python" "$DIR/bin/"
}

# `go generate` writes schema-embed.json: the schema stamped with the plugin's version.
embed_schema() {
  python3 - "$1" "$2" <<'PY'
import json, sys, pathlib
folder, version = pathlib.Path(sys.argv[1]), sys.argv[2]
schema = json.loads((folder / "schema.json").read_text())
schema["version"] = version
(folder / "schema-embed.json").write_text(json.dumps(schema))
PY
}

# 3. The docker provider: pulumi-docker's provider plus its patched terraform upstream.
build_docker_provider() {
  local src="$DIR/src/pulumi-docker"
  clean "$src"; mkdir -p "$src/upstream" "$DIR/providers"
  tar -xzf "$VENDOR/pulumi-docker-237b7899-provider-patches.tar.gz" -C "$src"
  tar -xzf "$VENDOR/terraform-provider-docker-5074970c.tar.gz" -C "$src/upstream"
  (cd "$src/upstream" && git init -q && git add -A \
    && git -c user.name=build -c user.email=build@localhost commit -qm upstream \
    && for p in ../patches/*.patch; do git apply "$p"; done)
  embed_schema "$src/provider/cmd/pulumi-resource-docker" "$DOCKER_PROVIDER"
  (cd "$src/provider" && CGO_ENABLED=0 go build -trimpath -tags no_compose \
    -ldflags "-s -w -X github.com/pulumi/pulumi-docker/provider/v5/pkg/version.Version=$DOCKER_PROVIDER" \
    -o "$DIR/providers/pulumi-resource-docker" ./cmd/pulumi-resource-docker)
}

# 4. The tailscale provider. Its bridge pins two pseudo-versions the proxy refuses; the set
#    pulumi-docker builds with is served and works.
build_tailscale_provider() {
  local src="$DIR/src/pulumi-tailscale"
  clean "$src"; mkdir -p "$src/upstream" "$DIR/providers"
  tar -xzf "$VENDOR/pulumi-tailscale-f4935cef-provider.tar.gz" -C "$src"
  tar -xzf "$VENDOR/terraform-provider-tailscale-v0.29.2.tar.gz" -C "$src/upstream"
  embed_schema "$src/provider/cmd/pulumi-resource-tailscale" "$TAILSCALE_PROVIDER"
  (cd "$src/provider" \
    && go mod edit -replace=github.com/tailscale/terraform-provider-tailscale=../upstream \
         -require=github.com/pulumi/pulumi-terraform-bridge/v3@v3.137.0 \
         -require=github.com/pulumi/pulumi/pkg/v3@v3.256.0 \
         -require=github.com/pulumi/pulumi/sdk/v3@v3.256.0 \
         -require=github.com/pulumi/pulumi-java@v1.34.0 \
         -require=github.com/pulumi/pulumi-yaml@v1.38.1 \
         -require=github.com/pulumi/pulumi-dotnet/pulumi-language-dotnet/v3@v3.110.0 \
    && go mod tidy \
    && CGO_ENABLED=0 go build -trimpath \
         -ldflags "-s -w -X github.com/pulumi/pulumi-tailscale/provider/pkg/version.Version=$TAILSCALE_PROVIDER" \
         -o "$DIR/providers/pulumi-resource-tailscale" ./cmd/pulumi-resource-tailscale)
}

# 5. Plugins into this cache's PULUMI_HOME; the provider binaries stay off PATH (a
#    pulumi-resource-* on PATH is used whatever its version).
install_plugins() {
  export PULUMI_HOME="$DIR/home" PULUMI_SKIP_UPDATE_CHECK=true
  "$DIR/bin/pulumi" plugin install resource docker "v$DOCKER_PROVIDER" --file "$DIR/providers/pulumi-resource-docker"
  "$DIR/bin/pulumi" plugin install resource tailscale "v$TAILSCALE_PROVIDER" --file "$DIR/providers/pulumi-resource-tailscale"
  "$DIR/bin/pulumi" plugin ls
}

print_env() {
  if [ -n "${DIR:-}" ]; then
    printf 'export PATH=%q:"$PATH"\n' "$DIR/bin"
    printf 'export PULUMI_HOME=%q\n' "$DIR/home"
  fi
  echo 'export PULUMI_SKIP_UPDATE_CHECK=true'
  echo 'export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true'
}

DIR=""
if installed_normally; then
  log "pulumi and plugins docker $DOCKER_PROVIDER, tailscale $TAILSCALE_PROVIDER already installed"
  [ "${1:-}" = env ] && print_env
  exit 0
fi
command -v go >/dev/null || die "no Go toolchain (Go >= 1.26) to build the Pulumi tools with"
DIR="$CACHE_ROOT/$(cache_key)"
if [ "${1:-}" = dir ]; then echo "$DIR"; exit 0; fi
if [ "${1:-}" = env ]; then
  [ -f "$DIR/.done-plugins" ] || die "tools not built yet: run scripts/pulumi-tools.sh first"
  print_env
  exit 0
fi
mkdir -p "$DIR"
log "cache $DIR"
step cli build_cli
step language-host build_language_host
step docker-provider build_docker_provider
step tailscale-provider build_tailscale_provider
step plugins install_plugins
log "ready: eval \"\$(scripts/pulumi-tools.sh env)\""
