"""The engine tier: the real `pulumi` CLI, language host and providers against the private dockerd.

`deployed` is the tier's three-share stack as `pulumi up` made it, for the modules that read it and
use its shares (test_deployed_caddy.py, test_deployed_shares.py, test_hardening.py). Every other
stack of the tier is its own module's, with a namePrefix of its own, so none depends on which
module runs first.
"""

from __future__ import annotations

import pytest

from tests.support.engine_stack import three_shares


@pytest.fixture(scope="package")
def deployed(pulumi_env, docker_client, goproxy, tmp_path_factory):
    """`pulumi up` of the three-share stack (tests/support/engine_stack.py); destroyed after the tier."""
    with three_shares(
        docker_client, pulumi_env, goproxy, tmp_path_factory.mktemp("enginetest"), "enginetest", "tm-engine"
    ) as stack:
        yield stack
