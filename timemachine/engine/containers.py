"""The running container a dynamic resource acts on (Caddy, the embedded Headscale), reached through
the Docker API of the engine the docker provider uses (`docker:host`, else DOCKER_HOST)."""

from __future__ import annotations

from typing import Any


class ContainerUnavailable(Exception):
    """The container is missing, stopped, or its engine does not answer; the message says the fix."""


def running_container(name: str, docker_host: str | None, what: str) -> Any:
    """`what` names it for people, e.g. "the Caddy container"."""
    import docker  # the Docker SDK, only where a dynamic resource acts on a container
    from docker.errors import DockerException, NotFound

    try:
        client = docker.DockerClient(base_url=docker_host) if docker_host else docker.from_env()
        container = client.containers.get(name)
    except NotFound:
        raise ContainerUnavailable(
            f"{what} {name!r} does not exist; run pulumi refresh, then pulumi up to create it again"
        ) from None
    except DockerException as exc:
        raise ContainerUnavailable(f"cannot reach the Docker engine for {what}: {exc}") from None
    if container.status != "running":
        raise ContainerUnavailable(
            f"{what} {name!r} is {container.status}, not running; "
            f"start it (docker start {name}) and run pulumi up again"
        )
    return container
