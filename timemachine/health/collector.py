"""One snapshot of every share under a storage root: its bundles, its usage against its quota, and the disk."""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from timemachine.health.bundle import BundleHealth, display_name, machine_name, read_bundle
from timemachine.health.tree import Usage, entry_usage, tree_usage

DEFAULT_STALE_AFTER_SECONDS = 3 * 24 * 3600.0
# How long bands may keep changing after the last completed backup before it looks like backups start
# and never finish (a first backup of a large disk over Wi-Fi can take most of a day).
DEFAULT_INCOMPLETE_AFTER_SECONDS = 24 * 3600.0


@dataclass(frozen=True)
class ShareSpec:
    """What the caller knows about a share: its quota (None = unlimited) and when its backups count as stale."""

    name: str
    quota_bytes: int | None = None
    stale_after_seconds: float = DEFAULT_STALE_AFTER_SECONDS


@dataclass(frozen=True)
class ShareHealth:
    name: str
    quota_bytes: int | None
    stale_after_seconds: float
    present: bool
    used_bytes: int
    apparent_bytes: int
    bundles: tuple[BundleHealth, ...]
    # From the caller (the collector never asks Docker or the tailnet): None = not known.
    up: bool | None
    node_registered: bool | None
    problems: tuple[str, ...]
    # Why the share is down, when the caller knows (the SMB probe's step and status).
    down_reason: str | None = None

    @property
    def quota_used_ratio(self) -> float | None:
        return self.used_bytes / self.quota_bytes if self.quota_bytes else None


@dataclass(frozen=True)
class StorageHealth:
    root: str
    size_bytes: int | None
    free_bytes: int | None
    problems: tuple[str, ...]

    @property
    def used_ratio(self) -> float | None:
        if not self.size_bytes or self.free_bytes is None:
            return None
        return 1 - self.free_bytes / self.size_bytes


@dataclass(frozen=True)
class HealthSnapshot:
    now: float
    incomplete_after_seconds: float
    storage: StorageHealth
    shares: tuple[ShareHealth, ...]

    @property
    def bundles(self) -> tuple[BundleHealth, ...]:
        return tuple(b for share in self.shares for b in share.bundles)


def _unique_machines(bundles: list[BundleHealth]) -> list[BundleHealth]:
    """Name each bundle by its directory where two (x.sparsebundle, x.backupbundle) would share a machine name."""
    counts: dict[str, int] = {}
    for b in bundles:
        counts[b.machine] = counts.get(b.machine, 0) + 1
    unique = []
    for b in bundles:
        if counts[b.machine] > 1:
            problem = f"another bundle is also named {b.machine!r}: reported under its directory name"
            b = dataclasses.replace(b, machine=b.bundle, problems=(*b.problems, problem))
        unique.append(b)
    return sorted(unique, key=lambda b: b.machine)


def read_share(
    root: str,
    spec: ShareSpec,
    *,
    up: bool | None = None,
    node_registered: bool | None = None,
    down_reason: str | None = None,
) -> ShareHealth:
    """Read <root>/<share>: each bundle in it, and the bytes everything in it uses (hard links once)."""
    path = os.path.join(root, spec.name)
    problems: list[str] = []
    bundles: list[BundleHealth] = []
    usage = Usage()
    seen: set[tuple[int, int]] = set()
    present = False
    try:
        with os.scandir(path) as entries:
            listed = sorted(entries, key=lambda e: e.name)
        present = True
    except FileNotFoundError:
        problems.append("share directory missing")
        listed = []
    except NotADirectoryError:
        problems.append("share path is not a directory")
        listed = []
    except OSError as error:
        problems.append(f"cannot list the share directory ({error.strerror or error})")
        listed = []
    for entry in listed:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as error:
            problems.append(f"cannot stat {display_name(entry.name)} ({error.strerror or error})")
            continue
        usage = usage + entry_usage(st, seen)
        if not stat.S_ISDIR(st.st_mode):
            continue
        if machine_name(entry.name) is not None:
            bundle = read_bundle(spec.name, entry.path, seen)
            bundles.append(bundle)
            usage = usage + Usage(0, bundle.allocated_bytes, bundle.apparent_bytes)
        else:
            usage = usage + tree_usage(entry.path, seen, problems, f"{display_name(entry.name)}/")
    return ShareHealth(
        name=spec.name,
        quota_bytes=spec.quota_bytes,
        stale_after_seconds=spec.stale_after_seconds,
        present=present,
        used_bytes=usage.allocated_bytes,
        apparent_bytes=usage.apparent_bytes,
        bundles=tuple(_unique_machines(bundles)),
        up=up,
        node_registered=node_registered,
        problems=tuple(problems),
        down_reason=down_reason if up is False else None,
    )


def read_storage(root: str, statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> StorageHealth:
    """Size and free space of the filesystem holding the storage root; free is what non-root writers may use."""
    try:
        vfs = statvfs(root)
    except OSError as error:
        return StorageHealth(root, None, None, (f"cannot stat the storage root ({error.strerror or error})",))
    # f_bavail, not f_bfree: the blocks reserved for root are not there for smbd to write backups into.
    return StorageHealth(root, vfs.f_blocks * vfs.f_frsize, vfs.f_bavail * vfs.f_frsize, ())


def discover_shares(root: str) -> list[ShareSpec]:
    """A spec with the defaults for each directory directly under the root, when the caller names none."""
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []
    # Share names are DNS labels; a directory whose name is not even text is not a share.
    return [ShareSpec(name) for name in sorted(names) if display_name(name) == name]


def collect(
    root: str,
    shares: Sequence[ShareSpec],
    now: float,
    *,
    up: Mapping[str, bool] | None = None,
    node_registered: Mapping[str, bool] | None = None,
    incomplete_after_seconds: float = DEFAULT_INCOMPLETE_AFTER_SECONDS,
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
    down_reasons: Mapping[str, str] | None = None,
) -> HealthSnapshot:
    """Read every share and the storage root as of now (which the caller passes, so runs are reproducible)."""
    up = up or {}
    node_registered = node_registered or {}
    down_reasons = down_reasons or {}
    read = [
        read_share(
            root,
            spec,
            up=up.get(spec.name),
            node_registered=node_registered.get(spec.name),
            down_reason=down_reasons.get(spec.name),
        )
        for spec in sorted(shares, key=lambda s: s.name)
    ]
    return HealthSnapshot(
        now=now,
        incomplete_after_seconds=incomplete_after_seconds,
        storage=read_storage(root, statvfs),
        shares=tuple(read),
    )
