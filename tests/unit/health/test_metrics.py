"""The Prometheus exposition: names, labels, what is left out, escaping, and the private registry."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.health.bundles import ALICE_LAST, DAY, T0, Bundle, make_bundle
from timemachine.health.collector import ShareSpec, collect
from timemachine.health.metrics import render

ROOT = Path(__file__).resolve().parents[3]
DISK = os.statvfs_result((4096, 4096, 1000, 500, 400, 0, 0, 0, 0, 255))


def samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition.decode("utf-8"))
        for s in family.samples
    }


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    return found.get((name, tuple(sorted(labels.items()))))


def exposition(
    storage: Path, up: dict[str, bool] | None = None, node_registered: dict[str, bool] | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    shares = [ShareSpec("alice", 10**9, 2 * DAY), ShareSpec("bob"), ShareSpec("carol"), ShareSpec("frank")]
    snapshot = collect(
        str(storage), shares, T0 + 4 * DAY, up=up, node_registered=node_registered, statvfs=lambda _: DISK
    )
    return samples(render(snapshot))


def test_backup_metrics(storage: Path) -> None:
    found = exposition(storage)
    mac = {"share": "alice", "machine": "Alice’s MacBook Pro"}
    assert value(found, "timemachine_backup_last_completed_timestamp_seconds", **mac) == ALICE_LAST
    assert value(found, "timemachine_backup_snapshots", **mac) == 3
    assert value(found, "timemachine_backup_last_activity_timestamp_seconds", **mac) == ALICE_LAST - 60
    assert value(found, "timemachine_backup_created_timestamp_seconds", **mac) == T0
    assert value(found, "timemachine_backup_bands", **mac) == 3
    assert value(found, "timemachine_backup_band_size_bytes", **mac) == 8 * 1024 * 1024
    assert value(found, "timemachine_backup_verification_failed", **mac) == 0
    assert value(found, "timemachine_backup_verification_timestamp_seconds", **mac) == T0 + DAY
    assert value(found, "timemachine_backup_problems", **mac) == 0
    assert (value(found, "timemachine_backup_bytes", **mac) or 0) >= 16384
    info = {**mac, "bundle": "Alice’s MacBook Pro.sparsebundle", "host_uuid": "3F2504E0-4F89-11D3-9A0C-0305E82C3301"}
    assert value(found, "timemachine_backup_info", **info, model_id="MacBookPro18,3", backingstore_version="1") == 1
    bob_mini = {"share": "bob", "machine": "Bob Mini"}
    assert value(found, "timemachine_backup_verification_failed", **bob_mini) == 1
    assert value(found, "timemachine_backup_verification_state", **bob_mini) == 2
    assert value(found, "timemachine_backup_recovery_declined", share="bob", machine="Bob Air") == 1
    assert value(found, "timemachine_backup_recovery_declined", **bob_mini) == 0
    assert value(found, "timemachine_backup_problems", share="carol", machine="Carol Laptop") == 2


def test_a_never_completed_bundle_has_no_last_completed_sample(storage: Path) -> None:
    found = exposition(storage)
    new = {"share": "bob", "machine": "new-mac"}
    assert value(found, "timemachine_backup_last_completed_timestamp_seconds", **new) is None
    assert value(found, "timemachine_backup_snapshots", **new) == 0
    assert value(found, "timemachine_backup_created_timestamp_seconds", **new) == T0
    assert value(found, "timemachine_backup_writing_without_completion", **new) == 1


def test_share_and_storage_metrics(storage: Path) -> None:
    found = exposition(storage, up={"alice": True, "bob": False}, node_registered={"alice": False})
    assert value(found, "timemachine_backup_stale_after_seconds", share="alice") == 2 * DAY
    assert value(found, "timemachine_backup_stale_after_seconds", share="bob") == 3 * DAY, "the default"
    assert value(found, "timemachine_share_quota_bytes", share="alice") == 10**9
    assert value(found, "timemachine_share_quota_bytes", share="bob") is None, "unlimited: no sample"
    assert (value(found, "timemachine_share_used_bytes", share="alice") or 0) > 0
    assert value(found, "timemachine_share_bundles", share="bob") == 3
    assert value(found, "timemachine_share_directory_present", share="frank") == 0
    assert value(found, "timemachine_share_directory_present", share="bob") == 1
    assert value(found, "timemachine_share_problems", share="frank") == 1
    assert (value(found, "timemachine_share_up", share="alice"), value(found, "timemachine_share_up", share="bob")) == (
        1,
        0,
    )
    assert value(found, "timemachine_share_up", share="carol") is None, "not reported: no sample"
    assert value(found, "timemachine_node_registered", share="alice") == 0
    assert value(found, "timemachine_node_registered", share="bob") is None
    assert value(found, "timemachine_storage_size_bytes") == 4096 * 1000
    assert value(found, "timemachine_storage_free_bytes") == 4096 * 400
    assert value(found, "timemachine_collector_timestamp_seconds") == T0 + 4 * DAY


def test_the_exposition_is_deterministic_and_sorted(storage: Path) -> None:
    shares = [ShareSpec("bob"), ShareSpec("alice")]
    first = render(collect(str(storage), shares, T0, statvfs=lambda _: DISK))
    assert first == render(collect(str(storage), shares[::-1], T0, statvfs=lambda _: DISK))
    lines = [line for line in first.decode().splitlines() if line.startswith("timemachine_backup_snapshots")]
    assert re.findall(r'machine="([^"]*)"', "\n".join(lines)) == [
        "Alice iMac",
        "Alice’s MacBook Pro",
        "Bob Air",
        "Bob Mini",
        "new-mac",
    ]


def test_nothing_lands_in_the_global_registry(storage: Path) -> None:
    before = {m.name for m in REGISTRY.collect()}
    render(collect(str(storage), [ShareSpec("alice")], T0))
    assert {m.name for m in REGISTRY.collect()} == before
    assert not any(name.startswith("timemachine") for name in before)


def test_the_documented_metrics_are_exactly_the_emitted_ones(storage: Path) -> None:
    snapshot = collect(str(storage), [ShareSpec("alice", 1)], T0, up={"alice": True}, node_registered={"alice": True})
    emitted = {f.name for f in text_string_to_metric_families(render(snapshot).decode())}
    documented = set(re.findall(r"^\| `(timemachine_[a-z_]+)`", (ROOT / "monitoring/README.md").read_text(), re.M))
    assert emitted == documented


NAMES = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"), min_size=1, max_size=30).filter(
    lambda n: n not in (".", "..")
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(machine=NAMES)
def test_any_machine_name_survives_the_exposition(tmp_path_factory: pytest.TempPathFactory, machine: str) -> None:
    root = tmp_path_factory.mktemp("root")
    try:
        make_bundle(root / "s", Bundle(machine, completions=[T0]))
    except OSError:
        return  # a name the filesystem refuses (too long in bytes) is no bundle a Mac could make
    found = samples(render(collect(str(root), [ShareSpec("s")], T0 + DAY)))
    assert value(found, "timemachine_backup_last_completed_timestamp_seconds", share="s", machine=machine) == T0
