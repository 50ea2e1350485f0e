"""`status --url` / `--stack`: the same table from a running collector's /metrics as from the disk, and the
same exit code."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from tests.unit.health.bundles import DAY, T0, build_storage
from timemachine.health.cli import main
from timemachine.health.collector import ShareSpec, collect
from timemachine.health.inputs import ShareInputs
from timemachine.health.metrics import render
from timemachine.health.remote import RemoteError, metrics_url_of_stack, snapshot_from_metrics
from timemachine.health.report import failing, mac_rows, share_rows, text_report
from timemachine.health.server import SnapshotSource, make_server

NOW = T0 + 4 * DAY
SPECS = [
    ShareSpec("alice", 1024**3, 2 * DAY),
    ShareSpec("bob"),
    ShareSpec("carol"),
    ShareSpec("dave"),
    ShareSpec("gone"),
]


def local(root: Path):
    return collect(
        str(root),
        SPECS,
        NOW,
        up={"alice": True, "bob": False},
        node_registered={"alice": True, "bob": True, "carol": False},
        down_reasons={"bob": "write: NT_STATUS_MEDIA_WRITE_PROTECTED"},
    )


def test_the_tables_read_back_from_the_metrics_are_the_tables_from_the_disk(tmp_path):
    snapshot = local(build_storage(tmp_path / "storage"))
    remote = snapshot_from_metrics(render(snapshot).decode(), "http://collector/metrics")
    assert mac_rows(remote) == mac_rows(snapshot)
    assert share_rows(remote) == share_rows(snapshot)
    assert failing(remote) == failing(snapshot) is True
    lines = text_report(remote).splitlines()
    assert "bob: share_down: the share's Samba container is not up: write: NT_STATUS_MEDIA_WRITE_PROTECTED" in " ".join(
        lines
    )
    # Problem texts are counted in the metrics, spelled out on the page.
    assert any("problem(s) reading it (the status page at / lists them)" in line for line in lines)


@pytest.fixture
def served(tmp_path):
    root = build_storage(tmp_path / "storage")
    source = SnapshotSource(str(root), lambda: ShareInputs(tuple(SPECS[:1])), clock=lambda: T0 + 2 * DAY + 60)
    server = make_server(source, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics", root
    server.shutdown()
    server.server_close()


def test_status_url_prints_the_same_report_and_exits_as_status_root(served, capsys):
    url, root = served
    assert main(["status", "--url", url]) == 0
    remote_out = capsys.readouterr().out
    assert main(["status", "--root", str(root), "--share", "alice=1G:2d", "--now", str(T0 + 2 * DAY + 60)]) == 0
    local_out = capsys.readouterr().out
    assert remote_out.replace(url, str(root)) == local_out


def test_status_url_exits_2_when_nothing_answers(capsys):
    assert main(["status", "--url", "http://127.0.0.1:9/metrics"]) == 2
    assert "cannot read http://127.0.0.1:9/metrics" in capsys.readouterr().err


def test_status_url_refuses_what_is_not_a_collector():
    with pytest.raises(RemoteError, match="not a Time Machine collector"):
        snapshot_from_metrics("# HELP up x\n# TYPE up gauge\nup 1\n", "http://x/metrics")


def test_status_stack_reads_the_metrics_url_from_the_stack_output():
    def pulumi(command, **_kwargs):
        assert command == ["pulumi", "stack", "output", "status", "--json", "--stack", "prod"]
        out = json.dumps({"metricsUrl": "http://172.24.0.252:9110/metrics", "ip": "172.24.0.252"})
        return subprocess.CompletedProcess(command, 0, out, "")

    assert metrics_url_of_stack("prod", run=pulumi) == "http://172.24.0.252:9110/metrics"

    def missing(command, **_kwargs):
        return subprocess.CompletedProcess(
            command, 255, "", "error: current stack does not have output property 'status'"
        )

    with pytest.raises(RemoteError, match="does not have output property"):
        metrics_url_of_stack("prod", run=missing)
