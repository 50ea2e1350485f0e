"""The upgrade path of a deployed stack's embedded Headscale (issue 24): Pulumi.local.yaml deployed by
the real engine on v0.27.1, joined by alice's and bob's Macs with the stack's join commands, then
moved v0.27.1 → v0.28.0 → v0.29.3, each step one `pulumi up` while the Macs stay joined. A skipped
minor is refused before anything changes. After each step: a copy of the database the old release
left, named by it, on Headscale's volume; the same nodes with the same identities and tailnet
addresses, the same users and keys; alice backs up over SMB through the tailnet and bob is still
refused. On v0.29.3 the policy's `tests` are loaded for the devices present, and Headscale refuses an
edit that lets bob into alice's share.

Each release's image is built once by the test (images/headscale, its version a build arg) and given
to the stack as `tailnet.headscale.image`, as a prebuilt image is; the stack's own build of the
default release is the local stack's test (test_embedded.py). The tests of this module run in order
on its one stack."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import uuid

import pytest
import yaml

from tests.support.deploy import deployed_stack, mark_storage
from tests.support.network import unique_subnet
from tests.support.project import PROJECT, ROOT
from tests.support.pulumi_cli import PulumiError
from tests.support.smb import MiB, read_file, write_file
from tests.support.tailnet import Headscale, build_headscale, node_tags, run, start_client
from timemachine.planning import names

pytestmark = pytest.mark.tailnet

PREFIX = "tm-hsup"
HEADSCALE = names.headscale_container(PREFIX)
FORWARD = 4450
STEPS = ("v0.27.1", "v0.28.0", "v0.29.3")


def upgrade_config(storage, network: str, subnet: str, build_args: dict, image: str, version: str) -> dict:
    """Pulumi.local.yaml with its own storage, internal network and namePrefix, bob's share added,
    and Headscale at `version` from `image`."""
    raw = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
    config = {key.removeprefix(f"{PROJECT}:"): value for key, value in raw.items()}
    config["storageRoot"] = str(mark_storage(storage))
    config["namePrefix"] = PREFIX
    config["network"] = {**config["network"], "name": network, "subnet": subnet, "internal": True}
    config["proxy"] = {**config["proxy"], "buildArgs": build_args, "firstNodePort": 47200}
    # Quotas this machine's disk holds (the stack checks their sum against it).
    shares = [{**share, "quota": "1G"} for share in config["shares"]]
    config["shares"] = [*shares, {"name": "bob", "owner": "bob@", "quota": "1G"}]
    return at(config, image, version)


def at(config: dict, image: str, version: str) -> dict:
    tailnet = config["tailnet"]
    return {**config, "tailnet": {**tailnet, "headscale": {**tailnet["headscale"], "image": image, "version": version}}}


@pytest.fixture(scope="module")
def upgrade(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    releases = {version: build_headscale(docker_client, version) for version in STEPS}
    storage = tmp_path_factory.mktemp("upgrade-storage")
    network = f"{PREFIX}-{uuid.uuid4().hex[:6]}"
    config = upgrade_config(
        storage, network, unique_subnet(docker_client), goproxy.build_args(), releases[STEPS[0]], STEPS[0]
    )
    with deployed_stack(
        docker_client, pulumi_env, tmp_path_factory.mktemp("upgrade"), "upgrade", config, wait=False
    ) as deployment:
        yield {
            "stack": deployment.stack,
            "config": config,
            "releases": releases,
            "storage": storage,
            "network": network,
            "made": deployment.made,
            "client": docker_client,
            "images": images,
            "macs": {},
        }


def headscale_of(upgrade) -> Headscale:
    return Headscale(upgrade["client"].containers.get(HEADSCALE), "")


def snapshot(headscale: Headscale) -> dict:
    """What must survive an upgrade: each node's id, tailnet addresses and identity (its tags, or the
    user of an untagged one: from 0.28 a tagged node belongs to its tags alone); the users; the keys
    (id, used)."""
    nodes = {
        name: (
            str(n["id"]),
            sorted(n["ip_addresses"]),
            node_tags(n) or (n.get("user") or {}).get("name"),
        )
        for name, n in headscale.nodes().items()
    }
    users = {u["name"]: str(u["id"]) for u in headscale.cli_json("users", "list")}
    keys = {
        name: sorted((str(k["id"]), bool(k.get("used"))) for k in headscale.keys(user_id))
        for name, user_id in users.items()
    }
    return {"nodes": nodes, "users": users, "keys": keys}


def backs_up_and_the_other_is_refused(upgrade, name: str) -> None:
    alice, bob = upgrade["macs"]["alice-macbook"], upgrade["macs"]["bob-mac"]
    payload = os.urandom(8 * MiB)
    write_file(alice.ip, "alice", name, payload, FORWARD)
    assert read_file(alice.ip, "alice", name, FORWARD) == payload
    on_disk = (upgrade["storage"] / "alice" / name).read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == hashlib.sha256(payload).hexdigest()
    failed, why = bob.nc_fails("tm-alice", 445)
    assert failed, why
    failed, why = bob.nc_fails("tm-bob", 445)
    assert not failed, why


def test_deployed_on_0_27_1_the_macs_join_and_alice_backs_up(upgrade):
    stack, client = upgrade["stack"], upgrade["client"]
    headscale = headscale_of(upgrade)
    assert headscale.version == "v0.27.1"
    commands = stack.outputs(show_secrets=True)["joinCommands"]
    subnet = ipaddress.IPv4Network(upgrade["config"]["network"]["subnet"])
    for i, mac_name in enumerate(("alice-macbook", "bob-mac")):
        mac = start_client(
            client,
            upgrade["images"]["client"],
            upgrade["network"],
            str(subnet.network_address + 200 + i),
            mac_name,
            trust=stack.outputs()["controlCaCertificate"],
        )
        upgrade["made"].append(mac.container)
        mac.join(commands[mac_name])
        upgrade["macs"][mac_name] = mac
    headscale.wait_online(["tm-alice", "tm-bob", "alice-macbook", "bob-mac"])
    upgrade["macs"]["alice-macbook"].forward(FORWARD, "tm-alice", 445)
    backs_up_and_the_other_is_refused(upgrade, "on-0.27.1.bin")
    upgrade["before"] = snapshot(headscale)


def test_a_skipped_minor_is_refused_before_anything_changes(upgrade):
    stack = upgrade["stack"]
    container = headscale_of(upgrade).container
    stack.write_config(at(upgrade["config"], upgrade["releases"]["v0.29.3"], "v0.29.3"))
    with pytest.raises(PulumiError) as refused:
        stack.up()
    assert "skips a minor version of the deployed v0.27.1" in str(refused.value)
    assert "tailnet.headscale.version to v0.28.0" in str(refused.value)
    stack.write_config(upgrade["config"])
    stack.preview_json("--expect-no-changes")
    assert headscale_of(upgrade).container.id == container.id


@pytest.mark.parametrize("step", [1, 2], ids=["to-0.28.0", "to-0.29.3"])
def test_each_minor_in_turn_keeps_nodes_users_keys_and_access(upgrade, step):
    stack = upgrade["stack"]
    old, new = STEPS[step - 1], STEPS[step]
    previous = headscale_of(upgrade).container.id
    upgrade["config"] = at(upgrade["config"], upgrade["releases"][new], new)
    stack.write_config(upgrade["config"])
    stack.up()
    headscale = headscale_of(upgrade)
    assert headscale.container.id != previous and headscale.version == new
    assert headscale.container.labels["timemachine.headscale-version"] == new
    # The copy of the database the old release left, named by it, beside the database in use.
    listing = run(headscale.container, "ls", f"/var/lib/headscale/upgrade-backups/{old}")[1].split()
    assert "db.sqlite" in listing, listing
    assert run(headscale.container, "cat", "/var/lib/headscale/headscale-version")[1].strip() == new
    # The Macs were not joined again: the same nodes come back online with the same identities.
    headscale.wait_online(["tm-alice", "tm-bob", "alice-macbook", "bob-mac"])
    assert snapshot(headscale) == upgrade["before"]
    backs_up_and_the_other_is_refused(upgrade, f"on-{new}.bin")
    stack.preview_json("--expect-no-changes")


def test_on_0_29_the_policy_tests_load_and_headscale_refuses_a_widening_edit(upgrade):
    stack = upgrade["stack"]
    headscale = headscale_of(upgrade)
    assert headscale.version == "v0.29.3"
    # The Macs joined after the policy was last loaded: the refresh sees the tests they resolve now.
    stack.up("--refresh")
    loaded = json.loads(run(headscale.container, "cat", "/var/lib/headscale/policy.hujson")[1])
    assert {t["src"] for t in loaded["tests"]} >= {"alice@", "bob@"}
    widened = {
        **loaded,
        "acls": [*loaded["acls"], {"action": "accept", "src": ["bob@"], "dst": ["tag:tm-alice:445"]}],
    }
    run(headscale.container, "sh", "-c", f"cat > /var/lib/headscale/widened.hujson <<'EOF'\n{json.dumps(widened)}\nEOF")
    code, text = run(
        headscale.container, "headscale", "policy", "check", "--file", "/var/lib/headscale/widened.hujson", check=False
    )
    assert code != 0 and "bob@ -> tag:tm-alice:445" in text and "expected DENIED, got ALLOWED" in text, text
    code, text = run(
        headscale.container, "headscale", "policy", "check", "--file", "/var/lib/headscale/policy.hujson", check=False
    )
    assert code == 0, text
    backs_up_and_the_other_is_refused(upgrade, "after-tests.bin")
    stack.preview_json("--expect-no-changes")
