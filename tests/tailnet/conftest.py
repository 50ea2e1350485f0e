"""The tailnet tier: Headscale, the stack's caddy-tailscale nodes and tailscale clients, all on
`internal` networks. Each module deploys its own stack (tests/support/tailnet.py)."""

from __future__ import annotations

import pytest

from tests.support.tailnet import CLIENT_CONTEXT, build, build_headscale


@pytest.fixture(scope="package")
def images(docker_client, goproxy):
    """Headscale (images/headscale) and the test client (tests/images/tailnet-client)."""
    # goproxy: its fixture has made the golang builder base both Dockerfiles start from.
    return {
        "headscale": build_headscale(docker_client),
        "client": build(docker_client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test"),
    }
