"""Drift made out of band on a stack the real engine deployed (the local stack's shape: embedded
Headscale, keys made by the program): what `pulumi refresh` sees and what `pulumi up` repairs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import deployed_stack, mark_storage
from tests.support.network import unique_subnet
from tests.support.project import PROJECT, ROOT
from tests.support.pulumi_cli import Stack, step_name
from timemachine.caddy.config import KEYS_DIR, auth_key_file
from timemachine.planning import names

pytestmark = pytest.mark.engine

PREFIX = "tm-drift"
# The last commit before the program became the timemachine/ package: its dynamic resources all have
# the type pulumi-python:dynamic:Resource and their providers live in modules that no longer exist.
BEFORE_TYPES = "fbd6010"


def local_shape(local_yaml: Path, storage: Path, subnet: str, build_args: dict, prefix: str) -> dict:
    """A Pulumi.local.yaml as shipped with what a test must change: names of its own (namePrefix),
    its storage, an internal network (nothing leaves the machine), the Caddy build's Go proxy."""
    raw = yaml.safe_load(local_yaml.read_text())["config"]
    config = {key.removeprefix(f"{PROJECT}:"): value for key, value in raw.items()}
    config["namePrefix"] = prefix
    config["storageRoot"] = str(mark_storage(storage))
    config["network"] = {**config["network"], "subnet": subnet, "internal": True}
    config["proxy"] = {**config["proxy"], "buildArgs": build_args, "firstNodePort": 47300}
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
    assert headscale_json(headscale, "preauthkeys", "list", "--user", str(after["alice"])), "her join key again"
    assert state_of(stack, "headscale-user-alice")["outputs"]["user_id"] == str(after["alice"])
    expect_no_changes(stack)


def test_a_pids_limit_reset_is_seen_and_set_again(drift):
    stack, samba = drift["stack"], drift["samba"]
    limit = state_of(stack, "alice-samba-pids")["inputs"]["limit"]
    subprocess.run(["docker", "update", "--pids-limit", "-1", samba.name], check=True, capture_output=True)
    samba.reload()
    assert not samba.attrs["HostConfig"].get("PidsLimit") or samba.attrs["HostConfig"]["PidsLimit"] < 0
    assert refresh(stack) == {"alice-samba-pids": "update"}
    assert state_of(stack, "alice-samba-pids")["outputs"]["limit"] == 0

    stack.up()
    samba.reload()
    assert samba.attrs["HostConfig"]["PidsLimit"] == limit
    assert samba.attrs["RestartCount"] == 0 and samba.status == "running"
    expect_no_changes(stack)


# --- a stack deployed with the code before the dynamic resources had their own types ----------------
