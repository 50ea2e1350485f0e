"""The judgments the alert rules make, made in Python over one snapshot, for the status command and page."""

from __future__ import annotations

from dataclasses import dataclass

from timemachine.health.bundle import SNAPSHOT_HISTORY
from timemachine.health.collector import HealthSnapshot

# The same thresholds as monitoring/timemachine.rules.yml.
QUOTA_WARNING_RATIO = 0.9
STORAGE_WARNING_RATIO = 0.9


@dataclass(frozen=True, order=True)
class Finding:
    """Something wrong with a share, a Mac's backup or the disk; failing ones make `status` exit 1."""

    share: str
    machine: str
    kind: str
    severity: str
    failing: bool
    message: str


def bundle_findings(snapshot: HealthSnapshot) -> list[Finding]:
    now = snapshot.now
    found = []
    for share in snapshot.shares:
        for b in share.bundles:
            # (kind, severity, failing, message) for this Mac.
            checks: list[tuple[str, str, bool, str]] = []
            if b.last_completed is not None and now - b.last_completed > share.stale_after_seconds:
                checks.append(("stale", "warning", True, f"last backup completed {age(now - b.last_completed)} ago"))
            if b.last_completed is None and b.created is not None and now - b.created > share.stale_after_seconds:
                message = f"no backup completed since it was created {age(now - b.created)} ago"
                if any(p.startswith(SNAPSHOT_HISTORY) for p in b.problems):
                    # Unreadable history counts as none: a backup nobody can confirm is not one to rely on.
                    message = f"no completed backup can be read, and it was created {age(now - b.created)} ago"
                checks.append(("never_completed", "warning", True, message))
            if b.verification_failed:
                checks.append(("verification_failed", "critical", True, "Time Machine's verification of it failed"))
            if b.recovery_declined:
                message = "the owner declined to start a new backup after a failed one"
                checks.append(("recovery_declined", "critical", True, message))
            if (
                b.last_completed is not None
                and b.last_activity is not None
                and b.writing_without_completion(snapshot.incomplete_after_seconds)
            ):
                message = f"bands written {age(b.last_activity - b.last_completed)} after the last completed backup"
                checks.append(("not_completing", "warning", False, message))
            if b.problems:
                checks.append(("problems", "warning", False, "; ".join(b.problems)))
            found += [Finding(share.name, b.machine, *check) for check in checks]
    return found


def share_findings(snapshot: HealthSnapshot) -> list[Finding]:
    found = []
    for share in snapshot.shares:
        checks: list[tuple[str, str, bool, str]] = []
        if not share.present:
            checks.append(("share_missing", "critical", True, "; ".join(share.problems)))
        elif share.problems:
            checks.append(("problems", "warning", False, "; ".join(share.problems)))
        if share.up is False:
            why = f": {share.down_reason}" if share.down_reason else ""
            checks.append(("share_down", "critical", True, f"the share's Samba container is not up{why}"))
        if share.node_registered is False:
            checks.append(("node_not_registered", "critical", True, "the share's tailnet node is not registered"))
        ratio = share.quota_used_ratio
        if ratio is not None and ratio >= QUOTA_WARNING_RATIO:
            checks.append(("quota_nearly_full", "warning", False, f"{ratio:.0%} of its quota used"))
        found += [Finding(share.name, "", *check) for check in checks]
    storage = snapshot.storage
    if storage.problems:
        found.append(Finding("", "", "storage_unreadable", "critical", True, "; ".join(storage.problems)))
    ratio = storage.used_ratio
    if ratio is not None and ratio >= STORAGE_WARNING_RATIO:
        found.append(Finding("", "", "storage_nearly_full", "warning", False, f"{ratio:.0%} of the disk used"))
    return found


def findings(snapshot: HealthSnapshot) -> list[Finding]:
    return sorted(share_findings(snapshot) + bundle_findings(snapshot))


def age(seconds: float) -> str:
    """A duration the way a person says it: 3d 4h, 5h 12m, 42s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"
