#!/usr/bin/env python3
"""How far one server goes: the embedded-Headscale stack (bridge mode, internal network, keys made by
the program) with N = 10, 50 and 100 shares, each deployed by `pulumi up` from an empty state.

Per N it prints: the time of `up` and until every share's node is registered (online in
Headscale, counted from the start of `up`); Caddy's RSS and threads (in total and per node),
an idle Samba container's memory (median of all; as `docker stats` counts it, and its processes'
RSS summed), Headscale's RSS and the whole stack's memory (Caddy, Headscale and every Samba
container, as `docker stats` counts it); `pulumi preview` at N (no change);
the `up` that adds one share (Caddy reloaded, not restarted: same container, StartedAt and
RestartCount) and until its node is registered; and one SMB write and read of 16 MiB through the
Nth share's node from a tailnet client (a tailscale container joined with the stack's join
command, trusting the stack's CA, as a Mac). Across the sizes: Caddy's RSS per added node (the
least-squares slope). Last line: `scale <N>: up=<s> registered=<s> caddy_mib_per_node=<x>
add_one=<s>` for the largest N.

Headscale runs the stack's default release unless `--headscale-version` says otherwise. Everything
runs on the private engine (scripts/engine.sh) on an internal network, with the stack's images built
before any `up` is timed; the stack is destroyed and what it retained, the client and the storage
root removed, whatever happens. Run it under `flock /tmp/tm-engine-tests.lock` (the Caddy build's
module proxy has a fixed port). Proxy limits are set high (4 GiB, 4096 pids) so that the figures
show what Caddy needs, not its cap.
A measurement, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from tests.support.deploy import deployed_stack, mark_storage
from tests.support.docker_engine import docker_client_for
from tests.support.goproxy import start_goproxy
from tests.support.network import unique_subnet
from tests.support.pulumi_cli import tools_env
from tests.support.smb import MiB, read_file, write_file
from tests.support.stack_images import ensure_images
from tests.support.tailnet import CLIENT_CONTEXT, Headscale, build, start_client
from timemachine.caddy.health import NODE_STATE_COMMAND
from timemachine.config.loader import load
from timemachine.config.models import DEFAULT_HEADSCALE_VERSION
from timemachine.planning import names
from timemachine.planning.ipplan import proxy_address

SIZES = (10, 50, 100)
PREFIX = "tm-scale"
MAC = "scale-mac"
FORWARD = 4450
TRANSFER = 16 * MiB
# Idle figures are read this long after the last node registered.
SETTLE_SECONDS = 20
# The Headscale release the stack runs here (--headscale-version to choose another).
HEADSCALE_VERSION = DEFAULT_HEADSCALE_VERSION
REGISTER_TIMEOUT = 600
# Where a run whose nodes did not all come online keeps their logs (the stack itself is destroyed).
DIAGNOSIS = Path(tempfile.gettempdir()) / "bench-scale-diagnosis"


def share(i: int) -> dict:
    return {"name": f"u{i:03d}", "owner": f"user{i:03d}@", "quota": "1G"}


def config_for(storage: Path, subnet: str, build_args: dict, n: int, headscale_version: str) -> dict:
    """The local stack's shape (Pulumi.local.yaml) with n shares on an internal network; the last
    share's owner has the Mac the transfer goes from."""
    shares = [share(i) for i in range(n)]
    shares[-1]["macs"] = [MAC]
    return {
        "namePrefix": PREFIX,
        "storageRoot": str(mark_storage(storage)),
        "network": {"subnet": subnet, "internal": True},
        "tailnet": {
            "hostnamePrefix": "tm-",
            "tags": ["tag:timemachine"],
            "controlUrl": "https://headscale.internal:8080",
            "authKeys": "headscale",
            "tagOwners": ["admin@"],
            "headscale": {"embedded": True, "tls": "internal", "derp": "embedded", "version": headscale_version},
        },
        # waitForNodes off: `up` and registration are timed apart.
        "proxy": {
            "networkMode": "bridge",
            "firstNodePort": 47100,
            "buildArgs": build_args,
            "waitForNodes": False,
            "memoryLimit": "4G",
            "processLimit": 4096,
        },
        "samba": {"model": "TimeCapsule8,119", "dataUid": 1234},
        "status": {"enabled": False},
        "shares": shares,
    }


def memory(client, container: str) -> float:
    """A container's memory as `docker stats` shows it (MiB): its cgroup's usage without the
    inactive page cache; pages its processes share count once."""
    stats = client.api.stats(container, stream=False)["memory_stats"]
    return (stats["usage"] - (stats.get("stats") or {}).get("inactive_file", 0)) / MiB


def usage(client, container: str) -> tuple[float, int, int]:
    """RSS (MiB), threads and processes of a container, summed over its processes (`docker top`)."""
    top = client.api.top(container, ps_args="-o pid,rss,nlwp")
    titles = [t.upper() for t in top["Titles"]]
    rss, nlwp = titles.index("RSS"), titles.index("NLWP")
    processes = top["Processes"] or []
    return (
        sum(int(p[rss]) for p in processes) / 1024,
        sum(int(p[nlwp]) for p in processes),
        len(processes),
    )


class NotOnline(RuntimeError):
    def __init__(self, missing: list[str]):
        super().__init__(f"{len(missing)} nodes not online after {REGISTER_TIMEOUT}s: {missing[:10]}")
        self.missing = missing


def wait_registered(headscale: Headscale, nodes: list[str], start: float) -> float:
    """Seconds from `start` until every node in `nodes` is online in Headscale."""
    deadline = time.monotonic() + REGISTER_TIMEOUT
    while time.monotonic() < deadline:
        try:
            found = headscale.nodes()
        except Exception:  # noqa: BLE001 - Headscale starting: ask again
            found = {}
        if all(found.get(n, {}).get("online") for n in nodes):
            return time.monotonic() - start
        time.sleep(1)
    raise NotOnline(sorted(n for n in nodes if not headscale.nodes().get(n, {}).get("online")))


def keep_diagnosis(client, headscale: Headscale, missing: list[str], folder: Path) -> None:
    """What the nodes that are not online left behind, before the stack is destroyed: Caddy's and
    Headscale's logs in full, Headscale's node list, and Caddy's own view of each node's identity
    (its health check); printed in short, kept in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    caddy = client.containers.get(names.caddy_container(PREFIX))
    caddy_log = caddy.logs(timestamps=True).decode(errors="replace")
    (folder / "caddy.log").write_text(caddy_log)
    (folder / "headscale.log").write_text(headscale.container.logs(timestamps=True).decode(errors="replace"))
    (folder / "nodes.json").write_text(json.dumps(headscale.nodes(), indent=1, default=str))
    _, state = caddy.exec_run(NODE_STATE_COMMAND)
    (folder / "node-state.txt").write_bytes(state)
    print(f"  kept in {folder}:", file=sys.stderr)
    for node in missing:
        print(f"  {node}: {headscale.nodes().get(node)}", file=sys.stderr)
        for line in [line for line in caddy_log.splitlines() if node in line][-15:]:
            print(f"    {line[:400]}", file=sys.stderr)


def free_address(config: dict, n_clients: int = 1) -> list[str]:
    """Addresses on the stack's network that no share, the proxy, Headscale or the status container holds."""
    loaded = load(config)
    subnet = ipaddress.IPv4Network(config["network"]["subnet"])
    taken = {str(ip) for ip in loaded.ips.values()} | {str(proxy_address(subnet))}
    taken |= {str(ip) for ip in (loaded.headscale_ip, loaded.status_ip) if ip is not None}
    hosts = list(subnet.hosts())[1:]
    return [str(ip) for ip in hosts if str(ip) not in taken][-(n_clients + 3) :][:n_clients]


@dataclass
class Row:
    n: int
    up: float
    registered: float
    caddy_mib: float
    caddy_threads: int
    samba_mib: float
    samba_rss_mib: float
    headscale_mib: float
    stack_mib: float
    preview: float
    add_one: float
    add_registered: float
    restarted: bool
    write_mbs: float
    read_mbs: float


def measure(client, env: dict, build_args: dict, client_image: str, work: Path, n: int, headscale: str) -> Row:
    storage = work / "storage"
    subnet = unique_subnet(client)
    config = config_for(storage, subnet, build_args, n, headscale)
    with deployed_stack(client, env, work / "stack", f"scale{n}", config, up=False) as deployment:
        stack = deployment.stack
        start = time.monotonic()
        stack.up()
        up = time.monotonic() - start
        control = Headscale(client.containers.get(names.headscale_container(PREFIX)), "")
        node_names = [f"tm-{s['name']}" for s in config["shares"]]
        try:
            registered = wait_registered(control, node_names, start)
        except NotOnline as error:
            keep_diagnosis(client, control, error.missing, DIAGNOSIS / f"n{n}")
            raise
        print(f"  N={n}: up {up:.1f} s, all registered {registered:.1f} s", file=sys.stderr)
        time.sleep(SETTLE_SECONDS)
        caddy_name = names.caddy_container(PREFIX)
        caddy_mib, caddy_threads, _ = usage(client, caddy_name)
        samba = [names.samba_container(PREFIX, s["name"]) for s in config["shares"]]
        samba_all = [memory(client, name) for name in samba]
        samba_mib = statistics.median(samba_all)
        samba_rss_mib = statistics.median(usage(client, name)[0] for name in samba)
        headscale_mib = usage(client, names.headscale_container(PREFIX))[0]
        # The whole stack as `docker stats` counts it: Caddy, Headscale and every Samba container.
        stack_mib = sum(samba_all) + memory(client, caddy_name) + memory(client, names.headscale_container(PREFIX))

        start = time.monotonic()
        stack.run("preview", "--expect-no-changes", *stack.stack_args())
        preview = time.monotonic() - start

        # One SMB transfer through the Nth node, from a client joined as the last owner's Mac.
        outputs = stack.outputs(show_secrets=True)
        # Free also once the added share below has its address.
        (ip,) = free_address({**config, "shares": [*config["shares"], share(n)]})
        network = load(config).config.network_name
        mac = start_client(client, client_image, network, ip, MAC, trust=outputs["controlCaCertificate"])
        deployment.made.append(mac.container)
        mac.join(outputs["joinCommands"][MAC])
        last = config["shares"][-1]["name"]
        mac.ping_direct(f"tm-{last}")
        mac.forward(FORWARD, f"tm-{last}", 445)
        payload = os.urandom(TRANSFER)
        begin = time.monotonic()
        write_file(mac.ip, last, "scale.bin", payload, FORWARD)
        wrote = time.monotonic() - begin
        begin = time.monotonic()
        back = read_file(mac.ip, last, "scale.bin", FORWARD)
        read = time.monotonic() - begin
        if hashlib.sha256(back).digest() != hashlib.sha256(payload).digest():
            raise RuntimeError("the file read back through the tailnet differs from the one written")

        # One more share: Caddy reloads its config in place.
        before = client.containers.get(caddy_name).attrs
        added = {**config, "shares": [*config["shares"], share(n)]}
        stack.write_config(added)
        start = time.monotonic()
        stack.up()
        add_one = time.monotonic() - start
        add_registered = wait_registered(control, [f"tm-{share(n)['name']}"], start)
        after = client.containers.get(caddy_name).attrs
        restarted = (before["Id"], before["State"]["StartedAt"], before["RestartCount"]) != (
            after["Id"],
            after["State"]["StartedAt"],
            after["RestartCount"],
        )
        return Row(
            n=n,
            up=up,
            registered=registered,
            caddy_mib=caddy_mib,
            caddy_threads=caddy_threads,
            samba_mib=samba_mib,
            samba_rss_mib=samba_rss_mib,
            headscale_mib=headscale_mib,
            stack_mib=stack_mib,
            preview=preview,
            add_one=add_one,
            add_registered=add_registered,
            restarted=restarted,
            write_mbs=TRANSFER / MiB / wrote,
            read_mbs=TRANSFER / MiB / read,
        )


def warm_images(client, build_args: dict, headscale_version: str) -> None:
    """The images the stack builds, built before any `up` is timed, under the names the program gives
    them (so its own builds find them, or at least Docker's layer cache): otherwise the first `up`
    would include the Go builds of Caddy and Headscale."""
    ensure_images(client, {"samba": None, "caddy": build_args, "headscale": {"HEADSCALE_VERSION": headscale_version}})


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of y over x; None for fewer than two sizes."""
    if len(points) < 2:
        return None
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: tuple(int(n) for n in s.split(",")), default=SIZES)
    parser.add_argument("--headscale-version", default=HEADSCALE_VERSION)
    args = parser.parse_args()
    client = docker_client_for()
    env = tools_env()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as work:
        proxy = start_goproxy(client, Path(work) / "goproxy")
        try:
            client_image = build(client, CLIENT_CONTEXT, "tailscale-timemachine/tailnet-client-test")
            warm_images(client, proxy.build_args(), args.headscale_version)
            for n in sorted(args.sizes):
                folder = Path(work) / f"n{n}"
                rows.append(measure(client, env, proxy.build_args(), client_image, folder, n, args.headscale_version))
                print(json.dumps(rows[-1].__dict__), file=sys.stderr)
        finally:
            proxy.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d', time.gmtime())}")
    print(
        f"{'N':>4} {'up s':>6} {'reg s':>6} {'caddy MiB':>9} {'MiB/node':>8} {'threads':>7} {'samba MiB':>9} "
        f"{'rss':>5} {'hs MiB':>6} {'stack MiB':>9} {'preview s':>9} {'add1 s':>6} {'add1 reg s':>10} {'restart':>7} "
        f"{'smb w MB/s':>10} {'r MB/s':>6}"
    )
    for r in rows:
        print(
            f"{r.n:>4} {r.up:>6.1f} {r.registered:>6.1f} {r.caddy_mib:>9.1f} {r.caddy_mib / r.n:>8.2f} "
            f"{r.caddy_threads:>7} {r.samba_mib:>9.1f} {r.samba_rss_mib:>5.1f} {r.headscale_mib:>6.1f} "
            f"{r.stack_mib:>9.1f} {r.preview:>9.1f} {r.add_one:>6.1f} {r.add_registered:>10.1f} "
            f"{'yes' if r.restarted else 'no':>7} "
            f"{r.write_mbs:>10.1f} {r.read_mbs:>6.1f}"
        )
    per_node = slope([(r.n, r.caddy_mib) for r in rows])
    threads = slope([(r.n, float(r.caddy_threads)) for r in rows])
    if per_node is not None and threads is not None:
        intercept = statistics.fmean(r.caddy_mib for r in rows) - per_node * statistics.fmean(r.n for r in rows)
        print(
            f"caddy per added node (least squares): {per_node:.2f} MiB, {threads:.2f} threads; "
            f"{intercept:.1f} MiB at 0 nodes"
        )
    largest = rows[-1]
    per = per_node if per_node is not None else largest.caddy_mib / largest.n
    print(
        f"scale {largest.n}: up={largest.up:.1f} registered={largest.registered:.1f} "
        f"caddy_mib_per_node={per:.2f} add_one={largest.add_one:.1f}"
    )


if __name__ == "__main__":
    main()
