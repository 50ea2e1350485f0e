"""What this stack has deployed: each share's address, read from the stack's own state."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

import pulumi

from components.labels import PREFIX

# A built-in invoke of the Pulumi engine (no provider plugin): every live resource of a stack,
# URN → type and outputs, as of its last checkpoint.
READ_STATE = "pulumi:pulumi:readStackResourceOutputs"
CONTAINER = "docker:index/container:Container"


def share_addresses(resources: Mapping[str, Any]) -> dict[str, ipaddress.IPv4Address]:
    """Share name → address of its Samba container, from a stack's resource outputs."""
    found: dict[str, ipaddress.IPv4Address] = {}
    for _, resource in sorted(resources.items()):
        if resource.get("type") != CONTAINER:
            continue
        outputs = resource.get("outputs") or {}
        labels = {item.get("label"): item.get("value") for item in outputs.get("labels") or []}
        share = labels.get(f"{PREFIX}.share")
        if labels.get(f"{PREFIX}.role") != "samba" or not share:
            continue
        addresses = [n["ipv4Address"] for n in outputs.get("networksAdvanced") or [] if n.get("ipv4Address")]
        if addresses:
            found[share] = ipaddress.IPv4Address(addresses[0])
    return found


def this_stack() -> str:
    """The fully qualified name of the stack being deployed (`organization/…` on the file backend)."""
    return f"{pulumi.get_organization() or 'organization'}/{pulumi.get_project()}/{pulumi.get_stack()}"


def deployed_addresses() -> dict[str, ipaddress.IPv4Address]:
    """The share addresses in this stack's state: empty for a stack never deployed.

    A synchronous invoke (plain values at program start, in `preview` as in `up`), not a
    StackReference, whose outputs would be Outputs the plan cannot branch on.
    """
    try:
        result = pulumi.runtime.invoke(READ_STATE, {"stackName": this_stack()})
    except Exception as error:  # noqa: BLE001 - any failure: stop rather than plan without the state
        raise pulumi.RunError(
            f"could not read the addresses this stack has deployed from its state ({error}); "
            "without them a share could move, so nothing was planned"
        ) from None
    return share_addresses((result.value or {}).get("outputs") or {})
