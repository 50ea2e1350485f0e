"""Renders the embedded Headscale's config.yaml: its TLS (the stack's certificate, or ACME), its
relay (its own DERP, or Tailscale's public DERP map) and nothing else fetched."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

import yaml

from timemachine.config.models import DEFAULT_HEADSCALE_VERSION
from timemachine.headscale.versions import has_client_port_setting

HEADSCALE_PORT = 8080
STUN_PORT = 3478
HEADSCALE_STATE = "/var/lib/headscale"
# The policy lives on the state volume: the stack rewrites it in the running container and sends
# SIGHUP (Headscale reloads its policy file on it), so a new share restarts nothing.
HEADSCALE_POLICY_PATH = f"{HEADSCALE_STATE}/policy.hujson"
# A first start, before the stack has written the policy: no rule, so nothing may reach anything.
BOOTSTRAP_POLICY = '{"acls": []}'

HEADSCALE_SOCKET = "/var/run/headscale/headscale.sock"
# The server certificate and its key (0600), written onto the state volume before Headscale starts
# (Headscale reads them once, at start: a new certificate replaces the container).
TLS_DIR = "tls"
TLS_CERT_PATH = f"{HEADSCALE_STATE}/{TLS_DIR}/server.crt"
TLS_KEY_PATH = f"{HEADSCALE_STATE}/{TLS_DIR}/server.key"
ACME_CACHE = f"{HEADSCALE_STATE}/acme"
# Tailscale's public DERP map, which Headscale fetches and refreshes itself (derp: public).
PUBLIC_DERP_MAP = "https://controlplane.tailscale.com/derpmap/default"

Tls = Literal["internal", "acme", "none"]
Derp = Literal["embedded", "public"]


def tls_mode(server_url: str, certificate: Literal["internal", "acme"]) -> Tls:
    """How Headscale terminates TLS for `server_url`: plain HTTP for an http:// URL."""
    return certificate if server_url.startswith("https://") else "none"


def render_headscale_config(
    server_url: str,
    base_domain: str = "tailnet.internal",
    *,
    tls: Tls = "none",
    derp: Derp = "embedded",
    acme_email: str | None = None,
    version: str = DEFAULT_HEADSCALE_VERSION,
) -> str:
    """Headscale `version` serving `server_url` (what Macs and the share nodes use as --login-server).

    TLS terminates in Headscale itself, on its one listener: control (`/key`, the Noise upgrade)
    and the embedded DERP relay share the certificate, and no proxy sits in front (docs/security.md
    says why). `internal`: the certificate files the stack writes (TLS_CERT_PATH); `acme`: Let's
    Encrypt for the URL's host by TLS-ALPN-01 on that listener (it must be reached on port 443).

    DERP `embedded`: only Headscale's own relay, announced at the server URL's host and port (over
    TLS for an https:// URL, which is all a Tailscale client uses); the public map is never fetched.
    `public`: Tailscale's DERP map, fetched and refreshed by Headscale (the server needs internet).
    """
    host = urlsplit(server_url).hostname or ""
    derp_server: dict = {
        "enabled": derp == "embedded",
        "region_id": 999,
        "region_code": "headscale",
        "region_name": "Headscale embedded DERP",
        "stun_listen_addr": f"0.0.0.0:{STUN_PORT}",
        "private_key_path": f"{HEADSCALE_STATE}/derp_server_private.key",
        "automatically_add_embedded_derp_region": derp == "embedded",
    }
    try:
        # An address literal: clients then use it without a DNS lookup.
        derp_server["ipv4"] = str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    derp_config = {
        "server": derp_server,
        "urls": [PUBLIC_DERP_MAP] if derp == "public" else [],
        "paths": [],
        "auto_update_enabled": derp == "public",
        "update_frequency": "24h",
    }
    config = {
        "server_url": server_url,
        "listen_addr": f"0.0.0.0:{HEADSCALE_PORT}",
        # Metrics and gRPC stay inside the container; the CLI uses the unix socket.
        "metrics_listen_addr": "127.0.0.1:9090",
        "grpc_listen_addr": "127.0.0.1:50443",
        "noise": {"private_key_path": f"{HEADSCALE_STATE}/noise_private.key"},
        "prefixes": {"v4": "100.64.0.0/10", "v6": "fd7a:115c:a1e0::/48", "allocation": "sequential"},
        "derp": derp_config,
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
    }
    if has_client_port_setting(version):
        # 0.29 moved it into the policy (`randomizeClientPort`, false when absent) and refuses the key.
        config["randomize_client_port"] = False
    if tls == "internal":
        config |= {"tls_cert_path": TLS_CERT_PATH, "tls_key_path": TLS_KEY_PATH}
    elif tls == "acme":
        config |= {
            "tls_letsencrypt_hostname": host,
            "tls_letsencrypt_challenge_type": "TLS-ALPN-01",
            "tls_letsencrypt_cache_dir": ACME_CACHE,
            "acme_url": "https://acme-v02.api.letsencrypt.org/directory",
            "acme_email": acme_email or "",
        }
    return yaml.safe_dump(config, sort_keys=True)
