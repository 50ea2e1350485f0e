"""A deployed stack through a maintainer's life with it: no-op re-runs, adding and removing a
user, a bad config, secrets in the state, destroy. The module's own three-share stack (not the
tier's `deployed`, which other modules read as `pulumi up` made it); its tests change it in turn."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import os
import shutil

import pytest

from tests.support.deploy import FIRST_NODE_PORT, fake_key, stack_label
from tests.support.engine_stack import three_shares
from tests.support.network import wait_port
from tests.support.project import ROOT
from tests.support.proxy_path import caddy_config_of, proxy_path
from tests.support.pulumi_cli import PROGRAM_FILES, plan, step_name
from tests.support.smb import read_file, write_file
from timemachine.caddy.config import KEYS_DIR
from timemachine.planning import names
from timemachine.planning.ipplan import node_port

pytestmark = pytest.mark.engine
SHARE_RESOURCES = ("{}-samba", "{}-storage")
NAME_PREFIX = "tm-life"
CADDY = names.caddy_container(NAME_PREFIX)


@pytest.fixture(scope="module")
def deployed(pulumi_env, docker_client, goproxy, tmp_path_factory):
    """This module's own three-share stack (in place of the tier's, which it must not change)."""
    work = tmp_path_factory.mktemp("lifecycle")
    with three_shares(docker_client, pulumi_env, goproxy, work, "lifecycle", NAME_PREFIX) as stack:
        yield stack


def samba(client, share: str):
    return client.containers.get(names.samba_container(NAME_PREFIX, share))


def test_second_preview_and_refresh_change_nothing(deployed):
    stack = deployed["stack"]
    stack.run("preview", "--expect-no-changes", *stack.stack_args())
    stack.run("refresh", "--yes", "--expect-no-changes", *stack.stack_args())
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


def test_a_preview_from_another_checkout_path_plans_no_change(deployed, tmp_path):
    """A pull request's CI previews from wherever its runner checks out: nothing in the program's
    inputs may depend on the path."""
    stack = deployed["stack"]
    elsewhere = tmp_path / "another" / "checkout"
    elsewhere.mkdir(parents=True)
    for entry in PROGRAM_FILES:
        source = ROOT / entry
        if entry == ".venv":
            (elsewhere / entry).symlink_to(source)
        elif source.is_dir():
            shutil.copytree(source, elsewhere / entry, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, elsewhere / entry)
    shutil.copy(stack.config_file, elsewhere / stack.config_file.name)
    result = stack.run("preview", "--expect-no-changes", "--diff", *stack.stack_args(), check=False, cwd=elsewhere)
    assert result.code == 0, result.output[-4000:]


def with_dave(deployed) -> dict:
    config = copy.deepcopy(deployed["config"])
    config["shares"].append({"name": "dave", "owner": "dave@example.com", "quota": "1G"})
    return config


def test_adding_a_share_touches_no_other_share(deployed):
    stack, client = deployed["stack"], deployed["client"]
    caddy_before = client.containers.get(CADDY).id
    others_before = {n: samba(client, n).id for n in deployed["ips"]}
    stack.write_config(with_dave(deployed))
    dave_key = fake_key("dave")
    stack.run("config", "set", "--secret", "--path", "shares[3].authKey", dave_key, *stack.stack_args())

    steps = plan(stack.preview_json().json())
    for resource in SHARE_RESOURCES:
        assert steps.get(resource.format("dave")) == "create", steps
    # `preview --json` lists no step for a resource it leaves alone: every other share's resources
    # (which the state does hold under these names) must be absent or "same".
    deployed_names = {step_name(r["urn"]) for r in stack.resources()}
    untouched = [r.format(n) for n in deployed["ips"] for r in SHARE_RESOURCES] + [
        "network",
        "samba-image",
        "caddy-image",
    ]
    assert set(untouched) <= deployed_names, deployed_names
    for name in untouched:
        assert steps.get(name, "same") == "same", (name, steps)
    # The new config and key reach the running Caddy through its config resource: the
    # container itself is not touched.
    assert steps.get("proxy-caddy", "same") == "same", steps
    assert steps["proxy-config"] == "update", steps
    assert steps.get("proxy-data", "same") == "same", "the tsnet state volume must stay"

    stack.up()
    ip = stack.outputs()["shares"]["dave"]["ip"]
    wait_port(ip, 445)
    payload = os.urandom(1024 * 1024)
    with proxy_path(client, ["dave"], name_prefix=NAME_PREFIX) as paths:
        write_file(paths["dave"][0], "dave", "dave.bin", payload, port=paths["dave"][1])
    assert (deployed["storage"] / "dave" / "dave.bin").read_bytes() == payload
    assert {n: samba(client, n).id for n in deployed["ips"]} == others_before
    caddy = client.containers.get(CADDY)
    assert caddy.id == caddy_before and caddy.attrs["RestartCount"] == 0
    assert caddy.exec_run(["cat", f"{KEYS_DIR}/tm-dave"]).output.decode() == dave_key
    assert "tm-dave" in json.loads(caddy_config_of(caddy))["apps"]["tailscale"]["nodes"]
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


def test_removing_a_share_deletes_its_container_and_keeps_its_data(deployed):
    stack, client = deployed["stack"], deployed["client"]
    on_disk = (deployed["storage"] / "dave" / "dave.bin").read_bytes()
    stack.write_config(deployed["config"])  # the three original shares; dave's key goes with his entry
    steps = plan(stack.preview_json().json())
    assert steps.get("dave-samba") == "delete" and steps.get("dave-storage") == "delete", steps
    assert steps.get("proxy-caddy", "same") == "same" and steps["proxy-config"] == "update", steps
    caddy_before = client.containers.get(CADDY).id
    stack.up()
    caddy = client.containers.get(CADDY)
    assert caddy.id == caddy_before
    assert caddy.exec_run(["test", "-e", f"{KEYS_DIR}/tm-dave"]).exit_code != 0, "a removed node's key goes"
    assert "tm-dave" not in json.loads(caddy_config_of(caddy))["apps"]["tailscale"]["nodes"]
    assert not client.containers.list(all=True, filters={"name": f"^/{names.samba_container(NAME_PREFIX, 'dave')}$"})
    assert (deployed["storage"] / "dave" / "dave.bin").read_bytes() == on_disk
    assert client.volumes.get(names.samba_volume(NAME_PREFIX, "dave")), "the Samba state volume is retained on delete"
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


def test_publishing_node_ports_replaces_caddy_once_and_publishes_each_nodes_port(deployed):
    stack, client = deployed["stack"], deployed["client"]
    before = client.containers.get(CADDY).id
    deployed["config"]["proxy"]["publishNodePorts"] = True  # kept for the tests after this one
    stack.write_config(deployed["config"])
    preview = stack.preview_json().json()
    steps = plan(preview)
    # Docker cannot publish a port on a running container: the one change that replaces Caddy.
    assert steps["proxy-caddy"] == "replace", steps
    reasons = next(s.get("replaceReasons") for s in preview["steps"] if s["urn"].endswith("::proxy-caddy"))
    assert set(reasons) == {"ports"}, reasons
    stack.up()
    caddy = client.containers.get(CADDY)
    assert caddy.id != before
    subnet = ipaddress.IPv4Network(deployed["config"]["network"]["subnet"])
    published = {
        int(p.split("/")[0]) for p, b in caddy.attrs["NetworkSettings"]["Ports"].items() if p.endswith("/udp") and b
    }
    assert published == {
        node_port(ipaddress.IPv4Address(ip), subnet, FIRST_NODE_PORT) for ip in deployed["ips"].values()
    }
    # The new, empty container got the config and keys loaded again (its id changed).
    assert sorted(json.loads(caddy_config_of(caddy))["apps"]["tailscale"]["nodes"]) == [
        f"tm-{n}" for n in sorted(deployed["ips"])
    ]
    for share, key in deployed["keys"].items():
        assert caddy.exec_run(["cat", f"{KEYS_DIR}/tm-{share}"]).output.decode() == key
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


def test_bad_config_stops_preview_and_up_with_the_config_error_and_no_traceback(deployed):
    stack = deployed["stack"]
    before = stack.resources()
    bad = copy.deepcopy(deployed["config"])
    bad["shares"][1]["name"] = "Bob!"
    bad["network"]["subnet"] = "172.24.0.1/24"
    stack.write_config(bad)
    try:
        for command in (["preview"], ["up", "--yes"]):
            result = stack.run(*command, *stack.stack_args(), check=False)
            assert result.code != 0, result.output
            assert "invalid stack config (2 problems)" in result.output, result.output
            assert "shares[1].name: 'Bob!' is not a DNS label" in result.output, result.output
            assert (
                "network.subnet: '172.24.0.1/24' has host bits set; write the network address, 172.24.0.0/24"
                in result.output
            )
            assert "Traceback" not in result.output, result.output
    finally:
        stack.write_config(deployed["config"])
    assert stack.resources() == before
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


def test_state_holds_auth_keys_only_encrypted(deployed):
    stack = deployed["stack"]
    plain_state = stack.export()
    shown = stack.export(show_secrets=True)
    for key in deployed["keys"].values():
        assert key not in plain_state
        assert key in shown, "the key should be in the state, encrypted"
    loaded = next(r for r in json.loads(plain_state)["deployment"]["resources"] if r["urn"].endswith("::proxy-config"))
    assert "ciphertext" in json.dumps(loaded["inputs"]["keys"]), "the keys must be stored as a secret"
    assert "ciphertext" in json.dumps(loaded["outputs"]["keys"])
    assert "TS_AUTHKEY" not in json.dumps(stack.outputs(show_secrets=True)), "no key belongs in the outputs"


def test_destroy_stops_at_the_protected_volume_then_keeps_every_backup(deployed):
    stack, client, storage = deployed["stack"], deployed["client"], deployed["storage"]
    alice = deployed["ips"]["alice"]
    payload = os.urandom(2 * 1024 * 1024)
    with proxy_path(client, ["alice"], name_prefix=NAME_PREFIX) as paths:
        write_file(paths["alice"][0], "alice", "keep.bin", payload, port=paths["alice"][1])
    states = {names.samba_volume(NAME_PREFIX, share) for share in deployed["ips"]}

    refused = stack.run("destroy", "--yes", "--skip-preview", *stack.stack_args(), check=False)
    assert refused.code != 0
    assert "proxy-data" in refused.output and "protected" in refused.output, refused.output
    urn = next(r["urn"] for r in stack.resources() if r["urn"].endswith("::proxy-data"))
    stack.run("state", "unprotect", urn, "--yes", *stack.stack_args())
    stack.run("destroy", "--yes", "--skip-preview", *stack.stack_args())

    assert not client.containers.list(all=True, filters={"label": stack_label(stack)})
    assert not client.networks.list(names=[deployed["network"]])
    assert hashlib.sha256((storage / "alice" / "keep.bin").read_bytes()).digest() == hashlib.sha256(payload).digest()
    assert client.volumes.get(names.caddy_volume(NAME_PREFIX)), "the tsnet state volume is retained"
    assert states <= {v.name for v in client.volumes.list()}, "Samba state volumes are retained"

    # A new deployment of the same config serves the same bytes.
    stack.up()
    wait_port(alice, 445)
    with proxy_path(client, ["alice"], name_prefix=NAME_PREFIX) as paths:
        assert read_file(paths["alice"][0], "alice", "keep.bin", port=paths["alice"][1]) == payload
