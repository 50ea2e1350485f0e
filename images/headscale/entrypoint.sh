#!/bin/sh
# Writes Headscale's config and policy from the environment (the stack's way in: the root
# filesystem is read-only and /etc/headscale a tmpfs), then runs the command (headscale serve).
# Files already there (a container made without the variables) are used as they are.
set -eu
if [ -n "${HEADSCALE_CONFIG_YAML:-}" ]; then printf '%s\n' "$HEADSCALE_CONFIG_YAML" >/etc/headscale/config.yaml; fi
if [ -n "${HEADSCALE_POLICY:-}" ]; then printf '%s\n' "$HEADSCALE_POLICY" >/etc/headscale/policy.hujson; fi
exec "$@"
