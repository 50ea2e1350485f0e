#!/usr/bin/env python3
"""SMB throughput through the tailnet path this project builds (client → caddy-tailscale node →
caddy-l4 → smbd) and, in the same run against the same smbd, through the usual alternative: a
plain tailscaled sidecar sharing the Samba container's network namespace.

Everything runs on the private engine on internal networks (Headscale with its embedded DERP, the
stack deployed by the real engine, tailscale v1.102.5 clients in userspace mode; no log upload).
The client is the same for both paths: a tailnet client container whose `tailscale nc` carries
smbclient's connection from the host, so the difference is the server side. Rounds alternate the
paths; each writes and reads `--size-mib` in 8 MiB files. Prints MB/s per round and, as its last
line, `tailnet/sidecar write=<x.xx> read=<y.yy>` (medians). A measurement, not a test.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_throughput import cpu_seconds, report, setup, smb_round
from tests.support.containers import upload
from tests.support.docker_engine import docker_client_for
from tests.support.goproxy import start_goproxy
from tests.support.pulumi_cli import tools_env
from tests.support.tailnet import (
    CLIENT_CA_PATH,
    CLIENT_COMMAND,
    CLIENT_CONTEXT,
    HEADSCALE_CONTEXT,
    build,
    deployed_tailnet,
    run,
)
from timemachine.planning import names

TAGS = ["tag:timemachine", "tag:tm-bench"]
NAME_PREFIX = "tm-bench"


def main() -> None:
    args, _, size_mb, work, src = setup(__doc__ or "", "tm-bench-tailnet-")
    client = docker_client_for()
    goproxy = start_goproxy(client, work / "goproxy")
    images = {
        "headscale": build(client, HEADSCALE_CONTEXT, "tailscale-timemachine/headscale"),
        "client": build(client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test"),
    }
    rows: dict[str, list] = {"tailnet": [], "sidecar": []}
    cpu: dict[str, dict] = {"tailnet": {}, "sidecar": {}}
    try:
        with deployed_tailnet(
            client,
            tools_env(),
            goproxy,
            images,
            work / "net",
            [{"name": "bench", "owner": "bench@"}],
            {"bench": TAGS},
            {"bench": "bench"},
            name_prefix=NAME_PREFIX,
        ) as net:
            headscale, mac = net["headscale"], net["clients"]["bench"]
            samba = client.containers.get(names.samba_container(NAME_PREFIX, "bench"))
            # The alternative: tailscaled beside smbd in its network namespace, same tags (so the same
            # policy rule admits the owner); inbound tailnet TCP reaches smbd on the namespace's loopback.
            sidecar = client.containers.create(
                images["client"],
                # The test CA in its trust store first, as every client here (tests/support/tailnet.py).
                command=["sh", "-c", 'update-ca-certificates >/dev/null && exec "$@"', "client", *CLIENT_COMMAND],
                name=f"{NAME_PREFIX}-sidecar",
                network_mode=f"container:{samba.id}",
            )
            upload(sidecar, CLIENT_CA_PATH, headscale.ca_pem)
            sidecar.start()
            try:
                time.sleep(2)
                run(
                    sidecar,
                    "tailscale",
                    "up",
                    f"--login-server={headscale.url}",
                    f"--authkey={headscale.preauth_key('admin', TAGS)}",
                    "--hostname=sidecar-bench",
                    timeout=120,
                )
                headscale.wait_online(["sidecar-bench"])
                mac.forward(4450, "tm-bench", 445)
                mac.forward(4451, "sidecar-bench", 445)
                for peer in ("tm-bench", "sidecar-bench"):
                    mac.ping_direct(peer)
                caddy = client.containers.get(names.caddy_container(NAME_PREFIX))
                containers = [samba, caddy, sidecar, mac.container]
                for r in range(args.rounds):
                    order = [("tailnet", 4450), ("sidecar", 4451)]
                    if r % 2:
                        order.reverse()
                    for label, port in order:
                        before = cpu_seconds(containers)
                        rows[label].append(
                            smb_round(
                                mac.ip,
                                port,
                                "bench",
                                src,
                                work / f"back-{label}{r}",
                                f"{label}{r}",
                                net["storage"] / "bench",
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
                        ),
                        flush=True,
                    )
            finally:
                sidecar.remove(force=True, v=True)
    finally:
        goproxy.close()
        shutil.rmtree(work, ignore_errors=True)

    rate = report(rows, cpu, size_mb, args.rounds)
    print(
        f"tailnet/sidecar write={rate('tailnet', 0) / rate('sidecar', 0):.2f} "
        f"read={rate('tailnet', 1) / rate('sidecar', 1):.2f}"
    )


if __name__ == "__main__":
    main()
