"""Whether a tsnet node has a tailnet identity, read from the state file tsnet keeps for it.

tsnet (caddy-tailscale's nodes) keeps `<state_dir>/tailscaled.state`: a JSON map of base64 values,
among them `_profiles`, the login profiles; a node the control server registered has a profile with
the NodeID it was given. Caddy's health check (timemachine/caddy/health.py) reads the same key in
shell; the status container (timemachine/health) reads it here.
"""

from __future__ import annotations

import base64
import binascii
import json

STATE_FILE = "tailscaled.state"
PROFILES_KEY = "_profiles"


def registered_node_id(state: bytes) -> str | None:
    """The NodeID of the first login profile in a tailscaled.state, or None (no identity, or not a state)."""
    try:
        stored = json.loads(state)
        profiles = json.loads(base64.b64decode(stored[PROFILES_KEY], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(profiles, dict):
        return None
    for profile in profiles.values():
        node = profile.get("NodeID") if isinstance(profile, dict) else None
        if isinstance(node, str) and node:
            return node
    return None
