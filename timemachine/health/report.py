"""The snapshot as people read it: a text table for `status` and a plain HTML page for `serve`."""

from __future__ import annotations

import datetime
import html

from timemachine.health.assess import Finding, age, findings
from timemachine.health.bundle import BundleHealth
from timemachine.health.collector import HealthSnapshot, ShareHealth
from timemachine.planning.units import human_size

MAC_COLUMNS = ("share", "machine", "last backup", "snapshots", "size", "verification", "quota headroom", "status")
SHARE_COLUMNS = ("share", "macs", "used", "quota", "headroom", "stale after", "up", "node", "status")


def size(n: int | None) -> str:
    return "-" if n is None else human_size(n)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def verification(b: BundleHealth) -> str:
    if b.verification_state is None:
        return "unknown"
    if b.verification_state == 0:
        return "ok"
    return "FAILED" if b.verification_failed else f"state {b.verification_state}"


def headroom(share: ShareHealth) -> int | None:
    return None if share.quota_bytes is None else share.quota_bytes - share.used_bytes


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("up" if value else "DOWN")


def _where(f: Finding) -> str:
    return " / ".join(p for p in (f.share, f.machine) if p) or "storage"


def _status(found: list[Finding]) -> str:
    return ", ".join(f.kind for f in found) or "ok"


def mac_rows(snapshot: HealthSnapshot) -> list[tuple[str, ...]]:
    found = findings(snapshot)
    rows: list[tuple[str, ...]] = []
    for share in snapshot.shares:
        room = headroom(share)
        for b in share.bundles:
            last = "never" if b.last_completed is None else f"{age(snapshot.now - b.last_completed)} ago"
            mine = [f for f in found if f.share == share.name and f.machine == b.machine]
            rows.append(
                (
                    share.name,
                    b.machine,
                    last,
                    str(b.snapshots),
                    size(b.allocated_bytes),
                    verification(b),
                    "unlimited" if room is None else size(room),
                    _status(mine),
                )
            )
    return rows


def share_rows(snapshot: HealthSnapshot) -> list[tuple[str, ...]]:
    found = findings(snapshot)
    rows: list[tuple[str, ...]] = []
    for share in snapshot.shares:
        mine = [f for f in found if f.share == share.name and not f.machine]
        ratio = share.quota_used_ratio
        rows.append(
            (
                share.name,
                str(len(share.bundles)),
                size(share.used_bytes),
                "unlimited" if share.quota_bytes is None else f"{size(share.quota_bytes)} ({ratio:.0%} used)",
                "-" if share.quota_bytes is None else size(headroom(share)),
                age(share.stale_after_seconds),
                _yes_no(share.up) + (f" ({share.down_reason})" if share.down_reason else ""),
                "?" if share.node_registered is None else ("registered" if share.node_registered else "NOT REGISTERED"),
                _status(mine) if share.present else "share_missing",
            )
        )
    return rows


def storage_line(snapshot: HealthSnapshot) -> str:
    storage = snapshot.storage
    if storage.size_bytes is None or storage.free_bytes is None:
        return f"storage {storage.root}: unknown ({'; '.join(storage.problems)})"
    ratio = storage.used_ratio or 0.0
    return f"storage {storage.root}: {size(storage.free_bytes)} free of {size(storage.size_bytes)} ({ratio:.0%} used)"


def _table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def text_report(snapshot: HealthSnapshot) -> str:
    """What `status` prints: the Macs, the shares, the disk, then every finding."""
    parts = [
        f"as of {when(snapshot.now)}",
        "",
        _table(MAC_COLUMNS, mac_rows(snapshot)) if snapshot.bundles else "no Time Machine bundles found",
        "",
        _table(SHARE_COLUMNS, share_rows(snapshot)) if snapshot.shares else "no shares",
        "",
        storage_line(snapshot),
    ]
    found = findings(snapshot)
    if found:
        parts += ["", "findings:"]
        for f in found:
            parts.append(f"  {f.severity.upper():8} {_where(f)}: {f.kind}: {f.message}")
    return "\n".join(parts) + "\n"


def failing(snapshot: HealthSnapshot) -> bool:
    """Anything stale, failed, missing or down: what makes `status` exit 1."""
    return any(f.failing for f in findings(snapshot))


def _html_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _exact_rows(snapshot: HealthSnapshot) -> list[tuple[str, ...]]:
    # The numbers exactly as /metrics has them, for whoever compares the page with a graph.
    rows: list[tuple[str, ...]] = []
    for b in snapshot.bundles:
        rows.append(
            (
                b.share,
                b.machine,
                when(b.last_completed),
                when(b.last_activity),
                when(b.created),
                str(b.allocated_bytes),
                str(b.bands),
                "; ".join(b.problems) or "-",
            )
        )
    return rows


def html_report(snapshot: HealthSnapshot) -> str:
    """The status page: the same tables as `status`, from the same snapshot as /metrics; every name escaped."""
    found = findings(snapshot)
    items = "".join(
        f'<li class="{html.escape(f.severity)}">{html.escape(_where(f))}: {html.escape(f.kind)}: '
        f"{html.escape(f.message)}</li>"
        for f in found
    )
    verdict = "FAILING" if failing(snapshot) else "OK"
    exact = ("share", "machine", "last completed", "last activity", "created", "bytes", "bands", "problems")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="60">'
        f"<title>Time Machine backups: {verdict}</title>"
        "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1em}"
        "th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}.critical{color:#b00}.warning{color:#a60}"
        "</style></head><body>"
        f"<h1>Time Machine backups: {verdict}</h1>"
        f'<p>as of {html.escape(when(snapshot.now))} · <a href="/metrics">metrics</a></p>'
        "<h2>Macs</h2>"
        + (_html_table(MAC_COLUMNS, mac_rows(snapshot)) if snapshot.bundles else "<p>no Time Machine bundles found</p>")
        + "<h2>Shares</h2>"
        + _html_table(SHARE_COLUMNS, share_rows(snapshot))
        + f"<p>{html.escape(storage_line(snapshot))}</p>"
        + "<h2>Findings</h2>"
        + (f"<ul>{items}</ul>" if items else "<p>none</p>")
        + "<h2>Exact values</h2>"
        + _html_table(exact, _exact_rows(snapshot))
        + "</body></html>\n"
    )
