"""`pulumi up` waits for each Samba container to be healthy: one whose smbd never comes up fails
the update instead of being reported as deployed. (Its own stack, before the tier's `deployed`.)"""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import unique_subnet
from tests.engine.deploy import fake_key, new_stack, stack_config, teardown

pytestmark = pytest.mark.engine


def test_up_fails_when_a_samba_container_never_becomes_healthy(pulumi_env, docker_client, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    stack = new_stack(tmp_path / "stack", "badsamba", pulumi_env)
    config = stack_config(
        storage,
        f"tm-bad-{uuid.uuid4().hex[:6]}",
        unique_subnet(docker_client),
        {},
        [{"name": "alice", "owner": "alice@"}],
    )
    # A prebuilt "Samba" image without smbd (a wrong samba.image): the container starts and exits.
    config["samba"]["image"] = "debian:bookworm-slim"
    config["proxy"]["image"] = "debian:bookworm-slim"
    try:
        stack.init(config, {"shares[0].authKey": fake_key("alice")})
        # The fake Caddy image fails at once ("No command specified"), while the Samba container
        # waits for its share's storage step; --continue-on-error lets the update reach it.
        failed = stack.up("--continue-on-error", check=False)
        assert failed.code != 0
        # The engine's own line for the container, not the program's traceback after the cancel.
        lines = [line for line in failed.output.splitlines() if "alice-samba" in line and "error" in line.lower()]
        assert lines, failed.output[-3000:]
        # Nor does the next update pass over it.
        again = stack.up(check=False)
        assert again.code != 0 and [line for line in again.output.splitlines() if "alice-samba" in line], again.output[
            -3000:
        ]
    finally:
        teardown(stack, docker_client, storage)
