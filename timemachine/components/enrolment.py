"""MacEnrolment: one Mac's way into a self-hosted tailnet — its own single-use join key, the command
that uses it, and the script that trusts the stack's CA, joins and sets the Time Machine destinations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from timemachine.dynamic.headscale import HeadscalePreAuthKey
from timemachine.tailnet.enrolment import join_command, setup_script


@dataclass(frozen=True)
class MacEnrolmentArgs:
    mac: str
    owner: str
    # The owner's Headscale user, and how to reach Headscale (dynamic/headscale.py).
    user_id: pulumi.Input[str]
    access: pulumi.Input[dict]
    control_url: str
    expiry_hours: int
    # The `sudo tmutil setdestination -a …` line of each share this Mac backs up to.
    tmutil_commands: Sequence[str]
    # The stack's control CA (PEM), which the Mac must trust; None where its trust store knows the CA.
    ca_certificate: pulumi.Input[str] | None
    stack: str


class MacEnrolment(pulumi.ComponentResource):
    join_command: pulumi.Output[str]
    setup_script: pulumi.Output[str]
    key_urn: pulumi.Output[str]

    def __init__(self, name: str, args: MacEnrolmentArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("timemachine:index:MacEnrolment", name, None, opts)
        # Single-use and short-lived: a key copied out of the outputs is useless once its Mac has
        # joined or a day has passed. Its owner's, untagged: the Mac is a person's device, not the
        # stack's, so deleting the key (a removed Mac, a fresh key) never removes the Mac.
        key = HeadscalePreAuthKey(
            f"join-{args.mac}",
            user_id=args.user_id,
            tags=[],
            expiry_hours=args.expiry_hours,
            reusable=False,
            description=f"join key for {args.owner}'s Mac {args.mac}",
            access=args.access,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.key_urn = key.urn
        self.join_command = pulumi.Output.secret(key.key.apply(lambda k: join_command(args.control_url, k, args.mac)))
        ca = (
            pulumi.Output.from_input(args.ca_certificate)
            if args.ca_certificate is not None
            else pulumi.Output.from_input("")
        )
        self.setup_script = pulumi.Output.secret(
            pulumi.Output.all(self.join_command, ca).apply(
                lambda values: setup_script(
                    mac=args.mac,
                    owner=args.owner,
                    stack=args.stack,
                    join=values[0],
                    tmutil_commands=args.tmutil_commands,
                    ca_pem=values[1] or None,
                )
            )
        )
        self.register_outputs({"keyUrn": self.key_urn})
