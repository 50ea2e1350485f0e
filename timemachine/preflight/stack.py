"""The stack as the program builds it: the config validated, planned around this stack's own
state (read once), and checked against what else runs on the same Docker engine."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import pulumi

from timemachine.config.loader import ConfigError, LoadedStack, load, raw_from_pulumi, tailscale_api_from_pulumi
from timemachine.planning import labels
from timemachine.planning.shards import DeployedShards
from timemachine.preflight import guard
from timemachine.preflight.state import deployed_shards, proxy_network_mode, read_state, share_addresses


def stack_id() -> str:
    """<project>/<stack>: the value of the timemachine.stack label on what this stack creates."""
    return labels.stack_id(pulumi.get_project(), pulumi.get_stack())


def load_stack_config() -> LoadedStack:
    """The config, planned around this stack's state, which is read once (only for a valid config)."""
    state: dict[str, Any] = {}
    read: list[bool] = []

    def once() -> dict[str, Any]:
        if not read:
            state.update(read_state("the addresses this stack has deployed", "a share could move"))
            read.append(True)
        return state

    def deployed() -> dict[str, ipaddress.IPv4Address]:
        return share_addresses(once())

    def shards() -> DeployedShards:
        return deployed_shards(once())

    return replace(load(raw_from_pulumi(), deployed, tailscale_api_from_pulumi(), shards), deployed=state)


def mode_change(stack: LoadedStack) -> str | None:
    """A stack deployed in host mode (the default before bridge) whose config does not name a mode:
    the new default would replace Caddy, the network and every Samba container, so ask instead."""
    proxy = stack.config.proxy
    if "network_mode" in proxy.model_fields_set or proxy_network_mode(stack.deployed) != "host":
        return None
    return (
        "invalid stack config (1 problem):\n  - proxy.networkMode: this stack runs Caddy in host mode, the "
        "default before bridge mode became it; run pulumi config set --path proxy.networkMode host to keep "
        "it, or set bridge to move (Caddy, the network and each Samba container are replaced, the data "
        "stays; docs/operations.md, Upgrades)"
    )


def preflight(docker_host: str | None, find: guard.EngineObjects | None = None) -> LoadedStack:
    """Everything checked before any resource is declared: a bad config, or a clash with another
    stack's containers on the same engine, stops here with a RunError (the engine prints the
    message, every problem with its fix, without a Python traceback)."""
    try:
        stack = load_stack_config()
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    if problem := mode_change(stack):
        raise pulumi.RunError(problem)
    if clash := guard.check(stack.config, stack_id(), docker_host, stack.deployed, find):
        raise pulumi.RunError(clash)
    return stack
