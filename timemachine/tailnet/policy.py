"""Renders the tailnet policy fragment that lets each owner reach only their own share on tcp:445.

The form loads in both control planes: Tailscale and Headscale 0.27 both know `tagOwners` and
`acls` (Headscale rejects `grants`). Deny by default: one accept rule per share.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from timemachine.planning.ports import SMB_PORT


@dataclass(frozen=True)
class SharePolicy:
    hostname: str
    owner: str
    tags: Sequence[str]


def node_tag(hostname: str) -> str:
    return f"tag:{hostname}"


def share_tags(base_tags: Iterable[str], hostname: str) -> list[str]:
    return sorted(set(base_tags) | {node_tag(hostname)})


def render_policy(
    shares: Iterable[SharePolicy], *, tag_owners: Sequence[str], base_tags: Sequence[str], self_hosted: bool
) -> dict:
    """tagOwners for every tag used, an accept rule per share and, for Tailscale, `tests`.

    - Tailscale: each per-share tag is also owned by the base tags, because keys minted through an
      OAuth client may only carry tags owned by the client's own tag. The `tests` section makes
      Tailscale refuse any later policy edit that lets an owner into another owner's share.
    - Headscale (`self_hosted`): tag owners must be users or groups, and `tests` is unknown to it.
    """
    shares = sorted(shares, key=lambda s: s.hostname)
    tags = sorted({tag for share in shares for tag in share.tags} | set(base_tags))
    owners: dict[str, list[str]] = {}
    for tag in tags:
        by_base = [] if self_hosted or tag in base_tags else sorted(base_tags)
        owners[tag] = list(tag_owners) + by_base
    policy: dict = {
        "tagOwners": owners,
        "acls": [
            {"action": "accept", "src": [share.owner], "dst": [f"{node_tag(share.hostname)}:{SMB_PORT}"]}
            for share in shares
        ],
    }
    if not self_hosted:
        # A test's src is one identity: a login, not a group (its members are not known here).
        policy["tests"] = [_test(share, shares) for share in shares if is_login(share.owner)]
    return policy


def is_login(owner: str) -> bool:
    return "@" in owner


def _test(share: SharePolicy, shares: Sequence[SharePolicy]) -> dict:
    test: dict = {"src": share.owner, "accept": [f"{node_tag(share.hostname)}:{SMB_PORT}"]}
    others = [f"{node_tag(o.hostname)}:{SMB_PORT}" for o in shares if o.owner != share.owner]
    if others:
        test["deny"] = others
    return test
