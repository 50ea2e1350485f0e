#!/usr/bin/env python3
"""Peak memory (RSS) and process count of smbd and Caddy while one client backs up 1 GiB, the
figures the containers' default limits (config/models.py) are sized from.

It deploys a one-share stack with the real engine (`pulumi up`, the tests' own helpers; needs
scripts/setup.sh), under every restriction the stack sets, and destroys it afterwards. The client
is Samba's `smbclient`, writing `--size-mib` as 8 MiB band files (a sparsebundle's shape) through
the deployed Caddy config (tests.engine.deploy.proxy_path: a second Caddy from the deployed image in
the deployed Caddy's network namespace, since smbd admits only that address), then reading them
back. Every --interval seconds it lists each container's processes (`docker top`) and sums their
VmRSS and threads from /proc. Prints the peaks per container and, as its last lines,
`peak <container> rss_mib=<x> processes=<n> threads=<n>` (the pids limit counts threads).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import docker_client_for, unique_subnet  # noqa: E402
from tests.engine.deploy import deploy, new_stack, proxy_path, stack_config, start_goproxy, teardown  # noqa: E402
from tests.engine.pulumi_cli import tools_env  # noqa: E402

BAND = 8 * 1024 * 1024


def rss_and_threads(pid: str) -> tuple[int, int]:
    """VmRSS (KiB) and thread count of a process; the pids cgroup counts threads, not processes."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.split()
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    return int(fields.get("VmRSS", ["0"])[0]), int(fields.get("Threads", ["0"])[0])


class Sampler(threading.Thread):
    def __init__(self, containers, interval: float):
        super().__init__(daemon=True)
        self.containers, self.interval = containers, interval
        self.peaks = {c.name: [0, 0, 0] for c in containers}  # rss KiB, processes, threads
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for c in self.containers:
                try:
                    titles_procs = c.top(ps_args="-o pid")
                except Exception:  # noqa: BLE001 - a container restarting between samples
                    continue
                pids = [row[0] for row in titles_procs.get("Processes") or []]
                peak = self.peaks[c.name]
                sampled = [rss_and_threads(p) for p in pids]
                peak[0] = max(peak[0], sum(rss for rss, _ in sampled))
                peak[1] = max(peak[1], len(pids))
                peak[2] = max(peak[2], sum(threads for _, threads in sampled))
            self.stopped.wait(self.interval)


def smbclient(host: str, port: int, share: str, commands: str) -> None:
    done = subprocess.run(["smbclient", f"//{host}/{share}", "-p", str(port), "-N", "-m", "SMB3",
                           "--option=client min protocol=SMB2", "-c", commands], capture_output=True, text=True)
    if done.returncode != 0 or "NT_STATUS" in done.stdout + done.stderr:
        raise RuntimeError(f"smbclient failed: {done.stdout[-400:]} {done.stderr[-400:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--interval", type=float, default=0.2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tm-limits-"))
    src = work / "bands"
    src.mkdir()
    for i in range(max(1, args.size_mib * 1024 * 1024 // BAND)):
        (src / f"{i:x}").write_bytes(os.urandom(BAND))
    client = docker_client_for()
    goproxy = start_goproxy(client, work / "goproxy")
    stack = new_stack(work / "stack", "limits", tools_env())
    config = stack_config(work / "storage", f"tm-limits-{os.getpid()}", unique_subnet(client), goproxy.build_args(),
                          [{"name": "backup", "owner": "backup@example.com"}])
    try:
        deploy(stack, config)
        with proxy_path(client, ["backup"]) as paths:
            host, port = paths["backup"]
            side = [c for c in client.containers.list() if c.name.startswith("tm-proxy-path-")]
            containers = [client.containers.get("tm-backup-samba"), client.containers.get("tm-caddy"), *side]
            sampler = Sampler(containers, args.interval)
            sampler.start()
            start = time.perf_counter()
            smbclient(host, port, "backup", "mkdir mac.sparsebundle; cd mac.sparsebundle; mkdir bands")
            smbclient(host, port, "backup", f"prompt off; lcd {src}; cd mac.sparsebundle/bands; mput *")
            written = time.perf_counter() - start
            back = work / "back"
            back.mkdir()
            smbclient(host, port, "backup", f"prompt off; lcd {back}; cd mac.sparsebundle/bands; mget *")
            sampler.stopped.set()
            sampler.join()
    finally:
        teardown(stack, client, work / "storage")
        goproxy.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.size_mib} MiB written in {written:.1f} s and read back; sampled every {args.interval} s")
    print("(tm-caddy is the deployed Caddy, idle here without a control server; tm-proxy-path-* is the")
    print(" same image and config carrying the backup, in tm-caddy's network namespace)")
    for name, (kib, procs, threads) in sampler.peaks.items():
        print(f"peak {name} rss_mib={kib / 1024:.1f} processes={procs} threads={threads}")


if __name__ == "__main__":
    main()
