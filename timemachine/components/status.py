"""StatusService: the status container — the backup-health collector serving /metrics and the status page,
with the storage root and Caddy's node state mounted read-only and no Docker socket."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from timemachine.caddy.config import CADDY_DATA_PATH, TAILSCALE_STATE_ROOT
from timemachine.components import hardening
from timemachine.components.labels import container_labels
from timemachine.dynamic.process_limit import ProcessLimit
from timemachine.planning import names
from timemachine.planning.durations import format_duration
from timemachine.planning.limits import Limits
from timemachine.samba.smbconf import CREDENTIALS_PATH, STATE_PATH

# The parts of the timemachine package the image runs (images/status/Dockerfile.dockerignore lets
# exactly these through; tests/unit/test_status_image.py keeps the two equal).
STATUS_SOURCES = ("__init__.py", "health", "planning")
STORAGE_MOUNT = "/storage"
CADDY_MOUNT = "/caddy"
# Each password share's Samba state volume, read-only: the probe logs in with the share's credentials.
SAMBA_STATE_MOUNT = "/samba"
STATUS_WAIT_SECONDS = 60


@dataclass(frozen=True)
class StatusShare:
    """What the collector is told about one share."""

    name: str
    quota: int | None
    stale_after_seconds: float
    # The Samba container's address (the SMB probe's target) and the share's tailnet node.
    address: str
    node: str
    # A password share's Samba state volume (its credentials file); None for a guest share.
    state_volume: pulumi.Input[str] | None = None
    # The Caddy shard whose volume holds its node's state (proxy.shards).
    proxy_shard: int = 0


@dataclass(frozen=True)
class StatusServiceArgs:
    ip: ipaddress.IPv4Address
    network_name: pulumi.Input[str]
    image: pulumi.Input[str]
    storage_root: str
    shares: list[StatusShare]
    # Caddy's data volume, read-only: each node's state (tailscale/<node>/tailscaled.state) says whether
    # it is registered. It holds the nodes' keys too (docs/operations.md, what the status container may do).
    caddy_volume: pulumi.Input[str]
    port: int
    collect_interval_seconds: float
    limits: Limits
    name_prefix: str = names.DEFAULT_PREFIX
    docker_host: str | None = None
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # The data volumes of Caddy shards beyond 0 (proxy.shards), by shard, read-only as shard 0's.
    shard_volumes: dict[int, pulumi.Input[str]] = field(default_factory=dict)


def shard_mount(shard: int) -> str:
    """Where Caddy shard `shard`'s volume is in the status container: shard 0's at CADDY_MOUNT."""
    return CADDY_MOUNT if shard == 0 else f"{CADDY_MOUNT}-{shard}"


def node_state_dir(shard: int) -> str:
    return TAILSCALE_STATE_ROOT.replace(CADDY_DATA_PATH, shard_mount(shard), 1)


def shares_json(shares: list[StatusShare]) -> str:
    """The collector's --shares-json: quotas, stale-after times, and what to probe (sorted, so stable)."""
    entries = []
    for share in sorted(shares, key=lambda s: s.name):
        entry: dict = {
            "name": share.name,
            "staleAfterSeconds": share.stale_after_seconds,
            "address": share.address,
            "node": share.node,
        }
        if share.quota is not None:
            entry["quota"] = share.quota
        if share.state_volume is not None:
            entry["credentialsFile"] = credentials_file(share.name)
        if share.proxy_shard:
            # A node on another shard: its state is on that shard's volume.
            entry["caddyStateDir"] = node_state_dir(share.proxy_shard)
        entries.append(entry)
    return json.dumps({"shares": entries, "caddyStateDir": node_state_dir(0)}, sort_keys=True)


def credentials_file(share: str) -> str:
    """Where a password share's credentials are in the status container."""
    return f"{SAMBA_STATE_MOUNT}/{share}/{CREDENTIALS_PATH.removeprefix(STATE_PATH + '/')}"


def metrics_url(ip: ipaddress.IPv4Address, port: int) -> str:
    return f"http://{ip}:{port}/metrics"


class StatusService(pulumi.ComponentResource):
    container: docker.Container

    def __init__(self, name: str, args: StatusServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("timemachine:index:StatusService", name, None, opts)
        self.ip = str(args.ip)
        self.metrics_url = metrics_url(args.ip, args.port)
        command = [
            "serve",
            "--root",
            STORAGE_MOUNT,
            "--port",
            str(args.port),
            "--bind",
            "0.0.0.0",
            "--min-interval",
            format_duration(args.collect_interval_seconds),
            "--shares-json",
            shares_json(args.shares),
        ]
        mounts = [
            # Read-only: the collector opens nothing for writing (timemachine/health). A bind, so a missing
            # storage root stops the container instead of Docker creating an empty directory there.
            docker.ContainerMountArgs(type="bind", source=args.storage_root, target=STORAGE_MOUNT, read_only=True),
            docker.ContainerMountArgs(type="volume", source=args.caddy_volume, target=CADDY_MOUNT, read_only=True),
            *(
                docker.ContainerMountArgs(type="volume", source=volume, target=shard_mount(shard), read_only=True)
                for shard, volume in sorted(args.shard_volumes.items())
            ),
        ]
        mounts += [
            docker.ContainerMountArgs(
                type="volume", source=share.state_volume, target=f"{SAMBA_STATE_MOUNT}/{share.name}", read_only=True
            )
            for share in sorted(args.shares, key=lambda s: s.name)
            if share.state_volume is not None
        ]
        self.container = docker.Container(
            f"{name}-collector",
            name=names.status_container(args.name_prefix),
            image=args.image,
            command=command,
            restart="unless-stopped",
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, ipv4_address=self.ip)],
            mounts=mounts,
            labels=container_labels(role="status"),
            # /healthz answers without a collection (which walks every share and may take a while).
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=[
                    "CMD",
                    "python3",
                    "-c",
                    "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)",
                    f"http://127.0.0.1:{args.port}/healthz",
                ],
                interval="10s",
                timeout="5s",
                start_period="10s",
                retries=3,
            ),
            wait=True,
            wait_timeout=STATUS_WAIT_SECONDS,
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
            **hardening.for_status(args.limits),
        )
        ProcessLimit(
            f"{name}-collector-pids",
            self.container,
            args.limits,
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"ip": self.ip, "metricsUrl": self.metrics_url, "containerId": self.container.id})
