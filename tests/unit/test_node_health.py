"""The pure parts of node health and re-keying: the config without the re-keyed nodes, the check's
output, and which Headscale devices a key registered (CLI and REST spellings)."""

from __future__ import annotations

import json
import subprocess

from timemachine.caddy.config import assemble, render, route_fragment
from timemachine.caddy.health import NODE_STATE_SCRIPT, unregistered
from timemachine.dynamic.caddy_config import without_nodes
from timemachine.headscale.api import _registered_with

IPS = {"alice": "172.24.0.10", "bob": "172.24.0.11", "carol": "172.24.0.12"}


def config(*shares: str) -> str:
    return render(assemble(route_fragment(s, f"tm-{s}", IPS[s], tags=["tag:tm"]) for s in shares))


def test_without_nodes_drops_the_node_and_only_its_server():
    reduced = json.loads(without_nodes(config("alice", "bob", "carol"), {"tm-bob"}))
    assert sorted(reduced["apps"]["tailscale"]["nodes"]) == ["tm-alice", "tm-carol"]
    assert sorted(reduced["apps"]["layer4"]["servers"]) == ["alice", "carol"]
    assert reduced == json.loads(config("alice", "carol")), "the same config as one without bob"


def test_unregistered_reads_the_nodes_the_check_names():
    output = (
        "tm-alice: registered (node 7)\n"
        "tm-bob: NOT REGISTERED (no tailnet identity in /data/tailscale/tm-bob/tailscaled.state): …\n"
    )
    assert unregistered(output) == ["tm-bob"]
    assert unregistered("tm-alice: registered (node 7)\n") == []


def test_the_check_script_is_valid_posix_sh():
    assert subprocess.run(["sh", "-n", "-c", NODE_STATE_SCRIPT]).returncode == 0


def test_devices_registered_with_a_key_in_both_spellings():
    cli = [
        {"id": 3, "given_name": "tm-alice", "pre_auth_key": {"id": 9}},
        {"id": 4, "given_name": "alice-mac", "pre_auth_key": {"id": 10}},
        {"id": 5, "given_name": "bob-mac"},
    ]
    rest = [
        {"id": "3", "givenName": "tm-alice", "preAuthKey": {"id": "9"}},
        {"id": "4", "givenName": "alice-mac", "preAuthKey": {"id": "10"}},
    ]
    assert _registered_with(cli, "9") == {"3": "tm-alice"}
    assert _registered_with(rest, "9") == {"3": "tm-alice"}
    assert _registered_with(cli, "11") == {}
