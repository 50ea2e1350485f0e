"""The static IP plan: which address in the Docker subnet each share's Samba container gets."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network


def gateway(subnet: Net) -> IPv4:
    """Docker's bridge gateway: the first host."""
    return subnet.network_address + 1


def proxy_address(subnet: Net) -> IPv4:
    """Reserved for the Caddy container in bridge mode: the last host."""
    return subnet.broadcast_address - 1


def headscale_address(subnet: Net) -> IPv4:
    """The embedded Headscale's default address: the host below the proxy's."""
    return subnet.broadcast_address - 2


def share_capacity(subnet: Net) -> int:
    # network, gateway, proxy and broadcast are not for shares.
    return subnet.num_addresses - 4


def home_address(name: str, subnet: Net) -> IPv4:
    """A share's address when not pinned: a hash of its name alone.

    Depending on nothing but the name and the subnet is what makes adding, removing and reordering
    other shares unable to move it. Hosts run from gateway+1 to proxy-1.
    """
    slot = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % share_capacity(subnet)
    return subnet.network_address + 2 + slot


@dataclass(frozen=True)
class PlanProblem:
    share: str
    field: str  # "ip" (a pin) or "name" (a hashed slot)
    message: str


class IpPlanError(ValueError):
    def __init__(self, problems: list[PlanProblem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.share}: {p.message}" for p in problems))


def plan_ips(
    shares: Iterable[tuple[str, IPv4 | None]], subnet: Net, reserved: dict[IPv4, str] | None = None
) -> dict[str, IPv4]:
    """Map share name → IPv4 address. `shares` is (name, pinned ip or None), in any order.

    Raises IpPlanError listing every problem: a pin outside the subnet or on a reserved address, an
    address wanted twice (pins or hashed slots — naming both shares and a free address to pin), or
    more shares than the subnet holds.
    """
    shares = list(shares)
    problems: list[PlanProblem] = []
    reserved = {
        subnet.network_address: "the network address",
        gateway(subnet): "the gateway",
        proxy_address(subnet): "reserved for the proxy",
        subnet.broadcast_address: "the broadcast address",
        # Other addresses the stack itself uses (the embedded Headscale's).
        **(reserved or {}),
    }
    if len(shares) > share_capacity(subnet):
        problems.append(
            PlanProblem(
                "*",
                "shares",
                (
                    f"{len(shares)} shares do not fit in {subnet}, which holds {share_capacity(subnet)}; "
                    "use a larger subnet (e.g. a /20)"
                ),
            )
        )
        raise IpPlanError(problems)

    wanted: dict[str, IPv4] = {}
    for name, pin in shares:
        if pin is None:
            wanted[name] = home_address(name, subnet)
        elif pin not in subnet:
            problems.append(PlanProblem(name, "ip", f"{pin} is outside the subnet {subnet}; pin an address inside it"))
        elif pin in reserved:
            problems.append(PlanProblem(name, "ip", f"{pin} is {reserved[pin]} of {subnet}; pin another address"))
        else:
            wanted[name] = pin

    pinned = {name for name, pin in shares if pin is not None}
    order = {name: index for index, (name, _) in enumerate(shares)}
    holders: dict[IPv4, list[str]] = {}
    for name, _ in shares:
        if name in wanted:
            holders.setdefault(wanted[name], []).append(name)
    taken = set(wanted.values()) | set(reserved)
    for address, names in sorted(holders.items()):
        if len(names) < 2:
            continue
        # Without state the plan cannot know which share is already deployed at this address, so it
        # moves nobody: it names all contenders and a free address for the new one to pin.
        names = sorted(names)
        free = _free_address(subnet, taken)
        taken.add(free)
        how = ", ".join(f"{n!r} ({'pinned' if n in pinned else 'hashed'})" for n in names)
        # Reported at the contender listed last: new users are usually appended.
        last = max(names, key=order.__getitem__)
        problems.append(
            PlanProblem(
                last,
                "ip" if last in pinned else "name",
                (
                    f"{how} all want {address}; pin the share that is new to a free address, "
                    f"e.g. ip: {free} (the deployed one keeps {address})"
                ),
            )
        )
    if problems:
        raise IpPlanError(problems)
    return dict(sorted(wanted.items()))


def _free_address(subnet: Net, taken: set[IPv4]) -> IPv4:
    for host in subnet.hosts():
        if host not in taken:
            return host
    raise IpPlanError([PlanProblem("*", "shares", f"no free address left in {subnet}")])


def node_port(ip: IPv4, subnet: Net, first_node_port: int) -> int:
    """Bridge mode: a node's fixed tsnet UDP port, derived from its share's (stable) address."""
    return first_node_port + int(ip) - int(subnet.network_address)
