"""The conformance tier: Samba's own smbtorture suites (vfs.fruit, vfs.fruit_timemachine,
smb2.durable-v2-open), from the same Debian release as the Samba image, run against shares that
`pulumi up` deployed; and the two logins (samba.auth) as a Mac meets them.

One stack for this package, with three shares:
- `fruit` (guest) and `fruitpw` (password): set up the way the suites expect where that is a stack
  setting: the model `MacSamba` (enable_aapl checks the AAPL reply's length, which holds the model
  string) and a 32 KiB quota (Timemachine-volsize expects `fruit:time machine max size = 32K`);
- `switch`: a guest share whose login test_auth_change.py changes with `pulumi up` (only its own
  container is replaced: the other shares' tests do not see it).
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet
from tests.support.project import ROOT
from tests.support.proxy_path import proxy_path
from tests.support.tailnet import build
from timemachine.planning import names

MODEL = "MacSamba"
QUOTA = "32K"
NAME_PREFIX = "tm-conformance"
SHARES = [
    {"name": "fruit", "owner": "alice@example.com", "quota": QUOTA},
    {"name": "fruitpw", "owner": "bob@example.com", "quota": QUOTA, "auth": "password"},
    {"name": "switch", "owner": "carol@example.com"},
]
SMBTORTURE_CONTEXT = ROOT / "tests" / "images" / "smbtorture"


@pytest.fixture(scope="package")
def smbtorture_image(docker_client) -> str:
    """tests/images/smbtorture: trixie's samba-testsuite, built once per content."""
    return build(docker_client, SMBTORTURE_CONTEXT, "tailscale-timemachine/smbtorture-test")


@pytest.fixture(scope="package")
def deployment(pulumi_env, docker_client, goproxy, tmp_path_factory):
    """`pulumi up` of the three-share stack and the proxy's path to each share; yields the stack,
    its config, each share's (host, port) and the passwords of the password shares."""
    config = stack_config(
        tmp_path_factory.mktemp("storage"),
        f"tm-conformance-{uuid.uuid4().hex[:6]}",
        unique_subnet(docker_client),
        goproxy.build_args(),
        SHARES,
        name_prefix=NAME_PREFIX,
    )
    config["samba"]["model"] = MODEL
    with deployed_stack(docker_client, pulumi_env, tmp_path_factory.mktemp("conformance"), "conformance", config) as d:
        # smbd admits only the proxy's address: the suites run through the deployed Caddy config.
        with proxy_path(docker_client, name_prefix=NAME_PREFIX) as paths:
            yield {
                "stack": d.stack,
                "config": d.config,
                "paths": paths,
                "passwords": d.stack.outputs(show_secrets=True)["sharePasswords"],
                "caddy": docker_client.containers.get(names.caddy_container(NAME_PREFIX)),
                "client": docker_client,
            }
