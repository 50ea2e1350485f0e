"""Builders of Time Machine bundle trees for the health tests, in the key layout real Macs write (plistlib)."""

from __future__ import annotations

import datetime
import os
import plistlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# 2026-11-01T00:00:00Z: far from the epoch, so an absent date cannot pass for a real one.
T0 = 1_793_491_200.0
HOUR = 3600.0
DAY = 86400.0


def date(ts: float) -> datetime.datetime:
    """A plist date: plistlib writes naive datetimes as UTC."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).replace(tzinfo=None)


def write_plist(path: Path, value: dict[str, Any], fmt: str = "xml") -> None:
    path.write_bytes(plistlib.dumps(value, fmt=plistlib.FMT_BINARY if fmt == "binary" else plistlib.FMT_XML))


def history(completions: list[float]) -> dict[str, Any]:
    return {
        "Snapshots": [
            {
                "com.apple.backupd.SnapshotCompletionDate": date(ts),
                "com.apple.backupd.SnapshotName": f"{date(ts):%Y-%m-%d-%H%M%S}.backup",
            }
            for ts in completions
        ]
    }


@dataclass
class Bundle:
    """A bundle to lay out; None for a plist means that file is not written at all."""

    machine: str
    suffix: str = ".sparsebundle"
    fmt: str = "xml"
    version: int | None = 1
    band_size: int = 8 * 1024 * 1024
    completions: list[float] | None = field(default_factory=list)
    verification_state: int | None = 0
    verification_date: float | None = None
    declined: float | None = None
    host_uuid: str = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    model_id: str = "MacBookPro18,3"
    # Band name -> (size in bytes, mtime).
    bands: dict[str, tuple[int, float]] = field(default_factory=dict)
    created: float | None = T0
    band_dir: str | None = None  # default: bands/ for version 1, mapped/ for 2


def machine_id(b: Bundle) -> dict[str, Any]:
    value: dict[str, Any] = {"com.apple.backupd.HostUUID": b.host_uuid, "ModelID": b.model_id}
    if b.verification_state is not None:
        value["VerificationState"] = b.verification_state
    if b.verification_date is not None:
        value["VerificationDate"] = date(b.verification_date)
    if b.declined is not None:
        value["RecoveryBackupDeclinedDate"] = date(b.declined)
    return value


def write_band(path: Path, name: str, size: int, mtime: float) -> None:
    path.mkdir(exist_ok=True)
    band = path / name
    # Real bytes, not a hole: allocated size is part of what is measured.
    band.write_bytes(bytes([len(name) % 251 + 1]) * size)
    os.utime(band, (mtime, mtime))


def make_bundle(share_dir: Path, b: Bundle) -> Path:
    path = share_dir / f"{b.machine}{b.suffix}"
    path.mkdir(parents=True)
    info: dict[str, Any] = {
        "CFBundleInfoDictionaryVersion": "6.0",
        "band-size": b.band_size,
        "diskimage-bundle-type": "com.apple.diskimage.sparsebundle",
        "size": 1024**4,
    }
    if b.version is not None:
        info["bundle-backingstore-version"] = b.version
    # Info.plist is always XML on real bundles; the Time Machine plists come in either format.
    write_plist(path / "Info.plist", info)
    write_plist(path / "Info.bckup", info)
    if b.completions is not None:
        write_plist(path / "com.apple.TimeMachine.SnapshotHistory.plist", history(b.completions), b.fmt)
    if b.verification_state is not None or b.declined is not None:
        write_plist(path / "com.apple.TimeMachine.MachineID.plist", machine_id(b), b.fmt)
    band_dir = path / (b.band_dir or ("mapped" if b.version == 2 else "bands"))
    band_dir.mkdir()
    for name, (size, mtime) in sorted(b.bands.items()):
        write_band(band_dir, name, size, mtime)
    if b.created is not None:
        (path / "token").write_bytes(b"")
        os.utime(path / "token", (b.created, b.created))
    return path


def add_completion(bundle: Path, ts: float, fmt: str = "xml") -> None:
    """What a Mac does when a backup completes: append to SnapshotHistory.plist."""
    plist = bundle / "com.apple.TimeMachine.SnapshotHistory.plist"
    current = plistlib.loads(plist.read_bytes()) if plist.exists() else {"Snapshots": []}
    current["Snapshots"] += history([ts])["Snapshots"]
    write_plist(plist, current, fmt)


@dataclass(frozen=True)
class Entry:
    mode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int


def tree_state(root: Path) -> dict[str, Entry]:
    """Every path under root with what a write would change (atime excluded: reading may touch it)."""
    state = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = os.path.join(directory, name) if name else directory
            st = os.lstat(path)
            state[os.path.relpath(path, root)] = Entry(
                st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
            )
    return state


# The newest completion of Alice's MacBook, deliberately not the last entry of its history.
ALICE_LAST = T0 + 2 * DAY


def build_storage(root: Path) -> Path:
    """One share per case: alice (v1 XML and v2 binary), bob (failed, declined, no history yet), carol
    (damaged plists), dave (empty), erin (a bundle among files and directories that are not bundles)."""
    alice, bob, carol, dave, erin = (root / name for name in ("alice", "bob", "carol", "dave", "erin"))
    # alice: a v1 bundle with XML plists and several completions, a v2 bundle with binary plists.
    make_bundle(
        alice,
        Bundle(
            "Alice’s MacBook Pro",
            completions=[T0 + HOUR, ALICE_LAST, T0 + DAY],
            verification_date=T0 + DAY,
            bands={"0": (4096, T0 + HOUR), "1": (8192, ALICE_LAST - 60), "2": (4096, T0 + DAY)},
        ),
    )
    make_bundle(
        alice,
        Bundle(
            "Alice iMac",
            fmt="binary",
            version=2,
            band_size=64 * 1024 * 1024,
            completions=[T0 + 3 * DAY],
            bands={"0": (16384, T0 + 3 * DAY - 120)},
            model_id="iMac21,1",
        ),
    )
    # bob: failed verification; declined recovery; a new backupbundle with bands and no history yet.
    make_bundle(bob, Bundle("Bob Mini", verification_state=2, completions=[T0 + DAY], bands={"0": (4096, T0 + DAY)}))
    make_bundle(bob, Bundle("Bob Air", declined=T0 + 2 * DAY, completions=[T0 + DAY]))
    make_bundle(bob, Bundle("new-mac", suffix=".backupbundle", completions=[], bands={"0": (4096, T0 + 5 * HOUR)}))
    # carol: a damaged history and a truncated binary MachineID.
    damaged = make_bundle(carol, Bundle("Carol Laptop", completions=[T0], bands={"0": (4096, T0)}))
    (damaged / "com.apple.TimeMachine.SnapshotHistory.plist").write_bytes(b"<?xml version='1.0'?><plist><dict><key>")
    write_plist(damaged / "com.apple.TimeMachine.MachineID.plist", {"VerificationState": 0}, "binary")
    machine_id = damaged / "com.apple.TimeMachine.MachineID.plist"
    machine_id.write_bytes(machine_id.read_bytes()[:-7])
    # dave: an empty share. erin: a bundle among things that are not bundles.
    dave.mkdir(parents=True)
    make_bundle(erin, Bundle("Erin Mac", completions=[T0 + DAY]))
    (erin / "notes.txt").write_bytes(b"x" * 5000)
    (erin / ".DS_Store").write_bytes(b"\0" * 100)
    (erin / "stuff").mkdir()
    (erin / "stuff" / "photo.jpg").write_bytes(b"y" * 3000)
    (erin / "looks-like.sparsebundle.txt").write_bytes(b"z")
    return root
