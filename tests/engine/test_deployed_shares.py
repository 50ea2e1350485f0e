"""What `pulumi up` deployed, exercised with real SMB clients: guest I/O, AAPL, quota, isolation,
smbd killed mid-write, concurrent writers — through the proxy's address (smbd admits no other),
under every restriction the stack puts on the Samba containers."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import signal
import threading
import time
import uuid

import pytest
import smbclient
from smbprotocol.exceptions import SMBException

from tests.support.containers import samba_volumes, upload, wait_healthy
from tests.support.deploy import DATA_UID
from tests.support.engine_stack import QUOTAS
from tests.support.network import wait_port
from tests.support.proxy_path import proxy_path
from tests.support.smb import AAPL_FULL_SYNC, GuestClient, MiB, aapl_query, guest_tree
from timemachine.planning import names
from timemachine.samba.smbconf import render_smb_conf

pytestmark = pytest.mark.engine
BAND = 8 * MiB


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def stack(deployed):
    client = deployed["client"]
    prefix = deployed["prefix"]
    containers = {name: client.containers.get(names.samba_container(prefix, name)) for name in deployed["ips"]}
    # A share rendered with fruit:time machine = no, from the image and on the network `up` made.
    alice = containers["alice"]
    used = set(deployed["ips"].values())
    subnet = ipaddress.IPv4Network(deployed["config"]["network"]["subnet"])
    control_ip = next(str(ip) for ip in list(subnet.hosts())[1:-1] if str(ip) not in used)
    gateway = str(next(subnet.hosts()))
    control = client.containers.create(
        alice.image.id,
        name=f"{prefix}-control-{uuid.uuid4().hex[:6]}",
        environment=[f"DATA_UID={DATA_UID}"],
        volumes=samba_volumes(deployed["storage"] / "control"),
        network=deployed["network"],
        networking_config={deployed["network"]: client.api.create_endpoint_config(ipv4_address=control_ip)},
    )
    try:
        upload(
            control,
            "/etc/samba/smb.conf",
            render_smb_conf("control", None, "TimeCapsule8,119", allow_from=gateway, time_machine=False),
        )
        control.start()
        wait_port(control_ip, 445)
        with proxy_path(client, list(deployed["ips"]), name_prefix=prefix) as paths:
            yield {**deployed, "containers": containers, "control_ip": control_ip, "paths": paths}
    finally:
        control.remove(force=True, v=True)


def test_guest_write_read_checksum_list_and_bytes_on_host(stack):
    for share in ("alice", "bob"):
        client = GuestClient(*stack["paths"][share])
        try:
            payload = os.urandom(3 * MiB + 17)
            with smbclient.open_file(client.path(share, "hello.bin"), mode="wb", **client.kw()) as f:
                f.write(payload)
            with smbclient.open_file(client.path(share, "hello.bin"), mode="rb", **client.kw()) as f:
                assert sha256(f.read()) == sha256(payload)
            assert "hello.bin" in smbclient.listdir(client.path(share), **client.kw())
        finally:
            client.close()
        on_host = stack["storage"] / share / "hello.bin"
        assert sha256(on_host.read_bytes()) == sha256(payload)
        assert on_host.stat().st_uid == DATA_UID and (stack["storage"] / share).stat().st_uid == DATA_UID


def test_time_machine_capability_is_advertised_only_with_the_flag(stack):
    for share in ("alice", "bob"):
        reply, guest = aapl_query(stack["paths"][share][0], share, stack["paths"][share][1])
        assert guest, "the session should be a guest session"
        assert reply.volume_caps & AAPL_FULL_SYNC, f"{share}: volume caps {reply.volume_caps:#x} lack FULL_SYNC"
        assert reply.model == "TimeCapsule8,119"
        assert reply.server_caps & 0x4, "UNIX-based server capability expected from fruit"
    # Negative control: the deployed image and network, with fruit:time machine = no.
    control, _ = aapl_query(stack["control_ip"], "control")
    assert not control.volume_caps & AAPL_FULL_SYNC, "the control share must not advertise FULL_SYNC"
    assert control.model == "TimeCapsule8,119"


def test_quota_is_the_reported_volume_size(stack):
    for share in ("alice", "bob"):
        client = GuestClient(*stack["paths"][share])
        try:
            volume = smbclient.stat_volume(client.path(share), **client.kw())
        finally:
            client.close()
        assert volume.total_size == QUOTAS[share], (share, volume)
        assert 0 < volume.caller_available_size <= QUOTAS[share]


def test_isolation_between_shares(stack):
    alice = GuestClient(*stack["paths"]["alice"])
    bob = GuestClient(*stack["paths"]["bob"])
    try:
        with smbclient.open_file(alice.path("alice", "only-alice.txt"), mode="w", **alice.kw()) as f:
            f.write("private")
        assert "only-alice.txt" not in smbclient.listdir(bob.path("bob"), **bob.kw())
        assert not (stack["storage"] / "bob" / "only-alice.txt").exists()
    finally:
        alice.close()
        bob.close()
    # Each smbd serves only its own share: bob's name is unknown at alice's address.
    with pytest.raises(SMBException):
        with guest_tree(stack["paths"]["alice"][0], "bob", stack["paths"]["alice"][1]):
            pass
    states = []
    for container in stack["containers"].values():
        container.reload()
        assert not container.attrs["HostConfig"].get("PortBindings"), f"{container.name} publishes ports"
        assert all(not bindings for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values())
        states += [m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == "/var/lib/samba"]
    assert len(states) == 3 and len(set(states)) == 3, f"Samba state shared: {states}"


def test_smbd_killed_mid_write_comes_back_and_flushed_data_is_intact(stack):
    container = stack["containers"]["alice"]
    path = stack["paths"]["alice"]
    wait_healthy(container, timeout=120)
    client = GuestClient(*path)
    before = os.urandom(5 * MiB)
    with smbclient.open_file(client.path("alice", "flushed.bin"), mode="wb", **client.kw()) as f:
        f.write(before)
        f.flush()
    restarts = container.attrs["RestartCount"]
    pid = container.attrs["State"]["Pid"]
    failed = False
    try:
        with smbclient.open_file(client.path("alice", "interrupted.bin"), mode="wb", **client.kw()) as f:
            for i in range(64):
                f.write(os.urandom(MiB))
                if i == 8:
                    os.kill(pid, signal.SIGKILL)  # a crash of smbd, not a docker stop
                    time.sleep(0.5)
    except (SMBException, OSError, ValueError):
        failed = True
    finally:
        client.close()
    assert failed, "writing on after smbd was killed should fail"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs["RestartCount"] > restarts and container.status == "running":
            break
        time.sleep(0.5)
    assert container.attrs["RestartCount"] > restarts, "the restart policy did not restart the container"
    wait_healthy(container, timeout=120)
    client = GuestClient(*path)
    try:
        with smbclient.open_file(client.path("alice", "flushed.bin"), mode="rb", **client.kw()) as f:
            assert sha256(f.read()) == sha256(before)
        with smbclient.open_file(client.path("alice", "after.bin"), mode="wb", **client.kw()) as f:
            f.write(b"new session works")
    finally:
        client.close()
    assert (stack["storage"] / "alice" / "after.bin").read_bytes() == b"new session works"


def test_four_writers_two_shares_sparsebundle_bands(stack):
    bands_per_writer = 6
    results: dict = {}
    errors: list = []

    def writer(share: str, index: int) -> None:
        client = GuestClient(*stack["paths"][share])
        try:
            root = f"mac{index}.sparsebundle"
            smbclient.makedirs(client.path(share, root, "bands"), exist_ok=True, **client.kw())
            sums = {}
            for band in range(bands_per_writer):
                data = os.urandom(BAND)
                name = f"{band:x}"
                with smbclient.open_file(client.path(share, root, "bands", name), mode="wb", **client.kw()) as f:
                    f.write(data)
                sums[f"{root}/bands/{name}"] = sha256(data)
            with smbclient.open_file(client.path(share, root, "Info.plist"), mode="w", **client.kw()) as f:
                f.write(f"<plist>{index}</plist>")
            for rel, digest in sums.items():
                with smbclient.open_file(client.path(share, *rel.split("/")), mode="rb", **client.kw()) as f:
                    assert sha256(f.read()) == digest
            results[(share, index)] = sums
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append((share, index, exc))
        finally:
            client.close()

    threads = [
        threading.Thread(target=writer, args=(share, i)) for i, share in enumerate(["alice", "bob", "alice", "bob"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert len(results) == 4
    for (share, _), sums in results.items():
        for rel, digest in sums.items():
            assert sha256((stack["storage"] / share / rel).read_bytes()) == digest
