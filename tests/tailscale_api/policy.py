"""The policy of the tailnet the stand-in stands for: the program's own tailnetPolicy as a Tailscale
stack of the same shares exports it (its Tailscale form), which that tailnet's admin has loaded."""

from __future__ import annotations

import json

from tests.support.pulumi_runner import run_program

# What makes a stack's policy the Headscale form, and the stand-in's base URL: left out.
SELF_HOSTED = ("controlUrl", "tagOwners", "controlCaCertificate", "allowKeysOverPlainHttp")


def tailscale_tag_owners(config: dict, more_shares: list[dict] | None = None) -> dict[str, list[str]]:
    """tagOwners of `config`'s policy as the program renders it for Tailscale, for its shares and
    `more_shares` (those a test adds later)."""
    tailscale = {key: value for key, value in config.items() if key != "tailscale:baseUrl"}
    tailscale["tailnet"] = {key: value for key, value in config["tailnet"].items() if key not in SELF_HOSTED}
    tailscale["shares"] = [*config["shares"], *(more_shares or [])]
    return json.loads(run_program(tailscale).outputs["tailnetPolicy"])["tagOwners"]
