"""Prometheus exposition of one health snapshot, through a private registry (never the process-wide one)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

try:
    from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
except ImportError:  # prometheus_client before 0.22 (Debian trixie's 0.21): its latest is this format
    from prometheus_client.exposition import CONTENT_TYPE_LATEST as CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from timemachine.health.bundle import BundleHealth
from timemachine.health.collector import HealthSnapshot, ShareHealth

# The classic text format, which generate_latest writes and every Prometheus 2.x reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
BACKUP = ("share", "machine")
SHARE = ("share",)


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


@dataclass(frozen=True)
class BackupMetric:
    """A gauge per bundle; value returning None leaves that bundle's sample out."""

    name: str
    help: str
    value: Callable[[BundleHealth, HealthSnapshot], float | None]


@dataclass(frozen=True)
class ShareMetric:
    name: str
    help: str
    value: Callable[[ShareHealth], float | None]


# A bundle that never completed a backup has NO last-completed sample (not 0): `time() - last_completed`
# then matches nothing instead of an age of 56 years, and the never-completed rule can key on its absence
# (`unless on(share, machine) timemachine_backup_last_completed_timestamp_seconds`).
BACKUP_METRICS = (
    BackupMetric(
        "timemachine_backup_last_completed_timestamp_seconds",
        "Completion time of the newest snapshot in SnapshotHistory.plist; absent when none ever completed.",
        lambda b, _: b.last_completed,
    ),
    BackupMetric(
        "timemachine_backup_snapshots",
        "Completed snapshots listed in SnapshotHistory.plist (0 for a new or reset backup set).",
        lambda b, _: b.snapshots,
    ),
    BackupMetric(
        "timemachine_backup_verification_failed",
        "1 when MachineID.plist's VerificationState is 2 (verification failed), else 0.",
        lambda b, _: _flag(b.verification_failed),
    ),
    BackupMetric(
        "timemachine_backup_verification_state",
        "MachineID.plist's VerificationState as written (0 ok, 2 failed); absent when not there.",
        lambda b, _: b.verification_state,
    ),
    BackupMetric(
        "timemachine_backup_verification_timestamp_seconds",
        "MachineID.plist's VerificationDate; absent when not there.",
        lambda b, _: b.verification_date,
    ),
    BackupMetric(
        "timemachine_backup_recovery_declined",
        "1 when MachineID.plist has a RecoveryBackupDeclinedDate (a new backup after a failure was declined).",
        lambda b, _: _flag(b.recovery_declined),
    ),
    BackupMetric(
        "timemachine_backup_last_activity_timestamp_seconds",
        "Newest modification time of a band file; absent when the bundle has no bands.",
        lambda b, _: b.last_activity,
    ),
    BackupMetric(
        "timemachine_backup_created_timestamp_seconds",
        "Modification time of the bundle's token file (written once, at creation); absent without one.",
        lambda b, _: b.created,
    ),
    BackupMetric(
        "timemachine_backup_bytes",
        "Bytes the bundle occupies on disk (st_blocks * 512 over all its files).",
        lambda b, _: b.allocated_bytes,
    ),
    BackupMetric(
        "timemachine_backup_bands",
        "Band files in the bundle (bands/ and, for backing store version 2, mapped/).",
        lambda b, _: b.bands,
    ),
    BackupMetric(
        "timemachine_backup_band_size_bytes",
        "Info.plist's band-size; absent when Info.plist is missing or damaged.",
        lambda b, _: b.band_size,
    ),
    BackupMetric(
        "timemachine_backup_writing_without_completion",
        "1 when bands changed more than the collector's incomplete-after time after the last completed "
        "backup, or the bundle has bands and no backup ever completed.",
        lambda b, s: _flag(b.writing_without_completion(s.incomplete_after_seconds)),
    ),
    BackupMetric(
        "timemachine_backup_problems",
        "Problems reading the bundle: missing or damaged plists, malformed entries, unreadable files.",
        lambda b, _: len(b.problems),
    ),
)

SHARE_METRICS = (
    ShareMetric(
        "timemachine_backup_stale_after_seconds",
        "Age of the last completed backup after which the share's backups count as stale.",
        lambda s: s.stale_after_seconds,
    ),
    ShareMetric(
        "timemachine_share_used_bytes",
        "Bytes the share directory occupies on disk (st_blocks * 512, hard links once).",
        lambda s: s.used_bytes,
    ),
    ShareMetric(
        "timemachine_share_apparent_bytes",
        "Apparent size (st_size) of the regular files in the share directory.",
        lambda s: s.apparent_bytes,
    ),
    ShareMetric(
        "timemachine_share_quota_bytes",
        "The share's quota; absent for an unlimited share.",
        lambda s: s.quota_bytes,
    ),
    ShareMetric("timemachine_share_bundles", "Time Machine bundles in the share.", lambda s: len(s.bundles)),
    ShareMetric(
        "timemachine_share_directory_present",
        "1 when the share directory exists under the storage root, else 0.",
        lambda s: _flag(s.present),
    ),
    ShareMetric(
        "timemachine_share_problems",
        "Problems reading the share directory itself (bundles count their own).",
        lambda s: len(s.problems),
    ),
    ShareMetric(
        "timemachine_share_up",
        "1 when the share's Samba container is up, as the caller reported; absent when not reported.",
        lambda s: None if s.up is None else _flag(s.up),
    ),
    ShareMetric(
        "timemachine_node_registered",
        "1 when the share's tailnet node is registered, as the caller reported; absent when not reported.",
        lambda s: None if s.node_registered is None else _flag(s.node_registered),
    ),
)

INFO_LABELS = ("share", "machine", "bundle", "host_uuid", "model_id", "backingstore_version")
DOWN_LABELS = ("share", "reason")


class SnapshotCollector(Collector):
    """Serves one snapshot as gauges, samples sorted by share then machine."""

    def __init__(self, snapshot: HealthSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        for spec in BACKUP_METRICS:
            family = GaugeMetricFamily(spec.name, spec.help, labels=BACKUP)
            for b in snapshot.bundles:
                value = spec.value(b, snapshot)
                if value is not None:
                    family.add_metric([b.share, b.machine], float(value))
            yield family
        info = GaugeMetricFamily(
            "timemachine_backup_info",
            "Always 1; what the bundle says about the Mac (empty when unknown).",
            labels=INFO_LABELS,
        )
        for b in snapshot.bundles:
            version = "" if b.backingstore_version is None else str(b.backingstore_version)
            info.add_metric([b.share, b.machine, b.bundle, b.host_uuid or "", b.model_id or "", version], 1.0)
        yield info
        for share_spec in SHARE_METRICS:
            family = GaugeMetricFamily(share_spec.name, share_spec.help, labels=SHARE)
            for share in snapshot.shares:
                value = share_spec.value(share)
                if value is not None:
                    family.add_metric([share.name], float(value))
            yield family
        down = GaugeMetricFamily(
            "timemachine_share_down_info",
            "Always 1, for each share reported down: why (the SMB probe's step and Samba's status code).",
            labels=DOWN_LABELS,
        )
        for share in snapshot.shares:
            if share.up is False:
                down.add_metric([share.name, share.down_reason or "unknown"], 1.0)
        yield down
        storage = snapshot.storage
        for name, help_text, value in (
            ("timemachine_storage_size_bytes", "Size of the filesystem holding the storage root.", storage.size_bytes),
            (
                "timemachine_storage_free_bytes",
                "Bytes available to unprivileged writers on the filesystem holding the storage root.",
                storage.free_bytes,
            ),
        ):
            family = GaugeMetricFamily(name, help_text)
            if value is not None:
                family.add_metric([], float(value))
            yield family
        yield GaugeMetricFamily(
            "timemachine_collector_incomplete_after_seconds",
            "How long after the last completed backup bands may keep changing before that is reported.",
            value=snapshot.incomplete_after_seconds,
        )
        yield GaugeMetricFamily(
            "timemachine_collector_timestamp_seconds",
            "The time the collector read the shares (its 'now').",
            value=snapshot.now,
        )


def render(snapshot: HealthSnapshot) -> bytes:
    """The Prometheus text exposition of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry)
