"""The shard plan: which of the stack's Caddy containers (proxy.shards) serves each share's tailnet node."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from timemachine.planning.problems import PlanError, PlanProblem

# The status page's node is always on shard 0, the Caddy that a stack without shards has.
STATUS_SHARD = 0
# Where a problem with the shard count as a whole is reported.
SHARDS_FIELD = "proxy.shards"


class ShardPlanError(PlanError):
    """The shard plan's problems: a share's pin (field "proxyShard") or the count (SHARDS_FIELD)."""


def plan_shards(
    shares: Iterable[tuple[str, int | None]],
    shards: int,
    deployed: Mapping[str, int] | None = None,
    status_node: bool = False,
) -> dict[str, int]:
    """Map share name → shard (0..shards-1). `shares` is (name, pin or None) in config order;
    `deployed` maps the deployed shares (in the config or not) to the shard they are deployed on.

    A node's tailnet state lives on its shard's volume, so a deployed share never moves:
    - A deployed share keeps its deployed shard; a pin that names another one, or a shard count
      that no longer has its shard, is refused (moving it would start its node on a Caddy without
      its state, with a key already used).
    - A pin places a share that is not deployed yet.
    - Any other share, in config order, goes to the shard serving the fewest nodes (the status
      page's counts on shard 0), the lowest-numbered one on a tie.

    Raises ShardPlanError listing every problem.
    """
    shares = list(shares)
    deployed = dict(deployed or {})
    problems: list[PlanProblem] = []
    plan: dict[str, int] = {}
    beyond: list[tuple[str, int]] = []
    for name, pin in shares:
        kept = deployed.get(name)
        if kept is None:
            if pin is not None:
                plan[name] = pin
            continue
        if kept >= shards:
            beyond.append((name, kept))
        elif pin is not None and pin != kept:
            problems.append(
                PlanProblem(
                    name,
                    "proxyShard",
                    f"{name!r} is deployed on shard {kept}, whose volume holds its node's tailnet state; on shard "
                    f"{pin} its node would start without that state and with a key already used. Set proxyShard "
                    f"to {kept} or remove it (moving a deployed share: docs/operations.md, Caddy shards)",
                )
            )
        else:
            plan[name] = kept
    if beyond:
        listed = ", ".join(f"{name!r} on shard {shard}" for name, shard in beyond)
        needed = max(shard for _, shard in beyond) + 1
        problems.append(
            PlanProblem(
                None,
                SHARDS_FIELD,
                f"{shards} would drop the shard of deployed shares ({listed}), whose volume holds their nodes' "
                f"tailnet state; they would move to another Caddy without it and with keys already used. Keep "
                f"proxy.shards at {needed} or more, or remove those shares first",
            )
        )
    if problems:
        raise ShardPlanError(problems)

    load = [0] * shards
    if status_node:
        load[STATUS_SHARD] += 1
    for shard in plan.values():
        load[shard] += 1
    for name, _ in shares:
        if name in plan:
            continue
        shard = min(range(shards), key=lambda k: (load[k], k))
        plan[name] = shard
        load[shard] += 1
    return dict(sorted(plan.items()))


@dataclass(frozen=True)
class DeployedShards:
    """What a stack's state says of its shards: the shard each deployed share is on, and the address
    of each deployed shard beyond 0 (bridge mode)."""

    shares: Mapping[str, int]
    addresses: Mapping[int, ipaddress.IPv4Address]


NO_SHARDS_DEPLOYED = DeployedShards({}, {})
