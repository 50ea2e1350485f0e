"""The tailnet tier: Headscale, the stack's caddy-tailscale nodes and two client nodes (alice,
bob), with the program's own tailnetPolicy loaded. All on `internal` networks."""

from __future__ import annotations

import pytest

from tests.tailnet.harness import CLIENT_CONTEXT, HEADSCALE_CONTEXT, build, deployed_tailnet

SHARES = [
    {"name": "alice", "owner": "alice@", "quota": "2G"},
    {"name": "bob", "owner": "bob@", "quota": "1G"},
]
NODE_TAGS = {"alice": ["tag:timemachine", "tag:tm-alice"], "bob": ["tag:timemachine", "tag:tm-bob"]}
FORWARD = {"alice": 4450, "bob": 4451, "bob-to-alice": 4452}


@pytest.fixture(scope="package")
def images(docker_client, goproxy):
    """Headscale (images/headscale) and the test client (tests/images/tailnet-client)."""
    # goproxy: its fixture has made the golang builder base both Dockerfiles start from.
    return {
        "headscale": build(docker_client, HEADSCALE_CONTEXT, "tailscale-timemachine/headscale"),
        "client": build(docker_client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test"),
    }


@pytest.fixture(scope="package")
def tailnet(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    with deployed_tailnet(
        docker_client,
        pulumi_env,
        goproxy,
        images,
        tmp_path_factory.mktemp("tailnet"),
        SHARES,
        NODE_TAGS,
        {"alice": "alice", "bob": "bob"},
    ) as net:
        clients = net["clients"]
        clients["alice"].ping_direct("tm-alice")
        clients["bob"].ping_direct("tm-bob")
        clients["alice"].forward(FORWARD["alice"], "tm-alice", 445)
        clients["bob"].forward(FORWARD["bob"], "tm-bob", 445)
        clients["bob"].forward(FORWARD["bob-to-alice"], "tm-alice", 445)
        yield net
