"""Drift made out of band on a stack the real engine deployed (the local stack's shape: embedded
Headscale, keys made by the program), and a stack deployed before the dynamic resources had types of
their own (issue 26): what `pulumi refresh` sees, what `pulumi up` repairs, and that a deployed
stack upgrades in place and can still delete what it made."""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import deployed_stack, mark_storage, new_stack, teardown
from tests.support.network import unique_subnet
from tests.support.old_program import program_at, run_program_from
from tests.support.project import PROJECT, ROOT
from tests.support.pulumi_cli import PROGRAM_FILES, Stack, changes, step_name, step_type
from tests.support.tailnet import build_headscale
from timemachine.caddy.config import KEYS_DIR, auth_key_file
from timemachine.components.images import local_image_name
from timemachine.config.models import DEFAULT_HEADSCALE_VERSION
from timemachine.headscale.versions import UNLABELLED_VERSION, keys_by_id
from timemachine.planning import names

pytestmark = pytest.mark.engine

PREFIX = "tm-drift"
# The last commit before the program became the timemachine/ package: its dynamic resources all have
# the type pulumi-python:dynamic:Resource and their providers live in modules that no longer exist.
BEFORE_TYPES = "fbd6010"
UNTYPED = "pulumi-python:dynamic:Resource"
DYNAMIC = "pulumi-python:dynamic/timemachine:"


def local_shape(local_yaml: Path, storage: Path, subnet: str, build_args: dict, prefix: str) -> dict:
    """A Pulumi.local.yaml as shipped with what a test must change: names of its own (namePrefix),
    its storage, an internal network (nothing leaves the machine), the Caddy build's Go proxy, quotas
    the test machine's disk holds."""
    raw = yaml.safe_load(local_yaml.read_text())["config"]
    config = {key.removeprefix(f"{PROJECT}:"): value for key, value in raw.items()}
    config["namePrefix"] = prefix
    config["storageRoot"] = str(mark_storage(storage))
    config["network"] = {**config["network"], "subnet": subnet, "internal": True}
    config["proxy"] = {**config["proxy"], "buildArgs": build_args, "firstNodePort": 47300}
    # A quota this machine's disk holds (the stack checks the quotas' sum against the disk's size).
    config["shares"] = [{**share, "quota": "1G"} for share in config["shares"]]
    return config


def old_local_config(old: Path, tmp_path: Path, docker_client, goproxy, prefix: str, bob: dict, headscale: str) -> dict:
    """The local stack of an old program (`old`, a checkout) with a second share, `bob`, running the
    images the current program builds (`drift` has built them; Headscale at release `headscale`,
    built here if no earlier test has): no image of that commit is built, and the upgrade changes
    the program only. `waitForNodes` off: these tests read the state, not the tailnet."""
    subnet = unique_subnet(docker_client)
    config = local_shape(old / "Pulumi.local.yaml", tmp_path / "storage", subnet, goproxy.build_args(), prefix)
    config["proxy"]["waitForNodes"] = False
    config["shares"] = [*config["shares"], bob]
    config["samba"] = {**config["samba"], "image": local_image_name("samba")}
    config["proxy"]["image"] = local_image_name("caddy", goproxy.build_args())
    config["tailnet"]["headscale"] = {
        **config["tailnet"]["headscale"],
        "image": build_headscale(docker_client, headscale),
    }
    return config


def refresh(stack: Stack) -> dict[str, str]:
    """`pulumi refresh --json`: resource name → what the refresh did, for those it changed."""
    done = stack.run("refresh", "--yes", "--skip-preview", "--json", *stack.stack_args())
    changed = {}
    for line in done.stdout.splitlines():
        event = json.loads(line).get("resOutputsEvent")
        if event and event["metadata"]["op"] not in ("same", "refresh"):
            changed[step_name(event["metadata"]["urn"])] = event["metadata"]["op"]
    return changed


def state_of(stack: Stack, name: str, show_secrets: bool = False) -> dict:
    """The stack's state of resource `name` (secrets in clear with `show_secrets`)."""
    [resource] = [
        r for r in json.loads(stack.export(show_secrets))["deployment"]["resources"] if r["urn"].endswith(f"::{name}")
    ]
    return resource


def clear(value) -> Any:
    """A value of `stack export --show-secrets` in clear (secrets come as {…, "plaintext": json})."""
    return json.loads(value["plaintext"]) if isinstance(value, dict) and "plaintext" in value else value


def expect_no_changes(stack: Stack) -> None:
    stack.run("preview", "--expect-no-changes", *stack.stack_args())


def headscale_json(container, *args: str):
    code, output = container.exec_run(["headscale", *args, "--output", "json"])
    assert code == 0, output.decode()
    return json.loads(output)


@pytest.fixture(scope="module")
def drift(pulumi_env, docker_client, goproxy, tmp_path_factory):
    """The local stack (Pulumi.local.yaml) deployed by the real engine, with names of its own."""
    work = tmp_path_factory.mktemp("drift")
    config = local_shape(
        ROOT / "Pulumi.local.yaml", work / "storage", unique_subnet(docker_client), goproxy.build_args(), PREFIX
    )
    # Its network is internal: nothing on it answers this machine, so `up` is not followed by a wait.
    with deployed_stack(docker_client, pulumi_env, work, "drift", config, wait=False) as deployment:
        stack = deployment.stack
        yield {
            "stack": stack,
            "client": docker_client,
            "caddy": docker_client.containers.get(names.caddy_container(PREFIX)),
            "headscale": docker_client.containers.get(names.headscale_container(PREFIX)),
            "samba": docker_client.containers.get(names.samba_container(PREFIX, "alice")),
        }


def test_what_the_stack_made_reads_back_as_made(drift):
    """Every read reports what `up` made as it is: no drift where nothing changed."""
    drift["stack"].run("refresh", "--yes", "--skip-preview", "--expect-no-changes", *drift["stack"].stack_args())


def test_a_key_file_removed_from_caddys_volume_is_seen_and_written_again(drift):
    stack, caddy = drift["stack"], drift["caddy"]
    node = "tm-alice"
    code, _ = caddy.exec_run(["rm", auth_key_file(node)])
    assert code == 0
    assert refresh(stack) == {"proxy-config": "update"}
    state = state_of(stack, "proxy-config", show_secrets=True)
    assert node not in clear(state["outputs"]["keys"]) and node in clear(state["inputs"]["keys"])

    stack.up()
    code, key = caddy.exec_run(["cat", auth_key_file(node)])
    assert code == 0 and key.decode() == clear(state["inputs"]["keys"])[node]
    code, mode = caddy.exec_run(["stat", "-c", "%a", auth_key_file(node), KEYS_DIR])
    assert mode.decode().split() == ["600", "700"]
    caddy.reload()
    assert caddy.attrs["RestartCount"] == 0 and caddy.status == "running", "the key came back without a restart"
    expect_no_changes(stack)


def test_a_headscale_user_deleted_out_of_band_is_made_again(drift):
    stack, headscale = drift["stack"], drift["headscale"]
    before = {u["name"]: u["id"] for u in headscale_json(headscale, "users", "list")}
    # Alice has no device yet, so Headscale lets her go, and her join key with her.
    headscale_json(headscale, "users", "destroy", "--identifier", str(before["alice"]), "--force")
    gone = refresh(stack)
    assert gone["headscale-user-alice"] == "delete"
    assert {name for name, op in gone.items() if op == "delete"} == {"headscale-user-alice"} | {
        name for name in gone if name.startswith("join-alice")
    }, gone

    stack.up()
    after = {u["name"]: u["id"] for u in headscale_json(headscale, "users", "list")}
    assert set(after) == set(before) and after["alice"] != before["alice"]
    # The stack's Headscale is the default release: from 0.28 keys are listed all at once, each with its user.
    if keys_by_id(DEFAULT_HEADSCALE_VERSION):
        listed = headscale_json(headscale, "preauthkeys", "list")
        keys = [k for k in listed if str((k.get("user") or {}).get("id")) == str(after["alice"])]
    else:
        keys = headscale_json(headscale, "preauthkeys", "list", "--user", str(after["alice"]))
    assert keys, "her join key again"
    assert state_of(stack, "headscale-user-alice")["outputs"]["user_id"] == str(after["alice"])
    expect_no_changes(stack)


def test_a_pids_limit_reset_is_seen_and_set_again(drift):
    stack, samba = drift["stack"], drift["samba"]
    limit = state_of(stack, "samba-pids")["inputs"]["limits"]["alice"]
    subprocess.run(["docker", "update", "--pids-limit", "-1", samba.name], check=True, capture_output=True)
    samba.reload()
    assert not samba.attrs["HostConfig"].get("PidsLimit") or samba.attrs["HostConfig"]["PidsLimit"] < 0
    assert refresh(stack) == {"samba-pids": "update"}
    assert state_of(stack, "samba-pids")["outputs"]["limits"]["alice"] == 0

    stack.up()
    samba.reload()
    assert samba.attrs["HostConfig"]["PidsLimit"] == limit
    assert samba.attrs["RestartCount"] == 0 and samba.status == "running"
    expect_no_changes(stack)


def test_a_samba_container_and_state_volume_removed_by_hand_are_made_again(drift):
    """Samba's state volume is made by the share's storage step: one removed by hand (with its
    container, which holds it) reads as that step gone, and the next `up` makes both again."""
    stack, client = drift["stack"], drift["client"]
    container, volume = names.samba_container(PREFIX, "alice"), names.samba_volume(PREFIX, "alice")
    client.containers.get(container).remove(force=True)
    client.volumes.get(volume).remove()
    gone = refresh(stack)
    assert gone.get("alice-samba") == "delete" and gone.get("alice-storage") == "delete", gone

    stack.up()
    made = client.volumes.get(volume)
    assert made.attrs["Labels"] == {"timemachine.share": "alice"}, made.attrs
    samba = client.containers.get(container)
    assert samba.status == "running"
    assert [m["Name"] for m in samba.attrs["Mounts"] if m["Type"] == "volume"] == [volume]
    code, _ = samba.exec_run(["/bin/sh", "-c", "test -d /var/lib/samba/private"])
    assert code == 0, "smbd set up its state on the new volume"
    expect_no_changes(stack)


# --- a stack deployed with the code before the dynamic resources had their own types ----------------


def test_a_stack_deployed_with_the_old_types_keeps_its_resources_and_deletes_them_cleanly(
    pulumi_env, docker_client, goproxy, tmp_path, drift
):
    old = program_at(BEFORE_TYPES, tmp_path / "old")
    prefix = "tm-upgrade"
    bob = {"name": "bob", "owner": "bob@", "quota": "1G"}
    # The Headscale release that program embedded (its nodes advertise tags, which 0.28 and later refuse).
    config = old_local_config(old, tmp_path, docker_client, goproxy, prefix, bob, UNLABELLED_VERSION)
    # As that commit's local stack: plain HTTP to the embedded Headscale at its own address.
    headscale_ip = ipaddress.IPv4Network(config["network"]["subnet"]).broadcast_address - 2
    config["tailnet"] = {**config["tailnet"], "controlUrl": f"http://{headscale_ip}:8080"}
    stack = new_stack(tmp_path / "stack", "upgrade", pulumi_env)
    old_program = ("Pulumi.yaml", "__main__.py", "components", "config", "images", "requirements.txt")
    run_program_from(stack, {name: old / name for name in old_program} | {".venv": ROOT / ".venv"})
    try:
        stack.init(config)
        stack.up()
        deployed = {step_name(r["urn"]) for r in stack.resources() if r["type"] == UNTYPED}
        assert len(deployed) == 15, deployed  # 2 shares: 4 keys, 3 users, 6 limits and storages, config, policy

        # The current program, as a checkout upgraded in place has it (components/ included).
        run_program_from(stack, {name: ROOT / name for name in (*PROGRAM_FILES, "components")})
        # A plain-HTTP control URL is now refused unless its risk is accepted (docs/security.md).
        upgraded = {**config, "tailnet": {**config["tailnet"], "allowKeysOverPlainHttp": True}}
        stack.write_config(upgraded)
        # What the old program made reads back as it is, through the providers its state names.
        stack.run("refresh", "--preview-only", "--expect-no-changes", *stack.stack_args())

        # The preview lists what it changes (a resource it leaves as it is has no step).
        plan = stack.preview_json().json()
        steps = {step_name(s["urn"]): s for s in plan["steps"]}
        deleted = {name for name, s in steps.items() if s["op"] == "delete"}
        for name in deployed & set(steps) - deleted:
            # The alias: the same resource under its own type, never made anew.
            assert step_type(steps[name]["urn"]).startswith(DYNAMIC), steps[name]["urn"]
            assert steps[name]["op"] != "create", name
        # Nothing is deleted that the current program declares again (an alias that did not match
        # would plan the old resource's delete beside the new one's create); where nothing but the
        # type changed, nothing is planned.
        assert not deleted & {name for name, s in steps.items() if s["op"] != "delete"}, plan["changeSummary"]
        assert "headscale-user-admin" not in steps, plan["changeSummary"]
        # The share's storage step now holds its quota too: updated in place (its directory kept),
        # once. The per-share pids limits give way to the one of all Samba containers.
        assert steps["alice-storage"]["op"] == "update", steps["alice-storage"]
        pids_steps = {name: s["op"] for name, s in steps.items() if name.endswith("pids")}
        assert pids_steps.get("samba-pids") == "create", pids_steps
        # Whatever the current program changes besides (replaced containers take their pids limits
        # with them; resources it no longer declares are deleted) runs with the stored providers.
        stack.up()
        expect_no_changes(stack)
        # The old per-share limits are gone from the state; the one resource holds each container's.
        left = {step_name(r["urn"]) for r in stack.resources()}
        assert not {n for n in left if n.endswith("-samba-pids")}, sorted(left)
        limits = state_of(stack, "samba-pids")["outputs"]["limits"]
        for share in ("alice", "bob"):
            samba = docker_client.containers.get(names.samba_container(prefix, share))
            assert samba.attrs["HostConfig"]["PidsLimit"] == limits[share] > 0, (share, limits)
        # Removing a share deletes its dynamic resources, made by the old program, with them.
        stack.write_config({**upgraded, "shares": [s for s in config["shares"] if s["name"] != "bob"]})
        removed = stack.up()
        assert not [r["urn"] for r in stack.resources() if "bob" in step_name(r["urn"])], removed.output
        headscale = docker_client.containers.get(names.headscale_container(prefix))
        assert "bob" not in {u["name"] for u in headscale_json(headscale, "users", "list")}
    finally:
        teardown(stack, docker_client, tmp_path / "storage")


# --- a stack deployed while each share's resources were under a component of its own ---------------

# The last commit whose program grouped a share's resources under `timemachine:index:TimeMachineShare`.
BEFORE_FLAT = "94bb3b0"


def test_a_stack_deployed_with_share_components_keeps_every_share_resource_when_they_go(
    pulumi_env, docker_client, goproxy, tmp_path, drift
):
    old = program_at(BEFORE_FLAT, tmp_path / "old")
    prefix = "tm-flat"
    # bob logs in with a password: his share also has its password and the file it is kept in.
    bob = {"name": "bob", "owner": "bob@", "quota": "1G", "auth": "password"}
    config = old_local_config(old, tmp_path, docker_client, goproxy, prefix, bob, DEFAULT_HEADSCALE_VERSION)
    stack = new_stack(tmp_path / "stack", "flat", pulumi_env)
    entries = (*PROGRAM_FILES, "components")
    run_program_from(stack, {name: old / name for name in entries if name != ".venv"} | {".venv": ROOT / ".venv"})
    try:
        stack.init(config)
        stack.up()
        under_component = {step_name(r["urn"]): r["urn"] for r in stack.resources() if "TimeMachineShare$" in r["urn"]}
        # Per share: key, state volume, storage, container; bob's password and its file besides.
        assert len(under_component) == 10, sorted(under_component)
        containers = {s: docker_client.containers.get(names.samba_container(prefix, s)) for s in ("alice", "bob")}

        run_program_from(stack, {name: ROOT / name for name in entries})
        # The preview plans no share resource anew: each is found under its old URN (an alias that did
        # not match would plan a delete and a create, and a new key or password with them). Only the
        # two components go (they own nothing outside the state), and the status image, whose build
        # context is now another folder, is updated. The Samba containers are replaced for their
        # health check alone (checked every 30 s now; `up` waits through samba-ready instead).
        plan = stack.preview_json().json()
        types = {step_name(s["urn"]): step_type(s["urn"]) for s in plan["steps"]}
        reasons: dict[str, set[str]] = {}
        for s in plan["steps"]:
            reasons.setdefault(step_name(s["urn"]), set()).update(s.get("diffReasons") or [])
        changed = {name: (op, types[name]) for name, op in changes(plan).items()}
        container_t = "docker:index/container:Container"
        assert changed == {
            "alice": ("delete", "timemachine:index:TimeMachineShare"),
            "bob": ("delete", "timemachine:index:TimeMachineShare"),
            # The storage steps take over Samba's state volumes, which leave the state (kept on delete).
            "alice-storage": ("update", "pulumi-python:dynamic/timemachine:ShareStorage"),
            "bob-storage": ("update", "pulumi-python:dynamic/timemachine:ShareStorage"),
            "alice-samba-state": ("delete", "docker:index/volume:Volume"),
            "bob-samba-state": ("delete", "docker:index/volume:Volume"),
            "status-image": ("update", "docker:index/image:Image"),
            "alice-samba": ("replace", container_t),
            "bob-samba": ("replace", container_t),
            "samba-ready": ("create", "pulumi-python:dynamic/timemachine:SambaReady"),
            # The pids limits follow the new containers' ids.
            "samba-pids": ("update", "pulumi-python:dynamic/timemachine:ProcessLimits"),
        }, changed
        for share in ("alice", "bob"):
            assert reasons[f"{share}-samba"] <= {"healthcheck", "wait", "waitTimeout"}, reasons
        stack.up()
        expect_no_changes(stack)
        now = {step_name(r["urn"]): r["urn"] for r in stack.resources()}
        assert not [urn for urn in now.values() if "TimeMachineShare" in urn], sorted(now.values())
        for name in under_component.keys() - {"alice-samba-state", "bob-samba-state"}:
            # The same resource, now at the stack's root.
            assert now[name].split("::")[2] == under_component[name].split("::")[2].split("$")[-1], now[name]
        for share, container in containers.items():
            after = docker_client.containers.get(names.samba_container(prefix, share))
            # The new container: the same state volume, the same share directory.
            assert after.id != container.id and after.status == "running", share
            assert {m["Name"] for m in after.attrs["Mounts"] if m["Type"] == "volume"} == {
                names.samba_volume(prefix, share)
            }, after.attrs["Mounts"]
        # The next plan reads the shares' addresses from their new URNs: adding carol touches neither.
        more = {**config, "shares": [*config["shares"], {"name": "carol", "owner": "carol@", "quota": "1G"}]}
        stack.write_config(more)
        plan = stack.preview_json().json()
        touched = {step_name(s["urn"]) for s in plan["steps"] if s["op"] not in ("same", "read")}
        assert not {n for n in touched if n.startswith(("alice-", "bob-"))}, sorted(touched)
        assert {"carol-key", "carol-samba", "carol-storage"} <= touched, sorted(touched)
    finally:
        teardown(stack, docker_client, tmp_path / "storage")
