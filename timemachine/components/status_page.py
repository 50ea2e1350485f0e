"""StatusPage: the status page's tailnet node — its auth key, made as a share node's is, and its Caddy route
(an HTTP server on `tailscale/<node>:80` in front of the status container)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi

from timemachine.caddy.config import status_route_fragment
from timemachine.components.node_key import node_key
from timemachine.config.models import TailnetConfig
from timemachine.planning.ipplan import node_port
from timemachine.tailnet.policy import advertised_tags, share_tags


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
        # The same kind of key as a share node's; the resource a re-key replaces (None for status.authKey).
        key = node_key(
            name,
            self.tags,
            args.tailnet,
            opts=pulumi.ResourceOptions(parent=self),
            tailscale_description=f"timemachine status page {self.hostname}",
            headscale_description=f"status page node {self.hostname}",
            headscale_user_id=args.headscale_user_id,
            headscale_access=args.headscale_access,
            provided_key=args.provided_key,
        )
        self.auth_key = key.auth_key
        self.key_urn = key.urn

        self.node_port = (
            node_port(args.ip, args.subnet, args.first_node_port) if args.first_node_port is not None else None
        )
        self.route_fragment = status_route_fragment(
            self.hostname,
            str(args.ip),
            args.port,
            tags=advertised_tags(self.tags, self_hosted=args.tailnet.self_hosted),
            control_url=args.tailnet.control_url,
            port=self.node_port,
        )
        self.register_outputs({"hostname": self.hostname, "routeFragment": self.route_fragment})
