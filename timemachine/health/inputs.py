"""What the caller tells the collector about shares (quotas, stale-after times, up and registered, and where
to probe them), parsed once."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from timemachine.health.collector import DEFAULT_STALE_AFTER_SECONDS, ShareSpec
from timemachine.health.probes import SmbTarget
from timemachine.planning.durations import parse_duration

# The stack's own quota syntax (500G, 1T, or bytes): binary units, as smb.conf and the config take them.
SIZE = re.compile(r"^\s*([0-9]+)\s*([KMGT])?B?\s*$", re.IGNORECASE)
SIZE_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int | None:
    """Bytes from '500G', '1T' or '1048576'; None for '', 'unlimited' or 'none'."""
    if text.strip().lower() in ("", "unlimited", "none"):
        return None
    match = SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (a whole number with K, M, G or T, e.g. 500G)")
    number, unit = match.groups()
    value = int(number) * (SIZE_UNITS[unit.upper()] if unit else 1)
    if value <= 0:
        raise ValueError("a quota must be greater than zero (leave it empty for an unlimited share)")
    return value


def parse_share(text: str) -> ShareSpec:
    """A --share argument: name, name=QUOTA or name=QUOTA:STALE_AFTER (QUOTA empty = unlimited)."""
    name, _, rest = text.partition("=")
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"{text!r}: expected name=QUOTA[:STALE_AFTER], e.g. alice=500G:3d")
    quota, _, stale = rest.partition(":")
    return ShareSpec(name, parse_size(quota), parse_duration(stale) if stale else DEFAULT_STALE_AFTER_SECONDS)


def _size_or_bytes(value: object) -> object:
    return parse_size(value) if isinstance(value, str) else value


def _duration_or_seconds(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ShareEntry(_Model):
    name: str = Field(min_length=1, pattern=r"^[^/]+$")
    quota: Annotated[int | None, BeforeValidator(_size_or_bytes), Field(gt=0)] = None
    stale_after_seconds: Annotated[float, BeforeValidator(_duration_or_seconds), Field(gt=0)] = (
        DEFAULT_STALE_AFTER_SECONDS
    )
    up: bool | None = None
    node_registered: bool | None = None
    # Probed instead of given: the share's smbd (its address; the credentials file for a password
    # share) and its tailnet node (its hostname, looked up in caddyStateDir).
    address: str | None = Field(default=None, min_length=1)
    credentials_file: str | None = Field(default=None, min_length=1)
    node: str | None = Field(default=None, min_length=1, pattern=r"^[^/]+$")
    # Where this share's node state is, when not in the file's caddyStateDir (another Caddy shard's volume).
    caddy_state_dir: str | None = Field(default=None, min_length=1)


class SharesFile(_Model):
    shares: list[ShareEntry]
    incomplete_after_seconds: Annotated[float | None, BeforeValidator(_duration_or_seconds), Field(gt=0)] = None
    # Where Caddy keeps each tsnet node's state (<dir>/<node>/tailscaled.state), read-only.
    caddy_state_dir: str | None = Field(default=None, min_length=1)


@dataclass(frozen=True)
class ShareInputs:
    """Everything collect() takes besides the root and now."""

    specs: tuple[ShareSpec, ...] = ()
    up: dict[str, bool] = field(default_factory=dict)
    node_registered: dict[str, bool] = field(default_factory=dict)
    incomplete_after_seconds: float | None = None
    # Why a share is down, where a probe said so.
    down_reasons: dict[str, str] = field(default_factory=dict)
    # What to probe at each collection: each share's smbd, and its node in Caddy's state (share → node).
    smb_targets: tuple[SmbTarget, ...] = ()
    nodes: dict[str, str] = field(default_factory=dict)
    caddy_state_dir: str | None = None
    # share → its node's state directory, for the shares whose node is not in caddy_state_dir.
    node_state_dirs: dict[str, str] = field(default_factory=dict)


def load_shares_file(path: str) -> ShareInputs:
    """Read a shares JSON file ({"shares": [{"name", "quota", "staleAfterSeconds", "up", "nodeRegistered"}]})."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return parse_shares_json(text, path)


def parse_shares_json(text: str, origin: str = "--shares-json") -> ShareInputs:
    """The shares file's content (as the stack passes it to the status container, on its command line)."""
    try:
        parsed = SharesFile.model_validate(json.loads(text))
    except (ValidationError, ValueError) as error:
        raise ValueError(f"{origin}: {error}") from error
    names = [s.name for s in parsed.shares]
    if len(set(names)) != len(names):
        raise ValueError(f"{origin}: a share is listed twice")
    if parsed.caddy_state_dir is None and any(s.node for s in parsed.shares):
        raise ValueError(f"{origin}: a share names its node, but caddyStateDir (where its state is) is not given")
    return ShareInputs(
        specs=tuple(ShareSpec(s.name, s.quota, s.stale_after_seconds) for s in parsed.shares),
        up={s.name: s.up for s in parsed.shares if s.up is not None},
        node_registered={s.name: s.node_registered for s in parsed.shares if s.node_registered is not None},
        incomplete_after_seconds=parsed.incomplete_after_seconds,
        smb_targets=tuple(SmbTarget(s.name, s.address, s.credentials_file) for s in parsed.shares if s.address),
        nodes={s.name: s.node for s in parsed.shares if s.node},
        caddy_state_dir=parsed.caddy_state_dir,
        node_state_dirs={s.name: s.caddy_state_dir for s in parsed.shares if s.node and s.caddy_state_dir},
    )
