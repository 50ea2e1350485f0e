"""A snapshot read back from a running collector's /metrics, so `status --url` prints the same table as the
status container serves, from the stack's own collection (the operator needs no access to the disk)."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from timemachine.health.bundle import BundleHealth
from timemachine.health.collector import (
    DEFAULT_INCOMPLETE_AFTER_SECONDS,
    DEFAULT_STALE_AFTER_SECONDS,
    HealthSnapshot,
    ShareHealth,
    StorageHealth,
)

FETCH_TIMEOUT_SECONDS = 60
# What the metrics count but do not spell out: the page at / lists each problem.
PROBLEMS_ELSEWHERE = "{} problem(s) reading it (the status page at / lists them)"


class RemoteError(RuntimeError):
    """The metrics could not be fetched or are not a collector's."""


def fetch(url: str, timeout: float = FETCH_TIMEOUT_SECONDS) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as error:
        raise RemoteError(f"cannot read {url}: {getattr(error, 'reason', None) or error}") from error


def metrics_url_of_stack(stack: str, run=subprocess.run) -> str:
    """The status container's metrics URL from `pulumi stack output status --json` (in the project folder)."""
    command = ["pulumi", "stack", "output", "status", "--json", "--stack", stack]
    try:
        done = run(command, capture_output=True, text=True, timeout=120, check=False)
    except OSError as error:
        raise RemoteError(f"cannot run pulumi ({error.strerror or error}); give --url instead") from error
    if done.returncode != 0:
        raise RemoteError(f"{' '.join(command)} failed: {(done.stderr or done.stdout).strip()[-500:]}")
    try:
        url = json.loads(done.stdout)["metricsUrl"]
    except (ValueError, KeyError, TypeError) as error:
        raise RemoteError(f"stack {stack} has no status output (is status.enabled set?)") from error
    if not isinstance(url, str):
        raise RemoteError(f"stack {stack}: status.metricsUrl is not a URL")
    return url


Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _samples(text: str) -> Samples:
    found: Samples = defaultdict(dict)
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    except ValueError as error:
        raise RemoteError(f"not Prometheus text: {error}") from error
    return found


def _by(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    return {tuple(dict(labels).get(k, "") for k in keys): value for labels, value in samples.get(name, {}).items()}


def _info(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], Mapping[str, str]]:
    return {tuple(dict(labels).get(k, "") for k in keys): dict(labels) for labels in samples.get(name, {})}


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def snapshot_from_metrics(text: str, source: str) -> HealthSnapshot:
    """The collector's snapshot as far as its metrics tell it (problem texts are counted, not spelled out)."""
    samples = _samples(text)
    now = _by(samples, "timemachine_collector_timestamp_seconds").get(())
    if now is None:
        raise RemoteError(f"{source} has no timemachine_collector_timestamp_seconds: not a Time Machine collector")
    incomplete = _by(samples, "timemachine_collector_incomplete_after_seconds").get(
        (), DEFAULT_INCOMPLETE_AFTER_SECONDS
    )

    def backup(name: str) -> dict[tuple[str, ...], float]:
        return _by(samples, f"timemachine_backup_{name}", "share", "machine")

    def share(name: str) -> dict[tuple[str, ...], float]:
        return _by(samples, name, "share")

    info = _info(samples, "timemachine_backup_info", "share", "machine")
    keys = sorted(set(backup("bytes")) | set(info))
    bundles: dict[str, list[BundleHealth]] = defaultdict(list)
    for key in keys:
        labels = info.get(key, {})
        problems = int(backup("problems").get(key, 0))
        version = labels.get("backingstore_version") or ""
        bundles[key[0]].append(
            BundleHealth(
                share=key[0],
                machine=key[1],
                bundle=labels.get("bundle", key[1]),
                snapshots=int(backup("snapshots").get(key, 0)),
                last_completed=backup("last_completed_timestamp_seconds").get(key),
                last_snapshot_name=None,
                verification_state=_int(backup("verification_state").get(key)),
                verification_date=backup("verification_timestamp_seconds").get(key),
                # The metric is a flag; the date itself is on the page.
                recovery_declined_date=0.0 if backup("recovery_declined").get(key) else None,
                host_uuid=labels.get("host_uuid") or None,
                model_id=labels.get("model_id") or None,
                backingstore_version=int(version) if version.isdigit() else None,
                band_size=_int(backup("band_size_bytes").get(key)),
                band_dirs=(),
                bands=int(backup("bands").get(key, 0)),
                band_bytes=0,
                allocated_bytes=int(backup("bytes").get(key, 0)),
                apparent_bytes=0,
                last_activity=backup("last_activity_timestamp_seconds").get(key),
                created=backup("created_timestamp_seconds").get(key),
                problems=(PROBLEMS_ELSEWHERE.format(problems),) if problems else (),
            )
        )
    present = share("timemachine_share_directory_present")
    up = share("timemachine_share_up")
    registered = share("timemachine_node_registered")
    reasons = {k[0]: k[1] for k in _by(samples, "timemachine_share_down_info", "share", "reason")}
    shares = []
    for (name,) in sorted(set(present) | {(k,) for k in bundles}):
        problems = int(share("timemachine_share_problems").get((name,), 0))
        is_present = bool(present.get((name,), 1))
        listed = ("share directory missing",) if not is_present else ()
        quota = share("timemachine_share_quota_bytes").get((name,))
        shares.append(
            ShareHealth(
                name=name,
                quota_bytes=_int(quota),
                stale_after_seconds=share("timemachine_backup_stale_after_seconds").get(
                    (name,), DEFAULT_STALE_AFTER_SECONDS
                ),
                present=is_present,
                used_bytes=int(share("timemachine_share_used_bytes").get((name,), 0)),
                apparent_bytes=int(share("timemachine_share_apparent_bytes").get((name,), 0)),
                bundles=tuple(sorted(bundles.get(name, []), key=lambda b: b.machine)),
                up=None if (name,) not in up else bool(up[(name,)]),
                node_registered=None if (name,) not in registered else bool(registered[(name,)]),
                problems=listed or ((PROBLEMS_ELSEWHERE.format(problems),) if problems else ()),
                down_reason=reasons.get(name),
            )
        )
    size = _by(samples, "timemachine_storage_size_bytes").get(())
    free = _by(samples, "timemachine_storage_free_bytes").get(())
    storage_problems = () if size is not None else ("the collector could not read the storage root's size",)
    storage = StorageHealth(source, _int(size), _int(free), storage_problems)
    return HealthSnapshot(now=now, incomplete_after_seconds=incomplete, storage=storage, shares=tuple(shares))


def remote_snapshot(url: str) -> HealthSnapshot:
    return snapshot_from_metrics(fetch(url), url)
