"""Renders the tailnet policy fragment that lets each owner reach only their own share on tcp:445."""

from __future__ import annotations

from collections.abc import Iterable

# Who may apply the tags when auth keys are created: the tailnet's admins (the API key's user or the
# OAuth client acting for them). Tagged keys are refused until these tagOwners exist.
TAG_OWNERS = ["autogroup:admin"]


def node_tag(hostname: str) -> str:
    return f"tag:{hostname}"


def share_tags(base_tags: Iterable[str], hostname: str) -> list[str]:
    return sorted(set(base_tags) | {node_tag(hostname)})


def render_policy(shares: Iterable[tuple[str, str, list[str]]]) -> dict:
    """`shares` is (hostname, owner, tags) per share. Deny by default: one grant per share."""
    shares = sorted(shares)
    tags = sorted({tag for _, _, share_tags_ in shares for tag in share_tags_})
    return {
        "tagOwners": {tag: list(TAG_OWNERS) for tag in tags},
        "grants": [{"src": [owner], "dst": [node_tag(hostname)], "ip": ["tcp:445"]} for hostname, owner, _ in shares],
    }
