"""The tailnet tier: Headscale, the stack's caddy-tailscale nodes and tailscale clients, all on
`internal` networks. Each module deploys its own stack (tests/support/tailnet.py)."""

from __future__ import annotations

import pytest

from tests.support.tailnet import CLIENT_CONTEXT, HEADSCALE_CONTEXT, build


@pytest.fixture(scope="package")
def images(docker_client, goproxy):
    """Headscale (images/headscale) and the test client (tests/images/tailnet-client)."""
    # goproxy: its fixture has made the golang builder base both Dockerfiles start from.
    return {
        "headscale": build(docker_client, HEADSCALE_CONTEXT, "tailscale-timemachine/headscale"),
        "client": build(docker_client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test"),
    }
