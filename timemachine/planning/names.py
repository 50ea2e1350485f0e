"""The names of the Docker objects a stack creates, all derived from its `namePrefix`, so two
stacks with different prefixes share one engine without sharing (or fighting over) anything."""

from __future__ import annotations

DEFAULT_PREFIX = "tm"
# The network a stack with the default prefix has always had: renaming it replaces the network and
# so every container on it (docs/operations.md, Two stacks on one engine), so the default keeps it.
DEFAULT_NETWORK = "timemachine"


def caddy_container(prefix: str, shard: int = 0) -> str:
    """Caddy shard `shard`'s container (proxy.shards): shard 0 keeps the name of the one Caddy."""
    return f"{prefix}-caddy" if shard == 0 else f"{prefix}-caddy-{shard}"


def caddy_volume(prefix: str, shard: int = 0) -> str:
    """Caddy shard `shard`'s data volume, where its nodes' tailnet state is."""
    return f"{prefix}-caddy-data" if shard == 0 else f"{prefix}-caddy-{shard}-data"


def headscale_container(prefix: str) -> str:
    return f"{prefix}-headscale"


def headscale_volume(prefix: str) -> str:
    return f"{prefix}-headscale-data"


def status_container(prefix: str) -> str:
    return f"{prefix}-status"


def samba_container(prefix: str, share: str) -> str:
    return f"{prefix}-{share}-samba"


def samba_volume(prefix: str, share: str) -> str:
    return f"{prefix}-{share}-samba-state"


def network(prefix: str) -> str:
    """The network's name when `network.name` is not set."""
    return DEFAULT_NETWORK if prefix == DEFAULT_PREFIX else f"{prefix}-network"


def containers(
    prefix: str, shares: list[str], headscale: bool, status: bool = False, proxy_shards: int = 1
) -> list[str]:
    """Every container name a stack with these shares declares."""
    names = [caddy_container(prefix), *(samba_container(prefix, share) for share in shares)]
    names += [caddy_container(prefix, shard) for shard in range(1, proxy_shards)]
    return names + ([headscale_container(prefix)] if headscale else []) + ([status_container(prefix)] if status else [])


def volumes(prefix: str, shares: list[str], headscale: bool, proxy_shards: int = 1) -> list[str]:
    names = [caddy_volume(prefix), *(samba_volume(prefix, share) for share in shares)]
    names += [caddy_volume(prefix, shard) for shard in range(1, proxy_shards)]
    return names + ([headscale_volume(prefix)] if headscale else [])
