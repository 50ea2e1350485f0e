"""Renders the embedded Headscale's config.yaml: plain HTTP, its own DERP relay, nothing fetched."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import yaml

HEADSCALE_PORT = 8080
STUN_PORT = 3478
HEADSCALE_STATE = "/var/lib/headscale"
# The policy lives on the state volume: the stack rewrites it in the running container and sends
# SIGHUP (Headscale reloads its policy file on it), so a new share restarts nothing.
HEADSCALE_POLICY_PATH = f"{HEADSCALE_STATE}/policy.hujson"
# A first start, before the stack has written the policy: no rule, so nothing may reach anything.
BOOTSTRAP_POLICY = '{"acls": []}'

HEADSCALE_SOCKET = "/var/run/headscale/headscale.sock"


def render_headscale_config(server_url: str, base_domain: str = "tailnet.internal") -> str:
    """Headscale serving `server_url` (what Macs and the share nodes use as --login-server).

    DERP: only Headscale's embedded relay, announced at the server URL's host; the public DERP map
    is never fetched (a node that reaches the control server reaches its relay too). Headscale's
    own listener is plain HTTP: TLS, where a Mac on another network needs it, is a reverse proxy in
    front (server_url https://…) — see docs/operations.md.
    """
    host = urlsplit(server_url).hostname or ""
    derp: dict = {
        "enabled": True,
        "region_id": 999,
        "region_code": "headscale",
        "region_name": "Headscale embedded DERP",
        "stun_listen_addr": f"0.0.0.0:{STUN_PORT}",
        "private_key_path": f"{HEADSCALE_STATE}/derp_server_private.key",
        "automatically_add_embedded_derp_region": True,
    }
    try:
        # An address literal: clients then use it without a DNS lookup.
        derp["ipv4"] = str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    config = {
        "server_url": server_url,
        "listen_addr": f"0.0.0.0:{HEADSCALE_PORT}",
        # Metrics and gRPC stay inside the container; the CLI uses the unix socket.
        "metrics_listen_addr": "127.0.0.1:9090",
        "grpc_listen_addr": "127.0.0.1:50443",
        "noise": {"private_key_path": f"{HEADSCALE_STATE}/noise_private.key"},
        "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
        "derp": {"server": derp, "urls": [], "paths": [], "auto_update_enabled": False, "update_frequency": "24h"},
        "disable_check_updates": True,
        "database": {"type": "sqlite", "sqlite": {"path": f"{HEADSCALE_STATE}/db.sqlite", "write_ahead_log": True}},
        "log": {"level": "info", "format": "text"},
        "policy": {"mode": "file", "path": HEADSCALE_POLICY_PATH},
        "dns": {
            "magic_dns": True,
            "base_domain": base_domain,
            "override_local_dns": False,
            "nameservers": {"global": []},
        },
        "unix_socket": HEADSCALE_SOCKET,
        "unix_socket_permission": "0770",
        # No log upload to Tailscale's log service from the control server.
        "logtail": {"enabled": False},
        "randomize_client_port": False,
    }
    return yaml.safe_dump(config, sort_keys=True)
