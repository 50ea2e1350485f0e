"""The engine tier: the real `pulumi` CLI, language host and providers against the private dockerd.

One stack is deployed for this package (`deployed`); the SMB and Caddy checks read what `pulumi up`
made, and test_lifecycle.py (last in file order) changes and finally destroys it.
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import unique_subnet
from tests.engine.deploy import DATA_UID, FIRST_NODE_PORT, deploy, new_stack, stack_config, teardown

__all__ = ["DATA_UID", "FIRST_NODE_PORT", "QUOTAS", "SHARES"]

SHARES = [
    {"name": "alice", "owner": "alice@example.com", "quota": "2G"},
    {"name": "bob", "owner": "bob@example.com", "quota": "1G"},
    {"name": "carol", "owner": "group:family"},
]
QUOTAS = {"alice": 2 * 1024**3, "bob": 1024**3, "carol": None}


# Package scope: gone before another tier deploys (container names are not stack-scoped).
@pytest.fixture(scope="package")
def deployed(pulumi_env, docker_client, goproxy, tmp_path_factory):
    """`pulumi up` of a three-share stack: both images built by the program's docker.Image resources."""
    storage = tmp_path_factory.mktemp("storage")
    stack = new_stack(tmp_path_factory.mktemp("enginetest"), "enginetest", pulumi_env)
    network = f"tm-engine-{uuid.uuid4().hex[:6]}"
    config = stack_config(storage, network, unique_subnet(docker_client), goproxy.build_args(), SHARES)
    try:
        keys = deploy(stack, config)
        outputs = stack.outputs()
        ips = {name: share["ip"] for name, share in outputs["shares"].items()}
        yield {
            "stack": stack,
            "storage": storage,
            "keys": keys,
            "ips": ips,
            "outputs": outputs,
            "config": config,
            "network": network,
            "client": docker_client,
        }
    finally:
        teardown(stack, docker_client, storage)
