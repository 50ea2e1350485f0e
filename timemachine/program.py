"""The stack's wiring: the Docker network → one TimeMachineShare per user → CaddyProxy, an optional
embedded Headscale, and what the stack exports. Plain values in, exports out; nothing is checked
here that the config models and the preflight have not already checked."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_docker as docker

from timemachine.components.enrolment import MacEnrolment, MacEnrolmentArgs
from timemachine.components.headscale import HeadscaleServer, HeadscaleServerArgs
from timemachine.components.images import local_image
from timemachine.components.labels import network_labels
from timemachine.components.proxy import CaddyProxy, CaddyProxyArgs
from timemachine.components.share import TimeMachineShare, TimeMachineShareArgs
from timemachine.components.status import STATUS_SOURCES, StatusService, StatusServiceArgs, StatusShare
from timemachine.components.status_page import StatusPage, StatusPageArgs
from timemachine.config.loader import LoadedStack
from timemachine.config.models import is_address
from timemachine.dynamic.headscale import HeadscaleUser
from timemachine.dynamic.process_limit import ProcessLimits
from timemachine.dynamic.samba_ready import SambaReady
from timemachine.dynamic.storage_capacity import StorageCapacity
from timemachine.headscale.config import tls_mode
from timemachine.headscale.versions import deployed_version, has_policy_tests, kept_version, upgrade_problem
from timemachine.planning import names
from timemachine.planning.ipplan import gateway
from timemachine.planning.shards import STATUS_SHARD
from timemachine.samba.smbconf import format_size
from timemachine.tailnet.enrolment import ca_profile
from timemachine.tailnet.policy import SharePolicy, StatusPolicy, render_policy, share_tags


def build(stack: LoadedStack, docker_host: str | None) -> dict[str, Any]:
    """Declare every resource of `stack` and return what the stack exports, by output name.
    `docker_host`: the engine the docker provider uses (its `docker:host`, else DOCKER_HOST)."""
    config = stack.config
    exports: dict[str, Any] = {}
    # images.rebuild: part of every local image's tag, so a new value rebuilds them all.
    rebuild = config.images.rebuild
    if config.status_page_off_reason:
        pulumi.log.warn(config.status_page_off_reason)
    headscale = config.tailnet.headscale
    # A deployed stack keeps its Headscale release unless its config names one; it moves one minor
    # version per `pulumi up`: a skipped one stops here, before any resource is declared, with the step.
    headscale_version: str = headscale.version
    if headscale.embedded:
        deployed_release = deployed_version(stack.deployed)
        headscale_version, kept = kept_version(
            deployed_release, headscale.version, chosen="version" in headscale.model_fields_set
        )
        if kept:
            pulumi.log.warn(kept)
        if problem := upgrade_problem(deployed_release, headscale_version):
            raise pulumi.RunError(problem)
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
            # Headscale evaluates `tests` from 0.29 against its devices, and refuses a policy whose tests
            # fail: the embedded one is loaded with those its devices resolve (dynamic/headscale.py); an
            # external Headscale's policy is its operator's, who adds tests once the devices exist.
            headscale_tests=headscale.embedded and has_policy_tests(headscale_version),
            # The status page's node: only the admins reach it.
            status=StatusPolicy(
                config.status_hostname,
                config.status_admins,
                share_tags(config.tailnet.tags, config.status_hostname),
            )
            if config.status_page
            else None,
        ),
        indent=2,
        sort_keys=True,
    )
    headscale_server: HeadscaleServer | None = None
    if headscale.embedded:
        assert stack.headscale_ip is not None and config.tailnet.control_url is not None
        headscale_server = HeadscaleServer(
            "headscale",
            HeadscaleServerArgs(
                control_url=config.tailnet.control_url,
                policy=tailnet_policy,
                image=headscale.image
                or local_image(
                    "headscale-image", "headscale", {"HEADSCALE_VERSION": headscale_version}, rebuild=rebuild
                ).image_name,
                version=headscale_version,
                network_name=network.name,
                ip=stack.headscale_ip,
                # An internal network publishes nothing, as for the proxy.
                port=None if config.internal else headscale.port,
                stun_port=None if config.internal else headscale.stun_port,
                base_domain=config.tailnet.dns_suffix or "tailnet.internal",
                docker_host=docker_host,
                limits=headscale,
                name_prefix=config.name_prefix,
                tls=tls_mode(config.tailnet.control_url, headscale.tls),
                derp=headscale.derp,
                acme_email=headscale.acme_email,
                bind_address=str(headscale.bind_address),
                authority_name=f"tailscale-timemachine {pulumi.get_project()}/{pulumi.get_stack()} control CA",
            ),
        )
    # What the share nodes (and the Macs) trust beside the system's CAs: the stack's own root, or the
    # CA of an external control server that has a private one.
    control_ca = headscale_server.ca_certificate if headscale_server else config.tailnet.control_ca_certificate
    control_host = config.tailnet.control_host or ""
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
            if config.tailnet.control_ca_certificate:
                headscale_access["ca"] = config.tailnet.control_ca_certificate
        # Users (and so keys) after the policy: it owns the tags the keys carry.
        after_server = pulumi.ResourceOptions(depends_on=[headscale_server.policy] if headscale_server else [])
        # One Headscale user per owner, and the one the share nodes register under.
        for user in sorted({s.owner.removesuffix("@") for s in config.shares} | {config.tailnet.key_user or ""} - {""}):
            headscale_users[user] = HeadscaleUser(f"headscale-user-{user}", user, headscale_access, after_server)
    samba_image = config.samba.image or local_image("samba-image", "samba", rebuild=rebuild).image_name
    caddy_image = (
        config.proxy.image or local_image("caddy-image", "caddy", config.proxy.build_args, rebuild=rebuild).image_name
    )
    bridge = config.proxy.network_mode == "bridge"
    shard_count = config.proxy.shards

    def smbd_allow_from(shard: int) -> str:
        """The one address smbd accepts: the proxy's as smbd sees it — its shard's Caddy container's own
        in bridge mode; in host mode the network's gateway, the address the host's traffic comes from."""
        return str(stack.proxy_ips[shard] if bridge else gateway(config.network.subnet))

    # The status container probes each smbd over SMB from its own address.
    status_ip = stack.status_ip if config.status.enabled else None
    smbd_also_allow = (str(status_ip),) if status_ip is not None else ()

    # The backup disk's size and free space, and the quotas (plus storage.reserve) checked against it.
    capacity = StorageCapacity(
        "storage",
        storage_root=config.storage_root,
        total_quota=config.total_quota,
        reserve=config.storage.reserve,
        image=samba_image,
        docker_host=docker_host,
    )
    capacity.report.apply(lambda line: pulumi.log.info(line, resource=capacity) if line else None)
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
                allow_from=smbd_allow_from(stack.proxy_shards[share.name]),
                tailnet=config.tailnet,
                first_node_port=config.proxy.first_node_port if bridge else None,
                headscale_user_id=headscale_users[config.tailnet.key_user or ""].user_id if headscale_users else None,
                headscale_access=headscale_access,
                name_prefix=config.name_prefix,
                auth=config.auth_of(share),
                docker_host=docker_host,
                also_allow=smbd_also_allow,
                quota_enforcement=config.storage.quota_enforcement,
                storage_checked=capacity,
                proxy_shard=stack.proxy_shards[share.name],
            ),
        )
        for share in config.shares
    ]
    # Every Samba container's pids limit (the docker provider has none), in one step for all shares.
    if shares:
        samba_containers = {s.share_name: s.container for s in shares}
        ProcessLimits("samba-pids", samba_containers, config.samba, docker_host=docker_host)
        # `pulumi up` waits until each new Samba container serves its share, in one step for all.
        SambaReady("samba-ready", samba_containers, docker_host=docker_host)
    # The status page's tailnet node: its key made as a share node's, its route in the same Caddy.
    status_page: StatusPage | None = None
    if status_ip is not None and config.status_page:
        status_page = StatusPage(
            "status-page",
            StatusPageArgs(
                hostname=config.status_hostname,
                ip=status_ip,
                port=config.status.port,
                subnet=config.network.subnet,
                tailnet=config.tailnet,
                first_node_port=config.proxy.first_node_port if bridge else None,
                headscale_user_id=headscale_users[config.tailnet.key_user or ""].user_id if headscale_users else None,
                headscale_access=headscale_access,
                provided_key=config.status.auth_key.get_secret_value() if config.status.auth_key else None,
            ),
        )
    # Each Caddy shard serves its shares' nodes; the status page's is on shard 0. Shard 0 is the one
    # Caddy of a stack without shards, with its names.
    shard_nodes: list[list[TimeMachineShare | StatusPage]] = [
        [s for s in shares if s.proxy_shard == shard] for shard in range(shard_count)
    ]
    if status_page is not None:
        shard_nodes[STATUS_SHARD].append(status_page)
    proxies = [
        _proxy(shard, nodes, stack, caddy_image, network.name, headscale_server, control_ca, control_host, docker_host)
        for shard, nodes in enumerate(shard_nodes)
    ]
    proxy = proxies[0]
    exports["proxyShards"] = [
        {
            "shard": shard,
            "container": p.container_name,
            "ip": str(p.ip) if bridge else None,
            "nodes": sorted(n.hostname for n in nodes),
            "memoryLimit": f"{p.memory_limit}M",
        }
        for shard, (p, nodes) in enumerate(zip(proxies, shard_nodes, strict=True))
    ]

    if status_ip is not None:
        status_image = (
            config.status.image
            or local_image("status-image", "status", package_sources=STATUS_SOURCES, rebuild=rebuild).image_name
        )
        status = StatusService(
            "status",
            StatusServiceArgs(
                ip=status_ip,
                network_name=network.name,
                image=status_image,
                storage_root=config.storage_root,
                shares=[
                    StatusShare(
                        name=c.name,
                        quota=c.quota,
                        stale_after_seconds=c.stale_after,
                        address=s.ip,
                        node=s.hostname,
                        state_volume=s.state_volume_name if s.password is not None else None,
                        proxy_shard=s.proxy_shard,
                    )
                    for c, s in zip(config.shares, shares, strict=True)
                ],
                caddy_volume=proxy.state_volume.name,
                shard_volumes={shard: p.state_volume.name for shard, p in enumerate(proxies) if shard},
                port=config.status.port,
                collect_interval_seconds=config.status.collect_interval,
                limits=config.status,
                name_prefix=config.name_prefix,
                docker_host=docker_host,
                # Its probe's first write lands in each share's directory: after ShareStorage made it.
                depends_on=[s.container for s in shares],
            ),
        )
        suffix = config.tailnet.dns_suffix
        page_host = f"{config.status_hostname}.{suffix}" if suffix else config.status_hostname
        # The metrics URL on the stack's network (reachable from the Docker host), the page on the tailnet.
        exports["status"] = {"metricsUrl": status.metrics_url, "ip": str(status_ip)}
        if status_page is not None:
            exports["status"] |= {"hostname": config.status_hostname, "pageUrl": f"http://{page_host}/"}

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
            # The Caddy shard serving its node (proxy.shards; `proxyShards` lists them).
            "proxyShard": share.proxy_shard,
        }
        if config.tailnet.dns_suffix:
            out["fqdn"] = share_host(share)
        return out

    exports["shares"] = {c.name: share_output(c, s) for c, s in zip(config.shares, shares, strict=True)}
    # -a adds the share beside any existing destination. "guest" with no password: Samba maps an
    # unknown user to its guest account; the tailnet has already decided who may connect. With
    # samba.auth: password, -p asks for the share's password (from sharePasswords).
    exports["tmutilCommands"] = {
        c.name: f"sudo tmutil setdestination -a{' -p' if s.password is not None else ''} "
        f"smb://{s.user}@{share_host(s)}/{c.name}"
        for c, s in zip(config.shares, shares, strict=True)
    }
    passwords = {c.name: s.password for c, s in zip(config.shares, shares, strict=True) if s.password is not None}
    if passwords:
        # pulumi stack output --show-secrets sharePasswords: what tmutil's -p asks for.
        exports["sharePasswords"] = pulumi.Output.secret(passwords)
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
        # Each Mac its own single-use join key (shares[].macs), and the command that mints a fresh
        # one for a new or reinstalled Mac.
        tmutil = exports["tmutilCommands"]
        enrolments = {
            mac: MacEnrolment(
                f"mac-{mac}",
                MacEnrolmentArgs(
                    mac=mac,
                    owner=owner,
                    user_id=headscale_users[owner.removesuffix("@")].user_id,
                    access=headscale_access,
                    control_url=config.tailnet.control_url or "",
                    expiry_hours=config.tailnet.join_key_expiry_hours,
                    tmutil_commands=[tmutil[share] for share in mac_shares],
                    ca_certificate=control_ca,
                    stack=pulumi.get_stack(),
                ),
            )
            for mac, (owner, mac_shares) in sorted(config.macs.items())
        }
        exports["macs"] = {
            mac: {"owner": owner, "shares": mac_shares} for mac, (owner, mac_shares) in config.macs.items()
        }
        exports["joinCommands"] = pulumi.Output.secret({mac: e.join_command for mac, e in enrolments.items()})
        exports["macSetupScripts"] = pulumi.Output.secret({mac: e.setup_script for mac, e in enrolments.items()})
        exports["enrolCommands"] = {
            mac: e.key_urn.apply(lambda urn: f"pulumi up --stack {pulumi.get_stack()} --replace '{urn}'")
            for mac, e in enrolments.items()
        }
    if control_ca is not None:
        # The root each Mac trusts (as a profile to install, or in its setup script).
        exports["controlCaCertificate"] = control_ca
        exports["controlCaProfile"] = pulumi.Output.from_input(control_ca).apply(
            lambda pem: ca_profile(pem, pulumi.get_stack(), control_host).decode()
        )
    if headscale_server is not None:
        exports["headscale"] = {
            "controlUrl": config.tailnet.control_url,
            "ip": str(stack.headscale_ip),
            "derp": headscale.derp,
            "tls": tls_mode(config.tailnet.control_url or "", headscale.tls),
        }
        if headscale_server.certificates is not None:
            exports["headscale"]["certificateExpires"] = headscale_server.certificates.not_after
    return exports


def _proxy(
    shard: int,
    nodes: list[TimeMachineShare | StatusPage],
    stack: LoadedStack,
    caddy_image: pulumi.Input[str],
    network_name: pulumi.Input[str],
    headscale_server: HeadscaleServer | None,
    control_ca: pulumi.Input[str] | None,
    control_host: str,
    docker_host: str | None,
) -> CaddyProxy:
    """Caddy shard `shard` serving `nodes`: shard 0 is `proxy`, a further one `proxy-<shard>`."""
    config = stack.config
    # Each shard's memory limit follows its own nodes (the status page's counted on shard 0, as the
    # one Caddy of a stack without shards counts it), unless proxy.memoryLimit is set.
    shard_shares = sum(1 for n in nodes if isinstance(n, TimeMachineShare))
    limits = config.proxy.model_copy(
        update={"memory_limit": config.proxy.memory_limit_for(shard_shares + (1 if shard == STATUS_SHARD else 0))}
    )
    return CaddyProxy(
        "proxy" if shard == 0 else f"proxy-{shard}",
        CaddyProxyArgs(
            route_fragments=[n.route_fragment for n in nodes],
            auth_keys={n.hostname: n.auth_key for n in nodes},
            image=caddy_image,
            network_mode=config.proxy.network_mode,
            network_name=network_name,
            subnet=config.network.subnet,
            # An internal network publishes nothing: its nodes reach only peers on the network itself.
            node_ports=[n.node_port for n in nodes if n.node_port is not None]
            if config.proxy.publish_node_ports and not config.internal
            else [],
            docker_host=docker_host,
            self_hosted=config.tailnet.self_hosted,
            control_ca=control_ca,
            # The embedded Headscale by its name (which its certificate carries) at its address,
            # whatever DNS the Docker host has.
            control_hosts={control_host: str(stack.headscale_ip)}
            if headscale_server is not None and control_host and not is_address(control_host)
            else {},
            limits=limits,
            wait_for_nodes=config.proxy.wait_for_nodes,
            name_prefix=config.name_prefix,
            shard=shard,
            ip=stack.proxy_ips[shard] if stack.proxy_ips else None,
        ),
    )
