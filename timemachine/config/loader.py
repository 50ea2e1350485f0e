"""Reads the stack config once, validates it and raises one error that lists every problem."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from timemachine.config.models import CrossCheckError, StackConfig
from timemachine.planning.ipplan import (
    IpPlanError,
    headscale_address,
    plan_ips,
    reserved_addresses,
    shard_addresses,
    status_address,
)
from timemachine.planning.problems import PlanError
from timemachine.planning.shards import NO_SHARDS_DEPLOYED, DeployedShards, ShardPlanError, plan_shards

PROJECT = "tailscale-timemachine"
KEYS = (
    "storageRoot",
    "storage",
    "namePrefix",
    "network",
    "tailnet",
    "proxy",
    "samba",
    "status",
    "images",
    "shares",
)
OBJECT_KEYS = ("storage", "network", "tailnet", "proxy", "samba", "status", "images", "shares")


class ConfigError(ValueError):
    """The stack config is invalid; `problems` holds one 'path: what and how to fix' line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid stack config ({len(problems)} problem{'s' * (len(problems) != 1)}):\n{lines}")


@dataclass(frozen=True)
class LoadedStack:
    config: StackConfig
    ips: dict[str, ipaddress.IPv4Address]
    # The embedded Headscale's address on the stack's network; None without one.
    headscale_ip: ipaddress.IPv4Address | None = None
    # This stack's state as read for the IP plan (URN → type and outputs), for the name guard.
    deployed: Mapping[str, Any] = field(default_factory=dict)
    # The status container's address on the stack's network; None without one (status.enabled).
    status_ip: ipaddress.IPv4Address | None = None
    # Share name → the Caddy shard serving its node (proxy.shards; all 0 without shards).
    proxy_shards: dict[str, int] = field(default_factory=dict)
    # Each shard's address on the stack's network, by shard (bridge mode; empty in host mode).
    proxy_ips: tuple[ipaddress.IPv4Address, ...] = ()


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: ErrorDetails) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key; remove it or fix its spelling (keys are camelCase, e.g. hostnamePrefix)"
    if kind == "missing" and error["loc"] == ("storageRoot",):
        return "missing; run pulumi config set --path storage.root /srv/timemachine (the backup disk's mount point)"
    if kind == "missing":
        return "missing; it is required"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    return f"{message} (got {error.get('input')!r})"


def _validation_problems(error: ValidationError, root_key: str = "storageRoot") -> list[str]:
    """One line per problem; `root_key`: where the config gave the storage root (storage.root, or the
    older storageRoot), which the model checks as storageRoot."""
    problems = []
    for item in error.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, CrossCheckError):
            problems += [f"{_path(loc)}: {message}" for loc, message in cause.problems]
        else:
            path = _path(item["loc"]) or "(stack)"
            if path == "storageRoot":
                path = "storage.root" if item["type"] == "missing" else root_key
            problems.append(f"{path}: {_describe(item)}")
    return problems


def nothing_deployed() -> dict[str, ipaddress.IPv4Address]:
    return {}


def no_shards_deployed() -> DeployedShards:
    return NO_SHARDS_DEPLOYED


def load(
    raw: Mapping[str, Any],
    read_deployed: Callable[[], Mapping[str, ipaddress.IPv4Address]] = nothing_deployed,
    tailscale_api: str | None = None,
    read_shards: Callable[[], DeployedShards] = no_shards_deployed,
) -> LoadedStack:
    """Validate raw config values (camelCase keys without the project prefix) and plan the IPs
    around the share addresses `read_deployed` returns, and the Caddy shards around the shards
    `read_shards` returns (both called only for a valid config).
    `tailscale_api`: the Tailscale API the tailscale provider calls when it is not Tailscale's own
    (`tailscale_api_from_pulumi`); only with one are managed keys given a controlUrl.

    Objects may be given parsed or as JSON text, as Pulumi passes them.
    """
    problems: list[str] = []
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in KEYS:
            problems.append(f"{key}: unknown key; the keys are {', '.join(KEYS)}")
            continue
        if key in OBJECT_KEYS and isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                problems.append(f"{key}: not valid structured config ({exc.msg}); set it as a YAML map/list")
                continue
        data[key] = value
    try:
        config = StackConfig.model_validate(data, context={"tailscale_api": tailscale_api})
    except ValidationError as exc:
        given_as_storage = "storageRoot" not in data and isinstance(data.get("storage"), dict)
        problems += _validation_problems(exc, "storage.root" if given_as_storage else "storageRoot")
    if problems:
        raise ConfigError(problems)
    headscale_ip = _headscale_ip(config)
    reserved = {headscale_ip: "the embedded Headscale's (tailnet.headscale.ip)"} if headscale_ip else {}
    deployed = read_deployed()
    shards_deployed = read_shards()
    # A deployed shard's address stays its own: the status container does not take it.
    status_ip = _status_ip(config, deployed, headscale_ip, shards_deployed.addresses.values())
    if status_ip is not None:
        reserved[status_ip] = "the status container's (status.ip)"
    index = {share.name: i for i, share in enumerate(config.shares)}
    proxy_ips: tuple[ipaddress.IPv4Address, ...] = ()
    if config.proxy.network_mode == "bridge":
        taken = {*deployed.values(), *(s.ip for s in config.shares if s.ip is not None), *reserved}
        try:
            proxy_ips = tuple(
                shard_addresses(config.network.subnet, config.proxy.shards, shards_deployed.addresses, taken)
            )
        except IpPlanError as exc:
            raise ConfigError([f"{p.field}: {p.message}" for p in exc.problems]) from None
        for shard, ip in enumerate(proxy_ips[1:], start=1):
            reserved[ip] = f"Caddy shard {shard}'s (proxy.shards)"
    try:
        proxy_shards = plan_shards(
            [(s.name, s.proxy_shard) for s in config.shares],
            config.proxy.shards,
            shards_deployed.shares,
            status_node=config.status_page,
        )
    except ShardPlanError as exc:
        raise _plan_error(exc, index) from None
    try:
        ips = plan_ips([(s.name, s.ip) for s in config.shares], config.network.subnet, deployed, reserved)
    except IpPlanError as exc:
        raise _plan_error(exc, index) from None
    return LoadedStack(config, ips, headscale_ip, status_ip=status_ip, proxy_shards=proxy_shards, proxy_ips=proxy_ips)


def _plan_error(error: PlanError, index: dict[str, int]) -> ConfigError:
    """A plan's problems at their config paths: a share's under shares[i], the rest at their own."""
    return ConfigError(
        [
            (f"shares[{index[p.share]}].{p.field}" if p.share in index else p.field) + f": {p.message}"
            for p in error.problems
        ]
    )


def _status_ip(
    config: StackConfig,
    deployed: Mapping[str, ipaddress.IPv4Address],
    headscale_ip: ipaddress.IPv4Address | None,
    shard_ips: Iterable[ipaddress.IPv4Address] = (),
) -> ipaddress.IPv4Address | None:
    """status.ip, else a free address that no deployed or pinned share and no deployed Caddy shard
    holds (nothing moves for it)."""
    status = config.status
    if not status.enabled:
        return None
    subnet = config.network.subnet
    taken = {*deployed.values(), *(s.ip for s in config.shares if s.ip is not None), *shard_ips}
    taken |= {headscale_ip} if headscale_ip else set()
    if status.ip is None:
        try:
            return status_address(subnet, taken)
        except IpPlanError as exc:
            raise ConfigError([f"{p.field}: {p.message}" for p in exc.problems]) from None
    if status.ip not in subnet or status.ip in reserved_addresses(subnet) or status.ip == headscale_ip:
        default = status_address(subnet, taken)
        raise ConfigError([f"status.ip: {status.ip} is not a free host of {subnet}; omit it (default {default})"])
    return status.ip


def _headscale_ip(config: StackConfig) -> ipaddress.IPv4Address | None:
    headscale = config.tailnet.headscale
    if not headscale.embedded:
        return None
    subnet = config.network.subnet
    ip = headscale.ip or headscale_address(subnet)
    if ip not in subnet or ip in reserved_addresses(subnet):
        default = headscale_address(subnet)
        raise ConfigError([f"tailnet.headscale.ip: {ip} is not a free host of {subnet}; omit it (default {default})"])
    return ip


def raw_from_pulumi() -> dict[str, Any]:
    """This project's config values, as the Pulumi engine handed them to the program.

    The CLI's language host passes them in the PULUMI_CONFIG environment variable; the automation
    API and the test mocks set them explicitly. Explicit values win, as in `pulumi.Config`.
    """
    from pulumi.runtime.config import CONFIG, get_config_env

    everything = {**(get_config_env() or {}), **CONFIG.get()}
    prefix = PROJECT + ":"
    return {key[len(prefix) :]: value for key, value in everything.items() if key.startswith(prefix)}


TAILSCALE_API = "https://api.tailscale.com"


def tailscale_api_from_pulumi() -> str | None:
    """The base URL of the Tailscale API the tailscale provider calls, when it is not Tailscale's own:
    its `tailscale:baseUrl` config, else TAILSCALE_BASE_URL, as the provider reads them."""
    from pulumi.runtime.config import CONFIG, get_config_env

    everything = {**(get_config_env() or {}), **CONFIG.get()}
    url = (everything.get("tailscale:baseUrl") or os.environ.get("TAILSCALE_BASE_URL") or "").rstrip("/")
    return url if url and url != TAILSCALE_API else None
