"""The conformance tier: Samba's own smbtorture suites (vfs.fruit, vfs.fruit_timemachine,
smb2.durable-v2-open) run against a share that `pulumi up` deployed.

One stack for this package (container names are not stack-scoped, so it is gone before the next
tier deploys). Its one share is set up the way the suites expect where that is a stack setting:
the model `MacSamba` (enable_aapl checks the AAPL reply's length, which holds the model string) and
a 32 KiB quota (Timemachine-volsize expects `fruit:time machine max size = 32K`).
"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import unique_subnet
from tests.engine.deploy import deploy, new_stack, proxy_path, stack_config, teardown

SHARE = "fruit"
MODEL = "MacSamba"
QUOTA = "32K"


@pytest.fixture(scope="package")
def share(pulumi_env, docker_client, goproxy, tmp_path_factory):
    """`pulumi up` of a one-share stack; yields the share's name and address."""
    storage = tmp_path_factory.mktemp("storage")
    stack = new_stack(tmp_path_factory.mktemp("conformance"), "conformance", pulumi_env)
    network = f"tm-conformance-{uuid.uuid4().hex[:6]}"
    config = stack_config(
        storage,
        network,
        unique_subnet(docker_client),
        goproxy.build_args(),
        [{"name": SHARE, "owner": "alice@example.com", "quota": QUOTA}],
    )
    config["samba"]["model"] = MODEL
    try:
        deploy(stack, config)
        # smbd admits only the proxy's address: the suites run through the deployed Caddy config.
        with proxy_path(docker_client, [SHARE]) as paths:
            host, port = paths[SHARE]
            yield {"name": SHARE, "ip": host, "port": port, "storage": storage, "client": docker_client}
    finally:
        teardown(stack, docker_client, storage)
