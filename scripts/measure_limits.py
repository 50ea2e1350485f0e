#!/usr/bin/env python3
"""Peak memory (RSS), processes and threads of smbd and Caddy while one client backs up 1 GiB, the
figures the containers' default limits (timemachine/config/models.py) are sized from.

It runs the stack's own images on a network of its own, hardened as the stack runs them
(timemachine/components/hardening.py, with limits far above the defaults so they do not shape the figures):
one Samba container with the stack's smb.conf (hosts allow = the proxy), one Caddy with the stack's
layer4 route for the share (its tailnet listener replaced by a TCP port, as no control server runs
here). The client is Samba's `smbclient` on this machine, writing `--size-mib` as 8 MiB band files
(a sparsebundle's shape) through Caddy, then reading them back. Every --interval seconds it lists
each container's processes (`docker top`) and sums VmRSS and threads from /proc (the pids limit
counts threads). Prints, as its last lines, `peak <role> rss_mib=<x> processes=<n> threads=<n>`.

    .venv/bin/python scripts/measure_limits.py [--samba-image I] [--caddy-image I] [--prefix tm-limits]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.caddy_rewrite import without_tailnet
from tests.support.containers import samba_volumes, upload
from tests.support.docker_engine import docker_client_for
from tests.support.network import unique_subnet, wait_port
from timemachine.caddy.config import CADDY_CONFIG_PATH, assemble, render, route_fragment
from timemachine.components import hardening
from timemachine.config.models import ProxyConfig, SambaConfig
from timemachine.samba.smbconf import SMB_CONF_ENV, render_smb_conf

BAND = 8 * 1024 * 1024
SHARE = "backup"
PORT = 14450
DATA_UID = 1234


def rss_and_threads(pid: str) -> tuple[int, int]:
    """VmRSS (KiB) and thread count of a process."""
    fields = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.split()
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    return int(fields.get("VmRSS", ["0"])[0]), int(fields.get("Threads", ["0"])[0])


class Sampler(threading.Thread):
    def __init__(self, containers: dict, interval: float):
        super().__init__(daemon=True)
        self.containers, self.interval = containers, interval
        self.peaks = {role: [0, 0, 0] for role in containers}  # rss KiB, processes, threads
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for role, c in self.containers.items():
                pids = [row[0] for row in c.top(ps_args="-o pid").get("Processes") or []]
                sampled = [rss_and_threads(p) for p in pids]
                peak = self.peaks[role]
                peak[0] = max(peak[0], sum(rss for rss, _ in sampled))
                peak[1] = max(peak[1], len(pids))
                peak[2] = max(peak[2], sum(threads for _, threads in sampled))
            self.stopped.wait(self.interval)


def smbclient(host: str, commands: str) -> None:
    done = subprocess.run(
        [
            "smbclient",
            f"//{host}/{SHARE}",
            "-p",
            str(PORT),
            "-N",
            "-m",
            "SMB3",
            "--option=client min protocol=SMB2",
            "-c",
            commands,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or "NT_STATUS" in done.stdout + done.stderr:
        raise RuntimeError(f"smbclient failed: {done.stdout[-400:]} {done.stderr[-400:]}")


def newest(client, repository: str) -> str:
    return sorted(client.images.list(repository), key=lambda i: i.attrs["Created"])[-1].tags[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--samba-image", default="")
    parser.add_argument("--caddy-image", default="")
    parser.add_argument("--prefix", default="tm-limits", help="name prefix of its network and containers")
    args = parser.parse_args()
    client = docker_client_for()
    samba_image = args.samba_image or newest(client, "tailscale-timemachine/samba")
    caddy_image = args.caddy_image or newest(client, "tailscale-timemachine/caddy")
    work = Path(tempfile.mkdtemp(prefix="tm-limits-"))
    src = work / "bands"
    src.mkdir()
    for i in range(max(1, args.size_mib * 1024 * 1024 // BAND)):
        (src / f"{i:x}").write_bytes(os.urandom(BAND))
    subnet = ipaddress.IPv4Network(unique_subnet(client))
    hosts = list(subnet.hosts())
    gateway, samba_ip, caddy_ip = str(hosts[0]), str(hosts[1]), str(hosts[-1])
    tag = uuid.uuid4().hex[:6]
    network = client.networks.create(
        f"{args.prefix}-{tag}",
        driver="bridge",
        ipam={"Driver": "default", "Config": [{"Subnet": str(subnet), "Gateway": gateway}]},
    )
    # Limits far above any default: the figures are what the processes take, not what they are allowed.
    # Validated as a stack's config is (memory sizes in Docker's units; pydantic's aliases).
    roomy_samba = SambaConfig.model_validate({"memoryLimit": "2G", "processLimit": 4096})
    roomy_proxy = ProxyConfig.model_validate({"memoryLimit": "2G", "processLimit": 4096})
    made = []
    try:
        conf = render_smb_conf(SHARE, None, "TimeCapsule8,119", allow_from=caddy_ip)
        samba = client.containers.create(
            samba_image,
            name=f"{args.prefix}-samba-{tag}",
            environment=[f"DATA_UID={DATA_UID}", f"{SMB_CONF_ENV}={conf}"],
            volumes=samba_volumes(work / "data"),
            network=network.name,
            networking_config={network.name: client.api.create_endpoint_config(ipv4_address=samba_ip)},
            **hardening.docker_sdk(hardening.for_samba(roomy_samba)),
        )
        made.append(samba)
        samba.start()
        fragment = route_fragment(SHARE, f"tm-{SHARE}", samba_ip, tags=["tag:timemachine"])
        caddy_conf = without_tailnet(render(assemble([fragment])), {f"tm-{SHARE}": f"0.0.0.0:{PORT}"})
        caddy = client.containers.create(
            caddy_image,
            name=f"{args.prefix}-caddy-{tag}",
            network=network.name,
            networking_config={network.name: client.api.create_endpoint_config(ipv4_address=caddy_ip)},
            # Its config on the image's /data volume (a read-only root takes no file elsewhere), run
            # from there: no admin API call loads it here, as the stack's config resource does.
            command=["caddy", "run", "--config", CADDY_CONFIG_PATH],
            **hardening.docker_sdk(hardening.for_proxy(roomy_proxy)),
        )
        made.append(caddy)
        upload(caddy, CADDY_CONFIG_PATH, json.dumps(json.loads(caddy_conf)))
        caddy.start()
        wait_port(caddy_ip, PORT)
        wait_port(samba_ip, 445)
        time.sleep(2)
        sampler = Sampler({"smbd": samba, "caddy": caddy}, args.interval)
        sampler.start()
        start = time.perf_counter()
        smbclient(caddy_ip, "mkdir mac.sparsebundle; cd mac.sparsebundle; mkdir bands")
        smbclient(caddy_ip, f"prompt off; lcd {src}; cd mac.sparsebundle/bands; mput *")
        written = time.perf_counter() - start
        back = work / "back"
        back.mkdir()
        smbclient(caddy_ip, f"prompt off; lcd {back}; cd mac.sparsebundle/bands; mget *")
        for f in src.iterdir():
            if (back / f.name).stat().st_size != f.stat().st_size:
                raise RuntimeError(f"{f.name}: size differs after the round trip")
        sampler.stopped.set()
        sampler.join()
    finally:
        for c in made:
            c.remove(force=True, v=True)
        network.remove()
        shutil.rmtree(work, ignore_errors=True)
    mib = args.size_mib * 1024 * 1024 / 1e6
    print(
        f"{args.size_mib} MiB written through Caddy in {written:.1f} s ({mib / written:.0f} MB/s) and read back;"
        f" sampled every {args.interval} s; images {samba_image}, {caddy_image}"
    )
    for role, (kib, procs, threads) in sampler.peaks.items():
        print(f"peak {role} rss_mib={kib / 1024:.1f} processes={procs} threads={threads}")


if __name__ == "__main__":
    main()
