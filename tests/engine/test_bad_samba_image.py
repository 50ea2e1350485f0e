"""A wrong `samba.image` (one that is not this project's Samba image: here without even a command)
fails `pulumi up` at the container instead of being reported as deployed. (Its own stack, with a
namePrefix of its own.) A container that runs but whose smbd does not serve is test_data_storage's
changed-dataUid case: the readiness step (timemachine/dynamic/samba_ready.py) fails `up` there."""

from __future__ import annotations

import uuid

import pytest

from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet

pytestmark = pytest.mark.engine


def test_up_fails_when_the_samba_image_cannot_run(pulumi_env, docker_client, tmp_path):
    config = stack_config(
        tmp_path / "storage",
        f"tm-bad-{uuid.uuid4().hex[:6]}",
        unique_subnet(docker_client),
        {},
        [{"name": "alice", "owner": "alice@"}],
        name_prefix="tm-bad",
    )
    # A prebuilt "Samba" image without smbd (a wrong samba.image): the container starts and exits.
    config["samba"]["image"] = "debian:bookworm-slim"
    config["proxy"]["image"] = "debian:bookworm-slim"
    with deployed_stack(docker_client, pulumi_env, tmp_path / "stack", "badsamba", config, up=False) as deployment:
        stack = deployment.stack
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
