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
command, trusting the stack's CA, as a Mac).

Then Caddy under load (issue 27's goal is per node while every node carries a transfer): every
share's node carries one SMB transfer at the same time, each from its own share's Mac. One client
cannot carry them all, whatever its capacity: the stack's policy lets a Mac reach only its owner's
shares, and here each share has an owner of its own, so it takes one tailnet client per share (N
in all: the Mac above for the last share, and a client for each other owner's Mac, joined with
that Mac's join command, JOIN_WORKERS at a time), each forwarding FORWARD to its share's node.
Once every Mac has a guest session open through its forward, all of them write `--loaded-mib`
(default 8) MiB of random bytes to their share and read them back on the same session, each in a
thread of this script; each read is compared with what was written, and any failure ends the run.
Meanwhile Caddy's RSS and threads (`docker top`) are read about every SAMPLE_SECONDS. The table
gives the peak, the peak minus the idle RSS above (so it includes what the single transfer left
and what the N Macs' joining added; the RSS just before the start is printed too), both per node,
the peak threads, and the aggregate rate: all bytes written and read, over the time from the start
to the last transfer's end. The N transfers share this 2-core machine with the N clients, this
script's smbprotocol threads and the N smbd: the rate is this machine's, not a network's. How
long all N were in flight together is printed too (0: they never were). The extra Macs then leave
the tailnet (containers removed, nodes deleted from Headscale) before the share is added, so that
`add_one` is timed as before.

Across the sizes: Caddy's RSS per added node (the least-squares slope). Then, for the largest N,
`loaded <N>: caddy_before_mib=<x> caddy_peak_mib=<x> caddy_peak_minus_idle_mib=<x>
caddy_mib_per_node_loaded=<x> caddy_extra_mib_per_node_loaded=<x> aggregate_mb_s=<x>
all_in_flight_s=<s>` and, last, `scale <N>: up=<s> registered=<s> caddy_mib_per_node=<x>
add_one=<s>`.

Headscale runs the stack's default release unless `--headscale-version` says otherwise. Everything
runs on the private engine (scripts/engine.sh) on an internal network, with the stack's images built
before any `up` is timed; the stack is destroyed and what it retained, the clients and the storage
root removed, whatever happens. Run it under `flock /tmp/tm-engine-tests.lock` (the Caddy build's
module proxy has a fixed port). Proxy limits are set high (4 GiB, 4096 pids) so that the figures
show what Caddy takes, not its cap; `--memory-limit derived` leaves them unset, as in a user's
stack (the program derives them from the number of nodes), to see whether those carry the loaded
run: each row then says Caddy's limit and whether the loaded run killed or restarted Caddy (Caddy
sets Go's GOMEMLIMIT to 90 % of its container's limit, so its garbage collector works harder as
it nears it).
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import smbclient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from tests.support.deploy import deployed_stack, mark_storage
from tests.support.docker_engine import docker_client_for
from tests.support.goproxy import start_goproxy
from tests.support.network import unique_subnet
from tests.support.pulumi_cli import tools_env
from tests.support.smb import GuestClient, MiB, read_file, write_file
from tests.support.stack_images import ensure_images
from tests.support.tailnet import CLIENT_CONTEXT, Client, Headscale, build, start_client
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
# The loaded run: what each node carries (written, then read back), all nodes at once (--loaded-mib).
LOADED_TRANSFER = 8 * MiB
# Caddy's RSS is read this often while the loaded run lasts (each reading is a `docker top`).
SAMPLE_SECONDS = 0.5
# Macs started and joined at once for the loaded run (the Docker SDK's connection pool holds 10).
JOIN_WORKERS = 8
JOIN_TIMEOUT = 300
# How long the loaded run's Macs may take to open their SMB sessions before the transfers start.
CONNECT_TIMEOUT = 300
# Idle figures are read this long after the last node registered.
SETTLE_SECONDS = 20
# Caddy's limit: roomy by default, to measure what Caddy takes; DERIVED (--memory-limit derived) leaves
# proxy.memoryLimit and processLimit unset, to see whether the program's defaults carry the load.
ROOMY = "4G"
DERIVED = "derived"
# The Headscale release the stack runs here (--headscale-version to choose another).
HEADSCALE_VERSION = DEFAULT_HEADSCALE_VERSION
REGISTER_TIMEOUT = 600
# Where a run whose nodes did not all come online keeps their logs (the stack itself is destroyed).
DIAGNOSIS = Path(tempfile.gettempdir()) / "bench-scale-diagnosis"


def share(i: int) -> dict:
    return {"name": f"u{i:03d}", "owner": f"user{i:03d}@", "quota": "1G"}


def config_for(
    storage: Path, subnet: str, build_args: dict, n: int, headscale_version: str, memory_limit: str = ROOMY
) -> dict:
    """The local stack's shape (Pulumi.local.yaml) with n shares on an internal network; the last
    share's owner has the Mac the transfer goes from. `memory_limit`: Caddy's proxy.memoryLimit (and
    a roomy processLimit), or DERIVED: neither set, as a user's stack derives them from the shares."""
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
            **({} if memory_limit == DERIVED else {"memoryLimit": memory_limit, "processLimit": 4096}),
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
    # The loaded run (every node one transfer at once): Caddy's RSS once every Mac had its SMB
    # session open and before any byte moved, its peak RSS and threads while the transfers ran, the
    # transfers' aggregate rate, and how long all of them were in flight together.
    caddy_loaded_before_mib: float
    caddy_peak_mib: float
    caddy_peak_threads: int
    # Caddy's memory limit (MiB, the container's), and whether the loaded run killed or restarted it.
    caddy_limit_mib: float
    caddy_killed: bool
    aggregate_mbs: float
    all_in_flight: float


@dataclass
class Loaded:
    before_mib: float
    peak_mib: float
    peak_threads: int
    samples: int
    aggregate_mbs: float
    all_in_flight: float
    seconds: float


def join_mac(client, image: str, network: str, ip: str, mac: str, node: str, outputs: dict, made: list) -> Client:
    """A tailnet client joined as `mac` with its join command (trusting the stack's CA, as a Mac),
    with a direct path to `node` and FORWARD forwarded to its port 445."""
    joined = start_client(client, image, network, ip, mac, trust=outputs["controlCaCertificate"])
    made.append(joined.container)
    joined.join(outputs["joinCommands"][mac], timeout=JOIN_TIMEOUT)
    joined.ping_direct(node)
    joined.forward(FORWARD, node, 445)
    return joined


def join_macs(client, image: str, network: str, ips: list[str], macs: dict[str, str], outputs: dict, made: list):
    """One joined client per share (`macs`: share → the Mac that backs up there), JOIN_WORKERS at a
    time; returns share → client."""
    with ThreadPoolExecutor(JOIN_WORKERS) as pool:
        futures = {
            share_name: pool.submit(join_mac, client, image, network, ip, mac, f"tm-{share_name}", outputs, made)
            for (share_name, mac), ip in zip(macs.items(), ips, strict=True)
        }
        return {share_name: future.result() for share_name, future in futures.items()}


def leave(headscale: Headscale, joined: list[Client], made: list) -> None:
    """The loaded run's extra Macs off the tailnet again (containers removed, nodes deleted from
    Headscale), so that adding a share is timed on the tailnet it was timed on before."""
    for mac in joined:
        made.remove(mac.container)
        mac.container.remove(force=True, v=True)
    nodes = headscale.nodes()
    for mac in joined:
        headscale.cli("nodes", "delete", "--identifier", str(nodes[mac.name]["id"]), "--force")


def load_every_node(client, caddy_name: str, macs: dict[str, Client], size: int) -> Loaded:
    """Every share's node carries one SMB transfer at the same time: each share's own Mac opens a
    guest session through its forward, and once all are open, all write `size` random bytes to
    their share and read them back on the same session (each checked against what it wrote).
    Caddy's RSS and threads are read before the start and every SAMPLE_SECONDS until the last
    transfer ends."""
    payloads = {share_name: os.urandom(size) for share_name in macs}
    connected = threading.Barrier(len(macs) + 1)
    go = threading.Event()
    spans: dict[str, tuple[float, float]] = {}
    failures: dict[str, BaseException] = {}

    def transfer(share_name: str, mac: Client) -> None:
        session = None
        try:
            session = GuestClient(mac.ip, FORWARD)
            connected.wait(CONNECT_TIMEOUT)
            go.wait()
            path = session.path(share_name, "loaded.bin")
            begin = time.monotonic()
            with smbclient.open_file(path, mode="wb", **session.kw()) as f:
                f.write(payloads[share_name])
            with smbclient.open_file(path, mode="rb", **session.kw()) as f:
                back = f.read()
            end = time.monotonic()
            if back != payloads[share_name]:
                raise RuntimeError(f"{len(back)} bytes read back, {len(payloads[share_name])} written, and they differ")
            spans[share_name] = (begin, end)
        except Exception as error:  # noqa: BLE001 - reported below, with the share's name
            failures[share_name] = error
            connected.abort()
        finally:
            if session is not None:
                session.close()

    threads = [threading.Thread(target=transfer, args=item, daemon=True) for item in macs.items()]
    for thread in threads:
        thread.start()
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss, nlwp, _ = usage(client, caddy_name)
            samples.append((rss, nlwp))
            stop.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    before_mib, start = 0.0, time.monotonic()
    try:
        connected.wait(CONNECT_TIMEOUT)
        before_mib = usage(client, caddy_name)[0]
        sampler.start()
        start = time.monotonic()
    except threading.BrokenBarrierError:
        pass  # a session did not open: every thread stops at the barrier and says why below
    go.set()
    for thread in threads:
        thread.join()
    stop.set()
    if sampler.ident is not None:
        sampler.join()
    if failures:
        # The transfer that failed first by itself, not one the broken barrier stopped.
        causes = {k: e for k, e in failures.items() if not isinstance(e, threading.BrokenBarrierError)} or failures
        first, error = sorted(causes.items())[0]
        raise RuntimeError(
            f"{len(failures)} of {len(macs)} loaded transfers failed ({sorted(failures)[:10]}); {first}: {error!r}"
        ) from error
    ends = [end for _, end in spans.values()]
    seconds = max(ends) - start
    return Loaded(
        before_mib=before_mib,
        peak_mib=max(rss for rss, _ in samples),
        peak_threads=max(nlwp for _, nlwp in samples),
        samples=len(samples),
        aggregate_mbs=2 * size * len(macs) / MiB / seconds,
        all_in_flight=max(0.0, min(ends) - max(begin for begin, _ in spans.values())),
        seconds=seconds,
    )


def measure(
    client,
    env: dict,
    build_args: dict,
    client_image: str,
    work: Path,
    n: int,
    headscale: str,
    loaded_size: int,
    memory_limit: str = ROOMY,
) -> Row:
    storage = work / "storage"
    subnet = unique_subnet(client)
    config = config_for(storage, subnet, build_args, n, headscale, memory_limit)
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
        # Free also once the added share below has its address; one per share's Mac (the loaded run).
        ips = free_address({**config, "shares": [*config["shares"], share(n)]}, n)
        if len(ips) < n:
            raise RuntimeError(f"{len(ips)} free addresses on the stack's network for {n} Macs")
        ip = ips[0]
        loaded_config = load(config).config
        network = loaded_config.network_name
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

        # Every node one transfer at once, each from its own share's Mac (the policy lets a Mac
        # reach only its owner's shares): the last share's from `mac`, the others' from a client
        # each, joined with its own join command.
        last_mac = {last: mac}
        others = {shares_[0]: m for m, (_, shares_) in loaded_config.macs.items() if shares_[0] != last}
        begin = time.monotonic()
        joined = join_macs(client, client_image, network, ips[1:], others, outputs, deployment.made)
        print(f"  N={n}: {len(joined) + 1} Macs joined, {time.monotonic() - begin:.1f} s", file=sys.stderr)
        before_load = client.containers.get(caddy_name).attrs
        try:
            loaded = load_every_node(client, caddy_name, {**joined, **last_mac}, loaded_size)
        finally:
            leave(control, list(joined.values()), deployment.made)
        after_load = client.containers.get(caddy_name).attrs
        caddy_limit_mib = after_load["HostConfig"]["Memory"] / MiB
        caddy_killed = bool(after_load["State"].get("OOMKilled")) or (
            before_load["State"]["StartedAt"],
            before_load["RestartCount"],
        ) != (after_load["State"]["StartedAt"], after_load["RestartCount"])
        print(
            f"  N={n}: loaded {loaded.seconds:.1f} s, all {n} in flight together {loaded.all_in_flight:.1f} s, "
            f"{loaded.samples} samples, Caddy {loaded.before_mib:.1f} MiB before, peak {loaded.peak_mib:.1f} "
            f"(limit {caddy_limit_mib:.0f} MiB{', killed or restarted' if caddy_killed else ''})",
            file=sys.stderr,
        )
        if loaded.all_in_flight <= 0:
            print(f"  N={n}: the loaded transfers were never all in flight at once", file=sys.stderr)

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
            caddy_loaded_before_mib=loaded.before_mib,
            caddy_peak_mib=loaded.peak_mib,
            caddy_peak_threads=loaded.peak_threads,
            caddy_limit_mib=caddy_limit_mib,
            caddy_killed=caddy_killed,
            aggregate_mbs=loaded.aggregate_mbs,
            all_in_flight=loaded.all_in_flight,
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
    parser.add_argument(
        "--loaded-mib",
        type=int,
        default=LOADED_TRANSFER // MiB,
        help="MiB each node carries in the loaded run (written, then read back)",
    )
    parser.add_argument(
        "--memory-limit",
        default=ROOMY,
        help=f"Caddy's proxy.memoryLimit (default {ROOMY}, roomy), or {DERIVED!r}: unset, as the program derives it",
    )
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
                rows.append(
                    measure(
                        client,
                        env,
                        proxy.build_args(),
                        client_image,
                        folder,
                        n,
                        args.headscale_version,
                        args.loaded_mib * MiB,
                        args.memory_limit,
                    )
                )
                print(json.dumps(rows[-1].__dict__), file=sys.stderr)
        finally:
            proxy.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(
        f"commit {commit}; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d', time.gmtime())}; "
        f"Caddy memoryLimit {args.memory_limit}"
    )
    print(
        f"{'N':>4} {'up s':>6} {'reg s':>6} {'caddy MiB':>9} {'MiB/node':>8} {'threads':>7} {'samba MiB':>9} "
        f"{'rss':>5} {'hs MiB':>6} {'stack MiB':>9} {'preview s':>9} {'add1 s':>6} {'add1 reg s':>10} {'restart':>7} "
        f"{'smb w MB/s':>10} {'r MB/s':>6} {'load MiB':>8} {'+MiB':>6} {'MiB/node':>8} {'+MiB/node':>9} "
        f"{'load thr':>8} {'agg MB/s':>8} {'limit MiB':>9} {'killed':>6}"
    )
    for r in rows:
        print(
            f"{r.n:>4} {r.up:>6.1f} {r.registered:>6.1f} {r.caddy_mib:>9.1f} {r.caddy_mib / r.n:>8.2f} "
            f"{r.caddy_threads:>7} {r.samba_mib:>9.1f} {r.samba_rss_mib:>5.1f} {r.headscale_mib:>6.1f} "
            f"{r.stack_mib:>9.1f} {r.preview:>9.1f} {r.add_one:>6.1f} {r.add_registered:>10.1f} "
            f"{'yes' if r.restarted else 'no':>7} "
            f"{r.write_mbs:>10.1f} {r.read_mbs:>6.1f} {r.caddy_peak_mib:>8.1f} {r.caddy_peak_mib - r.caddy_mib:>6.1f} "
            f"{r.caddy_peak_mib / r.n:>8.2f} {(r.caddy_peak_mib - r.caddy_mib) / r.n:>9.2f} "
            f"{r.caddy_peak_threads:>8} {r.aggregate_mbs:>8.1f} {r.caddy_limit_mib:>9.0f} "
            f"{'yes' if r.caddy_killed else 'no':>6}"
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
        f"loaded {largest.n}: caddy_before_mib={largest.caddy_loaded_before_mib:.1f} "
        f"caddy_peak_mib={largest.caddy_peak_mib:.1f} "
        f"caddy_peak_minus_idle_mib={largest.caddy_peak_mib - largest.caddy_mib:.1f} "
        f"caddy_mib_per_node_loaded={largest.caddy_peak_mib / largest.n:.2f} "
        f"caddy_extra_mib_per_node_loaded={(largest.caddy_peak_mib - largest.caddy_mib) / largest.n:.2f} "
        f"aggregate_mb_s={largest.aggregate_mbs:.1f} all_in_flight_s={largest.all_in_flight:.1f} "
        f"caddy_limit_mib={largest.caddy_limit_mib:.0f} caddy_killed={'yes' if largest.caddy_killed else 'no'}"
    )
    print(
        f"scale {largest.n}: up={largest.up:.1f} registered={largest.registered:.1f} "
        f"caddy_mib_per_node={per:.2f} add_one={largest.add_one:.1f}"
    )


if __name__ == "__main__":
    main()
