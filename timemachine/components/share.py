"""TimeMachineShare: one user's tailnet auth key, Samba container and Caddy route fragment.

Not a component resource: its resources sit at the stack's root, each aliased to where a stack
deployed before had it (under a `timemachine:index:TimeMachineShare` component of the share's name),
so such a stack keeps every one of them. A component is one more step per share in every preview and
`up` (the CLI snapshots the whole state after each step), and grouped nothing the labels and names do not."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from timemachine.caddy.config import route_fragment
from timemachine.components import hardening
from timemachine.components.labels import container_labels, volume_label_map
from timemachine.components.node_key import node_key
from timemachine.config.models import SAMBA_HOSTNAME, SambaConfig, ShareConfig, TailnetConfig
from timemachine.dynamic.base import UNTYPED
from timemachine.dynamic.certificates import VolumeFiles
from timemachine.dynamic.share_password import SharePassword
from timemachine.dynamic.share_storage import ShareStorage
from timemachine.dynamic.storage_helper import MARKER_PATH, marker_path
from timemachine.planning import names
from timemachine.planning.ipplan import node_port
from timemachine.samba.smbconf import (
    AUTH_ENV,
    CREDENTIALS_FILE,
    DATA_PATH,
    DATA_USER,
    HEALTHCHECK_PATH,
    SMB_CONF_ENV,
    STATE_PATH,
    Auth,
    credentials_file,
    render_smb_conf,
)
from timemachine.tailnet.policy import advertised_tags, share_tags

# Docker's health check of each Samba container: a failing backup filesystem or smbd turns it unhealthy
# within HEALTH_INTERVAL_SECONDS × HEALTH_RETRIES (a minute). Every check of every idle share costs
# an exec and an SMB session (about 0.1 CPU-s): at 10 s, 100 shares took half of a 2-core server;
# `pulumi up` does not wait for Docker's first check (dynamic/samba_ready.py).
HEALTH_INTERVAL_SECONDS = 30
HEALTH_RETRIES = 2


@dataclass(frozen=True)
class TimeMachineShareArgs:
    share: ShareConfig
    ip: ipaddress.IPv4Address
    subnet: ipaddress.IPv4Network
    network_name: pulumi.Input[str]
    image: pulumi.Input[str]
    storage_root: str
    samba: SambaConfig
    # The one address smbd accepts (hosts allow): the proxy's (its shard's Caddy), as smbd sees it.
    allow_from: str
    tailnet: TailnetConfig
    # Bridge mode only: the first tsnet UDP port; None in host mode.
    first_node_port: int | None = None
    # authKeys: headscale — where the key is made: the Headscale user the node registers under, and
    # how to reach Headscale (see timemachine.headscale.api.connect).
    headscale_user_id: pulumi.Input[str] | None = None
    headscale_access: pulumi.Input[dict] | None = None
    # namePrefix: the container's and the state volume's names derive from it.
    name_prefix: str = names.DEFAULT_PREFIX
    # The engine the docker provider uses, when set in its config (docker:host).
    docker_host: str | None = None
    # How a Mac logs in: as a guest, or as the data owner with a generated password (signed sessions).
    auth: Auth = "guest"
    # Further addresses smbd admits: the status container's (its probe is an SMB session).
    also_allow: tuple[str, ...] = ()
    # storage.quotaEnforcement (auto | required | advisory) and what the share's storage waits for
    # (the capacity check of the whole disk).
    quota_enforcement: str = "auto"
    storage_checked: pulumi.Resource | None = None
    # The Caddy shard serving its node (proxy.shards): a label on its container beyond shard 0, which
    # is how the next plan finds it (timemachine/preflight/state.py).
    proxy_shard: int = 0


# The component each share's resources were children of, up to the stack that dropped it.
FORMER_COMPONENT = "timemachine:index:TimeMachineShare"


def data_dir(storage_root: str, share: str) -> str:
    return f"{storage_root}/{share}"


def former_place(share: str, *, dynamic: bool = False) -> pulumi.ResourceOptions:
    """Aliases to where a share's resource was before: under its share's component (and, for a
    dynamic resource, also under that component with the one type all dynamic resources had then)."""
    former_parent = pulumi.create_urn(share, FORMER_COMPONENT)
    aliases = [pulumi.Alias(parent=former_parent)]
    if dynamic:
        aliases.append(pulumi.Alias(parent=former_parent, type_=UNTYPED))
    return pulumi.ResourceOptions(aliases=aliases)


class TimeMachineShare:
    hostname: str
    auth_key: pulumi.Output[str]
    route_fragment: dict
    container: docker.Container

    def __init__(self, name: str, args: TimeMachineShareArgs):
        plain = former_place(name)
        dynamic = former_place(name, dynamic=True)
        share = args.share
        self.hostname = args.tailnet.hostname_prefix + share.name
        self.tags = share_tags(args.tailnet.tags, self.hostname)
        self.ip = str(args.ip)
        self.share_name = share.name
        self.proxy_shard = args.proxy_shard

        # The key resource a re-key replaces; None for provided keys (a new authKey re-keys).
        key = node_key(
            name,
            self.tags,
            args.tailnet,
            opts=plain if args.tailnet.auth_keys == "managed" else dynamic,
            tailscale_description=f"timemachine share {share.name}",
            headscale_description=f"share node {self.hostname}",
            headscale_user_id=args.headscale_user_id,
            headscale_access=args.headscale_access,
            provided_key=share.auth_key.get_secret_value() if share.auth_key is not None else None,
        )
        self.auth_key = key.auth_key
        self.key_urn = key.urn

        self.smb_conf = render_smb_conf(
            share.name,
            share.quota,
            args.samba.model,
            allow_from=args.allow_from,
            auth=args.auth,
            also_allow=args.also_allow,
        )
        # Samba's own state (tdb files) per share: never shared with another smbd, kept on delete. Made
        # by the storage step (one step fewer per share than a docker Volume of its own).
        self.state_volume_name = names.samba_volume(args.name_prefix, share.name)
        # The share's directory, made only on a storage root that carries the marker (never by Docker),
        # its quota as the filesystem enforces it (btrfs), or advisory with the reason, said at `up`,
        # and Samba's state volume.
        self.storage = ShareStorage(
            f"{name}-storage",
            storage_root=args.storage_root,
            share=share.name,
            data_uid=args.samba.data_uid,
            image=args.image,
            quota=share.quota,
            docker_host=args.docker_host,
            quota_enforcement=args.quota_enforcement,
            state_volume=self.state_volume_name,
            state_labels=volume_label_map(share=share.name),
            opts=pulumi.ResourceOptions.merge(
                dynamic, pulumi.ResourceOptions(depends_on=[args.storage_checked] if args.storage_checked else None)
            ),
        )
        self.storage.warnings.apply(self._warn)
        # samba.auth: password — the user a Mac logs in as, and its password (None for guests).
        self.user = DATA_USER if args.auth == "password" else "guest"
        self.password: pulumi.Output[str] | None = None
        login_envs: list[pulumi.Input[str]] = [f"{AUTH_ENV}={args.auth}"]
        credentials_wait: list[pulumi.Resource] = []
        # images/samba/healthcheck.sh: the backup filesystem takes a write (fsynced, read back, removed) and
        # smbd answers a session (as a guest, or with the share's credentials: it reads SAMBA_AUTH).
        health = ["CMD", HEALTHCHECK_PATH]
        if args.auth == "password":
            made = SharePassword(f"{name}-password", share=share.name, opts=dynamic)
            # The provider marks `password` secret; wrapped again for where that is not honoured (mocks).
            self.password = pulumi.Output.secret(made.password)
            # A 0600 file on the state volume, written before the container exists (never in its
            # environment): the entrypoint sets the password from it, the healthcheck logs in with it.
            self.credentials = VolumeFiles(
                f"{name}-credentials",
                volume=self.state_volume_name,
                image=args.image,
                files=self.password.apply(lambda password: {CREDENTIALS_FILE: credentials_file(password)}),
                mode=0o600,
                secret=True,
                docker_host=args.docker_host,
                # On the volume the storage step makes (else Docker would make it, unlabelled).
                opts=pulumi.ResourceOptions.merge(dynamic, pulumi.ResourceOptions(depends_on=[self.storage])),
            )
            # Not the password: the id of the one in the volume, so a new password restarts smbd with it.
            login_envs.append(pulumi.Output.concat("TM_CREDENTIALS_ID=", made.id))
            credentials_wait.append(self.credentials)
        container_name = names.samba_container(args.name_prefix, share.name)
        self.container = docker.Container(
            f"{name}-samba",
            name=container_name,
            image=args.image,
            hostname=SAMBA_HOSTNAME.format(share.name),
            restart="unless-stopped",
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.network_name, ipv4_address=self.ip)],
            # smb.conf in the environment: the entrypoint writes it to a tmpfs (the provider's uploads
            # cannot write into a read-only root). It holds no secret. The TM_ values name the real
            # paths and commands in the entrypoint's refusals. The password is not here: it is a file on
            # the state volume (SambaCredentials).
            envs=[
                f"DATA_UID={args.samba.data_uid}",
                f"{SMB_CONF_ENV}={self.smb_conf}",
                f"TM_STORAGE_ROOT={args.storage_root}",
                f"TM_SHARE={share.name}",
                f"TM_CONTAINER={container_name}",
                pulumi.Output.concat("TM_IMAGE=", args.image),
                *login_envs,
            ],
            # Binds, not `volumes`: Docker creates a missing `volumes` host path (an unmounted disk would
            # fill the root filesystem), but refuses to create or start a container whose bind source is
            # missing. The data directory is outside anything Pulumi owns: destroy and replacement leave
            # it alone. The marker comes alone and read-only, so no share sees another's data.
            mounts=[
                docker.ContainerMountArgs(
                    type="bind", source=data_dir(args.storage_root, share.name), target=DATA_PATH
                ),
                docker.ContainerMountArgs(
                    type="bind", source=marker_path(args.storage_root), target=MARKER_PATH, read_only=True
                ),
                docker.ContainerMountArgs(type="volume", source=self.state_volume_name, target=STATE_PATH),
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=health,
                interval=f"{HEALTH_INTERVAL_SECONDS}s",
                timeout="10s",
                # Under a minute: Docker reads a minute back as "1m0s", a change on every preview.
                start_period="50s",
                retries=HEALTH_RETRIES,
            ),
            # Not the provider's wait for Docker's health status (its first check comes one interval
            # after the start): SambaReady runs the check right away, once for all new containers,
            # and `pulumi up` fails when smbd does not come up.
            wait=False,
            labels=container_labels(
                share=share.name,
                owner=share.owner,
                role="samba",
                **({"shard": str(args.proxy_shard)} if args.proxy_shard else {}),
            ),
            # A changed health check replaces the container: the docker provider "updates" it in
            # place by changing only the state, and the running container keeps its old check.
            # Delete first, as the provider's own replacements of it are: the name is taken.
            opts=pulumi.ResourceOptions.merge(
                plain,
                pulumi.ResourceOptions(
                    depends_on=[self.storage, *credentials_wait],
                    replace_on_changes=["healthcheck"],
                    delete_before_replace=True,
                ),
            ),
            **hardening.for_samba(args.samba),
        )

        port = node_port(args.ip, args.subnet, args.first_node_port) if args.first_node_port is not None else None
        self.node_port = port
        self.route_fragment = route_fragment(
            share.name,
            self.hostname,
            self.ip,
            tags=advertised_tags(self.tags, self_hosted=args.tailnet.self_hosted),
            control_url=args.tailnet.control_url,
            port=port,
        )

    def _warn(self, warnings: list[str] | None) -> None:
        """The storage step's quota warnings (advisory quota, no quota, over it already), said by `pulumi up`."""
        for warning in warnings or []:
            pulumi.log.warn(warning, resource=self.storage)
