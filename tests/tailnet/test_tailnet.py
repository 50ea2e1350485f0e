"""The tailnet decides who reaches which share: the owner gets in, nobody else does.

Its own stack: Headscale, the stack's nodes and two client nodes (alice, bob) with the program's
own tailnetPolicy loaded (tests/support/tailnet.py)."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import smbclient

from tests.support.smb import AAPL_FULL_SYNC, GuestClient, MiB, aapl_query, read_file, write_file
from tests.support.tailnet import deployed_tailnet, run, start_client
from timemachine.planning import names

pytestmark = pytest.mark.tailnet

SHARES = [
    {"name": "alice", "owner": "alice@", "quota": "2G"},
    {"name": "bob", "owner": "bob@", "quota": "1G"},
]
NODE_TAGS = {"alice": ["tag:timemachine", "tag:tm-alice"], "bob": ["tag:timemachine", "tag:tm-bob"]}
FORWARD = {"alice": 4450, "bob": 4451, "bob-to-alice": 4452}


@pytest.fixture(scope="module")
def tailnet(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    with deployed_tailnet(
        docker_client,
        pulumi_env,
        goproxy,
        images,
        tmp_path_factory.mktemp("tailnet"),
        SHARES,
        NODE_TAGS,
        {"alice": "alice", "bob": "bob"},
    ) as net:
        clients = net["clients"]
        clients["alice"].ping_direct("tm-alice")
        clients["bob"].ping_direct("tm-bob")
        clients["alice"].forward(FORWARD["alice"], "tm-alice", 445)
        clients["bob"].forward(FORWARD["bob"], "tm-bob", 445)
        clients["bob"].forward(FORWARD["bob-to-alice"], "tm-alice", 445)
        yield net


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def smb_write_read(host: str, port: int, share: str, name: str, payload: bytes) -> None:
    write_file(host, share, name, payload, port)
    assert sha256(read_file(host, share, name, port)) == sha256(payload)


def test_owner_reaches_their_share_through_its_tailnet_node(tailnet):
    alice = tailnet["clients"]["alice"]
    assert "tm-alice" in alice.peers(), alice.peers().keys()
    reply, guest = aapl_query(alice.ip, "alice", FORWARD["alice"])
    assert guest, "the tailnet is the authentication: Samba maps the session to its guest"
    assert reply.volume_caps & AAPL_FULL_SYNC and reply.model == "TimeCapsule8,119"
    payload = os.urandom(64 * MiB)
    smb_write_read(alice.ip, FORWARD["alice"], "alice", "over-tailnet.bin", payload)
    assert sha256((tailnet["storage"] / "alice" / "over-tailnet.bin").read_bytes()) == sha256(payload)


def test_another_user_is_not_a_peer_of_the_share_and_cannot_connect(tailnet):
    bob = tailnet["clients"]["bob"]
    assert "tm-alice" not in bob.peers(), "the policy gives bob nothing on tm-alice"
    failed, why = bob.nc_fails("tm-alice", 445)
    assert failed, why
    # Positive control: the same probe to bob's own share gets through.
    failed, why = bob.nc_fails("tm-bob", 445)
    assert not failed, why
    # Refused at connect (ValueError) or closed after it (SMBException, OSError): any error will do.
    with pytest.raises(Exception):  # noqa: B017
        aapl_query(bob.ip, "alice", FORWARD["bob-to-alice"])
    # bob's own share works.
    smb_write_read(bob.ip, FORWARD["bob"], "bob", "bob.bin", os.urandom(MiB))
    assert not (tailnet["storage"] / "alice" / "bob.bin").exists()


def test_a_peer_on_another_port_is_still_dropped_on_445(tailnet):
    headscale, bob = tailnet["headscale"], tailnet["clients"]["bob"]
    policy = json.loads(tailnet["policy"])
    widened = {**policy, "acls": policy["acls"] + [{"action": "accept", "src": ["bob@"], "dst": ["tag:tm-alice:22"]}]}
    headscale.load_policy(json.dumps(widened))
    try:
        deadline = time.monotonic() + 90
        while "tm-alice" not in bob.peers() and time.monotonic() < deadline:
            time.sleep(1)
        assert "tm-alice" in bob.peers(), "with a rule on port 22, tm-alice becomes bob's peer"
        failed, why = bob.nc_fails("tm-alice", 445)
        assert failed, f"tm-alice's packet filter must drop bob on 445: {why}"
    finally:
        headscale.load_policy(tailnet["policy"])
        headscale.wait_online(["tm-alice", "tm-bob", "alice-mac", "bob-mac"])


def test_caddy_restart_keeps_each_node_and_its_address_without_a_new_key(tailnet):
    headscale, client = tailnet["headscale"], tailnet["client"]
    before = {name: (n["id"], n["ip_addresses"]) for name, n in headscale.nodes().items()}
    caddy = client.containers.get(names.caddy_container(tailnet["prefix"]))
    caddy.restart(timeout=10)
    headscale.wait_online(["tm-alice", "tm-bob"])
    after = {name: (n["id"], n["ip_addresses"]) for name, n in headscale.nodes().items()}
    assert after == before, "same nodes, same IDs and addresses: the state on Caddy's volume was reused"
    alice = tailnet["clients"]["alice"]
    deadline = time.monotonic() + 60
    while True:
        try:
            smb_write_read(alice.ip, FORWARD["alice"], "alice", "after-restart.bin", os.urandom(MiB))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def test_a_used_single_use_key_cannot_register_another_node(tailnet, images):
    headscale = tailnet["headscale"]
    spare_ip = tailnet["spare_ip"]
    intruder = start_client(tailnet["client"], images["client"], tailnet["network"], spare_ip, "intruder")
    try:
        code, text = run(
            intruder.container,
            "tailscale",
            "up",
            f"--login-server={headscale.url}",
            f"--authkey={tailnet['keys']['alice']}",
            "--hostname=intruder",
            check=False,
            timeout=60,
        )
        assert code != 0, text
        assert "intruder" not in headscale.nodes()
    finally:
        intruder.container.remove(force=True, v=True)


def test_data_keeps_moving_while_headscale_is_down(tailnet):
    headscale, alice = tailnet["headscale"], tailnet["clients"]["alice"]
    alice.ping_direct("tm-alice")
    client = GuestClient(alice.ip, FORWARD["alice"])
    first, second = os.urandom(8 * MiB), os.urandom(8 * MiB)
    try:
        with smbclient.open_file(client.path("alice", "outage.bin"), mode="wb", **client.kw()) as f:
            f.write(first)
            f.flush()
            headscale.container.stop(timeout=10)
            f.write(second)
        with smbclient.open_file(client.path("alice", "outage.bin"), mode="rb", **client.kw()) as f:
            assert sha256(f.read()) == sha256(first + second)
    finally:
        client.close()
        if headscale.container.status != "running":
            headscale.container.start()
    headscale.container.reload()
    headscale.wait_ready()
    headscale.wait_online(["tm-alice", "alice-mac"])
    smb_write_read(alice.ip, FORWARD["alice"], "alice", "after-outage.bin", os.urandom(MiB))


def tcp_connect_from(container, address: str, port: int) -> str:
    """A TCP connect from inside `container` (perl-base is in the Samba image): 'connected' or the error."""
    code, out = container.exec_run(
        [
            "perl",
            "-MIO::Socket::INET",
            "-e",
            f'IO::Socket::INET->new(PeerAddr=>"{address}:{port}",Timeout=>5) or die "$!\\n"; print "connected\\n"',
        ]
    )
    return out.decode().strip()


def test_a_samba_container_reaches_nothing_off_its_network(tailnet):
    """The stack's network is internal here: Docker still gives the container a default route, but
    drops whatever it forwards off the network, so an address on another network of this machine
    (Headscale's on its control network) or anywhere else is not reached, while an address on the
    network itself is (positive control)."""
    client = tailnet["client"]
    samba = client.containers.get(names.samba_container(tailnet["prefix"], "alice"))
    headscale = tailnet["headscale"].container
    headscale.reload()
    addresses = {name: net["IPAddress"] for name, net in headscale.attrs["NetworkSettings"]["Networks"].items()}
    on_network = addresses.pop(tailnet["network"])
    (off_network,) = addresses.values()
    assert tcp_connect_from(samba, on_network, 8080) == "connected"
    for address in (off_network, "192.0.2.1"):
        assert tcp_connect_from(samba, address, 8080) in ("Connection timed out", "Network is unreachable"), address
