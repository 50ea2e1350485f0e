"""Reads the stack config once, validates it and raises one error that lists every problem."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable, Mapping
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
    status_address,
)

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


def load(
    raw: Mapping[str, Any],
    read_deployed: Callable[[], Mapping[str, ipaddress.IPv4Address]] = nothing_deployed,
    tailscale_api: str | None = None,
) -> LoadedStack:
    """Validate raw config values (camelCase keys without the project prefix) and plan the IPs
    around the share addresses `read_deployed` returns (called only for a valid config).
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
    status_ip = _status_ip(config, deployed, headscale_ip)
    if status_ip is not None:
        reserved[status_ip] = "the status container's (status.ip)"
    try:
        ips = plan_ips([(s.name, s.ip) for s in config.shares], config.network.subnet, deployed, reserved)
    except IpPlanError as exc:
        index = {share.name: i for i, share in enumerate(config.shares)}
        raise ConfigError(
            [
                (f"shares[{index[p.share]}].{p.field}" if p.share in index else p.field) + f": {p.message}"
                for p in exc.problems
            ]
        ) from None
    return LoadedStack(config, ips, headscale_ip, status_ip=status_ip)


def _status_ip(
    config: StackConfig, deployed: Mapping[str, ipaddress.IPv4Address], headscale_ip: ipaddress.IPv4Address | None
) -> ipaddress.IPv4Address | None:
    """status.ip, else a free address that no deployed or pinned share holds (no share moves for it)."""
    status = config.status
    if not status.enabled:
        return None
    subnet = config.network.subnet
    taken = {*deployed.values(), *(s.ip for s in config.shares if s.ip is not None)}
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
