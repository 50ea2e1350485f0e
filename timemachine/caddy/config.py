"""Renders each share's Caddy route fragment and assembles all fragments into one Caddy JSON config."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

from timemachine.planning.ports import SMB_PORT, STATUS_PAGE_PORT

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
    node_config = _node(node, tags=tags, control_url=control_url, port=port)
    server = {
        "listen": [f"tailscale/{node}:{SMB_PORT}"],
        "routes": [{"handle": [{"handler": "proxy", "upstreams": [{"dial": [f"{ip}:{SMB_PORT}"]}]}]}],
    }
    return {"tailscale": {"nodes": {node: node_config}}, "layer4": {"servers": {share: server}}}


def _node(node: str, *, tags: Iterable[str], control_url: str | None, port: int | None) -> dict:
    """A caddy-tailscale node: its key from its key file, its state on Caddy's volume."""
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
    return node_config


# The status page's server in Caddy's http app.
STATUS_SERVER = "status"


def status_route_fragment(
    node: str,
    ip: str,
    upstream_port: int,
    *,
    tags: Iterable[str],
    control_url: str | None = None,
    port: int | None = None,
) -> dict:
    """The status page's tailnet node and an HTTP server on `tailscale/<node>:80` proxying to the status
    container. Plain HTTP: the tailnet encrypts and authenticates the connection, and the policy admits
    only the admins; no certificate is asked for (automatic HTTPS off)."""
    server = {
        "listen": [f"tailscale/{node}:{STATUS_PAGE_PORT}"],
        "automatic_https": {"disable": True},
        "routes": [
            {
                # The status container serves GET only; nothing else reaches it from the tailnet.
                "match": [{"method": ["GET", "HEAD"]}],
                "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": f"{ip}:{upstream_port}"}]}],
            },
            {"handle": [{"handler": "static_response", "status_code": 405}]},
        ],
    }
    node_config = _node(node, tags=tags, control_url=control_url, port=port)
    return {"tailscale": {"nodes": {node: node_config}}, "http": {"servers": {STATUS_SERVER: server}}}


def assemble(fragments: Iterable[dict]) -> dict:
    """One Caddy config from all route fragments; a node or server declared twice is an error."""
    nodes: dict = {}
    servers: dict = {}
    http_servers: dict = {}
    for fragment in fragments:
        parts = (
            (nodes, fragment["tailscale"]["nodes"]),
            (servers, fragment.get("layer4", {}).get("servers", {})),
            (http_servers, fragment.get("http", {}).get("servers", {})),
        )
        for target, part in parts:
            for key, value in part.items():
                if key in target:
                    raise ValueError(f"Caddy route fragments declare {key!r} twice")
                target[key] = copy.deepcopy(value)
    apps: dict = {
        "layer4": {"servers": servers},
        "tailscale": {"nodes": nodes},
    }
    if http_servers:
        apps["http"] = {"servers": http_servers}
    return {
        # A unix socket in the container: in host networking a TCP admin port would listen on the host.
        "admin": ADMIN,
        "apps": apps,
    }


def render(config: dict) -> str:
    """Stable text of a Caddy config: sorted keys, so equal configs give equal uploads."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"
