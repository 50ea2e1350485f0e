#!/usr/bin/env python3
"""SMB throughput through the tailnet path this project builds (client → caddy-tailscale node →
caddy-l4 → smbd) and, in the same run against the same smbd, through the usual alternative: a
plain tailscaled sidecar sharing the Samba container's network namespace.

Everything runs on the private engine on internal networks (Headscale with its embedded DERP, the
stack deployed by the real engine, tailscale v1.90.9 clients in userspace mode; no log upload).
The client is the same for both paths: a tailnet client container whose `tailscale nc` carries
smbclient's connection from the host, so the difference is the server side. Rounds alternate the
paths; each writes and reads `--size-mib` in 8 MiB files. Prints MB/s per round and, as its last
line, `tailnet/sidecar write=<x.xx> read=<y.yy>` (medians). A measurement, not a test.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_throughput import BAND, cpu_seconds, smb_round  # noqa: E402

from tests.conftest import docker_client_for  # noqa: E402
from tests.engine.deploy import start_goproxy  # noqa: E402
from tests.engine.pulumi_cli import tools_env  # noqa: E402
from tests.tailnet.harness import CLIENT_CONTEXT, HEADSCALE_CONTEXT, build, deployed_tailnet, run  # noqa: E402

TAGS = ["tag:timemachine", "tag:tm-bench"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bands = max(1, args.size_mib * 1024 * 1024 // BAND)
    size_mb = bands * BAND / 1e6

    client = docker_client_for()
    work = Path(tempfile.mkdtemp(prefix="tm-bench-tailnet-"))
    src = work / "bands"
    src.mkdir()
    for i in range(bands):
        (src / f"{i:x}").write_bytes(os.urandom(BAND))
    goproxy = start_goproxy(client, work / "goproxy")
    images = {"headscale": build(client, HEADSCALE_CONTEXT, "tailscale-timemachine/headscale"),
              "client": build(client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test")}
    rows: dict[str, list] = {"tailnet": [], "sidecar": []}
    cpu: dict[str, dict] = {"tailnet": {}, "sidecar": {}}
    try:
        with deployed_tailnet(client, tools_env(), goproxy, images, work / "net",
                              [{"name": "bench", "owner": "bench@"}], {"bench": TAGS}, {"bench": "bench"}) as net:
            headscale, mac = net["headscale"], net["clients"]["bench"]
            samba = client.containers.get("tm-bench-samba")
            # The alternative: tailscaled beside smbd in its network namespace, same tags (so the same
            # policy rule admits the owner); inbound tailnet TCP reaches smbd on the namespace's loopback.
            sidecar = client.containers.run(images["client"], name="tm-bench-sidecar", detach=True,
                                            network_mode=f"container:{samba.id}")
            try:
                time.sleep(2)
                run(sidecar, "tailscale", "up", f"--login-server={headscale.url}",
                    f"--authkey={headscale.preauth_key('admin', TAGS)}", "--hostname=sidecar-bench", timeout=120)
                headscale.wait_online(["sidecar-bench"])
                mac.forward(4450, "tm-bench", 445)
                mac.forward(4451, "sidecar-bench", 445)
                for peer in ("tm-bench", "sidecar-bench"):
                    mac.ping_direct(peer)
                caddy = client.containers.get("tm-caddy")
                containers = [samba, caddy, sidecar, mac.container]
                for r in range(args.rounds):
                    order = [("tailnet", 4450), ("sidecar", 4451)]
                    if r % 2:
                        order.reverse()
                    for label, port in order:
                        before = cpu_seconds(containers)
                        rows[label].append(smb_round(mac.ip, port, "bench", src, work / f"back-{label}{r}",
                                                     f"{label}{r}", net["storage"] / "bench"))
                        after = cpu_seconds(containers)
                        for key in after:
                            cpu[label][key] = cpu[label].get(key, 0.0) + after[key] - before[key]
                    print(f"round {r + 1}: " + "  ".join(
                        f"{k} write {size_mb / v[-1][0]:.1f} MB/s read {size_mb / v[-1][1]:.1f} MB/s"
                        for k, v in rows.items()), flush=True)
            finally:
                sidecar.remove(force=True, v=True)
    finally:
        goproxy.close()
        shutil.rmtree(work, ignore_errors=True)

    def rate(label: str, index: int) -> float:
        return statistics.median(size_mb / row[index] for row in rows[label])

    gb = 2 * size_mb * args.rounds / 1000
    for label in rows:
        print(f"  cpu seconds per GB moved, {label:<7}: " + ", ".join(
            f"{k} {v / gb:.2f}" for k, v in sorted(cpu[label].items())))
    print(f"{args.rounds} rounds of {size_mb:.0f} MB per path; medians in MB/s:")
    for label in rows:
        print(f"  {label:<8} write {rate(label, 0):8.1f}  read {rate(label, 1):8.1f}")
    print(f"tailnet/sidecar write={rate('tailnet', 0) / rate('sidecar', 0):.2f} "
          f"read={rate('tailnet', 1) / rate('sidecar', 1):.2f}")


if __name__ == "__main__":
    main()
