"""SambaReady: `pulumi up` waits until every new or replaced Samba container serves its share, and
fails naming the share and why when one does not.

Not the docker provider's `wait`: that waits for Docker's health status, and Docker runs a
container's first health check one interval after it starts (`start_interval`, which would run
the first ones sooner, needs Docker 25, API 1.44; the docker provider and the engines tested here
speak 1.41). `pulumi up` runs 8 steps at a time, so with a 10 s interval 100 new containers held
its steps for at least 125 s; and every interval costs every idle share one check for as long as
it runs (an exec and an SMB session, about 0.1 CPU-s: 100 shares checked every 10 s took about
half of a 2-core server). So the containers start without `wait`, Docker checks each every
HEALTH_INTERVAL_SECONDS, and this one step, after all of them, runs the same check in each new
container right away, a second apart, until it passes.

One resource for all shares, not one per share: each resource costs every share a step in every
preview (docs/benchmarks.md). A new or replaced container (a new id) updates it, and the update
waits only for those; the others were ready at an earlier `up`. Read: as stored (readiness is a
moment of `up`, not a state that drifts). Deleting it removes nothing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pulumi
import pulumi_docker as docker
from docker.errors import DockerException, NotFound

from timemachine.dynamic.base import Provider, Resource
from timemachine.engine.client import docker_client
from timemachine.engine.containers import exec_text
from timemachine.engine.polling import poll
from timemachine.samba.smbconf import HEALTHCHECK_PATH

READY_SECONDS = 90
# At most this many containers checked at once (each check is an exec and an SMB session).
CHECKS_AT_ONCE = 8


def _check(api_client: Any, container_id: str) -> tuple[bool, str]:
    """Whether the container serves its share now, and what was found."""
    try:
        container = api_client.containers.get(container_id)
    except NotFound:
        return False, "the container is gone"
    state = container.attrs.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        said = container.logs(tail=3).decode(errors="replace").strip().splitlines()
        last = f": {said[-1]}" if said else ""
        return False, f"not running (exit code {state.get('ExitCode')}){last}"
    try:
        code, out = exec_text(container, HEALTHCHECK_PATH)
    except DockerException as error:  # stopped between the inspect and the exec
        return False, f"the check could not run: {error}"
    lines = out.splitlines()
    return code == 0, lines[-1] if lines else f"the check exited {code}"


def wait_ready(api_client: Any, containers: dict[str, str], seconds: float) -> dict[str, str]:
    """Each of `containers` (share: container id) checked until it passes or `seconds` have passed;
    the shares that never passed, with the last thing found."""

    def one(container_id: str) -> tuple[bool, str]:
        return poll(lambda: _check(api_client, container_id), lambda found: found[0], seconds=seconds, interval=1)[0]

    with ThreadPoolExecutor(max_workers=CHECKS_AT_ONCE) as pool:
        found = dict(zip(containers, pool.map(one, containers.values()), strict=True))
    return {share: said for share, (ready, said) in found.items() if not ready}


class _SambaReadyProvider(Provider):
    """Create: wait for every container it names; update: for those with a new id (a new share, or
    a container replaced). The refusal names each share that is not ready, what its check or its
    log said, and where to look."""

    def subject(self, props) -> str:
        return f"the Samba containers of {', '.join(sorted(props.get('containers') or {}))}"

    def _wait(self, props: dict[str, Any], containers: dict[str, str]) -> None:
        if not containers:
            return
        seconds = float(props["seconds"])
        waiting = wait_ready(docker_client(props["docker_host"]), containers, seconds)
        if waiting:
            lines = "; ".join(f"{share} ({props['names'][share]}): {said}" for share, said in sorted(waiting.items()))
            raise RuntimeError(
                f"not serving its share {seconds:.0f} s after it started: {lines}. `docker logs <container>` "
                "shows why smbd did not come up; fix that, then run pulumi up again"
            )

    def make(self, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self._wait(props, dict(props["containers"]))
        return "samba-ready", props

    def change(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dict[str, Any]:
        before = olds.get("containers") or {}
        self._wait(news, {share: cid for share, cid in news["containers"].items() if before.get(share) != cid})
        return news


class SambaReady(Resource, type_name="SambaReady"):
    """`pulumi up` waits until each of `containers` (share: its Samba container) serves its share."""

    def __init__(
        self,
        name: str,
        containers: dict[str, docker.Container],
        *,
        docker_host: str | None = None,
        seconds: float = READY_SECONDS,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = {
            "containers": {share: container.id for share, container in containers.items()},
            "names": {share: container.name for share, container in containers.items()},
            "seconds": seconds,
            # The engine the docker provider uses ("": DOCKER_HOST).
            "docker_host": docker_host or "",
        }
        super().__init__(_SambaReadyProvider(), name, props, opts)
