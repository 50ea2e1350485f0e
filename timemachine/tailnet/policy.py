"""Renders the tailnet policy fragment that lets each owner reach only their own share on tcp:445, and the
administrators (only) the status page on tcp:80.

The form loads in both control planes: Tailscale and Headscale (0.27 to 0.29) all know `tagOwners`
and `acls`. Deny by default: one accept rule per share. `tests` (each owner accepted on their own share,
denied on every other) make the control plane refuse a policy edit that widens access: Tailscale always,
Headscale from 0.29, which evaluates them against the devices it has (see `applicable_tests`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from timemachine.planning.ports import SMB_PORT, STATUS_PAGE_PORT


@dataclass(frozen=True)
class SharePolicy:
    hostname: str
    owner: str
    tags: Sequence[str]


@dataclass(frozen=True)
class StatusPolicy:
    """The status page's node and who may open it."""

    hostname: str
    admins: Sequence[str]
    tags: Sequence[str]


def node_tag(hostname: str) -> str:
    return f"tag:{hostname}"


def share_tags(base_tags: Iterable[str], hostname: str) -> list[str]:
    return sorted(set(base_tags) | {node_tag(hostname)})


def advertised_tags(tags: Iterable[str], *, self_hosted: bool) -> list[str]:
    """The tags a node asks for itself (caddy-tailscale's `tags`, tsnet's AdvertiseTags): none on a
    self-hosted control server. Headscale 0.28 and later refuse a new node that registers with a
    pre-auth key and also requests tags (hscontrol/state `createAndSaveNewNode`; the refusal is an
    HTTP 200 whose error tsnet logs only at debug level, so the node just never joins), and there
    the key carries the node's tags anyway. Tailscale takes both, and a provided untagged key needs them."""
    return [] if self_hosted else sorted(tags)


def render_policy(
    shares: Iterable[SharePolicy],
    *,
    tag_owners: Sequence[str],
    base_tags: Sequence[str],
    self_hosted: bool,
    status: StatusPolicy | None = None,
    headscale_tests: bool = False,
) -> dict:
    """tagOwners for every tag used, an accept rule per share (and one for the status page's admins)
    and, for Tailscale and for Headscale with `headscale_tests` (0.29 and later), `tests`.

    - Tailscale: each per-share tag is also owned by the base tags, because keys minted through an
      OAuth client may only carry tags owned by the client's own tag. The `tests` section makes
      Tailscale refuse any later policy edit that lets an owner into another owner's share.
    - Headscale (`self_hosted`): tag owners must be users or groups; before 0.29 `tests` is unknown to it.
    """
    shares = sorted(shares, key=lambda s: s.hostname)
    status_tags = set(status.tags) if status else set()
    tags = sorted({tag for share in shares for tag in share.tags} | set(base_tags) | status_tags)
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
    if status is not None:
        policy["acls"].append(
            {"action": "accept", "src": list(status.admins), "dst": [f"{node_tag(status.hostname)}:{STATUS_PAGE_PORT}"]}
        )
    if not self_hosted or headscale_tests:
        # A test's src is one identity: a login, not a group (its members are not known here).
        policy["tests"] = [_test(share, shares) for share in shares if is_login(share.owner)]
        if status is not None:
            policy["tests"] += _status_tests(status, shares)
    return policy


def _status_tests(status: StatusPolicy, shares: Sequence[SharePolicy]) -> list[dict]:
    """Each admin login reaches the page; each share owner who is not an admin does not."""
    page = f"{node_tag(status.hostname)}:{STATUS_PAGE_PORT}"
    admins = [a for a in status.admins if is_login(a)]
    others = sorted({s.owner for s in shares if is_login(s.owner)} - set(status.admins))
    return [{"src": a, "accept": [page]} for a in admins] + [{"src": o, "deny": [page]} for o in others]


def is_login(owner: str) -> bool:
    return "@" in owner


def _test(share: SharePolicy, shares: Sequence[SharePolicy]) -> dict:
    test: dict = {"src": share.owner, "accept": [f"{node_tag(share.hostname)}:{SMB_PORT}"]}
    others = [f"{node_tag(o.hostname)}:{SMB_PORT}" for o in shares if o.owner != share.owner]
    if others:
        test["deny"] = others
    return test


def applicable_tests(policy: dict, users: set[str], tags: set[str]) -> dict:
    """`policy` with only the tests Headscale can evaluate now: Headscale (0.29) resolves a test's
    source and destinations to its devices' addresses and fails a test whose source or destination has
    none, so a test waits until its owner's device (`users`: `alice@`, or a login, with an untagged
    device) and its share's node (`tags`: tags some device carries) are registered. The rest are
    kept, each with the destinations that resolve; a policy without `tests` is returned as it is."""
    if "tests" not in policy:
        return policy

    def resolves(target: str) -> bool:
        alias = target.rsplit(":", 1)[0]
        return alias in tags if alias.startswith("tag:") else alias in users

    kept = []
    for test in policy["tests"]:
        if not resolves(test["src"]):
            continue
        narrowed = {
            **test,
            **{side: [d for d in test[side] if resolves(d)] for side in ("accept", "deny") if side in test},
        }
        for side in ("accept", "deny"):
            if side in narrowed and not narrowed[side]:
                del narrowed[side]
        if "accept" in narrowed or "deny" in narrowed:
            kept.append(narrowed)
    found = {key: value for key, value in policy.items() if key != "tests"}
    return {**found, "tests": kept} if kept else found
