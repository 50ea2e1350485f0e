"""StatusPage: the status page's tailnet node — its auth key, made as a share node's is, and its Caddy route
(an HTTP server on `tailscale/<node>:80` in front of the status container)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_tailscale as tailscale

from timemachine.caddy.config import status_route_fragment
from timemachine.config.models import TailnetConfig
from timemachine.dynamic.headscale import HeadscalePreAuthKey
from timemachine.planning.ipplan import node_port
from timemachine.tailnet.policy import share_tags


@dataclass(frozen=True)
class StatusPageArgs:
    hostname: str
    # The status container: its address on the stack's network and the port it serves on.
    ip: ipaddress.IPv4Address
    port: int
    subnet: ipaddress.IPv4Network
    tailnet: TailnetConfig
    # Bridge mode only: the first tsnet UDP port; None in host mode.
    first_node_port: int | None = None
    # authKeys: headscale — the Headscale user the node registers under, and how to reach Headscale.
    headscale_user_id: pulumi.Input[str] | None = None
    headscale_access: pulumi.Input[dict] | None = None
    # authKeys: provided — status.authKey.
    provided_key: str | None = None


class StatusPage(pulumi.ComponentResource):
    hostname: str
    auth_key: pulumi.Output[str]
    route_fragment: dict

    def __init__(self, name: str, args: StatusPageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("timemachine:index:StatusPage", name, None, opts)
        self.hostname = args.hostname
        self.tags = share_tags(args.tailnet.tags, self.hostname)
        # The key resource a re-key replaces; None for a provided key (a new status.authKey re-keys).
        self.key_urn: pulumi.Output[str] | None = None
        # The same kinds of key as a share node's (components/share.py): single-use, not ephemeral, tagged.
        if args.tailnet.auth_keys == "managed":
            key = tailscale.TailnetKey(
                f"{name}-key",
                reusable=False,
                ephemeral=False,
                preauthorized=True,
                tags=self.tags,
                expiry=args.tailnet.key_expiry_days * 86400,
                description=f"timemachine status page {self.hostname}"[:50],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.auth_key = pulumi.Output.secret(key.key)
            self.key_urn = key.urn
        elif args.tailnet.auth_keys == "headscale":
            assert args.headscale_user_id is not None and args.headscale_access is not None
            headscale_key = HeadscalePreAuthKey(
                f"{name}-key",
                user_id=args.headscale_user_id,
                tags=self.tags,
                expiry_days=args.tailnet.key_expiry_days,
                reusable=False,
                description=f"status page node {self.hostname}",
                access=args.headscale_access,
                # As a share's: a re-key removes the old device first, so the node keeps its hostname.
                opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
            )
            self.auth_key = pulumi.Output.secret(headscale_key.key)
            self.key_urn = headscale_key.urn
        else:
            # The config check guarantees status.authKey with provided keys.
            assert args.provided_key is not None
            self.auth_key = pulumi.Output.secret(args.provided_key)

        self.node_port = (
            node_port(args.ip, args.subnet, args.first_node_port) if args.first_node_port is not None else None
        )
        self.route_fragment = status_route_fragment(
            self.hostname,
            str(args.ip),
            args.port,
            tags=self.tags,
            control_url=args.tailnet.control_url,
            port=self.node_port,
        )
        self.register_outputs({"hostname": self.hostname, "routeFragment": self.route_fragment})
