#!/usr/bin/env python3
"""Finds the smallest capability set smbd (and the Samba image's entrypoint) works with, by test.

Each trial runs the Samba image the way the stack does (read-only root filesystem and tmpfs from
timemachine/components/hardening.py, no-new-privileges, smb.conf in SMB_CONF, a fresh root-owned
data directory as Docker makes it) with a candidate capability set, and drives one guest workload
against it: write and read back with checksums, a directory, a rename, a delete, a named stream,
set times, the AAPL query with FULL_SYNC, and the bytes and owner on the host. Starting from Docker's default set, each
capability is dropped in turn and stays dropped when the workload still passes (greedy
elimination), so the result is a set where removing any one capability breaks something; the
script prints each trial and what failed, and as its last line `minimal: CAP_A CAP_B …`.

Uses the private engine (scripts/engine.sh); run it under the engine lock:
    flock /var/tmp/tm-docker.lock .venv/bin/python scripts/samba_caps.py [--image IMAGE]
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smbclient

from tests.support.containers import samba_volumes
from tests.support.docker_engine import docker_client_for
from tests.support.network import unique_subnet, wait_port
from tests.support.smb import AAPL_FULL_SYNC, GuestClient, MiB, aapl_query
from timemachine.components import hardening
from timemachine.config.models import SambaConfig
from timemachine.samba.smbconf import SMB_CONF_ENV, render_smb_conf

DOCKER_DEFAULT = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
]
SHARE = "probe"
DATA_UID = 1234


def workload(ip: str, storage: Path) -> None:
    reply, guest = aapl_query(ip, SHARE)
    assert guest and reply.volume_caps & AAPL_FULL_SYNC, f"AAPL reply {reply}"
    client = GuestClient(ip)
    try:
        payload = os.urandom(3 * MiB + 5)
        smbclient.makedirs(client.path(SHARE, "mac.sparsebundle", "bands"), exist_ok=True, **client.kw())
        path = client.path(SHARE, "mac.sparsebundle", "bands", "0")
        with smbclient.open_file(path, mode="wb", **client.kw()) as f:
            f.write(payload)
        with smbclient.open_file(path, mode="rb", **client.kw()) as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest(), "read back differs"
        with smbclient.open_file(path + ":com.apple.probe", mode="wb", **client.kw()) as f:
            f.write(b"a named stream, an xattr on the host")
        smbclient.utime(path, times=(1_700_000_000, 1_700_000_000), **client.kw())
        smbclient.rename(path, client.path(SHARE, "mac.sparsebundle", "bands", "1"), **client.kw())
        with smbclient.open_file(client.path(SHARE, "gone.txt"), mode="w", **client.kw()) as f:
            f.write("x")
        smbclient.remove(client.path(SHARE, "gone.txt"), **client.kw())
        assert "mac.sparsebundle" in smbclient.listdir(client.path(SHARE), **client.kw())
    finally:
        client.close()
    on_host = storage / "mac.sparsebundle" / "bands" / "1"
    assert on_host.read_bytes() == payload and on_host.stat().st_uid == DATA_UID, "bytes or owner on the host"
    assert on_host.stat().st_mtime == 1_700_000_000, "times not set"
    assert (storage.stat().st_uid, oct(storage.stat().st_mode & 0o777)) == (DATA_UID, "0o700"), "data dir"


def trial(
    client, image: str, network: str, ip: str, gateway: str, caps: list[str], prefix: str = "tm-capsprobe"
) -> str | None:
    """None if the workload passes with exactly `caps`, else what failed."""
    storage = Path(tempfile.mkdtemp(prefix="tm-capsprobe-")) / "data"  # Docker creates it, root-owned
    kwargs = hardening.docker_sdk(hardening.for_samba(SambaConfig(), capabilities=caps))
    conf = render_smb_conf(SHARE, None, "TimeCapsule8,119", allow_from=gateway)
    container = client.containers.create(
        image,
        name=f"{prefix}-{uuid.uuid4().hex[:6]}",
        environment=[f"DATA_UID={DATA_UID}", f"{SMB_CONF_ENV}={conf}"],
        volumes=samba_volumes(storage),
        network=network,
        networking_config={network: client.api.create_endpoint_config(ipv4_address=ip)},
        **kwargs,
    )
    try:
        container.start()
        try:
            wait_port(ip, 445, timeout=20)
        except AssertionError:
            container.reload()
            return f"smbd did not listen ({container.status}): {container.logs(tail=5).decode().strip()}"
        try:
            workload(ip, storage)
        except Exception as exc:  # noqa: BLE001 - the finding is the failure itself
            return f"{type(exc).__name__}: {str(exc)[:200]}"
        return None
    finally:
        container.remove(force=True, v=True)
        shutil.rmtree(storage.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prefix", default="tm-capsprobe", help="name prefix of the probe's network and containers")
    parser.add_argument("--image", default="", help="Samba image (default: the newest tailscale-timemachine/samba)")
    args = parser.parse_args()
    client = docker_client_for()
    image = (
        args.image
        or sorted(client.images.list("tailscale-timemachine/samba"), key=lambda i: i.attrs["Created"])[-1].tags[0]
    )
    subnet = ipaddress.IPv4Network(unique_subnet(client))
    gateway, ip = (str(h) for h in list(subnet.hosts())[:2])
    network = client.networks.create(
        f"{args.prefix}-{uuid.uuid4().hex[:6]}",
        driver="bridge",
        ipam={"Driver": "default", "Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
    )
    try:
        print(f"image {image}; Docker's default set: {' '.join(DOCKER_DEFAULT)}")
        start = time.perf_counter()
        failure = trial(client, image, network.name, ip, gateway, DOCKER_DEFAULT, args.prefix)
        print(f"default set: {failure or 'passes'}")
        if failure:
            raise SystemExit("the workload fails even with Docker's default set")
        print(f"none at all: {trial(client, image, network.name, ip, gateway, [], args.prefix) or 'passes'}")
        kept = list(DOCKER_DEFAULT)
        for cap in DOCKER_DEFAULT:
            candidate = [c for c in kept if c != cap]
            failure = trial(client, image, network.name, ip, gateway, candidate, args.prefix)
            if failure is None:
                kept = candidate
                print(f"without {cap}: passes -> dropped")
            else:
                print(f"without {cap}: {failure} -> needed")
        print(f"{len(DOCKER_DEFAULT) + 2} trials in {time.perf_counter() - start:.0f} s")
        print(f"minimal: {' '.join(kept)}")
    finally:
        network.remove()


if __name__ == "__main__":
    main()
