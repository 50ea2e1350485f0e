"""What one Mac's Time Machine bundle says about its backups, read without writing anything into it."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from timemachine.health.plists import read_plist, timestamp
from timemachine.health.tree import Usage, entry_usage, tree_usage

BUNDLE_SUFFIXES = (".sparsebundle", ".backupbundle")
SNAPSHOT_HISTORY = "com.apple.TimeMachine.SnapshotHistory.plist"
MACHINE_ID = "com.apple.TimeMachine.MachineID.plist"
INFO = "Info.plist"
TOKEN = "token"
VERIFICATION_FAILED = 2
# Version 1 keeps its (8 MiB) bands in bands/. Version 2 adds mapped/ and uses larger bands; reports
# differ on whether mapped/ holds band data or only a map of it, and on whether bands/ remains, so
# for any version both directories are read as band storage and each that exists is named.
BAND_DIRS = ("bands", "mapped")
KNOWN_BACKINGSTORE_VERSIONS = (1, 2)


@dataclass(frozen=True)
class BundleHealth:
    """One bundle's state; timestamps are seconds since the epoch, None where the bundle does not say."""

    share: str
    machine: str
    bundle: str
    snapshots: int
    last_completed: float | None
    last_snapshot_name: str | None
    verification_state: int | None
    verification_date: float | None
    recovery_declined_date: float | None
    host_uuid: str | None
    model_id: str | None
    backingstore_version: int | None
    band_size: int | None
    band_dirs: tuple[str, ...]
    bands: int
    band_bytes: int
    allocated_bytes: int
    apparent_bytes: int
    last_activity: float | None
    created: float | None
    problems: tuple[str, ...]

    @property
    def verification_failed(self) -> bool:
        return self.verification_state == VERIFICATION_FAILED

    @property
    def recovery_declined(self) -> bool:
        return self.recovery_declined_date is not None

    @property
    def never_completed(self) -> bool:
        return self.last_completed is None

    def writing_without_completion(self, threshold_seconds: float) -> bool:
        """Bands written more than threshold after the last completed backup, or bands and no completion ever."""
        if self.bands == 0 or self.last_activity is None:
            return False
        if self.last_completed is None:
            return True
        return self.last_activity - self.last_completed > threshold_seconds


def display_name(name: str) -> str:
    """A file name as text that can be encoded: undecodable bytes become U+FFFD instead of lone surrogates."""
    return os.fsencode(name).decode("utf-8", "replace")


def machine_name(bundle: str) -> str | None:
    """The Mac's name a bundle directory is named after, or None for anything that is not a bundle's name."""
    for suffix in BUNDLE_SUFFIXES:
        if bundle.endswith(suffix) and len(bundle) > len(suffix):
            return display_name(bundle[: -len(suffix)])
    return None


def _int(value: object) -> int | None:
    # plistlib gives bool for <true/>; a bool is no state or size.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _history(path: str, problems: list[str]) -> tuple[int, float | None, str | None]:
    """Number of snapshots, the latest completion date and that snapshot's name."""
    read = read_plist(os.path.join(path, SNAPSHOT_HISTORY))
    if read.value is None:
        problems.append(str(read.problem))
        return 0, None, None
    snapshots = read.value.get("Snapshots")
    if snapshots is None:
        # No key at all is what an empty history looks like in some versions: nothing completed yet.
        return 0, None, None
    if not isinstance(snapshots, list):
        problems.append(f"{SNAPSHOT_HISTORY}: damaged (Snapshots is {type(snapshots).__name__}, not an array)")
        return 0, None, None
    count, latest, latest_name = 0, None, None
    for index, snapshot in enumerate(snapshots):
        completed = (
            timestamp(snapshot.get("com.apple.backupd.SnapshotCompletionDate")) if isinstance(snapshot, dict) else None
        )
        if completed is None:
            problems.append(f"{SNAPSHOT_HISTORY}: snapshot {index} has no completion date")
            continue
        count += 1
        name = _str(snapshot.get("com.apple.backupd.SnapshotName"))
        # Ties keep the later entry, the one Time Machine appended last.
        if latest is None or completed >= latest:
            latest, latest_name = completed, name
    return count, latest, latest_name


def _band_storage(path: str, seen: set[tuple[int, int]], problems: list[str]) -> tuple[tuple[str, ...], Usage]:
    found: list[str] = []
    usage = Usage()
    for name in BAND_DIRS:
        directory = os.path.join(path, name)
        try:
            st = os.lstat(directory)
        except FileNotFoundError:
            continue
        except OSError as error:
            problems.append(f"{name}/: cannot stat ({error.strerror or error})")
            continue
        if not stat.S_ISDIR(st.st_mode):
            problems.append(f"{name}/: not a directory")
            continue
        found.append(name)
        # The directory's own blocks count towards the bundle's size, not its bands.
        usage = (
            usage + Usage(0, entry_usage(st, seen).allocated_bytes) + tree_usage(directory, seen, problems, f"{name}/")
        )
    return tuple(found), usage


def read_bundle(share: str, path: str, seen: set[tuple[int, int]] | None = None) -> BundleHealth:
    """Read one bundle directory; what is missing or damaged lands in problems, nothing raises for it."""
    seen = set() if seen is None else seen
    problems: list[str] = []
    bundle = os.path.basename(path)

    snapshots, last_completed, last_name = _history(path, problems)

    machine_id = read_plist(os.path.join(path, MACHINE_ID))
    ids = machine_id.value or {}
    if machine_id.problem:
        problems.append(machine_id.problem)

    info = read_plist(os.path.join(path, INFO))
    settings = info.value or {}
    if info.problem:
        problems.append(info.problem)
    version = _int(settings.get("bundle-backingstore-version"))
    if info.value is not None and version not in KNOWN_BACKINGSTORE_VERSIONS:
        problems.append(f"{INFO}: unknown bundle-backingstore-version {settings.get('bundle-backingstore-version')!r}")
    band_size = _int(settings.get("band-size"))
    if info.value is not None and (band_size is None or band_size <= 0):
        problems.append(f"{INFO}: no valid band-size")
        band_size = None

    band_dirs, bands = _band_storage(path, seen, problems)

    # Everything else in the bundle (plists, token, lock, Info.bckup): counted in its size, not its bands.
    rest = Usage()
    created: float | None = None
    try:
        with os.scandir(path) as entries:
            others = sorted((e for e in entries if e.name not in band_dirs), key=lambda e: e.name)
    except OSError as error:
        problems.append(f"cannot list the bundle ({error.strerror or error})")
        others = []
    for entry in others:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        rest = rest + entry_usage(st, seen)
        if stat.S_ISDIR(st.st_mode):
            rest = rest + tree_usage(entry.path, seen, problems, f"{entry.name}/")
        if entry.name == TOKEN:
            # The token is written once, when the bundle is made: its mtime is the bundle's birth.
            created = st.st_mtime
    if created is None:
        problems.append(f"{TOKEN}: missing")

    total = bands + rest
    return BundleHealth(
        share=share,
        machine=machine_name(bundle) or display_name(bundle),
        bundle=display_name(bundle),
        snapshots=snapshots,
        last_completed=last_completed,
        last_snapshot_name=last_name,
        verification_state=_int(ids.get("VerificationState")),
        verification_date=timestamp(ids.get("VerificationDate")),
        recovery_declined_date=timestamp(ids.get("RecoveryBackupDeclinedDate")),
        host_uuid=_str(ids.get("com.apple.backupd.HostUUID")),
        model_id=_str(ids.get("ModelID")),
        backingstore_version=version,
        band_size=band_size,
        band_dirs=band_dirs,
        bands=bands.files,
        band_bytes=bands.apparent_bytes,
        allocated_bytes=total.allocated_bytes,
        apparent_bytes=total.apparent_bytes,
        last_activity=bands.newest_mtime,
        created=created,
        problems=tuple(problems),
    )
