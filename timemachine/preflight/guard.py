"""Before anything is declared: no container or network this stack would name belongs to another
stack on the same Docker engine (two stacks with one namePrefix would share volumes silently)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from timemachine.config.models import MAX_NAME_PREFIX, StackConfig
from timemachine.engine.client import EngineUnavailable, docker_client
from timemachine.planning import names
from timemachine.planning.labels import STACK_LABEL
from timemachine.preflight.state import docker_ids

# The proxy's container in a stack's state, by the type chain in its URN.
PROXY_CONTAINER = "timemachine:index:CaddyProxy$docker:index/container:Container"
# Shard 0's (the one Caddy of a stack without shards) by its resource name: its name says the prefix.
FIRST_PROXY_CONTAINER = "proxy-caddy"

# A preview on a machine without the engine (a CI runner) must not wait long for it.
ENGINE_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Found:
    kind: str  # "container" or "network"
    name: str
    stack: str | None  # its timemachine.stack label; None on objects made before the label existed
    id: str = ""  # the engine's id


def planned_names(config: StackConfig) -> tuple[list[str], str]:
    """The container names and the network name this stack declares."""
    shares = [share.name for share in config.shares]
    containers = names.containers(
        config.name_prefix, shares, config.tailnet.headscale.embedded, config.status.enabled, config.proxy.shards
    )
    return containers, config.network_name


def foreign(found: Iterable[Found], config: StackConfig, this_stack: str) -> list[Found]:
    """The objects with one of this stack's names that another stack's label claims. Unlabelled
    ones (deployed before the label) count as this stack's own."""
    containers, network = planned_names(config)
    wanted = {("container", name) for name in containers} | {("network", network)}
    return sorted(
        (f for f in found if (f.kind, f.name) in wanted and f.stack is not None and f.stack != this_stack),
        key=lambda f: (f.kind, f.name),
    )


def suggested_prefix(prefix: str, stack: str) -> str:
    """<prefix>-<stack name>, made a valid namePrefix (e.g. tm-staging)."""
    tail = re.sub(r"[^a-z0-9-]+", "-", stack.rsplit("/", 1)[-1].lower()).strip("-") or "2"
    return f"{prefix}-{tail}"[:MAX_NAME_PREFIX].rstrip("-")


def message(clashes: list[Found], config: StackConfig, this_stack: str) -> str:
    owners = " and ".join(sorted({f.stack for f in clashes if f.stack}))
    objects = ", ".join(f"{f.kind} {f.name!r}" for f in clashes)
    fix = f"pulumi config set namePrefix {suggested_prefix(config.name_prefix, this_stack)}"
    network = ""
    if config.network.name and any(f.kind == "network" for f in clashes):
        network = " and a network.name of its own (or no network.name: it then derives from namePrefix)"
    return (
        f"namePrefix {config.name_prefix!r}: on this Docker engine {objects} already belong to stack {owners} "
        f"(label {STACK_LABEL}); {this_stack} with the same names would take them over and share their volumes. "
        f"Give this stack a prefix of its own: {fix}{network}, with a network.subnet (and published ports) of "
        "its own. Nothing was declared."
    )


def engine_objects(docker_host: str | None) -> list[Found] | None:
    """Every labelled container and network on the engine the docker provider uses (docker:host, else
    DOCKER_HOST, else the default socket); None when that engine does not answer."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        client = docker_client(docker_host, timeout=ENGINE_TIMEOUT_SECONDS)
        try:
            containers = client.api.containers(all=True, filters={"label": STACK_LABEL})
            networks = client.api.networks(filters={"label": STACK_LABEL})
        finally:
            client.close()
    except (EngineUnavailable, DockerException, RequestException, OSError):
        return None
    found = [
        Found("container", name.lstrip("/"), (c.get("Labels") or {}).get(STACK_LABEL), c.get("Id") or "")
        for c in containers
        for name in c.get("Names") or []
    ]
    return found + [
        Found("network", n["Name"], (n.get("Labels") or {}).get(STACK_LABEL), n.get("Id") or "") for n in networks
    ]


def prefix_change(config: StackConfig, deployed: Mapping[str, Any]) -> str | None:
    """A namePrefix other than the one the deployed containers were named from, or None. Changing it
    would replace every container and volume; the protected volumes stop that only after the
    containers are gone (measured with `up --skip-preview`)."""
    for urn, resource in sorted(deployed.items()):
        name = (resource.get("outputs") or {}).get("name")
        first = urn.split("::")[2].endswith(PROXY_CONTAINER) and urn.rsplit("::", 1)[-1] == FIRST_PROXY_CONTAINER
        if first and name and name != names.caddy_container(config.name_prefix):
            old = name.removesuffix("-caddy")
            return (
                f"namePrefix {config.name_prefix!r}: this stack is deployed with namePrefix {old!r} (its Caddy "
                f"container is {name!r}); a new prefix would replace every container and volume. "
                f"Set it back: pulumi config set namePrefix {old}. Nothing was declared."
            )
    return None


EngineObjects = Callable[[str | None], list[Found] | None]


def check(
    config: StackConfig,
    this_stack: str,
    docker_host: str | None,
    deployed: Mapping[str, Any],
    find: EngineObjects | None = None,
) -> str | None:
    """The problem, or None: no clash, or no engine to ask (a preview elsewhere checks nothing).
    `deployed`: this stack's state; an object there is this stack's whatever its label says
    (`pulumi stack rename`). `find`: what the engine holds (default: ask it, `engine_objects`)."""
    if changed := prefix_change(config, deployed):
        return changed
    owned = docker_ids(deployed)
    clashes = [f for f in foreign((find or engine_objects)(docker_host) or [], config, this_stack) if f.id not in owned]
    return message(clashes, config, this_stack) if clashes else None
