"""What this stack has deployed: each share's address, read from the stack's own state."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from typing import Any

import pulumi

from timemachine.planning.labels import PREFIX, SHARD_LABEL
from timemachine.planning.shards import DeployedShards

# A built-in invoke of the Pulumi engine (no provider plugin): every live resource of a stack,
# URN → type and outputs, as of its last checkpoint.
READ_STATE = "pulumi:pulumi:readStackResourceOutputs"
# A share's Samba container, by the type chain in its URN: at the stack's root (with its role label),
# or, as a stack deployed before the share's component was dropped has it, under that component.
CONTAINER = "docker:index/container:Container"
SHARE_CONTAINER = f"timemachine:index:TimeMachineShare${CONTAINER}"


def is_share_container(urn: str, labels: Mapping[str, str]) -> bool:
    chain = urn.split("::")[2]
    if chain.endswith(SHARE_CONTAINER):
        # Samba containers carried no role label at first.
        return labels.get(f"{PREFIX}.role", "samba") == "samba"
    return chain == CONTAINER and labels.get(f"{PREFIX}.role") == "samba"


def share_addresses(resources: Mapping[str, Any]) -> dict[str, ipaddress.IPv4Address]:
    """Share name → address of its Samba container, from a stack's resource outputs.

    A Samba container whose share or address cannot be read stops the program: planning as if it
    were not deployed could hand its address to another share or move it.
    """
    found: dict[str, ipaddress.IPv4Address] = {}
    for urn, resource in sorted(resources.items()):
        outputs = resource.get("outputs") or {}
        if not is_share_container(urn, labels := _labels(outputs)):
            continue
        share = labels.get(f"{PREFIX}.share")
        addresses = [n.get("ipv4Address") for n in outputs.get("networksAdvanced") or [] if n.get("ipv4Address")]
        try:
            if not share or not addresses:
                raise ValueError("no share label or no IPv4 address")
            found[share] = ipaddress.IPv4Address(addresses[0])
        except ValueError as error:
            raise pulumi.RunError(
                f"the state's Samba container {urn} does not say which share it serves at which address "
                f"({error}); nothing was planned. `pulumi refresh` may fix the state"
            ) from None
    return found


# The stack's Caddy container, by the type chain in its URN.
PROXY_CONTAINER = "timemachine:index:CaddyProxy$docker:index/container:Container"


def proxy_network_mode(resources: Mapping[str, Any]) -> str | None:
    """The network mode of the deployed Caddy container ("host" or "bridge"), None before the first up."""
    for urn, resource in sorted(resources.items()):
        if urn.split("::")[2].endswith(PROXY_CONTAINER):
            outputs = resource.get("outputs") or {}
            return "host" if outputs.get("networkMode") == "host" else "bridge"
    return None


def _labels(outputs: Mapping[str, Any]) -> dict[str, str]:
    return {item.get("label"): item.get("value") for item in outputs.get("labels") or []}


def _shard(urn: str, labels: Mapping[str, str]) -> int:
    """The shard label's value; none: shard 0 (the one Caddy of a stack without shards)."""
    value = labels.get(SHARD_LABEL, "0")
    try:
        return int(value)
    except ValueError:
        raise pulumi.RunError(
            f"the state's container {urn} has the label {SHARD_LABEL}={value!r}, not a shard number; nothing was "
            "planned. `pulumi refresh` may fix the state"
        ) from None


def deployed_shards(resources: Mapping[str, Any]) -> DeployedShards:
    """The Caddy shard each deployed share is on (its Samba container's shard label; none: 0), and the
    address of each deployed Caddy shard beyond 0, from a stack's resource outputs."""
    shares: dict[str, int] = {}
    addresses: dict[int, ipaddress.IPv4Address] = {}
    for urn, resource in sorted(resources.items()):
        chain = urn.split("::")[2]
        outputs = resource.get("outputs") or {}
        labels = _labels(outputs)
        if is_share_container(urn, labels):
            if share := labels.get(f"{PREFIX}.share"):
                shares[share] = _shard(urn, labels)
        elif chain.endswith(PROXY_CONTAINER) and (shard := _shard(urn, labels)) > 0:
            found = [n.get("ipv4Address") for n in outputs.get("networksAdvanced") or [] if n.get("ipv4Address")]
            if found:
                addresses[shard] = ipaddress.IPv4Address(found[0])
    return DeployedShards(shares, addresses)


READ_ATTEMPTS = 10
READ_RETRY_SECONDS = 0.3


def this_stack() -> str:
    """The fully qualified name of the stack being deployed (`organization/…` on the file backend)."""
    return f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"


def deployed_addresses() -> dict[str, ipaddress.IPv4Address]:
    """The share addresses in this stack's state: empty for a stack never deployed."""
    return share_addresses(read_state("the addresses this stack has deployed", "a share could move"))


DOCKER_OBJECTS = ("docker:index/container:Container", "docker:index/network:Network")


def docker_ids(resources: Mapping[str, Any]) -> set[str]:
    """The engine ids of the containers and networks in a stack's resource outputs."""
    ids = {(r.get("outputs") or {}).get("id") for r in resources.values() if r.get("type") in DOCKER_OBJECTS}
    return {str(i) for i in ids if i}


def read_state(what: str, risk: str) -> Mapping[str, Any]:
    """This stack's resources as of its last checkpoint, URN → type and outputs: empty for a stack
    never deployed. A synchronous invoke (plain values at program start, in `preview` as in `up`),
    not a StackReference, whose outputs would be Outputs the plan cannot branch on.
    """
    for attempt in range(READ_ATTEMPTS):
        try:
            result = pulumi.runtime.invoke(READ_STATE, {"stackName": this_stack()})
            break
        except Exception as error:  # noqa: BLE001 - any failure: stop rather than plan without the state
            # The file backend writes the checkpoint in place when the update starts, which is when
            # this runs: a read can meet a half-written file ("failed to load checkpoint: EOF").
            if attempt + 1 < READ_ATTEMPTS:
                time.sleep(READ_RETRY_SECONDS)
                continue
            raise pulumi.RunError(
                f"could not read {what} from its state ({error}); without it {risk}, so nothing was planned"
            ) from None
    return (result.value or {}).get("outputs") or {}
