"""Reading one bundle: every plist in XML and binary form, both backing stores, and every way a plist breaks."""

from __future__ import annotations

import plistlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.health.bundles import ALICE_LAST, DAY, HOUR, T0, Bundle, date, history, make_bundle, write_plist
from timemachine.health.bundle import BundleHealth, machine_name, read_bundle
from timemachine.health.plists import read_plist

HISTORY = "com.apple.TimeMachine.SnapshotHistory.plist"
MACHINE_ID = "com.apple.TimeMachine.MachineID.plist"


def read(storage: Path, share: str, bundle: str) -> BundleHealth:
    return read_bundle(share, str(storage / share / bundle))


def test_a_v1_bundle_with_several_completions(storage: Path) -> None:
    b = read(storage, "alice", "Alice’s MacBook Pro.sparsebundle")
    assert b.machine == "Alice’s MacBook Pro" and b.share == "alice"
    assert (b.snapshots, b.last_completed) == (3, ALICE_LAST), "the newest date, not the last entry"
    assert b.last_snapshot_name == f"{date(ALICE_LAST):%Y-%m-%d-%H%M%S}.backup"
    assert (b.verification_state, b.verification_failed, b.verification_date) == (0, False, T0 + DAY)
    assert (b.recovery_declined, b.recovery_declined_date) == (False, None)
    assert (b.host_uuid, b.model_id) == ("3F2504E0-4F89-11D3-9A0C-0305E82C3301", "MacBookPro18,3")
    assert (b.backingstore_version, b.band_size, b.band_dirs) == (1, 8 * 1024 * 1024, ("bands",))
    assert (b.bands, b.band_bytes) == (3, 4096 + 8192 + 4096)
    assert b.last_activity == ALICE_LAST - 60
    assert b.created == T0
    assert b.problems == ()
    assert b.allocated_bytes >= b.band_bytes and b.apparent_bytes > b.band_bytes
    assert not b.writing_without_completion(HOUR)


def test_a_v2_bundle_with_binary_plists_keeps_its_bands_in_mapped(storage: Path) -> None:
    b = read(storage, "alice", "Alice iMac.sparsebundle")
    assert (b.backingstore_version, b.band_size, b.band_dirs) == (2, 64 * 1024 * 1024, ("mapped",))
    assert (b.bands, b.band_bytes, b.last_activity) == (1, 16384, T0 + 3 * DAY - 120)
    assert (b.snapshots, b.last_completed, b.model_id) == (1, T0 + 3 * DAY, "iMac21,1")
    assert b.problems == ()


def test_a_v2_bundle_with_both_band_directories_counts_both(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m", version=2, bands={"0": (4096, T0)}))
    (path / "bands").mkdir()
    (path / "bands" / "1").write_bytes(b"b" * 1000)
    b = read_bundle("s", str(path))
    assert (b.band_dirs, b.bands, b.band_bytes) == (("bands", "mapped"), 2, 5096)


def test_nested_band_directories_are_walked(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m", version=2))
    (path / "mapped" / "00").mkdir()
    (path / "mapped" / "00" / "1").write_bytes(b"b" * 100)
    assert read_bundle("s", str(path)).bands == 1


def test_failed_verification(storage: Path) -> None:
    b = read(storage, "bob", "Bob Mini.sparsebundle")
    assert (b.verification_state, b.verification_failed) == (2, True)


def test_declined_recovery(storage: Path) -> None:
    b = read(storage, "bob", "Bob Air.sparsebundle")
    assert (b.recovery_declined, b.recovery_declined_date) == (True, T0 + 2 * DAY)
    assert (b.bands, b.last_activity) == (0, None)


def test_a_backupbundle_with_no_history_yet(storage: Path) -> None:
    b = read(storage, "bob", "new-mac.backupbundle")
    assert (b.machine, b.snapshots, b.last_completed, b.never_completed) == ("new-mac", 0, None, True)
    assert b.writing_without_completion(DAY), "bands and no completion ever"
    assert b.problems == ()


def test_damaged_plists_are_problems_not_errors(storage: Path) -> None:
    b = read(storage, "carol", "Carol Laptop.sparsebundle")
    assert (b.snapshots, b.last_completed, b.verification_state) == (0, None, None)
    assert b.problems == (
        f"{HISTORY}: damaged (ExpatError)",
        f"{MACHINE_ID}: damaged (InvalidFileException)",
    )
    assert b.bands == 1, "the rest of the bundle is still read"


def test_missing_plists_and_token_are_problems(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m", completions=None, verification_state=None, created=None))
    (path / "Info.plist").unlink()
    b = read_bundle("s", str(path))
    assert b.problems == (f"{HISTORY}: missing", f"{MACHINE_ID}: missing", "Info.plist: missing", "token: missing")
    assert (b.created, b.backingstore_version, b.band_size) == (None, None, None)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"Snapshots": "nope"}, f"{HISTORY}: damaged (Snapshots is str, not an array)"),
        ({"Snapshots": [{"com.apple.backupd.SnapshotName": "x"}]}, f"{HISTORY}: snapshot 0 has no completion date"),
        ({"Snapshots": ["x"]}, f"{HISTORY}: snapshot 0 has no completion date"),
        (
            {"Snapshots": [{"com.apple.backupd.SnapshotCompletionDate": "2026-01-01"}]},
            f"{HISTORY}: snapshot 0 has no completion date",
        ),
    ],
)
def test_malformed_history_entries(tmp_path: Path, content: dict[str, object], problem: str) -> None:
    path = make_bundle(tmp_path, Bundle("m"))
    write_plist(path / HISTORY, content)
    b = read_bundle("s", str(path))
    assert (b.snapshots, b.last_completed, b.problems) == (0, None, (problem,))


def test_a_history_without_the_snapshots_key_is_empty(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m"))
    write_plist(path / HISTORY, {})
    assert (read_bundle("s", str(path)).snapshots, read_bundle("s", str(path)).problems) == (0, ())


def test_a_plist_that_is_not_a_dictionary(tmp_path: Path) -> None:
    (tmp_path / "x.plist").write_bytes(plistlib.dumps([1, 2]))
    assert read_plist(str(tmp_path / "x.plist")).problem == "x.plist: damaged (top level is list, not a dictionary)"


def test_unknown_backing_store_version_and_bad_band_size(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m", version=3))
    write_plist(path / "Info.plist", {"bundle-backingstore-version": 3, "band-size": True})
    assert read_bundle("s", str(path)).problems == (
        "Info.plist: unknown bundle-backingstore-version 3",
        "Info.plist: no valid band-size",
    )


def test_writing_without_completion_is_bands_newer_than_the_last_completion_by_the_threshold(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m", completions=[T0], bands={"0": (100, T0 + 5 * HOUR)}))
    b = read_bundle("s", str(path))
    assert b.writing_without_completion(4 * HOUR)
    assert not b.writing_without_completion(5 * HOUR), "not before the threshold is passed"


def test_a_symlinked_plist_is_not_followed(tmp_path: Path) -> None:
    path = make_bundle(tmp_path, Bundle("m", completions=[T0]))
    outside = tmp_path / "elsewhere.plist"
    write_plist(outside, history([T0 + DAY]))
    (path / HISTORY).unlink()
    (path / HISTORY).symlink_to(outside)
    b = read_bundle("s", str(path))
    assert b.last_completed is None and b.problems[0].startswith(f"{HISTORY}: unreadable")


@pytest.mark.parametrize(
    ("name", "machine"),
    [("A.sparsebundle", "A"), ("A B.backupbundle", "A B"), (".sparsebundle", None), ("A.dmg", None), ("A", None)],
)
def test_machine_names(name: str, machine: str | None) -> None:
    assert machine_name(name) == machine


DATES = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False).map(lambda t: float(int(t)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(dates=st.lists(DATES, min_size=1, max_size=12), fmt=st.sampled_from(["xml", "binary"]), data=st.data())
def test_the_last_completion_is_the_newest_date_in_any_order(
    tmp_path_factory: pytest.TempPathFactory, dates: list[float], fmt: str, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(dates))
    path = make_bundle(tmp_path_factory.mktemp("b"), Bundle("m", fmt=fmt, completions=list(order)))
    b = read_bundle("s", str(path))
    assert (b.snapshots, b.last_completed, b.problems) == (len(dates), max(dates), ())


def _valid_plists() -> list[bytes]:
    values = [history([T0, T0 + DAY]), {"VerificationState": 2, "RecoveryBackupDeclinedDate": date(T0)}]
    return [plistlib.dumps(v, fmt=f) for v in values for f in (plistlib.FMT_XML, plistlib.FMT_BINARY)]


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    """A real plist cut short, with bytes flipped, or replaced by anything at all."""
    how = draw(st.sampled_from(["truncate", "flip", "random"]))
    if how == "random":
        return draw(st.binary(max_size=300))
    original = draw(st.sampled_from(_valid_plists()))
    if how == "truncate":
        return original[: draw(st.integers(0, len(original) - 1))]
    mutated = bytearray(original)
    for index in draw(st.lists(st.integers(0, len(original) - 1), min_size=1, max_size=8)):
        mutated[index] = draw(st.integers(0, 255))
    return bytes(mutated)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history_bytes=damaged(), machine_id_bytes=damaged(), info_bytes=damaged())
def test_a_damaged_plist_never_raises(
    tmp_path_factory: pytest.TempPathFactory, history_bytes: bytes, machine_id_bytes: bytes, info_bytes: bytes
) -> None:
    path = make_bundle(tmp_path_factory.mktemp("b"), Bundle("m", completions=[T0], bands={"0": (10, T0)}))
    (path / HISTORY).write_bytes(history_bytes)
    (path / MACHINE_ID).write_bytes(machine_id_bytes)
    (path / "Info.plist").write_bytes(info_bytes)
    b = read_bundle("s", str(path))
    assert b.bands == 1 and b.created == T0
    assert b.snapshots >= 0 and all(isinstance(p, str) for p in b.problems)
    assert b.last_completed is None or isinstance(b.last_completed, float)
    assert b.verification_state is None or isinstance(b.verification_state, int)
