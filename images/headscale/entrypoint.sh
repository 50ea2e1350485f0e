#!/bin/sh
# Writes Headscale's config from the environment (the stack's way in: the root filesystem is
# read-only and /etc/headscale a tmpfs), then runs the command (headscale serve). The policy is
# on the state volume, written by the stack into the running container. A file already there (a
# container made without the variable) is used as it is.
set -eu
if [ -n "${HEADSCALE_CONFIG_YAML:-}" ]; then printf '%s\n' "$HEADSCALE_CONFIG_YAML" >/etc/headscale/config.yaml; fi
exec "$@"
