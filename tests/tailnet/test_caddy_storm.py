"""One Caddy serves every share, so its crash is everyone's outage: a storm of tailnet connections
opened and closed at once must not bring it down while a backup streams through it.

caddy-l4 v0.1.2 called `RemoteAddr().String()` in its log lines, and a tsnet (gVisor netstack)
connection whose peer has already gone has no remote address: nil, a panic, every node down
(docs/known-limits.md). The image carries a patch for that (images/caddy/patches); this test provokes
it on purpose: one client of the owner opens hundreds of connections to tm-alice:445 through its
tailscaled and drops each at once (closed, or reset with data in flight; and `echo | tailscale nc`,
the probe that first hit the panic), in parallel, while another client of the same owner writes a
backup over SMB through Caddy and reads it back.

Its own stack: Headscale, one share, two clients of its owner (tests/support/tailnet.py)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import smbclient

from tests.support.smb import GuestClient, MiB, read_file
from tests.support.tailnet import deployed_tailnet, run
from timemachine.planning import names

pytestmark = pytest.mark.tailnet

SHARES = [{"name": "alice", "owner": "alice@", "quota": "2G"}]
NODE_TAGS = {"alice": ["tag:timemachine", "tag:tm-alice"]}
# Two Macs of the owner: one backs up, the other storms.
USERS = {"alice": "alice", "storm": "alice"}
PREFIX = "tm-storm"
BACKUP_PORT = 4450
# The storm client's SOCKS5 proxy into the tailnet (tailscaled's, on 127.0.0.1:1055 in its
# container) on its network address, so this process can drive it.
SOCKS_PORT = 1080
STORM_CONNECTIONS = 600
STORM_PARALLEL = 32
# `echo | tailscale nc` rounds: each a process per connection, so fewer.
NC_ROUNDS, NC_PARALLEL = 4, 16
# `caddy build-info`: the module replaced by the patched copy the image build made.
PATCHED_L4 = re.compile(r"^dep\s+github\.com/mholt/caddy-l4\s+\S+\n=>\s+/src/github\.com/mholt/caddy-l4\s", re.M)
# The backup is paced (a Mac's is not line rate either), so it spans the whole storm.
MIN_BACKUP = 32 * MiB
MAX_BACKUP = 256 * MiB
SECONDS_PER_MIB = 0.2
# Written once the storm is over: the session outlived it.
AFTER_STORM = 4 * MiB


@pytest.fixture(scope="module")
def storm_net(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    with deployed_tailnet(
        docker_client,
        pulumi_env,
        goproxy,
        images,
        tmp_path_factory.mktemp("storm"),
        SHARES,
        NODE_TAGS,
        USERS,
        name_prefix=PREFIX,
    ) as net:
        alice, storm = net["clients"]["alice"], net["clients"]["storm"]
        alice.ping_direct("tm-alice")
        storm.ping_direct("tm-alice")
        alice.forward(BACKUP_PORT, "tm-alice", 445)
        storm.container.exec_run(
            ["socat", f"TCP-LISTEN:{SOCKS_PORT},fork,reuseaddr,backlog=256", "TCP:127.0.0.1:1055"], detach=True
        )
        yield net


def socks_connect_and_drop(proxy: str, target: str, index: int) -> bool:
    """Open target:445 through the SOCKS5 proxy (tailscaled dials it over the tailnet, so Caddy's
    tsnet listener accepts it) and drop it at once: every other one reset with a few bytes in
    flight, the rest closed. True when the tailnet connection was made."""
    with socket.create_connection((proxy, SOCKS_PORT), timeout=20) as sock:
        sock.sendall(b"\x05\x01\x00")
        if sock.recv(2) != b"\x05\x00":
            return False
        sock.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(target) + struct.pack(">H", 445))
        reply = sock.recv(10)
        made = len(reply) >= 2 and reply[1] == 0
        if index % 2:
            # SMB2's NetBIOS length prefix and nothing after it, then RST: the remote end is gone
            # while Caddy still holds bytes of it.
            sock.sendall(b"\x00\x00\x00\x44\xfeSMB")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return made


def storm(net: dict, target: str) -> tuple[int, int]:
    """The storm: (connections made, connections tried)."""
    client = net["clients"]["storm"]
    with ThreadPoolExecutor(STORM_PARALLEL) as pool:
        results = list(pool.map(lambda i: _attempt(client.ip, target, i), range(STORM_CONNECTIONS)))
    nc = f"for i in $(seq {NC_PARALLEL}); do (echo | tailscale nc tm-alice 445 >/dev/null 2>&1 &); done; sleep 2"
    for _ in range(NC_ROUNDS):
        run(client.container, "sh", "-c", nc, check=False, timeout=60)
    return sum(results), len(results)


def _attempt(proxy: str, target: str, index: int) -> bool:
    try:
        return socks_connect_and_drop(proxy, target, index)
    except OSError:
        return False


def first_panic(logs: str) -> str:
    """The first Go panic in Caddy's log and its goroutine's trace ('' without one)."""
    if "panic:" not in logs:
        return ""
    return "\n\n".join(logs[logs.index("panic:") :].split("\n\n")[:2])[:2000]


class Backup(threading.Thread):
    """One SMB session that writes 1 MiB chunks, paced, until AFTER_STORM past the storm's end (and at
    least MIN_BACKUP), then reads the file back: `error` is what went wrong, if anything."""

    def __init__(self, host: str, storm_over: threading.Event):
        super().__init__(daemon=True)
        self.host, self.storm_over = host, storm_over
        self.written = 0
        self.after_storm = 0
        self.digest = hashlib.sha256()
        self.read_back = ""
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            client = GuestClient(self.host, BACKUP_PORT)
            try:
                with smbclient.open_file(client.path("alice", "stream.bin"), mode="wb", **client.kw()) as f:
                    while self.written < MAX_BACKUP:
                        if self.storm_over.is_set():
                            if self.written >= MIN_BACKUP and self.after_storm >= AFTER_STORM:
                                break
                            self.after_storm += MiB
                        chunk = os.urandom(MiB)
                        time.sleep(SECONDS_PER_MIB)
                        f.write(chunk)
                        self.digest.update(chunk)
                        self.written += len(chunk)
            finally:
                client.close()
            self.read_back = hashlib.sha256(read_file(self.host, "alice", "stream.bin", BACKUP_PORT)).hexdigest()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error


def test_a_storm_of_dropped_connections_neither_crashes_caddy_nor_breaks_a_running_backup(storm_net):
    client = storm_net["client"]
    caddy = client.containers.get(names.caddy_container(PREFIX))
    started_at = caddy.attrs["State"]["StartedAt"]
    target = next(ip for ip in storm_net["nodes"]["tm-alice"]["ip_addresses"] if "." in ip)
    storm_over = threading.Event()
    backup = Backup(storm_net["clients"]["alice"].ip, storm_over)
    backup.start()
    # The backup is running before the storm starts.
    deadline = time.monotonic() + 60
    while backup.written < 4 * MiB and backup.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    began = time.monotonic()
    written_before = backup.written
    made, tried = storm(storm_net, target)
    storm_seconds = time.monotonic() - began
    written_during = backup.written - written_before
    storm_over.set()
    backup.join(timeout=600)

    caddy.reload()
    logs = caddy.logs().decode(errors="replace")
    panic = first_panic(logs)
    assert caddy.attrs["RestartCount"] == 0 and caddy.attrs["State"]["StartedAt"] == started_at, (
        f"Caddy restarted during the storm: {panic}"
    )
    assert not panic, panic
    assert not backup.is_alive(), f"the backup did not finish ({backup.written} bytes written)"
    assert backup.error is None, f"the backup broke after {backup.written // MiB} MiB: {backup.error!r}"
    assert backup.read_back == backup.digest.hexdigest(), "the backup read back differs from what was written"
    assert (storm_net["storage"] / "alice" / "stream.bin").stat().st_size == backup.written
    # The storm reached Caddy: nearly every connection was made through its node.
    assert made >= 0.9 * tried, f"only {made} of {tried} storm connections were made"
    # ... while the backup was running: it wrote before, during and after it.
    assert written_before and written_during and backup.after_storm >= AFTER_STORM
    print(
        f"storm: {made}/{tried} SOCKS connections (+{NC_ROUNDS * NC_PARALLEL} tailscale nc) in {storm_seconds:.1f}s;"
        f" backup {backup.written // MiB} MiB, {written_during // MiB} MiB of it during the storm"
    )


def test_the_caddy_that_weathered_it_runs_the_patched_caddy_l4(storm_net):
    """What made the difference: caddy-l4 built from its patched source (images/caddy/patches)."""
    caddy = storm_net["client"].containers.get(names.caddy_container(PREFIX))
    _, info = run(caddy, "caddy", "build-info")
    assert PATCHED_L4.search(info), info
