"""HeadscaleServer: the embedded control server, a component of the stack."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from timemachine.components import hardening
from timemachine.components.labels import container_labels, volume_labels
from timemachine.config.models import HeadscaleConfig
from timemachine.dynamic.headscale import HeadscalePolicy
from timemachine.dynamic.process_limit import ProcessLimit
from timemachine.headscale.config import (
    BOOTSTRAP_POLICY,
    HEADSCALE_POLICY_PATH,
    HEADSCALE_PORT,
    HEADSCALE_STATE,
    STUN_PORT,
    render_headscale_config,
)
from timemachine.planning import names
from timemachine.planning.limits import Limits

# The default stack's; a stack's own is names.headscale_container(namePrefix).
HEADSCALE_CONTAINER = names.headscale_container(names.DEFAULT_PREFIX)


@dataclass(frozen=True)
class HeadscaleServerArgs:
    control_url: str
    policy: str
    image: pulumi.Input[str]
    network_name: pulumi.Input[str]
    ip: ipaddress.IPv4Address
    # Host ports for Headscale's HTTP (control + DERP) and STUN; None: publish nothing.
    port: int | None
    stun_port: int | None
    base_domain: str = "tailnet.internal"
    docker_host: str | None = None
    limits: Limits | None = None
    # namePrefix: the container's and the volume's names derive from it.
    name_prefix: str = names.DEFAULT_PREFIX


class HeadscaleServer(pulumi.ComponentResource):
    """The embedded control server: Headscale's config and the stack's own policy uploaded, its
    state (node keys, users, database) on a protected, retained volume."""

    container: docker.Container

    def __init__(self, name: str, args: HeadscaleServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("timemachine:index:HeadscaleServer", name, None, opts)
        self.config_yaml = render_headscale_config(args.control_url, args.base_domain)
        self.state_volume = docker.Volume(
            f"{name}-data",
            name=names.headscale_volume(args.name_prefix),
            labels=volume_labels(role="headscale"),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        ports = []
        if args.port is not None:
            ports.append(docker.ContainerPortArgs(internal=HEADSCALE_PORT, external=args.port, protocol="tcp"))
        if args.stun_port is not None:
            ports.append(docker.ContainerPortArgs(internal=STUN_PORT, external=args.stun_port, protocol="udp"))
        self.container = docker.Container(
            f"{name}-headscale",
            name=names.headscale_container(args.name_prefix),
            image=args.image,
            restart="unless-stopped",
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, ipv4_address=str(args.ip))],
            ports=ports,
            # Config in the environment: the image's entrypoint writes it to a tmpfs (the provider's
            # uploads cannot write into a read-only root); it holds no secret. The policy is no input
            # of the container at all (see HeadscalePolicy below).
            envs=[f"HEADSCALE_CONFIG_YAML={self.config_yaml}"],
            command=[
                "sh",
                "-c",
                f"[ -f {HEADSCALE_POLICY_PATH} ] || printf '%s' '{BOOTSTRAP_POLICY}' > {HEADSCALE_POLICY_PATH}; "
                "exec headscale serve",
            ],
            mounts=[docker.ContainerMountArgs(type="volume", source=self.state_volume.name, target=HEADSCALE_STATE)],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "headscale", "health"], interval="10s", timeout="5s", start_period="5s", retries=3
            ),
            # Users and keys are made right after: the engine waits until Headscale answers.
            wait=True,
            wait_timeout=120,
            labels=container_labels(role="headscale"),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            **hardening.for_headscale(limits := args.limits or HeadscaleConfig()),
        )
        ProcessLimit(f"{name}-headscale-pids", self.container, limits, opts=pulumi.ResourceOptions(parent=self))
        self.policy = HeadscalePolicy(
            f"{name}-policy",
            container=names.headscale_container(args.name_prefix),
            container_id=self.container.id,
            policy=args.policy,
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"containerId": self.container.id, "controlUrl": args.control_url})
