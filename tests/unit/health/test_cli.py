"""`python -m timemachine.health status` and `serve`: the report, the exit code, /metrics and the status page."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.health.bundles import DAY, HOUR, T0, Bundle, make_bundle
from timemachine.health.cli import main
from timemachine.health.collector import ShareSpec
from timemachine.health.inputs import load_shares_file, parse_duration, parse_share, parse_size
from timemachine.health.server import SnapshotSource, make_server

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def healthy(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    make_bundle(root / "alice", Bundle("Alice MacBook", completions=[T0, T0 + DAY], bands={"0": (4096, T0 + DAY)}))
    make_bundle(root / "bob", Bundle("<img src=x onerror=alert(1)>", completions=[T0 + DAY]))
    return root


def status(root: Path, *args: str, now: float = T0 + 2 * DAY) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "timemachine.health", "status", "--root", str(root), "--now", str(now), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_status_of_healthy_backups_exits_0_and_shows_each_mac(healthy: Path) -> None:
    code, out = status(healthy, "--share", "alice=1G:3d", "--share", "bob")
    assert code == 0, out
    alice = next(line for line in out.splitlines() if line.startswith("alice") and "Alice MacBook" in line)
    assert re.search(r"alice\s+Alice MacBook\s+1d 0h ago\s+2\s+\S+ KiB\s+ok\s+1\.0 GiB\s+ok$", alice), alice
    assert "unlimited" in out and "findings" not in out


def test_status_exits_1_when_a_backup_is_stale(healthy: Path) -> None:
    code, out = status(healthy, "--share", "alice=:12h", "--share", "bob", now=T0 + 2 * DAY)
    assert code == 1
    assert "WARNING  alice / Alice MacBook: stale: last backup completed 1d 0h ago" in out


def test_status_exits_1_when_a_share_is_down_or_missing(healthy: Path, tmp_path: Path) -> None:
    shares = tmp_path / "shares.json"
    shares.write_text(json.dumps({"shares": [{"name": "alice", "quota": "1G", "up": False}, {"name": "bob"}]}))
    code, out = status(healthy, "--shares-file", str(shares))
    assert code == 1 and "share_down" in out
    code, out = status(healthy, "--share", "carol")
    assert code == 1 and "share_missing" in out


def test_quota_and_damage_are_warnings_that_do_not_fail(healthy: Path) -> None:
    (healthy / "alice" / "Alice MacBook.sparsebundle" / "com.apple.TimeMachine.MachineID.plist").write_bytes(b"junk")
    code, out = status(healthy, "--share", "alice=20K", "--share", "bob")
    assert code == 0, out
    assert "quota_nearly_full" in out and "MachineID.plist: damaged" in out


def test_shares_are_discovered_when_none_are_named(healthy: Path) -> None:
    code, out = status(healthy)
    assert code == 0 and "<img src=x onerror=alert(1)>" in out


def test_bad_arguments_exit_2(healthy: Path, tmp_path: Path) -> None:
    assert status(healthy, "--share", "alice=lots")[0] == 2
    (tmp_path / "bad.json").write_text(json.dumps({"shares": [{"name": "a", "quota": -1}]}))
    code, out = status(healthy, "--shares-file", str(tmp_path / "bad.json"))
    assert code == 2 and "error:" in out


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("alice", ShareSpec("alice")),
        ("alice=500G", ShareSpec("alice", 500 * 1024**3)),
        ("alice=1T:12h", ShareSpec("alice", 1024**4, 12 * HOUR)),
        ("alice=:3600", ShareSpec("alice", None, 3600)),
        ("alice=unlimited:2d", ShareSpec("alice", None, 2 * DAY)),
        ("alice=1048576", ShareSpec("alice", 1048576)),
    ],
)
def test_share_arguments(text: str, spec: ShareSpec) -> None:
    assert parse_share(text) == spec


@pytest.mark.parametrize("text", ["", "=1G", "a/b", "alice=0", "alice=1X", "alice=1G:soon", "alice=1G:0"])
def test_bad_share_arguments(text: str) -> None:
    with pytest.raises(ValueError):
        parse_share(text)


def test_sizes_and_durations() -> None:
    assert (parse_size("2M"), parse_size("2mb"), parse_size(""), parse_size("none")) == (2 << 20, 2 << 20, None, None)
    assert (parse_duration("90"), parse_duration("1.5h"), parse_duration("3d")) == (90, 5400, 3 * DAY)


def test_the_shares_file(tmp_path: Path) -> None:
    path = tmp_path / "shares.json"
    entries = [
        {"name": "alice", "quota": "500G", "staleAfterSeconds": 3600, "up": True, "nodeRegistered": False},
        {"name": "bob", "quota": 1000, "staleAfterSeconds": "2d"},
    ]
    path.write_text(json.dumps({"shares": entries, "incompleteAfterSeconds": "6h"}))
    inputs = load_shares_file(str(path))
    assert inputs.specs == (ShareSpec("alice", 500 * 1024**3, 3600), ShareSpec("bob", 1000, 2 * DAY))
    assert (inputs.up, inputs.node_registered, inputs.incomplete_after_seconds) == (
        {"alice": True},
        {"alice": False},
        6 * HOUR,
    )
    for bad in ({"shares": [{"name": "a", "colour": "red"}]}, {"shares": [{"name": "a"}, {"name": "a"}]}):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            load_shares_file(str(path))


def test_main_runs_in_process(healthy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--root", str(healthy), "--now", str(T0 + 2 * DAY)]) == 0
    assert "Alice MacBook" in capsys.readouterr().out


# --- serve -------------------------------------------------------------------------------------------------


@pytest.fixture
def server(healthy: Path) -> Iterator[tuple[str, list[float]]]:
    clock = [T0 + 2 * DAY]
    shares = (ShareSpec("alice", 10**9), ShareSpec("bob"))
    from timemachine.health.inputs import ShareInputs

    source = SnapshotSource(str(healthy), lambda: ShareInputs(shares, {"alice": True}), clock=lambda: clock[0])
    httpd = make_server(source, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", clock
    httpd.shutdown()
    httpd.server_close()


def get(url: str) -> tuple[str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode("utf-8")


def test_metrics_and_page_show_the_same_snapshot(server: tuple[str, list[float]]) -> None:
    base, _ = server
    kind, metrics = get(base + "/metrics")
    assert kind.startswith("text/plain; version=0.0.4")
    values = {
        (s.name, s.labels.get("machine", "")): s.value
        for f in text_string_to_metric_families(metrics)
        for s in f.samples
        if s.labels.get("share") in ("alice", "bob")
    }
    kind, page = get(base + "/")
    assert kind == "text/html; charset=utf-8"
    # The exact-values table has the same bytes and band counts as the metrics.
    for machine in ("Alice MacBook", "<img src=x onerror=alert(1)>"):
        row = re.search(
            rf"<tr><td>[a-z]+</td><td>{re.escape(html.escape(machine))}</td>(.*?)</tr>", page.split("Exact values")[1]
        )
        assert row, machine
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        assert int(cells[3]) == values[("timemachine_backup_bytes", machine)]
        assert int(cells[4]) == values[("timemachine_backup_bands", machine)]
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<h1>Time Machine backups: OK</h1>" in page


def test_the_snapshot_is_collected_at_most_once_per_interval(server: tuple[str, list[float]]) -> None:
    base, clock = server

    def collected_at() -> float:
        _, metrics = get(base + "/metrics")
        match = re.search(r"^timemachine_collector_timestamp_seconds (\S+)$", metrics, re.M)
        assert match
        return float(match.group(1))

    first = collected_at()
    clock[0] += 30
    assert collected_at() == first
    clock[0] += 31
    assert collected_at() == first + 61


def test_unknown_paths_are_404(server: tuple[str, list[float]]) -> None:
    base, _ = server
    with pytest.raises(urllib.error.HTTPError) as error:
        get(base + "/nope")
    assert error.value.code == 404


def test_the_serve_command(healthy: Path) -> None:
    command = [sys.executable, "-m", "timemachine.health", "serve", "--root", str(healthy), "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = re.search(r"(http://\S+/metrics)", line)
        assert url, line
        _, metrics = get(url.group(1))
        assert 'timemachine_backup_snapshots{machine="Alice MacBook",share="alice"} 2.0' in metrics
        _, page = get(url.group(1).removesuffix("metrics"))
        assert "Alice MacBook" in page
    finally:
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=10) == 0
        if process.stderr:
            process.stderr.close()
