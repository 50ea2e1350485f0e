"""The engine tier's three-share stack: provided keys, bridge mode, both images built by the
program's own docker.Image resources. The tier's `deployed` fixture keeps one as `pulumi up` made
it; test_lifecycle.py deploys another of its own to change and destroy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet

SHARES = [
    {"name": "alice", "owner": "alice@example.com", "quota": "2G"},
    {"name": "bob", "owner": "bob@example.com", "quota": "1G"},
    {"name": "carol", "owner": "group:family"},
]
QUOTAS = {"alice": 2 * 1024**3, "bob": 1024**3, "carol": None}


@contextmanager
def three_shares(client, pulumi_env: dict, goproxy, work: Path, name: str, name_prefix: str) -> Iterator[dict]:
    """`pulumi up` of the three shares as stack `name` with `name_prefix` (its Docker names its own,
    so it can run beside the tier's other stacks); destroyed afterwards."""
    storage = work / "storage"
    network = f"{name_prefix}-{uuid.uuid4().hex[:6]}"
    config = stack_config(
        storage, network, unique_subnet(client), goproxy.build_args(), SHARES, name_prefix=name_prefix
    )
    with deployed_stack(client, pulumi_env, work / "stack", name, config) as deployment:
        outputs = deployment.stack.outputs()
        yield {
            "stack": deployment.stack,
            "prefix": name_prefix,
            "storage": storage,
            "keys": deployment.keys,
            "ips": {share: values["ip"] for share, values in outputs["shares"].items()},
            "outputs": outputs,
            "config": config,
            "network": network,
            "client": client,
        }
