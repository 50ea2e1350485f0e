"""ProcessLimit: a container's pids limit, set through the Docker API (the docker provider has no
argument for it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pulumi
import pulumi_docker as docker
import requests
from docker.errors import NotFound, create_api_error_from_http_exception

from timemachine.dynamic.base import Provider, Resource
from timemachine.engine.client import docker_client
from timemachine.planning.limits import Limits


def _set_pids_limit(api: Any, container_id: str, limit: int) -> None:
    """POST /containers/{id}/update with PidsLimit: docker-py's update_container has no argument
    for it, so the SDK's public HTTP session sends it, and its public error type reports it."""
    response = api.post(
        f"{api.base_url}/v{api.api_version}/containers/{quote(container_id, safe='')}/update",
        json={"PidsLimit": limit},
    )
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as error:
        raise create_api_error_from_http_exception(error) from None


def _found_limit(host_config: dict[str, Any]) -> int:
    """The pids limit a container runs with; 0 for none (Docker reports none as null, 0 or -1)."""
    limit = host_config.get("PidsLimit") or 0
    return max(int(limit), 0)


def _apply_limit(api: Any, container_id: str, limit: float) -> tuple[int, int]:
    """Set `limit` on the container (numbers cross the engine as floats; the API wants an integer);
    the limit asked for and the one the engine then reports."""
    wanted = int(limit)
    _set_pids_limit(api, container_id, wanted)
    return wanted, _found_limit(api.inspect_container(container_id)["HostConfig"])


class _ProcessLimitProvider(Provider):
    """The cgroup pids limit of a container, set through the Docker API after the provider made it.

    The docker provider has no pids-limit input, and an `nproc` ulimit does not bind here: the kernel
    exempts root's processes from RLIMIT_NPROC, and smbd's and Caddy's processes are root's.
    Read: the limit the container runs with (`docker update --pids-limit` shows); gone with the
    container. Deleting the resource leaves the limit: its container is going away with it.
    """

    replace_props = ("container_id",)

    def subject(self, props) -> str:
        return f"the pids limit of container {str(props.get('container_id'))[:12]}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        limit, applied = _apply_limit(docker_client(props["docker_host"]).api, props["container_id"], props["limit"])
        if applied != limit:
            raise RuntimeError(
                f"the Docker engine kept PidsLimit {applied} instead of {limit}; check that it supports pids "
                "limits (cgroup pids controller) and run pulumi up again"
            )
        return props["container_id"], props

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        try:
            host_config = docker_client(props["docker_host"]).api.inspect_container(props["container_id"])["HostConfig"]
        except NotFound:
            return None
        return {**props, "limit": _found_limit(host_config)}


class ProcessLimit(Resource, type_name="ProcessLimit"):
    """`limits.process_limit` as the container's pids limit (Docker's --pids-limit)."""

    def __init__(
        self,
        name: str,
        container: docker.Container,
        limits: Limits,
        *,
        docker_host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "container_id": container.id,
            "limit": limits.process_limit,
            # The engine the docker provider uses ("": DOCKER_HOST), as stored since this resource began.
            "docker_host": docker_host or "",
        }
        super().__init__(_ProcessLimitProvider(), name, props, opts)


class _ProcessLimitsProvider(Provider):
    """One pids limit on many containers (`limits`: each one's, by name; `containers`: their ids): the
    Samba containers of every share, set after the docker provider made them. One resource for all,
    not one per share: each resource costs every share a step in every preview (docs/benchmarks.md).

    A changed container (a new id) or limit updates it, and the update sets the limit on every
    container it names (the same limit again is no change to a running one). Read: the limit each
    container runs with; a container gone is left out, so that the next `up` sets the limit on the
    one that replaces it. Deleting the resource leaves the limits: their containers are going away."""

    def subject(self, props) -> str:
        return f"the pids limits of the containers of {', '.join(sorted(props.get('containers') or {}))}"

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        api = docker_client(props["docker_host"]).api
        kept: list[str] = []
        for name, container_id in sorted(props["containers"].items()):
            limit, applied = _apply_limit(api, container_id, props["limits"][name])
            if applied != limit:
                kept.append(name)
        if kept:
            raise RuntimeError(
                f"the Docker engine did not keep the pids limit of {', '.join(kept)}; check that it supports pids "
                "limits (cgroup pids controller) and run pulumi up again"
            )
        return "process-limits", props

    def observe(self, _id: str, props: dict[str, Any]) -> dict[str, Any] | None:
        api = docker_client(props["docker_host"]).api
        containers: dict[str, str] = {}
        limits: dict[str, int] = {}
        for name, container_id in props["containers"].items():
            try:
                host_config = api.inspect_container(container_id)["HostConfig"]
            except NotFound:
                continue
            containers[name], limits[name] = container_id, _found_limit(host_config)
        return {**props, "containers": containers, "limits": limits}


class ProcessLimits(Resource, type_name="ProcessLimits"):
    """`limits.process_limit` as the pids limit (Docker's --pids-limit) of each of `containers`."""

    def __init__(
        self,
        name: str,
        containers: dict[str, docker.Container],
        limits: Limits,
        *,
        docker_host: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "containers": {key: container.id for key, container in containers.items()},
            "limits": {key: limits.process_limit for key in containers},
            # The engine the docker provider uses ("": DOCKER_HOST).
            "docker_host": docker_host or "",
        }
        super().__init__(_ProcessLimitsProvider(), name, props, opts)
