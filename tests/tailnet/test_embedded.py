"""The local stack as a user runs it: Pulumi.local.yaml (embedded Headscale, keys made by the
program) brought up by the real engine from an empty state, joined by the owners' Macs with the
stack's own join commands. The tests run in file order on one stack; the last one destroys it."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shlex
import threading
import time
import uuid

import pytest
import smbclient
import yaml

from tests.conftest import unique_subnet
from tests.engine.deploy import caddy_config_of, mark_storage, new_stack, teardown
from tests.engine.pulumi_cli import PulumiError, plan
from tests.pulumi_runner import PROJECT, ROOT
from tests.smb import GuestClient, MiB, read_file, write_file
from tests.tailnet.harness import Headscale, start_client
from timemachine.components.headscale import HEADSCALE_CONTAINER

pytestmark = pytest.mark.tailnet

FORWARD = 4450


def local_config(storage, network: str, subnet: str, build_args: dict) -> dict:
    """Pulumi.local.yaml as shipped, with what a test must change: its own storage, network
    (internal: nothing leaves the machine) and Headscale address, and the Caddy build's Go proxy."""
    raw = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
    config = {key.removeprefix(f"{PROJECT}:"): value for key, value in raw.items()}
    headscale_ip = ipaddress.IPv4Network(subnet).broadcast_address - 2
    config["storageRoot"] = str(mark_storage(storage))
    config["network"] = {**config["network"], "name": network, "subnet": subnet, "internal": True}
    config["tailnet"] = {**config["tailnet"], "controlUrl": f"http://{headscale_ip}:8080"}
    config["proxy"] = {**config["proxy"], "buildArgs": build_args, "firstNodePort": 47100}
    config["shares"] = [*config["shares"], {"name": "bob", "owner": "bob@", "quota": "1G"}]
    return config


@pytest.fixture(scope="module")
def local(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    storage = tmp_path_factory.mktemp("local-storage")
    network = f"tm-local-{uuid.uuid4().hex[:6]}"
    config = local_config(storage, network, unique_subnet(docker_client), goproxy.build_args())
    stack = new_stack(tmp_path_factory.mktemp("local"), "local", pulumi_env)
    made: list = []
    try:
        stack.init(config)
        stack.up()
        headscale = Headscale(docker_client.containers.get(HEADSCALE_CONTAINER), config["tailnet"]["controlUrl"])
        yield {
            "stack": stack,
            "config": config,
            "storage": storage,
            "network": network,
            "made": made,
            "macs": {},
            "headscale": headscale,
            "client": docker_client,
            "images": images,
        }
    finally:
        for container in made:
            container.remove(force=True, v=True)
        teardown(stack, docker_client, storage)


def headscale_of(local) -> Headscale:
    """Headscale's container as it is now (a policy change replaces it)."""
    return Headscale(local["client"].containers.get(HEADSCALE_CONTAINER), local["headscale"].ip)


def keys_of(headscale: Headscale, user: str) -> list[dict]:
    user_id = {u["name"]: u["id"] for u in headscale.cli_json("users", "list")}[user]
    return headscale.cli_json("preauthkeys", "list", "--user", str(user_id)) or []


def mac(local, owner: str):
    """A client container for `owner`, joined with the stack's join command for that owner."""
    commands = local["stack"].outputs(show_secrets=True)["joinCommands"]
    subnet = ipaddress.IPv4Network(local["config"]["network"]["subnet"])
    ip = str(subnet.network_address + 200 + len(local["made"]))
    client = start_client(local["client"], local["images"]["client"], local["network"], ip, f"{owner[:-1]}-mac")
    local["made"].append(client.container)
    client.join(commands[owner])
    local["macs"][owner] = client
    return client


def test_up_from_empty_state_makes_users_keys_and_join_commands(local):
    stack, headscale = local["stack"], local["headscale"]
    outputs = stack.outputs()
    assert outputs["joinCommands"] == "[secret]", "join commands carry keys: a secret output"
    commands = stack.outputs(show_secrets=True)["joinCommands"]
    assert sorted(commands) == ["alice@", "bob@"]
    for command in commands.values():
        assert command.startswith(f"tailscale up --login-server={local['config']['tailnet']['controlUrl']} --auth-key=")
    # One Headscale user per owner, and the tag owner the share nodes register under.
    assert {u["name"] for u in headscale.cli_json("users", "list")} == {"admin", "alice", "bob"}
    share_keys = keys_of(headscale, "admin")
    assert sorted(tuple(sorted(k["acl_tags"])) for k in share_keys) == [
        ("tag:timemachine", "tag:tm-alice"),
        ("tag:timemachine", "tag:tm-bob"),
    ]
    assert not any(k.get("reusable") or k.get("ephemeral") for k in share_keys)
    days = local["config"]["tailnet"]["keyExpiryDays"]
    for key in share_keys:
        left = key["expiration"]["seconds"] - time.time()
        assert (days - 1) * 86400 < left <= days * 86400, key["expiration"]
    # Both share nodes registered with their keys and came online under their tags.
    nodes = headscale.wait_online(["tm-alice", "tm-bob"])
    caddy = local["client"].containers.get("tm-caddy")
    assert caddy.attrs["RestartCount"] == 0, caddy.logs(tail=80).decode()
    assert sorted(nodes["tm-alice"].get("forced_tags", [])) == ["tag:timemachine", "tag:tm-alice"]
    assert all(k.get("used") for k in keys_of(headscale, "admin"))
    # Key material is in the state only as secrets.
    export = stack.export()
    assert not any(k["key"] in export for k in share_keys)
    assert all(k["key"] in stack.export(show_secrets=True) for k in share_keys)


def test_owner_joins_with_the_join_command_and_backs_up_to_her_share(local):
    alice = mac(local, "alice@")
    assert alice.status()["Self"]["UserID"] == int(
        {u["name"]: u["id"] for u in local["headscale"].cli_json("users", "list")}["alice"]
    )
    alice.ping_direct("tm-alice")
    alice.forward(FORWARD, "tm-alice", 445)
    payload = os.urandom(16 * MiB)
    write_file(alice.ip, "alice", "joined.bin", payload, FORWARD)
    assert read_file(alice.ip, "alice", "joined.bin", FORWARD) == payload
    on_disk = (local["storage"] / "alice" / "joined.bin").read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_another_owner_cannot_reach_the_share(local):
    bob = mac(local, "bob@")
    bob.ping_direct("tm-bob")
    assert "tm-alice" not in bob.peers()
    failed, why = bob.nc_fails("tm-alice", 445)
    assert failed, why
    failed, why = bob.nc_fails("tm-bob", 445)
    assert not failed, why


def test_embedded_headscale_runs_with_least_privilege_and_its_limits(local):
    """Read back from the engine and the kernel: no capability, no new privileges, a read-only root
    (its config and policy came in the environment), the default memory and pids limits."""
    container = local["client"].containers.get("tm-headscale")
    host = container.attrs["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"] and host["ReadonlyRootfs"] is True
    assert set(host["Tmpfs"]) == {"/etc/headscale", "/var/run/headscale", "/tmp"}
    assert host["Memory"] == 256 * 1024**2 and host["PidsLimit"] == 256
    code, out = container.exec_run(["cat", "/proc/1/status"])
    status = dict(line.split(":\t", 1) for line in out.decode().splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"].strip() == "1", status
    code, out = container.exec_run(["touch", "/probe-write"])
    assert code != 0 and "Read-only file system" in out.decode(), out
    # The CLI the stack runs in it finds the config the entrypoint wrote.
    code, out = container.exec_run(["headscale", "users", "list", "-o", "json"])
    assert code == 0 and "alice" in out.decode(), out


def test_a_second_up_changes_nothing(local):
    local["stack"].preview_json("--expect-no-changes")
    local["stack"].up("--expect-no-changes")


class Backup(threading.Thread):
    """alice's Mac writing `size` bytes to her share over the tailnet, in 8 MiB writes; paced at
    PACE bytes/s until the change under test is done, so the change happens mid-backup."""

    PACE = 12 * MiB

    def __init__(self, local, name: str, size: int):
        super().__init__(daemon=True)
        self.client, self.name, self.path = local["macs"]["alice@"], name, local["storage"] / "alice" / name
        self.payload = os.urandom(size)
        self.error: BaseException | None = None
        self.finished = 0.0
        self.change_done = threading.Event()

    def run(self) -> None:
        smb = GuestClient(self.client.ip, FORWARD)
        try:
            with smbclient.open_file(smb.path("alice", self.name), mode="wb", **smb.kw()) as f:
                view, began = memoryview(self.payload), time.monotonic()
                for start in range(0, len(view), 8 * MiB):
                    f.write(view[start : start + 8 * MiB])
                    ahead = (start + 8 * MiB) / self.PACE - (time.monotonic() - began)
                    if ahead > 0 and not self.change_done.is_set():
                        self.change_done.wait(ahead)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            smb.close()
            self.finished = time.monotonic()

    def wait_started(self, at_least: int = 64 * MiB, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not (self.path.exists() and self.path.stat().st_size >= at_least):
            assert self.is_alive() and time.monotonic() < deadline, self.error
            time.sleep(0.2)

    def check(self, changed_at: float) -> None:
        self.change_done.set()
        self.join(600)
        assert self.error is None, f"the backup broke: {self.error!r}"
        assert self.finished > changed_at, "the write ended before the change: it proves nothing; write more"
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(self.payload).hexdigest(), "the backup's bytes differ"


def node_ip(headscale: Headscale, node: str) -> list[str]:
    return headscale.nodes()[node]["ip_addresses"]


def test_adding_a_share_during_a_backup_mints_one_key_and_interrupts_nothing(local):
    stack, config, client = local["stack"], local["config"], local["client"]
    config["shares"].append({"name": "dave", "owner": "dave@"})
    stack.write_config(config)
    steps = plan(stack.preview_json().json())
    keys = {name for name, op in steps.items() if name.endswith("-key") or name.startswith("join-")}
    assert keys == {"dave-key", "join-dave"}, steps
    assert steps["dave-key"] == steps["join-dave"] == steps["headscale-user-dave"] == "create"
    untouched = [
        n
        for n in steps
        if n.startswith(("alice", "bob", "headscale-user-alice", "headscale-user-bob"))
        or n in ("join-alice", "join-bob", "headscale-user-admin")
    ]
    assert not untouched, {n: steps[n] for n in untouched}
    # Besides dave's own resources: the config loaded into the running Caddy and the policy
    # loaded into the running Headscale; no container is replaced.
    others = {n: op for n, op in steps.items() if "dave" not in n and op != "same"}
    assert others == {"proxy-config": "update", "headscale-policy": "update"}, others
    headscale_id = headscale_of(local).container.id
    caddy, alice_ip = client.containers.get("tm-caddy").id, node_ip(headscale_of(local), "tm-alice")
    before = {k["id"] for k in keys_of(headscale_of(local), "admin")}

    backup = Backup(local, "during-add.bin", 1024 * MiB)
    backup.start()
    backup.wait_started()
    stack.up()
    backup.check(changed_at=time.monotonic())

    headscale = headscale_of(local)
    assert headscale.container.id == headscale_id and headscale.container.attrs["RestartCount"] == 0
    minted = [k for k in keys_of(headscale, "admin") if k["id"] not in before]
    assert [sorted(k["acl_tags"]) for k in minted] == [["tag:timemachine", "tag:tm-dave"]]
    container = client.containers.get("tm-caddy")
    assert container.id == caddy and container.attrs["RestartCount"] == 0, container.logs(tail=80).decode()
    headscale.wait_online(["tm-alice", "tm-bob", "tm-dave"])
    assert node_ip(headscale, "tm-alice") == alice_ip
    # Only the reloaded policy lets dave reach tm-dave (the one before had no rule for him).
    dave = mac(local, "dave@")
    failed, why = dave.nc_fails("tm-dave", 445)
    assert not failed, why


def test_removing_a_share_during_a_backup_takes_its_node_off_and_interrupts_nothing(local):
    stack, config, client = local["stack"], local["config"], local["client"]
    config["shares"] = [s for s in config["shares"] if s["name"] != "dave"]
    stack.write_config(config)
    caddy = client.containers.get("tm-caddy").id
    backup = Backup(local, "during-remove.bin", 1024 * MiB)
    backup.start()
    backup.wait_started()
    stack.up()
    backup.check(changed_at=time.monotonic())
    assert client.containers.get("tm-caddy").id == caddy
    # The removed share's device is deleted with its key: no stale tm-dave is left on the tailnet.
    assert "tm-dave" not in headscale_of(local).nodes(), "the removed node's device was left behind"
    failed, why = local["macs"]["dave@"].nc_fails("tm-dave", 445)
    assert failed, why
    headscale_of(local).wait_online(["tm-alice", "tm-bob"])


BREAK_FRAGMENTS = """
import timemachine.components.share as _share

_route_fragment = _share.route_fragment


def _broken(*args, **kwargs):
    fragment = _route_fragment(*args, **kwargs)
    for server in fragment["layer4"]["servers"].values():
        handler = server["routes"][0]["handle"][0]
        handler["upstreams"] = [{"dail": upstream["dial"]} for upstream in handler["upstreams"]]
    return fragment


_share.route_fragment = _broken
"""


def test_a_config_caddy_rejects_fails_the_update_and_leaves_the_running_one(local):
    stack, client = local["stack"], local["client"]
    container = client.containers.get("tm-caddy")
    caddy_id, running = container.id, caddy_config_of(container)
    # A deliberately broken fragment: the program, with every route's upstream field misspelt.
    main = stack.project / "__main__.py"
    main.unlink()
    main.write_text(BREAK_FRAGMENTS + (ROOT / "__main__.py").read_text())
    try:
        failed = stack.up(check=False)
    finally:
        main.unlink()
        main.symlink_to(ROOT / "__main__.py")
    assert failed.code != 0
    assert "Caddy rejected the new config and keeps running the previous one" in failed.output, failed.output[-3000:]
    assert "dail" in failed.output, "Caddy's own error names the bad field"
    container = client.containers.get("tm-caddy")
    assert container.id == caddy_id and caddy_config_of(container) == running
    # The running config still serves alice over the tailnet, and the state still holds it.
    payload = os.urandom(MiB)
    write_file(local["macs"]["alice@"].ip, "alice", "after-rejected.bin", payload, FORWARD)
    assert (local["storage"] / "alice" / "after-rejected.bin").read_bytes() == payload
    stack.preview_json("--expect-no-changes")


def test_an_existing_headscale_user_is_adopted_and_never_deleted(local):
    stack, config = local["stack"], local["config"]
    headscale = headscale_of(local)
    headscale.cli("users", "create", "erin")
    erin_id = {u["name"]: u["id"] for u in headscale.cli_json("users", "list")}["erin"]
    config["shares"].append({"name": "erin", "owner": "erin@"})
    stack.write_config(config)
    stack.up()
    users = [r for r in stack.resources() if r["urn"].endswith("::headscale-user-erin")]
    assert users and users[0]["outputs"]["adopted"] is True and users[0]["outputs"]["user_id"] == str(erin_id)
    erin_key = next(k for k in keys_of(headscale_of(local), "admin") if "tag:tm-erin" in k["acl_tags"])
    # Removing the share deletes its resources: the adopted user stays, the share's key expires.
    config["shares"] = [s for s in config["shares"] if s["name"] != "erin"]
    stack.write_config(config)
    stack.up()
    headscale = headscale_of(local)
    assert "erin" in {u["name"] for u in headscale.cli_json("users", "list")}
    expired = next(k for k in keys_of(headscale, "admin") if k["id"] == erin_key["id"])
    assert expired["expiration"]["seconds"] <= time.time() + 5, expired


def caddy_health(client, status: str, timeout: float = 180) -> str:
    """Wait until Docker reports Caddy's health as `status`; the output of its last check."""
    deadline = time.monotonic() + timeout
    while True:
        health = client.containers.get("tm-caddy").attrs["State"]["Health"]
        output = health["Log"][-1]["Output"] if health["Log"] else ""
        if health["Status"] == status:
            return output
        assert time.monotonic() < deadline, f"Caddy is {health['Status']}, not {status}: {output}"
        time.sleep(2)


def test_a_node_that_lost_its_state_is_reported_and_rekeyed_under_its_hostname(local):
    stack, client = local["stack"], local["client"]
    healthy = caddy_health(client, "healthy")
    assert "tm-alice: registered" in healthy and "tm-bob: registered" in healthy, healthy
    before = headscale_of(local).nodes()["tm-alice"]
    # The failure: tm-alice's node state is lost (its part of Caddy's volume) and Caddy restarts.
    # Its single-use key is used: it cannot register again.
    caddy = client.containers.get("tm-caddy")
    assert caddy.exec_run(["rm", "-rf", "/data/tailscale/tm-alice"]).exit_code == 0
    caddy.restart(timeout=10)
    unhealthy = caddy_health(client, "unhealthy")
    assert "tm-alice: NOT REGISTERED" in unhealthy and "tm-bob: registered" in unhealthy, unhealthy
    # What made this failure silent: Pulumi's state has not changed.
    stack.preview_json("--expect-no-changes")
    # The recovery: the share's re-key command as the stack prints it.
    command = shlex.split(stack.outputs()["rekeyCommands"]["alice"])
    assert command[:4] == ["pulumi", "up", "--stack", "local"] and command[4] == "--replace", command
    stack.up(*command[4:])
    headscale = headscale_of(local)
    nodes = headscale.wait_online(["tm-alice", "tm-bob"])
    # The old device is gone and the new one has the share's own hostname (not tm-alice-<suffix>).
    assert sorted(name for name in nodes if name.startswith("tm-alice")) == ["tm-alice"], sorted(nodes)
    assert nodes["tm-alice"]["id"] != before["id"], "a new device, registered with the new key"
    assert caddy_health(client, "healthy").count(": registered") == len(local["config"]["shares"])
    # alice's Mac reaches her share again by its name, and the data written before is there.
    alice = local["macs"]["alice@"]
    alice.ping_direct("tm-alice")
    payload = os.urandom(MiB)
    write_file(alice.ip, "alice", "after-rekey.bin", payload, FORWARD)
    joined = (local["storage"] / "alice" / "joined.bin").read_bytes()
    assert read_file(alice.ip, "alice", "joined.bin", FORWARD) == joined, "what she wrote before is there"
    assert (local["storage"] / "alice" / "after-rekey.bin").read_bytes() == payload
    stack.preview_json("--expect-no-changes")


def test_headscale_down_stops_the_update_with_a_clear_error_and_a_consistent_state(local):
    stack = local["stack"]
    key_urn = next(r["urn"] for r in stack.resources() if r["urn"].endswith("::bob-key"))
    old_id = next(r["id"] for r in stack.resources() if r["urn"] == key_urn)
    headscale_of(local).container.stop(timeout=10)
    try:
        # Re-keying one share (the recovery path for a node that lost its state) needs Headscale.
        failed = stack.up("--replace", key_urn, check=False)
        assert failed.code != 0
        assert f"the embedded Headscale container '{HEADSCALE_CONTAINER}' is exited, not running" in failed.output
        assert f"docker start {HEADSCALE_CONTAINER}" in failed.output
        assert [r["id"] for r in stack.resources() if r["urn"] == key_urn] == [old_id], "the old key stays"
    finally:
        headscale_of(local).container.start()
    stack.up("--replace", key_urn)
    new_id = next(r["id"] for r in stack.resources() if r["urn"] == key_urn)
    assert new_id != old_id
    stack.preview_json("--expect-no-changes")


def test_destroy_stops_at_the_protected_headscale_volume(local):
    stack, client = local["stack"], local["client"]
    for container in local["made"]:
        container.remove(force=True, v=True)
    local["made"].clear()
    with pytest.raises(PulumiError) as stopped:
        stack.run("destroy", "--yes", "--skip-preview", *stack.stack_args())
    assert "protect" in str(stopped.value)
    assert client.volumes.get("tm-headscale-data"), "Headscale's state is kept"
    left = {step["urn"].split("::")[-1] for step in json.loads(stack.export())["deployment"]["resources"]}
    assert "headscale-data" in left
