"""The status command's judgments, which mirror the alert rules, over the fixture storage root."""

from __future__ import annotations

import os
from pathlib import Path

from tests.unit.health.bundles import DAY, T0
from timemachine.health.assess import findings
from timemachine.health.collector import ShareSpec, collect
from timemachine.health.report import failing

SHARES = [ShareSpec(name, 10**6) for name in ("alice", "bob", "carol", "dave", "erin", "frank")]


def kinds(
    storage: Path, now: float, up: dict[str, bool] | None = None, node_registered: dict[str, bool] | None = None
) -> dict[tuple[str, str], list[str]]:
    full = os.statvfs_result((1, 1, 1000, 50, 50, 0, 0, 0, 0, 255))
    snapshot = collect(str(storage), SHARES, now, up=up, node_registered=node_registered, statvfs=lambda _: full)
    found: dict[tuple[str, str], list[str]] = {}
    for f in findings(snapshot):
        found.setdefault((f.share, f.machine), []).append(f.kind)
    return found


def test_what_is_wrong_four_days_in(storage: Path) -> None:
    # Bob's and Erin's Macs completed on day 1: stale (3 days) by now. Alice's on days 2 and 3: not yet.
    assert kinds(storage, T0 + 4 * DAY + 1, up={"carol": False}, node_registered={"dave": False}) == {
        ("", ""): ["storage_nearly_full"],
        ("bob", "Bob Air"): ["recovery_declined", "stale"],
        ("bob", "Bob Mini"): ["stale", "verification_failed"],
        ("bob", "new-mac"): ["never_completed"],
        ("carol", ""): ["share_down"],
        ("carol", "Carol Laptop"): ["never_completed", "problems"],
        ("dave", ""): ["node_not_registered"],
        ("erin", "Erin Mac"): ["stale"],
        ("frank", ""): ["share_missing"],
    }


def test_nothing_is_stale_before_its_time(storage: Path) -> None:
    # Three days exactly after new-mac's creation and Carol's: the threshold, not past it.
    found = kinds(storage, T0 + 3 * DAY)
    assert not any(k in ("stale", "never_completed") for ks in found.values() for k in ks)


def test_failing_is_what_status_exits_1_for(storage: Path) -> None:
    healthy = [ShareSpec("alice"), ShareSpec("dave")]
    assert not failing(collect(str(storage), healthy, T0 + 3 * DAY))
    assert failing(collect(str(storage), healthy, T0 + 3 * DAY, up={"dave": False}))
    assert failing(collect(str(storage), healthy, T0 + 7 * DAY)), "alice's backups are stale by then"
