"""The stack's wiring: the Docker network → one TimeMachineShare per user → CaddyProxy, an optional
embedded Headscale, and what the stack exports. Plain values in, exports out; nothing is checked
here that the config models and the preflight have not already checked."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_docker as docker

from timemachine.components.headscale import HeadscaleServer, HeadscaleServerArgs
from timemachine.components.images import local_image
from timemachine.components.labels import network_labels
from timemachine.components.proxy import CaddyProxy, CaddyProxyArgs
from timemachine.components.share import TimeMachineShare, TimeMachineShareArgs
from timemachine.config.loader import LoadedStack
from timemachine.dynamic.headscale import HeadscalePreAuthKey, HeadscaleUser
from timemachine.planning import names
from timemachine.planning.ipplan import gateway, proxy_address
from timemachine.samba.smbconf import format_size
from timemachine.tailnet.policy import SharePolicy, render_policy, share_tags


def build(stack: LoadedStack, docker_host: str | None) -> dict[str, Any]:
    """Declare every resource of `stack` and return what the stack exports, by output name.
    `docker_host`: the engine the docker provider uses (its `docker:host`, else DOCKER_HOST)."""
    config = stack.config
    exports: dict[str, Any] = {}
    network = docker.Network(
        "network",
        name=config.network_name,
        driver="bridge",
        internal=config.internal,
        ipam_configs=[
            docker.NetworkIpamConfigArgs(subnet=str(config.network.subnet), gateway=str(gateway(config.network.subnet)))
        ],
        labels=network_labels(role="network"),
    )
    # The policy follows from the config alone (hostnames and tags), so an embedded Headscale can load it.
    tailnet_policy = json.dumps(
        render_policy(
            (
                SharePolicy(host, share.owner, share_tags(config.tailnet.tags, host))
                for share in config.shares
                for host in [config.tailnet.hostname_prefix + share.name]
            ),
            tag_owners=config.tailnet.effective_tag_owners,
            base_tags=config.tailnet.tags,
            self_hosted=config.tailnet.self_hosted,
        ),
        indent=2,
        sort_keys=True,
    )
    headscale = config.tailnet.headscale
    headscale_server: HeadscaleServer | None = None
    if headscale.embedded:
        assert stack.headscale_ip is not None and config.tailnet.control_url is not None
        headscale_server = HeadscaleServer(
            "headscale",
            HeadscaleServerArgs(
                control_url=config.tailnet.control_url,
                policy=tailnet_policy,
                image=headscale.image or local_image("headscale-image", "headscale").image_name,
                network_name=network.name,
                ip=stack.headscale_ip,
                # An internal network publishes nothing, as for the proxy.
                port=None if config.internal else headscale.port,
                stun_port=None if config.internal else headscale.stun_port,
                base_domain=config.tailnet.dns_suffix or "tailnet.internal",
                docker_host=docker_host,
                limits=headscale,
                name_prefix=config.name_prefix,
            ),
        )
    headscale_users: dict[str, HeadscaleUser] = {}
    headscale_access: dict | None = None
    if config.tailnet.auth_keys == "headscale":
        if headscale_server is not None:
            headscale_access = {"container": names.headscale_container(config.name_prefix)}
            if docker_host:
                headscale_access["docker_host"] = docker_host
        else:
            assert config.tailnet.headscale_api_key is not None
            headscale_access = {
                "url": config.tailnet.control_url,
                "api_key": pulumi.Output.secret(config.tailnet.headscale_api_key.get_secret_value()),
            }
        # Users (and so keys) after the policy: it owns the tags the keys carry.
        after_server = pulumi.ResourceOptions(depends_on=[headscale_server.policy] if headscale_server else [])
        # One Headscale user per owner, and the one the share nodes register under.
        for user in sorted({s.owner.removesuffix("@") for s in config.shares} | {config.tailnet.key_user or ""} - {""}):
            headscale_users[user] = HeadscaleUser(f"headscale-user-{user}", user, headscale_access, after_server)
    samba_image = config.samba.image or local_image("samba-image", "samba").image_name
    caddy_image = config.proxy.image or local_image("caddy-image", "caddy", config.proxy.build_args).image_name
    bridge = config.proxy.network_mode == "bridge"
    # The one address smbd accepts: the proxy's as smbd sees it — the Caddy container's own in bridge
    # mode; in host mode the network's gateway, the address the host's traffic comes from.
    smbd_allow_from = str(proxy_address(config.network.subnet) if bridge else gateway(config.network.subnet))

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
                allow_from=smbd_allow_from,
                tailnet=config.tailnet,
                first_node_port=config.proxy.first_node_port if bridge else None,
                headscale_user_id=headscale_users[config.tailnet.key_user or ""].user_id if headscale_users else None,
                headscale_access=headscale_access,
                name_prefix=config.name_prefix,
            ),
        )
        for share in config.shares
    ]
    CaddyProxy(
        "proxy",
        CaddyProxyArgs(
            route_fragments=[s.route_fragment for s in shares],
            auth_keys={s.hostname: s.auth_key for s in shares},
            image=caddy_image,
            network_mode=config.proxy.network_mode,
            network_name=network.name,
            subnet=config.network.subnet,
            # An internal network publishes nothing: its nodes reach only peers on the network itself.
            node_ports=[s.node_port for s in shares if s.node_port is not None]
            if config.proxy.publish_node_ports and not config.internal
            else [],
            docker_host=docker_host,
            self_hosted=config.tailnet.self_hosted,
            plain_http_control=(config.tailnet.control_url or "").startswith("http://"),
            limits=config.proxy,
            wait_for_nodes=config.proxy.wait_for_nodes,
            name_prefix=config.name_prefix,
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

    exports["shares"] = {c.name: share_output(c, s) for c, s in zip(config.shares, shares, strict=True)}
    # -a adds the share beside any existing destination. "guest" with no password: Samba maps an
    # unknown user to its guest account; the tailnet has already decided who may connect.
    exports["tmutilCommands"] = {
        c.name: f"sudo tmutil setdestination -a smb://guest@{share_host(s)}/{c.name}"
        for c, s in zip(config.shares, shares, strict=True)
    }
    exports["tailnetPolicy"] = tailnet_policy
    # The one command that gives a share's node a fresh key (a lost node state, a device removed from
    # the tailnet): the key is replaced and the node starts again with a new identity under the same
    # hostname (with Headscale the old device is removed first; on Tailscale remove it in the admin
    # console). Provided keys are re-keyed by setting a new shares[].authKey.
    rekey = {
        c.name: s.key_urn.apply(lambda urn: f"pulumi up --stack {pulumi.get_stack()} --replace '{urn}'")
        for c, s in zip(config.shares, shares, strict=True)
        if s.key_urn is not None
    }
    if rekey:
        exports["rekeyCommands"] = rekey
    if headscale_access is not None:
        # What each owner's Mac runs once to join the tailnet as that owner (a single-use key).
        # One per owner, however many shares they have.
        join_keys = {
            owner: HeadscalePreAuthKey(
                f"join-{owner.removesuffix('@')}",
                user_id=headscale_users[owner.removesuffix("@")].user_id,
                tags=[],
                expiry_days=config.tailnet.key_expiry_days,
                reusable=False,
                description=f"join key for {owner}",
                access=headscale_access,
            )
            for owner in sorted({share.owner for share in config.shares})
        }
        exports["joinCommands"] = pulumi.Output.secret(
            {
                owner: pulumi.Output.concat(
                    "tailscale up --login-server=", config.tailnet.control_url or "", " --auth-key=", key.key
                )
                for owner, key in sorted(join_keys.items())
            }
        )
    if headscale_server is not None:
        exports["headscale"] = {"controlUrl": config.tailnet.control_url, "ip": str(stack.headscale_ip)}
    return exports
