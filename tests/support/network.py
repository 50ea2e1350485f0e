"""Addresses for what a test runs on the engine: a subnet no network uses, a port that answers."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Collection


def unique_subnet(client, exclude: Collection[str] = frozenset()) -> str:
    """A /24 in 172.31.x.0 used by no network of this engine or route of this machine."""
    used = {cfg.get("Subnet") for n in client.networks.list() for cfg in (n.attrs.get("IPAM", {}).get("Config") or [])}
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for third in range(200, 250):
        subnet = f"172.31.{third}.0/24"
        if subnet not in used and subnet not in exclude and f"172.31.{third}." not in routes:
            return subnet
    raise RuntimeError("no free test subnet")


def wait_port(host: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{host}:{port} did not accept connections in {timeout}s")
