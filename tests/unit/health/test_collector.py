"""Reading shares and the storage root: usage against the quota, what is and is not a bundle, determinism."""

from __future__ import annotations

import os
from pathlib import Path

from tests.unit.health.bundles import DAY, T0, Bundle, make_bundle
from timemachine.health.collector import ShareSpec, collect, discover_shares, read_share, read_storage


def allocated_and_apparent(path: Path) -> tuple[int, int]:
    """Independently of the collector: du's view (blocks) and ls's view (sizes) of everything below path."""
    allocated = apparent = 0
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(directory, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size if name in files else 0
    return allocated, apparent


def test_share_usage_counts_everything_in_the_share(storage: Path) -> None:
    for name in ("alice", "bob", "carol", "erin"):
        share = read_share(str(storage), ShareSpec(name, 10**9))
        assert (share.used_bytes, share.apparent_bytes) == allocated_and_apparent(storage / name)
        assert share.quota_used_ratio == share.used_bytes / 10**9


def test_an_empty_share(storage: Path) -> None:
    share = read_share(str(storage), ShareSpec("dave"))
    assert (share.present, share.bundles, share.used_bytes, share.problems) == (True, (), 0, ())
    assert share.quota_bytes is None and share.quota_used_ratio is None


def test_things_that_are_not_bundles_are_counted_but_not_reported(storage: Path) -> None:
    share = read_share(str(storage), ShareSpec("erin"))
    assert [b.machine for b in share.bundles] == ["Erin Mac"]
    assert share.used_bytes > share.bundles[0].allocated_bytes
    assert share.apparent_bytes == share.bundles[0].apparent_bytes + 5000 + 100 + 3000 + 1


def test_bundles_are_sorted_by_machine(storage: Path) -> None:
    assert [b.machine for b in read_share(str(storage), ShareSpec("bob")).bundles] == ["Bob Air", "Bob Mini", "new-mac"]


def test_a_missing_share_directory(storage: Path) -> None:
    share = read_share(str(storage), ShareSpec("frank"))
    assert (share.present, share.bundles, share.problems) == (False, (), ("share directory missing",))


def test_hard_links_count_once(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a").write_bytes(b"a" * 10000)
    os.link(tmp_path / "s" / "a", tmp_path / "s" / "b")
    assert read_share(str(tmp_path), ShareSpec("s")).apparent_bytes == 10000


def test_two_bundles_of_one_machine_name_get_their_directory_names(tmp_path: Path) -> None:
    make_bundle(tmp_path / "s", Bundle("Mac"))
    make_bundle(tmp_path / "s", Bundle("Mac", suffix=".backupbundle"))
    machines = [(b.machine, b.problems[-1]) for b in read_share(str(tmp_path), ShareSpec("s")).bundles]
    assert [m for m, _ in machines] == ["Mac.backupbundle", "Mac.sparsebundle"]
    assert all("also named 'Mac'" in problem for _, problem in machines)


def test_undecodable_bundle_names_become_text(tmp_path: Path) -> None:
    share = tmp_path / "s"
    share.mkdir()
    os.mkdir(os.fsencode(share) + b"/Mac\xff.sparsebundle")
    [b] = read_share(str(tmp_path), ShareSpec("s")).bundles
    assert b.machine == "Mac\ufffd"


def test_storage_is_the_filesystem_of_the_root(storage: Path) -> None:
    vfs = os.statvfs(storage)
    storage_health = read_storage(str(storage))
    assert storage_health.size_bytes == vfs.f_blocks * vfs.f_frsize
    assert storage_health.free_bytes is not None and storage_health.free_bytes <= vfs.f_bfree * vfs.f_frsize
    missing = read_storage(str(storage / "nowhere"))
    assert (missing.size_bytes, missing.free_bytes, missing.used_ratio) == (None, None, None)
    assert missing.problems[0].startswith("cannot stat the storage root")


def test_shares_are_discovered_when_none_are_named(storage: Path) -> None:
    (storage / ".snapshots").mkdir()
    (storage / "README").write_text("not a share")
    assert [s.name for s in discover_shares(str(storage))] == ["alice", "bob", "carol", "dave", "erin"]
    assert discover_shares(str(storage / "nowhere")) == []


def test_collect_is_deterministic_and_takes_now_and_the_callers_states(storage: Path) -> None:
    shares = [ShareSpec("bob", 10**9, DAY), ShareSpec("alice")]
    # A fixed filesystem: the real one's free space moves with whatever else the machine writes.
    disk = os.statvfs_result((4096, 4096, 1000, 500, 400, 0, 0, 0, 0, 255))
    first, again = (
        collect(
            str(storage),
            order,
            T0 + 4 * DAY,
            up={"alice": True},
            node_registered={"bob": False},
            statvfs=lambda _: disk,
        )
        for order in (shares, shares[::-1])
    )
    assert first == again
    assert (first.storage.size_bytes, first.storage.free_bytes) == (4096 * 1000, 4096 * 400)
    assert first.now == T0 + 4 * DAY
    assert [s.name for s in first.shares] == ["alice", "bob"]
    assert [(s.up, s.node_registered) for s in first.shares] == [(True, None), (None, False)]
    assert [s.stale_after_seconds for s in first.shares] == [3 * DAY, DAY]
