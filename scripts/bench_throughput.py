#!/usr/bin/env python3
"""SMB throughput of Time Machine-like traffic (8 MiB band files) against the local disk, and through
the Caddy layer4 proxy against straight to Samba, measured side by side in one run.

It deploys a one-share stack with the real engine (`pulumi up`, the tests' own helpers; needs
scripts/setup.sh) and destroys it afterwards; the proxy path is the deployed Caddy config in a
second Caddy from the deployed image in the deployed Caddy's network namespace whose tailnet
listener is a TCP port there (smbd admits only the proxy's address, so the direct client also runs
in that namespace, through nsenter). Clients: Samba's
`smbclient` (C) so the client's CPU cost stays small next to the path measured. Each round writes
and reads `--size-mib` through each path, alternating direct and proxy; the disk baseline writes
the same files with fsync and reads them back. Before every read, the files' pages are dropped
from the page cache (on the server side too), so reads come from the disk. Prints MB/s per round and, as its last line,
`smb/disk write=<x.xx> read=<x.xx> proxy/direct write=<x.xx> read=<x.xx>` (medians).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.deploy import deployed_stack, stack_config
from tests.support.docker_engine import docker_client_for
from tests.support.goproxy import start_goproxy
from tests.support.network import unique_subnet
from tests.support.proxy_path import proxy_path
from tests.support.pulumi_cli import tools_env
from timemachine.planning import names

BAND = 8 * 1024 * 1024
NAME_PREFIX = "tm-bench"


def evict(folder: Path) -> None:
    """Drop the files' pages from the page cache, so reads come from the disk, not memory."""
    for path in folder.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_round(src: Path, dest: Path) -> tuple[float, float]:
    dest.mkdir()
    files = sorted(src.iterdir())
    data = [f.read_bytes() for f in files]
    start = time.perf_counter()
    for f, blob in zip(files, data, strict=True):
        with open(dest / f.name, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
    write = time.perf_counter() - start
    evict(dest)
    start = time.perf_counter()
    for f in files:
        (dest / f.name).read_bytes()
    read = time.perf_counter() - start
    shutil.rmtree(dest)
    return write, read


def cpu_seconds(containers) -> dict[str, float]:
    """CPU time used so far by each container (all its processes) and by this script's children."""
    out = {c.name: c.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9 for c in containers}
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["smbclient"] = children.ru_utime + children.ru_stime
    return out


def smb_round(
    host: str, port: int, share: str, src: Path, back: Path, name: str, on_host: Path, netns_pid: int | None = None
) -> tuple[float, float]:
    base = ["smbclient", f"//{host}/{share}", "-p", str(port), "-N", "-m", "SMB3", "--option=client min protocol=SMB2"]
    if netns_pid is not None:
        # smbd admits only the proxy's address: the direct client runs in the Caddy container's
        # network namespace (this machine's smbclient, entered with nsenter).
        base = ["nsenter", "-t", str(netns_pid), "-n", *base]

    def run(commands: str) -> float:
        start = time.perf_counter()
        done = subprocess.run(base + ["-c", commands], capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0 or "NT_STATUS" in done.stdout + done.stderr:
            raise RuntimeError(f"smbclient failed: {done.stdout[-400:]} {done.stderr[-400:]}")
        return elapsed

    run(f"mkdir {name}")
    write = run(f"prompt off; lcd {src}; cd {name}; mput *")
    evict(on_host / name)  # the server's copy: reads come from its disk, as for the baseline
    back.mkdir()
    read = run(f"prompt off; lcd {back}; cd {name}; mget *")
    for f in src.iterdir():
        if (back / f.name).stat().st_size != f.stat().st_size:
            raise RuntimeError(f"{f.name}: size differs after the round trip")
    shutil.rmtree(back)
    run(f'prompt off; cd {name}; mask ""; del *; cd ..; rmdir {name}')
    return write, read


def setup(doc: str, prefix: str) -> tuple[argparse.Namespace, int, float, Path, Path]:
    """Arguments (--size-mib, --rounds), and a work folder holding the bands every path moves:
    (args, bands, MB per round, work folder, bands folder)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="data per path per round (≥ 1024 for the target)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bands = max(1, args.size_mib * 1024 * 1024 // BAND)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    src = work / "bands"
    src.mkdir()
    for i in range(bands):
        (src / f"{i:x}").write_bytes(os.urandom(BAND))
    return args, bands, bands * BAND / 1e6, work, src


def report(rows: dict[str, list], cpu: dict[str, dict], size_mb: float, rounds: int) -> Callable[[str, int], float]:
    """Prints CPU seconds per GB for each measured path and the median rates; returns
    rate(path, 0 for write / 1 for read) in MB/s for the closing ratio line."""

    def rate(label: str, index: int) -> float:
        return statistics.median(size_mb / row[index] for row in rows[label])

    gb = 2 * size_mb * rounds / 1000  # written and read back
    for label in cpu:
        print(
            f"  cpu seconds per GB moved, {label:<7}: "
            + ", ".join(f"{k} {v / gb:.2f}" for k, v in sorted(cpu[label].items()))
        )
    print(f"{rounds} rounds of {size_mb:.0f} MB per path; medians in MB/s:")
    for label in rows:
        print(f"  {label:<8} write {rate(label, 0):8.1f}  read {rate(label, 1):8.1f}")
    return rate


def main() -> None:
    args, bands, size_mb, work, src = setup(__doc__ or "", "tm-bench-")
    client = docker_client_for()
    goproxy = start_goproxy(client, work / "goproxy")
    config = stack_config(
        work / "storage",
        f"{NAME_PREFIX}-{os.getpid()}",
        unique_subnet(client),
        goproxy.build_args(),
        [{"name": "bench", "owner": "bench@example.com"}],
        name_prefix=NAME_PREFIX,
    )
    rows: dict[str, list] = {"disk": [], "direct": [], "proxy": []}
    cpu: dict[str, dict] = {"direct": {}, "proxy": {}}
    try:
        with (
            deployed_stack(client, tools_env(), work / "stack", "bench", config) as deployment,
            proxy_path(client, ["bench"], name_prefix=NAME_PREFIX) as paths,
        ):
            ip = deployment.stack.outputs()["shares"]["bench"]["ip"]
            caddy = client.containers.get(names.caddy_container(NAME_PREFIX))
            side = [c for c in client.containers.list() if c.name.startswith(f"{NAME_PREFIX}-proxy-path-")]
            containers = [client.containers.get(names.samba_container(NAME_PREFIX, "bench")), *side]
            netns = caddy.attrs["State"]["Pid"]
            for r in range(args.rounds):
                order = [("direct", ip, 445), ("proxy", *paths["bench"])]
                if r % 2:
                    order.reverse()
                rows["disk"].append(disk_round(src, work / f"disk{r}"))
                for label, host, p in order:
                    before = cpu_seconds(containers)
                    rows[label].append(
                        smb_round(
                            host,
                            p,
                            "bench",
                            src,
                            work / f"back-{label}{r}",
                            f"{label}{r}",
                            work / "storage" / "bench",
                            netns if label == "direct" else None,
                        )
                    )
                    after = cpu_seconds(containers)
                    for key in after:
                        cpu[label][key] = cpu[label].get(key, 0.0) + after[key] - before[key]
                print(
                    f"round {r + 1}: "
                    + "  ".join(
                        f"{k} write {size_mb / v[-1][0]:.1f} MB/s read {size_mb / v[-1][1]:.1f} MB/s"
                        for k, v in rows.items()
                    )
                )
    finally:
        goproxy.close()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{bands} bands of 8 MiB per round")
    rate = report(rows, cpu, size_mb, args.rounds)
    print(
        f"smb/disk write={rate('direct', 0) / rate('disk', 0):.2f} read={rate('direct', 1) / rate('disk', 1):.2f} "
        f"proxy/direct write={rate('proxy', 0) / rate('direct', 0):.2f} read={rate('proxy', 1) / rate('direct', 1):.2f}"
    )


if __name__ == "__main__":
    main()
