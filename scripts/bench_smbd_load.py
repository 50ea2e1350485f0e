#!/usr/bin/env python3
"""Peak pids and threads of one share's smbd under many requests in flight: the figures `aio max
threads` (timemachine/samba/smbconf.py) and the Samba container's pids limit (samba.processLimit)
are set from.

A Mac with a fast link keeps many SMB2 requests in flight on its one connection (it asks for
credits, and Samba grants up to 8192); smbd hands each write and flush to a thread of its pool, up
to `aio max threads`. This script runs the stack's Samba image as the stack runs it (hardened, the
stack's smb.conf, the pids limit given), and one client (smbprotocol, on this machine) that opens
--files files on one connection and keeps --in-flight writes of --write-kib each in flight (a
sliding window: a new write is sent as each reply comes), with a flush every --flush-every writes,
until --size-mib are written. Meanwhile it samples the container's cgroup pids.current (what the
pids limit counts: processes and their threads) and the threads of its processes (/proc). At the end
it checks that the healthcheck (a fork of smbclient) still runs and that every write succeeded.

Prints `peak pids=<n> threads=<n> processes=<n> limit=<n> aio_max_threads=<n> in_flight=<n>`.

    .venv/bin/python scripts/bench_smbd_load.py [--in-flight 128] [--process-limit 64]
        [--aio-max-threads N (default: the stack's)] [--samba-image I]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from glob import glob
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    ShareAccess,
)

from tests.support.containers import samba_volumes
from tests.support.docker_engine import docker_client_for
from tests.support.network import unique_subnet, wait_port
from tests.support.smb import guest_tree
from timemachine.components import hardening
from timemachine.config.models import SambaConfig
from timemachine.samba.smbconf import AIO_MAX_THREADS, SMB_CONF_ENV, render_smb_conf

SHARE = "backup"
DATA_UID = 1234


def threads_of(pid: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, container, interval: float):
        super().__init__(daemon=True)
        self.container, self.interval = container, interval
        found = glob(f"/sys/fs/cgroup/pids/**/*{container.id}*/pids.current", recursive=True) or glob(
            f"/sys/fs/cgroup/**/*{container.id}*/pids.current", recursive=True
        )
        self.pids_file = Path(found[0]) if found else None
        self.peak_pids = self.peak_threads = self.peak_processes = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.pids_file is not None:
                self.peak_pids = max(self.peak_pids, int(self.pids_file.read_text()))
            rows = self.container.top(ps_args="-o pid").get("Processes") or []
            pids = [row[0] for row in rows]
            self.peak_processes = max(self.peak_processes, len(pids))
            self.peak_threads = max(self.peak_threads, sum(threads_of(p) for p in pids))
            self.stopped.wait(self.interval)


def load(host: str, args) -> tuple[int, float]:
    """Write --size-mib with --in-flight requests outstanding; bytes written and seconds."""
    # The guest session and tree connect the tests use (tests/support/smb.py); the writes go on its connection.
    with guest_tree(host, SHARE) as (session, tree):
        connection = session.connection
        files = []
        for index in range(args.files):
            handle = Open(tree, f"band-{index}")
            handle.create(
                ImpersonationLevel.Impersonation,
                FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE,
                FileAttributes.FILE_ATTRIBUTE_NORMAL,
                ShareAccess.FILE_SHARE_READ,
                CreateDisposition.FILE_OVERWRITE_IF,
                CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
            files.append(handle)
        chunk = os.urandom(args.write_kib * 1024)
        sid, tid = session.session_id, tree.tree_connect_id
        total = args.size_mib * 1024 * 1024
        offsets = [0] * len(files)
        pending: deque = deque()
        sent = written = count = 0
        start = time.perf_counter()
        # A write takes one credit per 64 KiB; the server grants what each request asks for, up to its
        # maximum (8192 in Samba). Ask for the whole window up front, then on every request.
        charge = max(1, (len(chunk) - 1) // 65536 + 1)
        connection.echo(sid=sid, credit_request=min(8192, charge * (args.in_flight + 1) + 8))

        def credits() -> int:
            return connection.sequence_window["high"] - connection.sequence_window["low"]

        while written < total:
            while sent < total and len(pending) < args.in_flight and credits() >= charge + 1:
                index = count % len(files)
                count += 1
                handle = files[index]
                if args.flush_every and count % args.flush_every == 0:
                    message, receive = handle.flush(send=False)
                    # Credits for the window: each request asks for more until it is granted.
                    pending.append((receive, connection.send(message, sid, tid, credit_request=2), 0))
                message, receive = handle.write(chunk, offsets[index], send=False)
                offsets[index] += len(chunk)
                sent += len(chunk)
                request = connection.send(message, sid, tid, credit_request=charge * 2)
                pending.append((receive, request, len(chunk)))
            if not pending:
                connection.echo(sid=sid, credit_request=charge * args.in_flight)
                continue
            receive, request, size = pending.popleft()
            receive(request)
            written += size
        seconds = time.perf_counter() - start
        for handle in files:
            handle.close()
        return written, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--in-flight", type=int, default=128)
    parser.add_argument("--write-kib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--flush-every", type=int, default=16)
    parser.add_argument("--process-limit", type=int, default=SambaConfig().process_limit)
    parser.add_argument("--aio-max-threads", type=int, default=AIO_MAX_THREADS)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--samba-image", default="")
    parser.add_argument("--prefix", default="tm-smbd-load")
    args = parser.parse_args()
    client = docker_client_for()
    images = sorted(client.images.list("tailscale-timemachine/samba"), key=lambda i: i.attrs["Created"])
    samba_image = args.samba_image or images[-1].tags[0]
    work = Path(tempfile.mkdtemp(prefix="tm-smbd-load-"))
    subnet = ipaddress.IPv4Network(unique_subnet(client))
    hosts = list(subnet.hosts())
    gateway, samba_ip = str(hosts[0]), str(hosts[1])
    tag = uuid.uuid4().hex[:6]
    network = client.networks.create(
        f"{args.prefix}-{tag}",
        driver="bridge",
        ipam={"Driver": "default", "Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
    )
    samba_limits = SambaConfig.model_validate({"processLimit": args.process_limit})
    samba = None
    try:
        # From this machine, smbd sees the network's gateway: the one address it admits, as the proxy's.
        conf = render_smb_conf(SHARE, None, "TimeCapsule8,119", allow_from=gateway)
        conf = conf.replace(f"aio max threads = {AIO_MAX_THREADS}", f"aio max threads = {args.aio_max_threads}")
        samba = client.containers.create(
            samba_image,
            name=f"{args.prefix}-{tag}",
            environment=[f"DATA_UID={DATA_UID}", f"{SMB_CONF_ENV}={conf}"],
            volumes=samba_volumes(work / "data"),
            network=network.name,
            networking_config={network.name: client.api.create_endpoint_config(ipv4_address=samba_ip)},
            pids_limit=args.process_limit,
            **hardening.docker_sdk(hardening.for_samba(samba_limits)),
        )
        samba.start()
        wait_port(samba_ip, 445)
        time.sleep(2)
        sampler = Sampler(samba, args.interval)
        sampler.start()
        error = ""
        try:
            written, seconds = load(samba_ip, args)
        except Exception as failed:  # noqa: BLE001 - the figure is what happened, an error included
            written, seconds, error = 0, 0.0, f"{type(failed).__name__}: {failed}"
        health = samba.exec_run(["/usr/local/bin/healthcheck.sh"])
        sampler.stopped.set()
        sampler.join()
        logs = samba.logs().decode(errors="replace")
    finally:
        if samba is not None:
            samba.remove(force=True, v=True)
        network.remove()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    rate = f"{written / 1e6 / seconds:.0f} MB/s" if seconds else "-"
    print(
        f"{written // (1024 * 1024)} MiB in {seconds:.1f} s ({rate}), {args.in_flight} writes of {args.write_kib} KiB "
        f"in flight over {args.files} files, a flush every {args.flush_every}; image {samba_image}"
    )
    print(f"healthcheck after the load: exit {health.exit_code}: {health.output.decode(errors='replace').strip()}")
    forks = [line for line in logs.splitlines() if "fork" in line.lower() or "Resource temporarily" in line]
    print(f"smbd log lines about failed forks: {len(forks)}{': ' + forks[0] if forks else ''}")
    if error:
        print(f"the load failed: {error}")
    print(
        f"peak pids={sampler.peak_pids} threads={sampler.peak_threads} processes={sampler.peak_processes} "
        f"limit={args.process_limit} aio_max_threads={args.aio_max_threads} in_flight={args.in_flight}"
    )


if __name__ == "__main__":
    main()
