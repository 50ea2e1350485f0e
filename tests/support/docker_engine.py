"""The private Docker engine (scripts/engine.sh) the engine, tailnet and conformance tiers use."""

from __future__ import annotations

import os
import subprocess

from tests.support.project import ROOT

ENGINE = ROOT / "scripts" / "engine.sh"


def start_engine() -> str:
    """Start (or reuse) the private engine and make sure the base image exists; returns DOCKER_HOST."""
    done = subprocess.run(["bash", str(ENGINE), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"engine did not start: {done.stderr.strip()}")
    host = done.stdout.strip().splitlines()[-1]
    done = subprocess.run(["bash", str(ENGINE), "base"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"base image could not be made: {done.stderr.strip()}")
    return host


def docker_client_for():
    """A Docker SDK client on the private engine (started if needed); sets DOCKER_HOST for the
    Pulumi stacks made after it."""
    import docker

    host = start_engine()
    os.environ["DOCKER_HOST"] = host
    return docker.DockerClient(base_url=host, timeout=600)
