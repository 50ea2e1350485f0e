"""HeadscaleServer: the embedded control server, a component of the stack."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_docker as docker

from timemachine.components import hardening
from timemachine.components.labels import container_labels, volume_labels
from timemachine.config.models import DEFAULT_HEADSCALE_VERSION, HeadscaleConfig, is_address
from timemachine.dynamic.certificates import ControlCertificates, VolumeFiles
from timemachine.dynamic.headscale import HeadscalePolicy
from timemachine.dynamic.process_limit import ProcessLimit
from timemachine.headscale.config import (
    BOOTSTRAP_POLICY,
    HEADSCALE_POLICY_PATH,
    HEADSCALE_PORT,
    HEADSCALE_STATE,
    STUN_PORT,
    TLS_CERT_PATH,
    TLS_KEY_PATH,
    Derp,
    Tls,
    render_headscale_config,
)
from timemachine.headscale.versions import VERSION_LABEL
from timemachine.planning import names
from timemachine.planning.labels import PREFIX
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
    # The Headscale release the image runs (tailnet.headscale.version): its config's form, and a label
    # the next run reads from the state to check the upgrade step.
    version: str = DEFAULT_HEADSCALE_VERSION
    docker_host: str | None = None
    limits: Limits | None = None
    # namePrefix: the container's and the volume's names derive from it.
    name_prefix: str = names.DEFAULT_PREFIX
    # TLS on its listener (headscale/config.py): the stack's certificate, ACME, or none (http://).
    tls: Tls = "none"
    derp: Derp = "embedded"
    acme_email: str | None = None
    # The host address its published ports bind to.
    bind_address: str = "127.0.0.1"
    # The name of the stack's root CA as a Mac's keychain shows it.
    authority_name: str = "tailscale-timemachine control CA"


def _relative(path: str) -> str:
    return path.removeprefix(HEADSCALE_STATE + "/")


class HeadscaleServer(pulumi.ComponentResource):
    """The embedded control server: Headscale's config and the stack's own policy uploaded, its
    state (node keys, users, database) on a protected, retained volume."""

    container: docker.Container
    # With tls: internal, the stack's root certificate (PEM), which each Mac and the share nodes trust.
    ca_certificate: pulumi.Output[str] | None = None
    certificates: ControlCertificates | None = None

    def __init__(self, name: str, args: HeadscaleServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("timemachine:index:HeadscaleServer", name, None, opts)
        host = urlsplit(args.control_url).hostname or ""
        self.config_yaml = render_headscale_config(
            args.control_url,
            args.base_domain,
            tls=args.tls,
            derp=args.derp,
            acme_email=args.acme_email,
            version=args.version,
        )
        self.state_volume = docker.Volume(
            f"{name}-data",
            name=names.headscale_volume(args.name_prefix),
            labels=volume_labels(role="headscale"),
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True),
        )
        envs: list[pulumi.Input[str]] = [f"HEADSCALE_CONFIG_YAML={self.config_yaml}"]
        needs: list[pulumi.Resource] = []
        if args.tls == "internal":
            self.certificates = ControlCertificates(
                f"{name}-certificates",
                host=host,
                authority_name=args.authority_name,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.ca_certificate = self.certificates.ca_certificate
            # Headscale reads its certificate once, at start: the files are on its volume before the
            # container exists, and the certificate's fingerprint in its environment replaces the
            # container when `pulumi up` renews it.
            needs.append(
                VolumeFiles(
                    f"{name}-tls",
                    volume=self.state_volume.name,
                    image=args.image,
                    files=pulumi.Output.secret(
                        pulumi.Output.all(self.certificates.certificate, self.certificates.key).apply(
                            lambda pair: {_relative(TLS_CERT_PATH): pair[0], _relative(TLS_KEY_PATH): pair[1]}
                        )
                    ),
                    secret=True,
                    docker_host=args.docker_host,
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
            envs.append(pulumi.Output.concat("TLS_CERTIFICATE_SHA256=", self.certificates.fingerprint))
        ports = []
        if args.port is not None:
            ports.append(
                docker.ContainerPortArgs(
                    internal=HEADSCALE_PORT, external=args.port, ip=args.bind_address, protocol="tcp"
                )
            )
        # STUN belongs to the embedded relay; with the public DERP map the nodes use Tailscale's.
        if args.stun_port is not None and args.derp == "embedded":
            ports.append(
                docker.ContainerPortArgs(
                    internal=STUN_PORT, external=args.stun_port, ip=args.bind_address, protocol="udp"
                )
            )
        # Containers on the stack's network (and the share nodes in bridge mode) reach Headscale by
        # the controlUrl's name, which its certificate carries.
        aliases = [host] if host and not is_address(host) else None
        self.container = docker.Container(
            f"{name}-headscale",
            name=names.headscale_container(args.name_prefix),
            image=args.image,
            restart="unless-stopped",
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=args.network_name, ipv4_address=str(args.ip), aliases=aliases)
            ],
            ports=ports,
            # Config in the environment: the image's entrypoint writes it to a tmpfs (the provider's
            # uploads cannot write into a read-only root); it holds no secret. The policy is no input
            # of the container at all (see HeadscalePolicy below).
            envs=envs,
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
            labels=container_labels(role="headscale", **{VERSION_LABEL.removeprefix(f"{PREFIX}."): args.version}),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=needs),
            **hardening.for_headscale(limits := args.limits or HeadscaleConfig()),
        )
        ProcessLimit(
            f"{name}-headscale-pids",
            self.container,
            limits,
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.policy = HeadscalePolicy(
            f"{name}-policy",
            container=names.headscale_container(args.name_prefix),
            container_id=self.container.id,
            policy=args.policy,
            docker_host=args.docker_host,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"containerId": self.container.id, "controlUrl": args.control_url})
