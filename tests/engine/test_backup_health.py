"""Backup health on a stack the real engine deployed: the status container sees what an SMB client writes
(within one scrape), a completion resets the age, a damaged plist is reported while the rest is still
collected, and a backup filesystem gone read-only makes the share's data-path health check and the status
say so. Its own stack (namePrefix tm-health); alice's share directory is a filesystem of its own (a
loop-mounted ext4 under the storage root) so it can go read-only as a failing disk does."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import smbclient
from prometheus_client.parser import text_string_to_metric_families

from tests.support.deploy import deployed_stack, fake_key, mark_storage, stack_config
from tests.support.network import unique_subnet, wait_port
from tests.support.project import ROOT
from tests.support.proxy_path import proxy_path
from tests.support.smb import GuestClient
from tests.unit.health.bundles import HOUR, Bundle, history, make_bundle
from timemachine.components.share import HEALTH_INTERVAL_SECONDS, HEALTH_RETRIES
from timemachine.planning import names

pytestmark = pytest.mark.engine

PREFIX = "tm-health"
SHARES = [
    {"name": "alice", "owner": "alice@example.com", "quota": "1G", "staleAfter": "1h"},
    {"name": "bob", "owner": "bob@example.com"},
]
HISTORY = "com.apple.TimeMachine.SnapshotHistory.plist"


def sh(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@contextmanager
def loop_filesystem(image: Path, mount_point: Path) -> Iterator[None]:
    """A 64 MiB ext4 at mount_point (empty: lost+found removed, as a new share directory is)."""
    with open(image, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)
    sh("mkfs.ext4", "-q", "-F", str(image))
    mount_point.mkdir(parents=True)
    sh("mount", "-o", "loop", str(image), str(mount_point))
    try:
        (mount_point / "lost+found").rmdir()
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
        image.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def health(pulumi_env, docker_client, goproxy, tmp_path_factory):
    work = tmp_path_factory.mktemp("health")
    storage = mark_storage(work / "storage")
    config = stack_config(storage, None, unique_subnet(docker_client), goproxy.build_args(), SHARES, name_prefix=PREFIX)
    # Each scrape collects anew (at most once a second), so a write shows in the next scrape.
    config["status"] = {"enabled": True, "collectInterval": "1s"}
    with (
        loop_filesystem(work / "alice.img", storage / "alice"),
        deployed_stack(docker_client, pulumi_env, work / "stack", "health", config, up=False) as deployment,
    ):
        stack = deployment.stack
        stack.set_secrets({"status.authKey": fake_key("status")})
        stack.up()
        outputs = stack.outputs()
        for share in outputs["shares"].values():
            wait_port(share["ip"], 445)
        status = outputs["status"]
        wait_port(status["ip"], 9110)
        with proxy_path(docker_client, ["alice", "bob"], name_prefix=PREFIX) as paths:
            yield {
                "stack": stack,
                "client": docker_client,
                "storage": storage,
                "status": status,
                "paths": paths,
                "outputs": outputs,
            }


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    with urllib.request.urlopen(url, timeout=60) as response:
        text = response.read().decode()
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(metrics, name: str, **labels: str) -> float | None:
    return metrics.get(name, {}).get(tuple(sorted(labels.items())))


def next_scrape(url: str):
    """The first scrape after what the test just did (the status container collects at most once a second)."""
    time.sleep(1.1)
    return scrape(url)


def upload_tree(client: GuestClient, share: str, local: Path, remote: str) -> None:
    """Copy a bundle over SMB as a Mac writes one, keeping each file's mtime (bands' mtimes are activity)."""
    for directory, _dirs, files in os.walk(local):
        relative = Path(directory).relative_to(local)
        target = "\\".join([remote, *relative.parts])
        smbclient.makedirs(client.path(share, target), exist_ok=True, **client.kw())
        for name in files:
            path = Path(directory) / name
            with smbclient.open_file(client.path(share, target, name), mode="wb", **client.kw()) as f:
                f.write(path.read_bytes())
            mtime = path.stat().st_mtime
            smbclient.utime(client.path(share, target, name), times=(mtime, mtime), **client.kw())


def status_command(*args: str, cwd: Path | None = None, env: dict | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "timemachine.health", "status", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_status_container_runs_hardened_with_read_only_mounts_and_no_docker_socket(health):
    container = health["client"].containers.get(names.status_container(PREFIX))
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["CAP_DAC_READ_SEARCH"]
    assert host["ReadonlyRootfs"] is True and host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["PidsLimit"] == 64 and host["Memory"] == 256 * 1024 * 1024
    mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
    assert set(mounts) == {"/storage", "/caddy"} and not any(m["RW"] for m in mounts.values())
    assert "docker.sock" not in str(container.attrs)
    code, out = container.exec_run(["python3", "-c", "open('/storage/intruder', 'w')"])
    assert code != 0 and "Read-only file system" in out.decode(), out
    assert health["status"]["metricsUrl"] == f"http://{health['status']['ip']}:9110/metrics"
    assert health["status"]["pageUrl"] == "http://tm-status.e2e.ts.net/"


def test_the_probe_sees_each_share_up_and_no_node_registered_without_a_control_server(health):
    metrics = scrape(health["status"]["metricsUrl"])
    for share in ("alice", "bob"):
        assert value(metrics, "timemachine_share_up", share=share) == 1.0, metrics.get("timemachine_share_down_info")
        # No control server answers in this tier: Caddy's node state has no identity.
        assert value(metrics, "timemachine_node_registered", share=share) == 0.0
    assert value(metrics, "timemachine_share_quota_bytes", share="alice") == 1024**3
    assert value(metrics, "timemachine_backup_stale_after_seconds", share="alice") == HOUR


def test_a_bundle_written_over_smb_shows_in_the_next_scrape_and_a_completion_resets_its_age(health, tmp_path):
    url = health["status"]["metricsUrl"]
    now = time.time()
    completed = now - 2 * HOUR
    local = make_bundle(
        tmp_path,
        Bundle("Test Mac", completions=[completed], bands={"0": (8192, completed - 60)}, created=now - 24 * HOUR),
    )
    client = GuestClient(*health["paths"]["alice"])
    try:
        upload_tree(client, "alice", local, local.name)
        metrics = next_scrape(url)
        labels = {"share": "alice", "machine": "Test Mac"}
        assert value(metrics, "timemachine_backup_last_completed_timestamp_seconds", **labels) == pytest.approx(
            completed, abs=1
        )
        assert value(metrics, "timemachine_backup_snapshots", **labels) == 1
        assert value(metrics, "timemachine_backup_bands", **labels) == 1
        assert value(metrics, "timemachine_backup_problems", **labels) == 0
        code, out = status_command("--url", url)
        assert code == 1 and "alice / Test Mac: stale: last backup completed 2h 0m ago" in out, out

        # The Mac finishes another backup: it appends to its history.
        again = time.time()
        plist = client.path("alice", local.name, HISTORY)
        with smbclient.open_file(plist, mode="rb", **client.kw()) as f:
            current = plistlib.loads(f.read())
        current["Snapshots"] += history([again])["Snapshots"]
        with smbclient.open_file(plist, mode="wb", **client.kw()) as f:
            f.write(plistlib.dumps(current))
        metrics = next_scrape(url)
        assert value(metrics, "timemachine_backup_last_completed_timestamp_seconds", **labels) == pytest.approx(
            again, abs=1
        )
        assert value(metrics, "timemachine_backup_snapshots", **labels) == 2
        code, out = status_command("--url", url)
        assert "Test Mac: stale" not in out, out
        row = next(line for line in out.splitlines() if line.startswith("alice") and "Test Mac" in line)
        assert row.endswith(" ok") and " ago " in row, row
    finally:
        client.close()


def test_a_damaged_plist_is_reported_and_the_rest_still_collected(health, tmp_path):
    url = health["status"]["metricsUrl"]
    now = time.time()
    local = make_bundle(tmp_path, Bundle("Broken Mac", completions=[now - HOUR], bands={"0": (4096, now - HOUR)}))
    (local / HISTORY).write_bytes(b"<?xml version='1.0'?><plist><dict><key>")
    client = GuestClient(*health["paths"]["bob"])
    try:
        upload_tree(client, "bob", local, local.name)
    finally:
        client.close()
    metrics = next_scrape(url)
    broken = {"share": "bob", "machine": "Broken Mac"}
    assert value(metrics, "timemachine_backup_problems", **broken) == 1
    assert value(metrics, "timemachine_backup_last_completed_timestamp_seconds", **broken) is None
    assert value(metrics, "timemachine_backup_bands", **broken) == 1
    assert value(metrics, "timemachine_backup_snapshots", share="alice", machine="Test Mac") == 2
    with urllib.request.urlopen(url.removesuffix("metrics"), timeout=60) as response:
        page = response.read().decode()
    assert f"{HISTORY}: damaged" in page


def wait_health(container, status: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        health = container.attrs["State"]["Health"]
        if health["Status"] == status:
            return health
        time.sleep(2)
    raise AssertionError(f"{container.name} not {status} after {timeout}s: {container.attrs['State']['Health']}")


def test_a_read_only_backup_filesystem_turns_the_share_unhealthy_within_two_checks_and_the_status_says_why(health):
    client, storage, url = health["client"], health["storage"], health["status"]["metricsUrl"]
    samba = client.containers.get(names.samba_container(PREFIX, "alice"))
    # Docker's first check comes one interval after the start.
    assert wait_health(samba, "healthy", HEALTH_INTERVAL_SECONDS + 30)["Status"] == "healthy"
    # Two failed checks, one interval apart, the first at most an interval after the fault, each
    # taking at most its timeout (10 s): about a minute.
    within = HEALTH_INTERVAL_SECONDS * HEALTH_RETRIES + 10
    # The disk goes read-only under the running share, as ext4 does on errors (errors=remount-ro).
    sh("mount", "-o", "remount,ro", str(storage / "alice"))
    try:
        started = time.monotonic()
        state = wait_health(samba, "unhealthy", within + 5)
        took = time.monotonic() - started
        assert took <= within
        assert "cannot write /data/.timemachine-probe on the backup filesystem" in state["Log"][-1]["Output"], state
        metrics = next_scrape(url)
        assert value(metrics, "timemachine_share_up", share="alice") == 0.0
        reasons = [dict(k)["reason"] for k in metrics["timemachine_share_down_info"] if dict(k)["share"] == "alice"]
        assert reasons == ["write: NT_STATUS_MEDIA_WRITE_PROTECTED"], reasons
        assert value(metrics, "timemachine_share_up", share="bob") == 1.0
        # The operator's command, from the stack's own output, as run in the project folder.
        stack = health["stack"]
        code, out = status_command("--stack", stack.name, cwd=stack.project, env=stack.env)
        assert code == 1, out
        assert "alice: share_down: the share's Samba container is not up: write: NT_STATUS_MEDIA_WRITE_PROTECTED" in out
        print(f"unhealthy {took:.0f} s after the remount")
    finally:
        sh("mount", "-o", "remount,rw", str(storage / "alice"))
    wait_health(samba, "healthy", HEALTH_INTERVAL_SECONDS + 30)
    assert value(next_scrape(url), "timemachine_share_up", share="alice") == 1.0
    assert not (storage / "alice" / ".timemachine-probe").exists()
    assert not (storage / "alice" / ".timemachine-probe-status").exists()
