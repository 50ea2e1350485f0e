"""ProcessLimit: a container's pids limit, set through the Docker API (the docker provider has no
argument for it)."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_docker as docker
from pulumi.dynamic import CreateResult, DiffResult, ResourceProvider, UpdateResult

from timemachine.planning.limits import Limits


class _ProcessLimitProvider(ResourceProvider):
    """The cgroup pids limit of a container, set through the Docker API after the provider made it.

    The docker provider has no pids-limit input, and an `nproc` ulimit does not bind here: the kernel
    exempts root's processes from RLIMIT_NPROC, and smbd's and Caddy's processes are root's.
    """

    @staticmethod
    def _apply(props: dict[str, Any]) -> None:
        import docker as docker_sdk_module  # the Docker SDK, only at deploy time
        from docker.errors import DockerException

        # Numbers cross the engine as floats; the Docker API wants an integer.
        limit = int(props["limit"])

        try:
            host = props["docker_host"]
            api = (docker_sdk_module.DockerClient(base_url=host) if host else docker_sdk_module.from_env()).api
            api._raise_for_status(
                api._post_json(api._url("/containers/{0}/update", props["container_id"]), data={"PidsLimit": limit})
            )
            applied = api.inspect_container(props["container_id"])["HostConfig"].get("PidsLimit")
        except DockerException as exc:
            raise Exception(f"process limit of container {props['container_id'][:12]} not set: {exc}") from None
        if applied != limit:
            raise Exception(f"the Docker engine kept PidsLimit {applied} instead of {limit}")

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._apply(props)
        return CreateResult(id_=props["container_id"], outs=props)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = ["container_id"] if olds.get("container_id") != news.get("container_id") else []
        changed = replaces or [k for k in ("limit", "docker_host") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._apply(news)
        return UpdateResult(outs=news)

    # Deleting the resource leaves the limit: the container it belongs to is going away with it.


class ProcessLimit(pulumi.dynamic.Resource):
    """`limits.process_limit` as the container's pids limit (Docker's --pids-limit)."""

    def __init__(
        self, name: str, container: docker.Container, limits: Limits, opts: pulumi.ResourceOptions | None = None
    ):
        props = {
            "container_id": container.id,
            "limit": limits.process_limit,
            # The engine the docker provider uses (docker:host, else DOCKER_HOST).
            "docker_host": pulumi.Config("docker").get("host") or "",
        }
        super().__init__(_ProcessLimitProvider(), name, props, opts)
