"""Fixtures the tiers that use the private Docker engine share (their helpers are in tests/support)."""

from __future__ import annotations

import os

import pytest

from tests.support.docker_engine import docker_client_for
from tests.support.goproxy import start_goproxy
from tests.support.pulumi_cli import tools_or_reason


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker_client_for()
    except (RuntimeError, FileNotFoundError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a Docker engine: {exc}")
        pytest.skip(f"no Docker engine could start here: {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def pulumi_env():
    """The exports of scripts/pulumi-tools.sh env: the real Pulumi CLI and plugins."""
    env, reason = tools_or_reason()
    if env is None:
        message = f"the Pulumi tools are not built (run scripts/setup.sh): {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return env


@pytest.fixture(scope="session")
def goproxy(docker_client, tmp_path_factory):
    """caddy-tailscale for the Caddy build (see tests/support/goproxy.py)."""
    proxy = start_goproxy(docker_client, tmp_path_factory.mktemp("goproxy"))
    yield proxy
    proxy.close()
