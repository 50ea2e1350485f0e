"""CaddyProxy: one Caddy container (caddy-tailscale + caddy-l4) serving the routes of its shard's shares
(every share's without proxy.shards)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_docker as docker

from timemachine.caddy.config import CADDY_DATA_PATH, assemble, render
from timemachine.caddy.health import NODE_STATE_COMMAND
from timemachine.components import hardening
from timemachine.components.labels import container_labels, volume_labels
from timemachine.config.models import ProxyConfig
from timemachine.dynamic.caddy_config import CaddyConfig
from timemachine.dynamic.certificates import VolumeFiles
from timemachine.dynamic.process_limit import ProcessLimit
from timemachine.headscale.tls import fingerprint as ca_fingerprint
from timemachine.planning import names
from timemachine.planning.ipplan import proxy_address
from timemachine.planning.limits import Limits


@dataclass(frozen=True)
class CaddyProxyArgs:
    route_fragments: list[dict]
    # Node hostname → its auth key (a secret Output); reaches Caddy only as a 0600 file on its volume.
    auth_keys: dict[str, pulumi.Output[str]]
    image: pulumi.Input[str]
    network_mode: Literal["host", "bridge"]
    network_name: pulumi.Input[str]
    subnet: ipaddress.IPv4Network
    # Bridge mode: the fixed tsnet UDP port of each node, published on the host (Docker cannot
    # publish a port on a running container: a changed list replaces the container).
    node_ports: list[int] = field(default_factory=list)
    # The engine the docker provider uses, when set in its config (docker:host).
    docker_host: str | None = None
    # A self-hosted control server: the nodes then send no logs to Tailscale's log service.
    self_hosted: bool = False
    # The CA (PEM) a self-hosted control server's certificate chains to, when the system's CAs do
    # not know it (the stack's own, or tailnet.controlCaCertificate): the nodes trust it beside them.
    control_ca: pulumi.Input[str] | None = None
    # The control server's name → its address, where the nodes cannot look it up (the embedded one).
    control_hosts: dict[str, str] = field(default_factory=dict)
    limits: Limits | None = None
    # `pulumi up` waits for Caddy to be healthy and each node to register (proxy.waitForNodes).
    wait_for_nodes: bool = True
    # namePrefix: the container's and the volume's names derive from it.
    name_prefix: str = names.DEFAULT_PREFIX
    # Which Caddy shard (proxy.shards) this is, and its address on the stack's network in bridge mode
    # (None: the proxy's, the last host). Shard 0 has the names of the one Caddy of a stack without shards.
    shard: int = 0
    ip: ipaddress.IPv4Address | None = None


# The control CA on Caddy's volume, in a directory of its own that SSL_CERT_DIR names.
TRUST_DIR = "trust"
CONTROL_CA_FILE = f"{TRUST_DIR}/control-ca.pem"
SYSTEM_CERT_DIR = "/etc/ssl/certs"

# The default stack's; a stack's own is names.caddy_container(namePrefix).
CADDY_CONTAINER = names.caddy_container(names.DEFAULT_PREFIX)
CADDY_WAIT_SECONDS = 90


class CaddyProxy(pulumi.ComponentResource):
    config_json: str
    container: docker.Container

    def __init__(self, name: str, args: CaddyProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("timemachine:index:CaddyProxy", name, None, opts)
        self.config = assemble(args.route_fragments)
        self.config_json = render(self.config)
        self.container_name = names.caddy_container(args.name_prefix, args.shard)
        self.ip = args.ip or proxy_address(args.subnet)
        shard_label = {"shard": str(args.shard)} if args.shard else {}

        # tsnet node state: losing it means every node needs a fresh auth key, so it is protected
        # and kept even if the resource is deleted.
        self.state_volume = docker.Volume(
            f"{name}-data",
            name=names.caddy_volume(args.name_prefix, args.shard),
            labels=volume_labels(role="proxy", **shard_label),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        envs: list[pulumi.Input[str]] = ["TS_NO_LOGS_NO_SUPPORT=true"] if args.self_hosted else []
        needs: list[pulumi.Resource] = []
        if args.control_ca is not None:
            # The honest way a Go program trusts another CA: the system's CAs (Go reads
            # /etc/ssl/certs/ca-certificates.crt whatever SSL_CERT_DIR says) and every certificate
            # in the directories SSL_CERT_DIR lists, here the control CA on Caddy's volume. Go reads
            # them once per process: the file is there before the container exists, and its
            # fingerprint in the environment replaces the container when the CA changes.
            trust = VolumeFiles(
                f"{name}-control-ca",
                volume=self.state_volume.name,
                image=args.image,
                files=pulumi.Output.from_input(args.control_ca).apply(lambda pem: {CONTROL_CA_FILE: pem}),
                mode=0o644,
                docker_host=args.docker_host,
                opts=pulumi.ResourceOptions(parent=self),
            )
            needs.append(trust)
            envs.append(f"SSL_CERT_DIR={SYSTEM_CERT_DIR}:{CADDY_DATA_PATH}/{TRUST_DIR}")
            envs.append(
                pulumi.Output.concat(
                    "CONTROL_CA_SHA256=", pulumi.Output.from_input(args.control_ca).apply(ca_fingerprint)
                )
            )
        network: dict = {}
        if args.network_mode == "host":
            # As the original design: tsnet picks its UDP ports on the host itself.
            network["network_mode"] = "host"
        else:
            network["networks_advanced"] = [
                docker.ContainerNetworksAdvancedArgs(name=args.network_name, ipv4_address=str(self.ip))
            ]
            network["ports"] = [
                docker.ContainerPortArgs(internal=p, external=p, protocol="udp") for p in sorted(args.node_ports)
            ]
        self.container = docker.Container(
            f"{name}-caddy",
            name=self.container_name,
            image=args.image,
            restart="unless-stopped",
            # Neither the config nor a key is an input of the container: both reach the running
            # Caddy through `config` below, so a changed share list never replaces it.
            envs=envs,
            mounts=[docker.ContainerMountArgs(type="volume", source=self.state_volume.name, target=CADDY_DATA_PATH)],
            labels=container_labels(role="proxy", **shard_label),
            # Unhealthy while Caddy is not running a config or a node has no tailnet identity; the
            # check's output names each node's state (`docker inspect`: .State.Health.Log).
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", *NODE_STATE_COMMAND],
                interval="10s",
                timeout="10s",
                # Under a minute: Docker reads a minute back as "1m0s", a change on every preview.
                start_period="50s",
                retries=3,
            ),
            # A new container has only its admin socket until `config` loads it (and its nodes come
            # back from their state on the volume): `up` fails when Caddy does not come up healthy.
            wait=args.wait_for_nodes,
            wait_timeout=CADDY_WAIT_SECONDS,
            hosts=[docker.ContainerHostArgs(host=host, ip=ip) for host, ip in sorted(args.control_hosts.items())]
            or None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
            **network,
            # A read-only root: the admin socket is on a tmpfs (/run), config and keys on the volume.
            **hardening.for_proxy(limits := args.limits or ProxyConfig()),
        )
        self.memory_limit = limits.memory_limit
        self.caddy_config = CaddyConfig(
            f"{name}-config",
            container=self.container_name,
            container_id=self.container.id,
            config=self.config_json,
            keys=pulumi.Output.secret(pulumi.Output.all(**args.auth_keys)),
            docker_host=args.docker_host,
            wait_nodes=args.wait_for_nodes,
            opts=pulumi.ResourceOptions(parent=self),
        )
        ProcessLimit(
            f"{name}-caddy-pids",
            self.container,
            limits,
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"config": self.config_json, "containerId": self.container.id})
