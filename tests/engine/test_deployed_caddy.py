"""The Caddy that `pulumi up` built and started (caddy-l4 + caddy-tailscale): its container, its
config as Caddy itself judges it, and SMB through its layer4 routes."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import time

import pytest
import smbclient
import yaml
from smbprotocol.exceptions import SMBException

from tests.support.containers import run_once
from tests.support.engine_stack import SHARES
from tests.support.project import ROOT
from tests.support.proxy_path import caddy_config_of, proxy_path
from tests.support.pulumi_runner import run_program
from tests.support.smb import AAPL_FULL_SYNC, GuestClient, MiB, aapl_query, guest_tree
from timemachine.caddy.config import ADMIN_SOCKET, CADDY_CONFIG_PATH, KEYS_DIR
from timemachine.caddy.health import NODE_STATE_SCRIPT
from timemachine.planning import names
from timemachine.planning.ipplan import proxy_address

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def caddy(deployed):
    container = deployed["client"].containers.get(names.caddy_container(deployed["prefix"]))
    return {**deployed, "container": container, "image": container.image.id, "config_text": caddy_config_of(container)}


def validate(client, image: str, config_text: str) -> tuple[int, str]:
    """`caddy validate` inside the deployed image on a config uploaded as the stack uploads it."""
    return run_once(
        client, image, ["caddy", "validate", "--config", CADDY_CONFIG_PATH], {CADDY_CONFIG_PATH: config_text}
    )


def test_caddy_runs_with_every_module_in_bridge_mode_keys_only_in_key_files(caddy):
    container = caddy["container"]
    container.reload()
    assert container.status == "running" and container.attrs["RestartCount"] == 0, container.logs(tail=40).decode()
    modules = container.exec_run(["caddy", "list-modules"]).output.decode()
    assert "layer4" in modules and "tailscale" in modules, modules
    subnet = ipaddress.IPv4Network(caddy["config"]["network"]["subnet"])
    networks = container.attrs["NetworkSettings"]["Networks"]
    assert networks[caddy["network"]]["IPAMConfig"]["IPv4Address"] == str(proxy_address(subnet))
    # proxy.publishNodePorts is off by default: nothing is published (test_lifecycle turns it on).
    assert not any(b for b in container.attrs["NetworkSettings"]["Ports"].values())
    env = container.attrs["Config"]["Env"]
    assert not any("TS_AUTHKEY" in e for e in env) and not any(k in "".join(env) for k in caddy["keys"].values())
    # Each key is a 0600 file on Caddy's volume, read through a {file.…} placeholder.
    for share, key in caddy["keys"].items():
        code, out = container.exec_run(["stat", "-c", "%a %U", f"{KEYS_DIR}/tm-{share}"])
        assert code == 0 and out.decode().split() == ["600", "root"], out
        assert container.exec_run(["cat", f"{KEYS_DIR}/tm-{share}"]).output.decode() == key
        assert key not in caddy["config_text"]
    assert "TS_NO_LOGS_NO_SUPPORT=true" in env, "a self-hosted tailnet's nodes must not upload logs"
    # Every node is configured from the placeholder and state dir the program rendered.
    nodes = json.loads(caddy["config_text"])["apps"]["tailscale"]["nodes"]
    assert sorted(nodes) == [f"tm-{s['name']}" for s in SHARES]
    assert all(n["auth_key"] == f"{{file.{KEYS_DIR}/{n['hostname']}}}" for n in nodes.values())


def test_caddy_health_names_each_node_that_has_no_tailnet_identity(caddy):
    """No control server answers in this tier, so no node ever registers: Docker must report Caddy
    unhealthy, with a line per node, rather than a Caddy that merely runs."""
    container = caddy["container"]
    deadline = time.monotonic() + 180
    while True:
        container.reload()
        health = container.attrs["State"]["Health"]
        if health["Status"] != "starting" or time.monotonic() > deadline:
            break
        time.sleep(2)
    output = health["Log"][-1]["Output"]
    assert health["Status"] == "unhealthy", health
    for node in (f"tm-{share['name']}" for share in SHARES):
        assert f"{node}: NOT REGISTERED (no tailnet identity in /data/tailscale/{node}/" in output, output
    # The same check passes for a node whose state has the identity a control server gives (the
    # login profile's NodeID), here written by hand in a scratch copy of the check's paths.
    profiles = base64.b64encode(json.dumps({"p1": {"ID": "p1", "NodeID": "nTEST1"}}).encode()).decode()
    state = json.dumps({"_profiles": profiles}, indent=2)
    script = NODE_STATE_SCRIPT.replace("/data/", "/tmp/hc/")
    setup = (
        "mkdir -p /tmp/hc/keys /tmp/hc/tailscale/tm-x && echo k > /tmp/hc/keys/tm-x && "
        'printf "%s\\n" "$STATE" > /tmp/hc/tailscale/tm-x/tailscaled.state'
    )
    code, out = container.exec_run(["sh", "-c", f"{setup} && {script}"], environment={"STATE": state})
    assert (code, out.decode().strip()) == (0, "tm-x: registered (node nTEST1)"), out


def test_the_admin_endpoint_is_a_unix_socket_only(caddy):
    container = caddy["container"]
    assert container.exec_run(["test", "-S", ADMIN_SOCKET]).exit_code == 0
    # Bridge mode: nothing in Caddy's own network namespace listens on TCP (state 0A is LISTEN)
    # but Docker's embedded DNS (127.0.0.11); the tailnet listeners live in tsnet's userspace stack.
    table = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).output.decode()
    rows = [line.split() for line in table.splitlines() if line.strip() and not line.strip().startswith("sl")]
    listening = [r[1] for r in rows if r[3] == "0A"]
    assert all(address.startswith("0B00007F:") for address in listening), table


DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
THREE = {"storageRoot": "/srv/tm", "shares": SHARES, "tailnet": {"dnsSuffix": "x.ts.net"}}
CASES = {
    "dev-host": DEV,
    "dev-bridge": {**DEV, "tailscale-timemachine:proxy": {"networkMode": "bridge"}},
    "three-host": THREE,
    "three-bridge": {**THREE, "proxy": {"networkMode": "bridge", "firstNodePort": 42000}},
    "three-headscale": {
        **THREE,
        "tailnet": {"authKeys": "provided", "controlUrl": "https://hs.example.com", "tagOwners": ["admin@"]},
        "shares": [{**s, "authKey": f"tskey-auth-{s['name']}-0123456789"} for s in SHARES],
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_caddy_validate_accepts_generated_config(caddy, case):
    text = run_program(CASES[case]).named("proxy-config").inputs["config"]
    status, logs = validate(caddy["client"], caddy["image"], text)
    assert status == 0 and "Valid configuration" in logs, logs


def test_caddy_validate_rejects_a_broken_fragment(caddy):
    config = json.loads(caddy["config_text"])
    route = config["apps"]["layer4"]["servers"]["bob"]["routes"][0]["handle"][0]
    route["upstreams"] = [{"dail": ["172.24.0.20:445"]}]  # misspelt field
    status, logs = validate(caddy["client"], caddy["image"], json.dumps(config))
    assert status != 0 and "dail" in logs, logs


@pytest.fixture(scope="module")
def through_caddy(caddy):
    """The deployed config in a second Caddy from the deployed image in the deployed Caddy's network
    namespace, with each tailscale/<node>:445 listener replaced by a TCP port (no control server
    here): routes, handlers and upstreams are exactly what `pulumi up` uploaded."""
    with proxy_path(caddy["client"], [s["name"] for s in SHARES], name_prefix=caddy["prefix"]) as paths:
        yield {**caddy, "paths": paths}


def test_guest_session_aapl_and_checksums_through_caddy(through_caddy):
    for share in ("alice", "bob"):
        host, port = through_caddy["paths"][share]
        reply, guest = aapl_query(host, share, port)
        assert guest and reply.volume_caps & AAPL_FULL_SYNC and reply.model == "TimeCapsule8,119"
        client = GuestClient(host, port)
        payload = os.urandom(4 * MiB + 3)
        try:
            with smbclient.open_file(client.path(share, "via-caddy.bin"), mode="wb", **client.kw()) as f:
                f.write(payload)
            with smbclient.open_file(client.path(share, "via-caddy.bin"), mode="rb", **client.kw()) as f:
                assert hashlib.sha256(f.read()).digest() == hashlib.sha256(payload).digest()
        finally:
            client.close()
        assert (through_caddy["storage"] / share / "via-caddy.bin").read_bytes() == payload


def test_each_listener_reaches_only_its_own_share(through_caddy):
    paths = through_caddy["paths"]
    for share in ("alice", "bob", "carol"):
        for other in ("alice", "bob", "carol"):
            if other == share:
                continue
            with pytest.raises(SMBException):
                with guest_tree(paths[share][0], other, paths[share][1]):
                    pass
    client = GuestClient(*paths["carol"])
    try:
        with smbclient.open_file(client.path("carol", "mine.txt"), mode="w", **client.kw()) as f:
            f.write("carol")
    finally:
        client.close()
    assert (through_caddy["storage"] / "carol" / "mine.txt").read_text() == "carol"
    assert not (through_caddy["storage"] / "alice" / "mine.txt").exists()
