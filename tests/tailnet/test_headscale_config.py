"""Headscale itself (the default release, tailnet.headscale.version) accepts the config the stack
renders in each TLS and relay mode (`headscale configtest`: it loads the config and the certificate
files and sets up the server, relay included, without serving). ACME and the public DERP map need
the internet to be used; this is as far as they are checked here."""

from __future__ import annotations

import pytest

from tests.support.containers import upload as put
from timemachine.engine.containers import upload
from timemachine.headscale.config import Derp, Tls, render_headscale_config
from timemachine.headscale.tls import issue_authority, issue_server

pytestmark = pytest.mark.tailnet

MODES: dict[str, tuple[str, Tls, Derp]] = {
    "stack CA, embedded relay": ("https://headscale.internal:8080", "internal", "embedded"),
    "ACME, public relay map": ("https://hs.example.com", "acme", "public"),
    "loopback plain HTTP": ("http://127.0.0.1:8080", "none", "embedded"),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_headscale_accepts_the_rendered_config(docker_client, images, mode):
    url, tls, derp = MODES[mode]
    container = docker_client.containers.create(images["headscale"], ["headscale", "configtest"], network_mode="none")
    try:
        put(container, "/etc/headscale/config.yaml", render_headscale_config(url, tls=tls, derp=derp))
        put(container, "/var/lib/headscale/policy.hujson", '{"acls": []}')
        if tls == "internal":
            authority = issue_authority("headscale.internal", "test CA")
            server = issue_server("headscale.internal", authority.certificate, authority.key)
            files = {"tls/server.crt": (server.certificate, 0o644), "tls/server.key": (server.key, 0o600)}
            upload(container, "/var/lib/headscale", files, {"tls": 0o700})
        container.start()
        status = container.wait(timeout=60)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True, v=True)
    assert status == 0 and "FTL" not in logs, logs
