"""The static IP plan: which address in the Docker subnet each share's Samba container gets."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from timemachine.planning.problems import PlanError, PlanProblem

IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network

# Where a problem with the subnet as a whole is reported (the loader's path for it).
SUBNET_FIELD = "network.subnet"


def gateway(subnet: Net) -> IPv4:
    """Docker's bridge gateway: the first host."""
    return subnet.network_address + 1


def proxy_address(subnet: Net) -> IPv4:
    """Reserved for the Caddy container in bridge mode: the last host."""
    return subnet.broadcast_address - 1


def headscale_address(subnet: Net) -> IPv4:
    """The embedded Headscale's default address: the host below the proxy's."""
    return subnet.broadcast_address - 2


def status_address(subnet: Net, taken: Iterable[IPv4] = ()) -> IPv4:
    """The status container's address: the highest host from the one below the embedded Headscale's
    default down that nothing else has — not a reserved address and none of `taken` (the embedded
    Headscale's, each deployed share's, each pinned one's). So turning the status container on never
    moves a deployed share, and on a fresh stack it is always the same address (broadcast - 3)."""
    used = set(taken) | set(reserved_addresses(subnet)) | {headscale_address(subnet)}
    for offset in range(3, subnet.num_addresses):
        candidate = subnet.broadcast_address - offset
        if candidate not in used:
            return candidate
    raise IpPlanError(
        [PlanProblem(None, SUBNET_FIELD, f"{subnet} has no address left for the status container; use a larger subnet")]
    )


def shard_addresses(
    subnet: Net, shards: int, deployed: Mapping[int, IPv4] | None = None, taken: Iterable[IPv4] = ()
) -> list[IPv4]:
    """Bridge mode: each Caddy shard's address (proxy.shards), by shard. Shard 0 has the proxy's
    (the last host). A further shard keeps its `deployed` address while that is a free host (so its
    shares' smbd keep admitting it); else it takes the highest host from the one below the embedded
    Headscale's default down that nothing has — not a reserved address, none of `taken` (the embedded
    Headscale's, the status container's, each deployed or pinned share's), no other shard's."""
    used = set(taken) | set(reserved_addresses(subnet)) | {headscale_address(subnet)}
    addresses: dict[int, IPv4] = {0: proxy_address(subnet)}
    for shard, ip in sorted((deployed or {}).items()):
        if 0 < shard < shards and ip in subnet and ip not in used:
            addresses[shard] = ip
            used.add(ip)
    candidates = (subnet.broadcast_address - offset for offset in range(3, subnet.num_addresses))
    for shard in range(1, shards):
        if shard in addresses:
            continue
        free = next((c for c in candidates if c not in used), None)
        if free is None:
            raise IpPlanError(
                [
                    PlanProblem(
                        None, SUBNET_FIELD, f"{subnet} has no address left for Caddy shard {shard}; use a larger subnet"
                    )
                ]
            )
        addresses[shard] = free
        used.add(free)
    return [addresses[shard] for shard in range(shards)]


def share_capacity(subnet: Net) -> int:
    # network, gateway, proxy and broadcast are not for shares.
    return subnet.num_addresses - 4


def reserved_addresses(subnet: Net) -> dict[IPv4, str]:
    return {
        subnet.network_address: "the network address",
        gateway(subnet): "the gateway",
        proxy_address(subnet): "reserved for the proxy",
        subnet.broadcast_address: "the broadcast address",
    }


def home_address(name: str, subnet: Net) -> IPv4:
    """A new share's first choice: a hash of its name alone, from gateway+1 to proxy-1.

    A share gets it when it is first deployed and the slot is free; after that the share keeps the
    address it was deployed with, whatever the hash says.
    """
    slot = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % share_capacity(subnet)
    return subnet.network_address + 2 + slot


def _share_slots_from(start: IPv4, subnet: Net) -> Iterable[IPv4]:
    """Every share address once, from `start` upwards, wrapping round to the first."""
    first, capacity = int(subnet.network_address) + 2, share_capacity(subnet)
    offset = int(start) - first
    for step in range(capacity):
        yield IPv4(first + (offset + step) % capacity)


class IpPlanError(PlanError):
    """The IP plan's problems: a share's pin (field "ip") or the subnet (SUBNET_FIELD)."""


def fitting_subnet(subnet: Net, needed: int) -> Net:
    """The smallest subnet containing `subnet` with room for `needed` shares.

    Containing the current one matters: every deployed address stays inside it and off its
    reserved addresses (those lie outside the old subnet or are its own gateway/proxy/broadcast).
    """
    prefix = subnet.prefixlen
    while prefix > 0 and (1 << (32 - prefix)) - 4 < needed:
        prefix -= 1
    return subnet.supernet(new_prefix=prefix)


def plan_ips(
    shares: Iterable[tuple[str, IPv4 | None]],
    subnet: Net,
    deployed: Mapping[str, IPv4] | None = None,
    also_reserved: Mapping[IPv4, str] | None = None,
) -> dict[str, IPv4]:
    """Map share name → IPv4 address. `shares` is (name, pin or None) in config order; `deployed`
    maps the names of the shares the stack has deployed (in the config or not) to their addresses.

    - A pin wins. A pin may not be reserved, outside the subnet, another pin, or the deployed
      address of another share (moving a deployed share is the pinned share's business only).
    - A deployed share keeps its deployed address.
    - A deployed share's address stays taken while its container exists: a removed share's
      address is free once its removal is deployed (Pulumi deletes after it creates, and Docker
      refuses two containers on one address), as is the old address of a share moved by a pin.
    - Any other share, in config order, takes its home slot if free, else the next free address
      upwards (wrapping).

    Raises IpPlanError listing every problem: bad pins, or more shares than free addresses.
    """
    shares = list(shares)
    in_config = {name for name, _ in shares}
    deployed = dict(deployed or {})
    # Besides the subnet's own: addresses the stack itself uses (the embedded Headscale's).
    extra = {ip: why for ip, why in (also_reserved or {}).items() if ip in subnet}
    reserved = {**reserved_addresses(subnet), **extra}
    problems: list[PlanProblem] = []

    # Deployed addresses the plan can honour: a changed subnet may have left some outside it or on
    # a reserved address; those shares are placed anew (the network is replaced anyway).
    held = {name: ip for name, ip in deployed.items() if ip in subnet and ip not in reserved}
    holder_of: dict[IPv4, str] = {}
    for name, ip in sorted(held.items()):
        holder_of.setdefault(ip, name)

    pins: dict[str, IPv4] = {}
    pinned_by: dict[IPv4, str] = {}
    for name, pin in shares:
        if pin is None:
            continue
        holder = holder_of.get(pin)
        if pin not in subnet:
            problems.append(PlanProblem(name, "ip", f"{pin} is outside the subnet {subnet}; pin an address inside it"))
        elif pin in reserved:
            problems.append(PlanProblem(name, "ip", f"{pin} is {reserved[pin]} of {subnet}; pin another address"))
        elif pin in pinned_by:
            other = pinned_by[pin]
            problems.append(PlanProblem(name, "ip", f"{pin} is also pinned by {other!r}; pin another address"))
        elif holder is not None and holder != name and holder in in_config:
            problems.append(
                PlanProblem(
                    name,
                    "ip",
                    f"{pin} is the address of {holder!r}, which is deployed there; pin another address, "
                    f"or leave {name!r} unpinned to get a free one",
                )
            )
        elif holder is not None and holder != name:
            problems.append(
                PlanProblem(
                    name,
                    "ip",
                    f"{pin} is the address of {holder!r}, removed from the config but deployed there until "
                    "this update deletes it; pin another address, or pin this one in a later update",
                )
            )
        else:
            pins[name] = pin
            pinned_by[pin] = name

    taken = set(reserved) | set(holder_of) | set(pins.values())
    plan = dict(pins)
    fresh = []
    for name, pin in shares:
        if pin is not None:
            continue
        kept = held.get(name)
        if kept is not None and holder_of[kept] == name:
            plan[name] = kept
        else:
            fresh.append(name)

    free = share_capacity(subnet) - len(extra) - len(taken - set(reserved))
    if len(fresh) > free:
        # Everything that needs an address this update: the config's shares plus the addresses
        # still held by deployed shares leaving them (removed, or moved by a pin).
        leaving = len(set(holder_of) - set(plan.values()))
        bigger = fitting_subnet(subnet, len(shares) + leaving + len(extra))
        held_note = f", {leaving} held until this update has removed or moved the shares on them" if leaving else ""
        held_note += "".join(f", 1 is {why}" for why in extra.values())
        problems.append(
            PlanProblem(
                None,
                SUBNET_FIELD,
                (
                    f"{subnet} is full: {len(fresh)} new share(s) need an address and {free} "
                    f"{'is' if free == 1 else 'are'} left of its {share_capacity(subnet)} share addresses "
                    f"({len(plan)} kept by deployed or pinned shares{held_note}); a /{bigger.prefixlen} holds "
                    f"{share_capacity(bigger)}: set network.subnet to {bigger}, which contains {subnet}, "
                    "so no deployed share moves"
                ),
            )
        )
    if problems:
        raise IpPlanError(problems)

    for name in fresh:
        ip = next(ip for ip in _share_slots_from(home_address(name, subnet), subnet) if ip not in taken)
        plan[name] = ip
        taken.add(ip)
    return dict(sorted(plan.items()))


def node_port(ip: IPv4, subnet: Net, first_node_port: int) -> int:
    """Bridge mode: a node's fixed tsnet UDP port, derived from its share's (stable) address."""
    return first_node_port + int(ip) - int(subnet.network_address)
