"""Caddy shards on a real tailnet: with proxy.shards = 2, alice's node on shard 0 and bob's on shard 1,
a crash of bob's Caddy (its process killed) leaves alice backing up over the tailnet; Docker's restart
policy brings bob's Caddy back, its node comes back from the state on its own volume, and bob's share
works again. Its own stack: Headscale, the two shards and two clients (tests/support/tailnet.py)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from tests.support.smb import MiB, read_file, write_file
from tests.support.tailnet import deployed_tailnet
from timemachine.planning import names

pytestmark = pytest.mark.tailnet

PREFIX = "tm-shards"
SHARES: list[dict] = [
    {"name": "alice", "owner": "alice@", "quota": "1G"},
    # Pinned, so the test does not depend on the assignment rule (which would put bob there too).
    {"name": "bob", "owner": "bob@", "quota": "1G", "proxyShard": 1},
]
NODE_TAGS = {"alice": ["tag:timemachine", "tag:tm-alice"], "bob": ["tag:timemachine", "tag:tm-bob"]}
FORWARD = {"alice": 4450, "bob": 4451}
RESTART_WAIT_SECONDS = 90


@pytest.fixture(scope="module")
def sharded(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    with deployed_tailnet(
        docker_client,
        pulumi_env,
        goproxy,
        images,
        tmp_path_factory.mktemp("shards"),
        SHARES,
        NODE_TAGS,
        {"alice": "alice", "bob": "bob"},
        name_prefix=PREFIX,
        proxy={"shards": 2},
    ) as net:
        for name, port in FORWARD.items():
            net["clients"][name].forward(port, f"tm-{name}", 445)
        yield net


def write_read(client, share: str, name: str) -> None:
    payload = os.urandom(8 * MiB)
    write_file(client.ip, share, name, payload, FORWARD[share])
    back = read_file(client.ip, share, name, FORWARD[share])
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()


def caddy(net, shard: int):
    return net["client"].containers.get(names.caddy_container(PREFIX, shard))


def test_each_share_is_served_by_its_own_shard(sharded):
    outputs = sharded["stack"].outputs()
    assert {n: s["proxyShard"] for n, s in outputs["shares"].items()} == {"alice": 0, "bob": 1}
    assert [(s["container"], s["nodes"]) for s in outputs["proxyShards"]] == [
        (f"{PREFIX}-caddy", ["tm-alice"]),
        (f"{PREFIX}-caddy-1", ["tm-bob"]),
    ]
    for shard in (0, 1):
        container = caddy(sharded, shard)
        ip = container.attrs["NetworkSettings"]["Networks"][sharded["network"]]["IPAddress"]
        assert ip == outputs["proxyShards"][shard]["ip"]
    # Each node's tailnet state is on its own shard's volume.
    for shard, node in ((0, "tm-alice"), (1, "tm-bob")):
        code, _ = caddy(sharded, shard).exec_run(["test", "-s", f"/data/tailscale/{node}/tailscaled.state"])
        assert code == 0, f"{node}'s state is not on shard {shard}'s volume"
        code, _ = caddy(sharded, 1 - shard).exec_run(["test", "-e", f"/data/tailscale/{node}"])
        assert code != 0, f"{node} has state on the other shard too"
    for name in ("alice", "bob"):
        write_read(sharded["clients"][name], name, "before.bin")


def test_a_crashed_shard_takes_down_only_its_own_shares_and_comes_back(sharded):
    bob_caddy = caddy(sharded, 1)
    restarts = bob_caddy.attrs["RestartCount"]
    started = bob_caddy.attrs["State"]["StartedAt"]
    alice_caddy = caddy(sharded, 0).attrs
    # A crash: the Caddy process dies at once (SIGKILL to the container's process from this machine,
    # as the OOM killer ends it). Not `docker kill`: Docker records that as a stop asked for by hand
    # (moby daemon/kill.go: killWithSignal sets HasBeenManuallyStopped and cancels the restart
    # manager), after which no restart policy brings the container back.
    pid = bob_caddy.attrs["State"]["Pid"]
    os.kill(pid, 9)
    # While bob's Caddy is down (or just back, without its node yet), alice's share works.
    write_read(sharded["clients"]["alice"], "alice", "during.bin")
    # Docker's restart policy (unless-stopped) starts it again; its node comes back from its volume.
    deadline = time.monotonic() + RESTART_WAIT_SECONDS
    while time.monotonic() < deadline:
        bob_caddy.reload()
        state = bob_caddy.attrs["State"]
        if state["Running"] and state["StartedAt"] != started:
            break
        time.sleep(1)
    else:
        pytest.fail(f"bob's Caddy was not restarted: {bob_caddy.attrs['State']}")
    assert bob_caddy.attrs["RestartCount"] == restarts + 1
    sharded["headscale"].wait_online(["tm-bob"], timeout=120)
    deadline = time.monotonic() + 120
    while True:
        try:
            write_read(sharded["clients"]["bob"], "bob", "after.bin")
            break
        except Exception:  # noqa: BLE001 - the path over the tailnet may need a moment after the node is online
            if time.monotonic() > deadline:
                raise
            time.sleep(3)
    # Shard 0 was never touched.
    alice_now = caddy(sharded, 0).attrs
    assert (alice_now["State"]["StartedAt"], alice_now["RestartCount"]) == (
        alice_caddy["State"]["StartedAt"],
        alice_caddy["RestartCount"],
    )
    write_read(sharded["clients"]["alice"], "alice", "after.bin")
    assert (sharded["storage"] / "bob" / "before.bin").exists(), "bob's earlier backup is there"
