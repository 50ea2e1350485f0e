"""The one way to the Docker engine the docker provider uses: its `docker:host` when set, else
DOCKER_HOST (tcp://, unix://, ssh:// through the system's ssh client), else the local socket."""

from __future__ import annotations

import os
from typing import Any

# Imported with the module, not in the call: the dynamic provider runs resources' steps in threads,
# and the SDK imported by two of them at once can fail half-initialised.
import docker
from docker.errors import DockerException


class EngineUnavailable(Exception):
    """The Docker engine does not answer; the message names it and says what to check."""


def engine_address(docker_host: str | None) -> str:
    """The engine as people know it: docker:host, else DOCKER_HOST, else the local socket."""
    return docker_host or os.environ.get("DOCKER_HOST") or "the local Docker socket"


def docker_client(docker_host: str | None, timeout: float | None = None) -> Any:
    """A Docker SDK client on that engine (the SDK asks the engine its API version right away, so
    an engine that does not answer fails here). `timeout`: seconds per API call (the SDK's default
    otherwise)."""
    host = engine_address(docker_host)
    options: dict[str, Any] = {}
    if timeout is not None:
        options["timeout"] = timeout
    if host.startswith("ssh://"):
        # The system's ssh client and its config (keys, known hosts, jump hosts), not paramiko.
        options["use_ssh_client"] = True
    try:
        return docker.DockerClient(base_url=docker_host, **options) if docker_host else docker.from_env(**options)
    except DockerException as error:
        raise EngineUnavailable(
            f"cannot reach the Docker engine at {host}: {error}; check that it runs and that docker:host "
            "(pulumi config) or DOCKER_HOST names it"
        ) from None
