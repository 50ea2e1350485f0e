"""Renders each share's Caddy route fragment and assembles all fragments into one Caddy JSON config."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

SMB_PORT = 445
CADDY_CONFIG_PATH = "/etc/caddy/config.json"
CADDY_DATA_PATH = "/data"
TAILSCALE_STATE_ROOT = f"{CADDY_DATA_PATH}/tailscale"


def auth_key_env(node: str) -> str:
    """Name of the environment variable that carries a node's auth key into the Caddy container."""
    return "TS_AUTHKEY_" + node.upper().replace("-", "_")


def route_fragment(
    share: str,
    node: str,
    ip: str,
    *,
    tags: Iterable[str],
    control_url: str | None = None,
    port: int | None = None,
) -> dict:
    """The tailnet node and layer4 server that route `tailscale/<node>:445` to the share's smbd.

    The auth key appears only as an `{env.…}` placeholder: key material never enters the config.
    """
    node_config: dict = {
        "auth_key": "{env." + auth_key_env(node) + "}",
        "ephemeral": False,
        "hostname": node,
        "state_dir": f"{TAILSCALE_STATE_ROOT}/{node}",
        "tags": sorted(tags),
    }
    if control_url:
        node_config["control_url"] = control_url
    if port is not None:
        node_config["port"] = port
    server = {
        "listen": [f"tailscale/{node}:{SMB_PORT}"],
        "routes": [{"handle": [{"handler": "proxy", "upstreams": [{"dial": [f"{ip}:{SMB_PORT}"]}]}]}],
    }
    return {"tailscale": {"nodes": {node: node_config}}, "layer4": {"servers": {share: server}}}


def assemble(fragments: Iterable[dict]) -> dict:
    """One Caddy config from all route fragments; a node or server declared twice is an error."""
    nodes: dict = {}
    servers: dict = {}
    for fragment in fragments:
        for target, part in ((nodes, fragment["tailscale"]["nodes"]), (servers, fragment["layer4"]["servers"])):
            for key, value in part.items():
                if key in target:
                    raise ValueError(f"Caddy route fragments declare {key!r} twice")
                target[key] = copy.deepcopy(value)
    return {
        # No admin endpoint: in host networking it would listen on the host; the config is an upload.
        "admin": {"disabled": True},
        "apps": {
            "layer4": {"servers": servers},
            "tailscale": {"nodes": nodes},
        },
    }


def render(config: dict) -> str:
    """Stable text of a Caddy config: sorted keys, so equal configs give equal uploads."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
