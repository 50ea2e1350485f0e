"""What the status container checks besides the files: the SMB probe's verdicts and reasons (smbclient's
own messages, replayed), the node state in Caddy's volume, and the shares JSON the stack passes."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.health.bundles import DAY, T0, Bundle, make_bundle
from timemachine.health.cli import probed
from timemachine.health.collector import collect
from timemachine.health.inputs import parse_shares_json
from timemachine.health.metrics import render
from timemachine.health.probes import PROBE_FILE, ProbeResult, SmbTarget, node_registered, probe_shares, smb_probe
from timemachine.health.report import failing, text_report


def smbclient(stdout: str = "", returncode: int = 0, echo: bool = True):
    """A stand-in for smbclient: answers as the real one does, copying the put file to the get target."""
    calls: list[list[str]] = []

    def run(command, **_kwargs):
        calls.append(command)
        script = command[command.index("--command") + 1]
        if echo:
            sent = script.split('put "', 1)[1].split('"', 1)[0]
            back = script.split(f'get {PROBE_FILE} "', 1)[1].split('"', 1)[0]
            Path(back).write_bytes(Path(sent).read_bytes())
        return subprocess.CompletedProcess(command, returncode, stdout, "")

    return run, calls


def test_a_share_that_takes_the_write_reads_it_back_and_deletes_it_is_up():
    run, calls = smbclient("putting file /tmp/x as \\.timemachine-probe-status (0.1 kb/s)\n")
    assert smb_probe(SmbTarget("alice", "172.24.0.10"), run=run).up
    command = calls[0]
    assert command[:3] == ["smbclient", "//172.24.0.10/alice", "--no-pass"]
    script = command[command.index("--command") + 1]
    # Write, read back, delete: at the share's top, a hidden file of its own, never inside a bundle.
    assert script.index("put ") < script.index("get ") < script.index(f"del {PROBE_FILE}")


def test_a_password_share_is_probed_with_its_credentials_file():
    run, calls = smbclient()
    assert smb_probe(SmbTarget("bob", "172.24.0.11", "/samba/bob/private/timemachine.credentials"), run=run).up
    assert calls[0][2:4] == ["--authentication-file", "/samba/bob/private/timemachine.credentials"]


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (
            "NT_STATUS_MEDIA_WRITE_PROTECTED opening remote file \\.timemachine-probe-status\n",
            "write: NT_STATUS_MEDIA_WRITE_PROTECTED",
        ),
        ("NT_STATUS_DISK_FULL opening remote file \\.timemachine-probe-status\n", "write: NT_STATUS_DISK_FULL"),
        (
            "do_connect: Connection to 172.24.0.10 failed (Error NT_STATUS_CONNECTION_REFUSED)\n",
            "connect: NT_STATUS_CONNECTION_REFUSED",
        ),
        ("tree connect failed: NT_STATUS_BAD_NETWORK_NAME\n", "connect: NT_STATUS_BAD_NETWORK_NAME"),
        ("session setup failed: NT_STATUS_LOGON_FAILURE\n", "connect: NT_STATUS_LOGON_FAILURE"),
    ],
)
def test_a_failing_share_is_down_with_the_step_and_samba_status(output, reason):
    run, _ = smbclient(output, returncode=1, echo=False)
    assert smb_probe(SmbTarget("alice", "172.24.0.10"), run=run) == ProbeResult(False, reason)


def test_a_hung_smbd_costs_one_timeout_and_says_so():
    def run(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    result = smb_probe(SmbTarget("alice", "172.24.0.10"), run=run, timeout=7)
    assert not result.up and result.reason == "no answer within 7s"


def test_a_file_read_back_that_differs_is_down():
    def run(command, **_kwargs):
        script = command[command.index("--command") + 1]
        Path(script.split(f'get {PROBE_FILE} "', 1)[1].split('"', 1)[0]).write_bytes(b"other")
        return subprocess.CompletedProcess(command, 0, "", "")

    result = smb_probe(SmbTarget("alice", "172.24.0.10"), run=run)
    assert result.reason == "read: the file read back differs from the one written"


def test_every_share_is_probed_at_once():
    seen = []

    def probe(target):
        seen.append(target.share)
        return smb_probe(target, run=smbclient()[0])

    results = probe_shares([SmbTarget(n, "10.0.0.1") for n in ("a", "b", "c")], probe)
    assert set(results) == {"a", "b", "c"} and all(r.up for r in results.values()) and sorted(seen) == ["a", "b", "c"]


def write_state(root: Path, node: str, node_id: str | None) -> None:
    profiles = {"p1": {"ID": "p1", "NodeID": node_id}} if node_id else {}
    (root / node).mkdir(parents=True)
    encoded = base64.b64encode(json.dumps(profiles).encode()).decode()
    (root / node / "tailscaled.state").write_text(json.dumps({"_profiles": encoded}))


def test_node_registration_is_read_from_caddys_node_state(tmp_path):
    write_state(tmp_path, "tm-alice", "nAbc123CNTRL")
    write_state(tmp_path, "tm-bob", None)
    assert node_registered(str(tmp_path), "tm-alice") is True
    assert node_registered(str(tmp_path), "tm-bob") is False
    assert node_registered(str(tmp_path), "tm-carol") is False, "no state at all: never registered, or lost"


def test_the_stacks_shares_json_drives_the_probes_and_the_collection(tmp_path, monkeypatch):
    root = tmp_path / "storage"
    make_bundle(root / "alice", Bundle("Alice Mac", completions=[T0], bands={"0": (4096, T0)}))
    (root / "bob").mkdir(parents=True)
    caddy = tmp_path / "caddy"
    write_state(caddy, "tm-alice", "n1")
    text = json.dumps(
        {
            "caddyStateDir": str(caddy),
            "shares": [
                {
                    "name": "alice",
                    "quota": 1024**3,
                    "staleAfterSeconds": 2 * DAY,
                    "address": "10.0.0.2",
                    "node": "tm-alice",
                },
                {"name": "bob", "staleAfterSeconds": 3 * DAY, "address": "10.0.0.3", "node": "tm-bob"},
            ],
        }
    )
    inputs = parse_shares_json(text)
    outcomes = {"10.0.0.2": "", "10.0.0.3": "NT_STATUS_MEDIA_WRITE_PROTECTED opening remote file \\x\n"}

    def fake_probe(target):
        run, _ = smbclient(outcomes[target.address], 1 if outcomes[target.address] else 0, not outcomes[target.address])
        return smb_probe(target, run=run)

    monkeypatch.setattr("timemachine.health.cli.probe_shares", lambda targets: probe_shares(targets, fake_probe))
    given = probed(inputs)
    assert given.up == {"alice": True, "bob": False}
    assert given.down_reasons == {"bob": "write: NT_STATUS_MEDIA_WRITE_PROTECTED"}
    assert given.node_registered == {"alice": True, "bob": False}
    snapshot = collect(
        str(root),
        given.specs,
        T0 + DAY,
        up=given.up,
        node_registered=given.node_registered,
        down_reasons=given.down_reasons,
    )
    report = text_report(snapshot)
    assert "DOWN (write: NT_STATUS_MEDIA_WRITE_PROTECTED)" in report
    assert "bob: share_down: the share's Samba container is not up: write: NT_STATUS_MEDIA_WRITE_PROTECTED" in report
    assert failing(snapshot)
    families = {f.name: f for f in text_string_to_metric_families(render(snapshot).decode())}
    down = [(s.labels, s.value) for s in families["timemachine_share_down_info"].samples]
    assert down == [({"share": "bob", "reason": "write: NT_STATUS_MEDIA_WRITE_PROTECTED"}, 1.0)]
    up = {s.labels["share"]: s.value for s in families["timemachine_share_up"].samples}
    assert up == {"alice": 1.0, "bob": 0.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"shares": [{"name": "a", "node": "tm-a"}]}', "caddyStateDir"),
        ('{"shares": [{"name": "a"}, {"name": "a"}]}', "listed twice"),
        ('{"shares": [{"name": "a", "adress": "x"}]}', "adress"),
        ("{", "--shares-json"),
    ],
)
def test_a_bad_shares_json_is_refused_with_why(text, message):
    with pytest.raises(ValueError, match=message):
        parse_shares_json(text)
