"""`pulumi up` waits for each Samba container to be healthy: one whose smbd never comes up fails
the update instead of being reported as deployed. (Its own stack, before the tier's `deployed`.)"""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import unique_subnet
from tests.engine.deploy import deploy, new_stack, stack_config, teardown
from tests.engine.pulumi_cli import PulumiError

pytestmark = pytest.mark.engine


def test_up_fails_when_a_samba_container_never_becomes_healthy(pulumi_env, docker_client, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    stack = new_stack(tmp_path / "stack", "badsamba", pulumi_env)
    config = stack_config(storage, f"tm-bad-{uuid.uuid4().hex[:6]}", unique_subnet(docker_client), {},
                          [{"name": "alice", "owner": "alice@"}])
    # A prebuilt "Samba" image without smbd (a wrong samba.image): the container starts and exits.
    config["samba"]["image"] = "debian:bookworm-slim"
    config["proxy"]["image"] = "debian:bookworm-slim"
    try:
        with pytest.raises(PulumiError) as failed:
            deploy(stack, config, wait=False)
        text = str(failed.value)
        assert "alice-samba" in text and ("healthy" in text or "exited" in text), text[-3000:]
        # Nor does the next update pass over it.
        again = stack.up(check=False)
        assert again.code != 0 and "alice-samba" in again.output, again.output[-3000:]
    finally:
        teardown(stack, docker_client, storage)
