"""Renders each share's Caddy route fragment and assembles all fragments into one Caddy JSON config."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

from timemachine.planning.ports import SMB_PORT

CADDY_DATA_PATH = "/data"
# The config Caddy runs, as the stack wrote it (Caddy's own autosave is what a restart resumes).
CADDY_CONFIG_PATH = f"{CADDY_DATA_PATH}/caddy.json"
TAILSCALE_STATE_ROOT = f"{CADDY_DATA_PATH}/tailscale"
# Each node's auth key is a file here (0600), written into the running container by the stack.
KEYS_DIR = f"{CADDY_DATA_PATH}/keys"
# The admin endpoint: a unix socket inside the container, never TCP. The stack reloads Caddy
# through it (`caddy reload` run in the container), so adding a share restarts nothing.
ADMIN_SOCKET = "/run/caddy-admin.sock"
# persist: Caddy autosaves each config it accepts (under XDG_CONFIG_HOME on /data); a restarted
# container resumes it (`caddy run --resume`).
ADMIN = {"listen": f"unix/{ADMIN_SOCKET}", "config": {"persist": True}}


def auth_key_file(node: str) -> str:
    """Path of the file that carries a node's auth key inside the Caddy container."""
    return f"{KEYS_DIR}/{node}"


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

    The auth key appears only as a `{file.…}` placeholder: key material never enters the config.
    """
    node_config: dict = {
        "auth_key": "{file." + auth_key_file(node) + "}",
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
        # A unix socket in the container: in host networking a TCP admin port would listen on the host.
        "admin": ADMIN,
        "apps": {
            "layer4": {"servers": servers},
            "tailscale": {"nodes": nodes},
        },
    }


def render(config: dict) -> str:
    """Stable text of a Caddy config: sorted keys, so equal configs give equal uploads."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
