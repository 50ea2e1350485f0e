"""Caddy's health: is Caddy up, and has each of its tailnet nodes a tailnet identity?

A node whose state was lost (the Caddy volume wiped or restored from an old copy) starts again with
its single-use key, which the control server has already consumed: it never registers, and nothing
in Pulumi's state changes. The health check reads what tsnet itself keeps per node: the login
profiles in `<state_dir>/tailscaled.state` (a JSON map of base64 values, `_profiles` among them),
where a registered node's profile carries the NodeID the control server gave it. The nodes are
the ones the stack loaded a key for (`/data/keys/<node>`). Docker keeps the output of the last
checks: `docker inspect --format '{{json .State.Health}}' tm-caddy` names each node's state.
"""

from __future__ import annotations

from timemachine.caddy.config import ADMIN_SOCKET, KEYS_DIR, TAILSCALE_STATE_ROOT

# POSIX sh and coreutils only (the Caddy image has no jq or python). One line per node; exit 1
# when Caddy's admin socket is missing or a node has no identity.
NODE_STATE_SCRIPT = f"""\
[ -S {ADMIN_SOCKET} ] || {{ echo "caddy: no admin socket {ADMIN_SOCKET}: Caddy is not running"; exit 1; }}
bad=0
for key in {KEYS_DIR}/*; do
  [ -f "$key" ] || continue
  node=${{key##*/}}
  state={TAILSCALE_STATE_ROOT}/$node/tailscaled.state
  id=$(sed -n 's/^ *"_profiles": *"\\([^"]*\\)".*/\\1/p' "$state" 2>/dev/null | base64 -d 2>/dev/null \
    | grep -o '"NodeID": *"[^"]*"' | head -n 1 | sed 's/.*"\\([^"]*\\)"$/\\1/')
  if [ -n "$id" ]; then
    echo "$node: registered (node $id)"
  else
    echo "$node: NOT REGISTERED (no tailnet identity in $state): a lost state or a used or refused key"
    bad=1
  fi
done
exit $bad
"""

# What the health check and the stack's wait for the nodes run inside the container.
NODE_STATE_COMMAND = ["sh", "-c", NODE_STATE_SCRIPT]


def unregistered(output: str) -> list[str]:
    """The nodes the check's output reports without an identity."""
    return [line.split(":", 1)[0] for line in output.splitlines() if ": NOT REGISTERED" in line]
