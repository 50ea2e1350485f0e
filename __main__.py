"""The tailscale-timemachine stack: Docker network → one TimeMachineShare per user → CaddyProxy."""

import json

import pulumi
import pulumi_docker as docker

from components.gc_tuning import tune_gc
from components.images import local_image
from components.ipplan import gateway
from components.labels import network_labels
from components.policy import SharePolicy, render_policy
from components.proxy import CaddyProxy, CaddyProxyArgs
from components.share import TimeMachineShare, TimeMachineShareArgs
from components.smbconf import format_size
from config.loader import ConfigError, load_stack_config

tune_gc()
# A bad config stops here, before any resource is declared. RunError: the engine prints the
# message (every problem with its fix) without a Python traceback.
try:
    stack = load_stack_config()
except ConfigError as error:
    raise pulumi.RunError(str(error)) from None
config = stack.config

network = docker.Network(
    "network",
    name=config.network.name,
    driver="bridge",
    internal=config.network.internal,
    ipam_configs=[
        docker.NetworkIpamConfigArgs(subnet=str(config.network.subnet), gateway=str(gateway(config.network.subnet)))
    ],
    labels=network_labels(role="network"),
)
samba_image = config.samba.image or local_image("samba-image", "samba").image_name
caddy_image = config.proxy.image or local_image("caddy-image", "caddy", config.proxy.build_args).image_name
bridge = config.proxy.network_mode == "bridge"

shares = [
    TimeMachineShare(
        share.name,
        TimeMachineShareArgs(
            share=share,
            ip=stack.ips[share.name],
            subnet=config.network.subnet,
            network_name=network.name,
            image=samba_image,
            storage_root=config.storage_root,
            samba=config.samba,
            tailnet=config.tailnet,
            first_node_port=config.proxy.first_node_port if bridge else None,
        ),
    )
    for share in config.shares
]
proxy = CaddyProxy(
    "proxy",
    CaddyProxyArgs(
        route_fragments=[s.route_fragment for s in shares],
        auth_keys={s.hostname: s.auth_key for s in shares},
        image=caddy_image,
        network_mode=config.proxy.network_mode,
        network_name=network.name,
        subnet=config.network.subnet,
        # An internal network publishes nothing: its nodes reach only peers on the network itself.
        node_ports=[] if config.network.internal else [s.node_port for s in shares if s.node_port is not None],
        self_hosted=config.tailnet.self_hosted,
        plain_http_control=(config.tailnet.control_url or "").startswith("http://"),
    ),
)


def share_host(share: TimeMachineShare) -> str:
    """The name a Mac connects to: the FQDN when the tailnet's DNS suffix is known."""
    suffix = config.tailnet.dns_suffix
    return f"{share.hostname}.{suffix}" if suffix else share.hostname


def share_output(share_config, share: TimeMachineShare) -> dict:
    out = {
        "hostname": share.hostname,
        "smbUrl": f"smb://{share_host(share)}/{share_config.name}",
        "ip": share.ip,
        "owner": share_config.owner,
        "quota": format_size(share_config.quota) if share_config.quota else "unlimited",
    }
    if config.tailnet.dns_suffix:
        out["fqdn"] = share_host(share)
    return out


pulumi.export("shares", {c.name: share_output(c, s) for c, s in zip(config.shares, shares, strict=True)})
# -a adds the share beside any existing destination. "guest" with no password: Samba maps an
# unknown user to its guest account; the tailnet has already decided who may connect.
pulumi.export(
    "tmutilCommands",
    {
        c.name: f"sudo tmutil setdestination -a smb://guest@{share_host(s)}/{c.name}"
        for c, s in zip(config.shares, shares, strict=True)
    },
)
pulumi.export(
    "tailnetPolicy",
    json.dumps(
        render_policy(
            (SharePolicy(s.hostname, c.owner, s.tags) for c, s in zip(config.shares, shares, strict=True)),
            tag_owners=config.tailnet.effective_tag_owners,
            base_tags=config.tailnet.tags,
            self_hosted=config.tailnet.self_hosted,
        ),
        indent=2,
        sort_keys=True,
    ),
)
