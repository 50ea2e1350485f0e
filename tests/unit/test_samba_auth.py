"""samba.auth (guest | password): the config, the smb.conf of each login, the credentials file the
stack writes, and what the program declares and exports for a password share (under mocks)."""

from __future__ import annotations

import copy
import re
import subprocess
from typing import Any

import pytest

from tests.support.pulumi_runner import run_program
from timemachine.components.images import IMAGES_DIR
from timemachine.config.loader import ConfigError, load
from timemachine.dynamic.share_password import PASSWORD_BYTES
from timemachine.samba.smbconf import CREDENTIALS_FILE, CREDENTIALS_PATH, DATA_USER, credentials_file, render_smb_conf

CONFIG: dict[str, Any] = {
    "storageRoot": "/srv/timemachine",
    "tailnet": {"dnsSuffix": "example-tailnet.ts.net", "authKeys": "managed"},
    "samba": {"model": "TimeCapsule8,119"},
    "shares": [
        {"name": "alice", "owner": "alice@example.com", "quota": "1T"},
        {"name": "bob", "owner": "bob@example.com", "quota": "500G"},
    ],
}
CONTAINER_T = "docker:index/container:Container"
PASSWORD_T = "pulumi-python:dynamic/timemachine:SharePassword"
FILES_T = "pulumi-python:dynamic/timemachine:VolumeFiles"


def config(samba_auth: str | None = None, **share_auth: str) -> dict:
    out = copy.deepcopy(CONFIG)
    if samba_auth:
        out["samba"]["auth"] = samba_auth
    for share in out["shares"]:
        if share["name"] in share_auth:
            share["auth"] = share_auth[share["name"]]
    return out


def options(conf: str, section: str) -> dict[str, str]:
    body = conf.split(f"[{section}]\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.strip().split(" = ", 1) for line in body.splitlines() if " = " in line)


def test_guest_is_the_default_and_a_share_may_choose_its_own():
    stack = load(config()).config
    assert [stack.auth_of(s) for s in stack.shares] == ["guest", "guest"]
    stack = load(config("password", bob="guest")).config
    assert [stack.auth_of(s) for s in stack.shares] == ["password", "guest"]
    stack = load(config(alice="password")).config
    assert [stack.auth_of(s) for s in stack.shares] == ["password", "guest"]


@pytest.mark.parametrize("path,value", [("samba", "passwd"), ("shares", "kerberos")])
def test_an_unknown_login_is_refused_where_it_is(path, value):
    raw = config()
    if path == "samba":
        raw["samba"]["auth"] = value
    else:
        raw["shares"][1]["auth"] = value
    with pytest.raises(ConfigError) as caught:
        load(raw)
    where = "samba.auth" if path == "samba" else "shares[1].auth"
    assert any(p.startswith(f"{where}:") and "guest" in p and "password" in p for p in caught.value.problems)


def test_guest_smb_conf_maps_everyone_to_the_data_owner_unsigned():
    conf = render_smb_conf("alice", None, "m", allow_from="10.0.0.1")
    g, s = options(conf, "global"), options(conf, "alice")
    assert g["map to guest"] == "Bad User" and g["guest account"] == DATA_USER
    assert "server signing" not in g
    assert s["guest ok"] == "yes" and s["guest only"] == "yes" and "valid users" not in s


def test_password_smb_conf_admits_only_the_data_owner_in_signed_sessions():
    conf = render_smb_conf("alice", None, "m", allow_from="10.0.0.1", auth="password")
    g, s = options(conf, "global"), options(conf, "alice")
    assert g["map to guest"] == "Never" and g["restrict anonymous"] == "2"
    assert g["server signing"] == "mandatory"
    assert "guest account" not in g
    assert s["guest ok"] == "no" and s["valid users"] == DATA_USER and "guest only" not in s
    # The rest is the same share.
    guest = render_smb_conf("alice", None, "m", allow_from="10.0.0.1")
    assert options(guest, "alice")["fruit:time machine"] == s["fruit:time machine"] == "yes"


def test_the_credentials_file_is_what_smbclient_and_the_entrypoint_read():
    assert credentials_file("pw-123") == f"username = {DATA_USER}\npassword = pw-123\n"
    assert CREDENTIALS_PATH == "/var/lib/samba/private/timemachine.credentials"


def test_the_entrypoint_reads_the_password_as_written():
    # The entrypoint's own sed expression, over the file the stack writes.
    entrypoint = (IMAGES_DIR / "samba" / "entrypoint.sh").read_text()
    expression = re.search(r"sed -n '([^']+)' \"\$credentials\"", entrypoint)
    assert expression, "the entrypoint reads the password with sed -n '…' \"$credentials\""
    password = "Ab_-" + "x" * (PASSWORD_BYTES * 4 // 3 - 4)
    done = subprocess.run(
        ["sed", "-n", expression.group(1)], input=credentials_file(password), capture_output=True, text=True
    )
    assert done.stdout == password + "\n"


@pytest.fixture(scope="module")
def mixed():
    """alice with a password, bob a guest (samba.auth: password, bob's own auth: guest)."""
    return run_program(config("password", bob="guest"))


def test_a_password_share_gets_its_password_once_and_its_file_before_its_container(mixed):
    (password,) = mixed.of_type(PASSWORD_T)
    assert password.name == "alice-password" and password.inputs["share"] == "alice"
    # At the stack's root, as every resource of a share is.
    assert password.parent.endswith("pulumi:pulumi:Stack::tailscale-timemachine-test")
    files = [r for r in mixed.of_type(FILES_T) if r.name == "alice-credentials"]
    assert len(files) == 1 and files[0].parent == password.parent
    (credentials,) = files
    assert list(credentials.inputs["files"]) == [CREDENTIALS_FILE] and credentials.inputs["mode"] == 0o600
    assert credentials.secret_at("files")
    samba = mixed.named("alice-samba")
    assert credentials.urn in samba.depends_on


def samba_envs(run) -> dict[str, dict[str, str]]:
    containers = {r.name.removesuffix("-samba"): r for r in run.of_type(CONTAINER_T) if r.name.endswith("-samba")}
    return {name: dict(e.split("=", 1) for e in c.inputs["envs"]) for name, c in containers.items()}


def test_each_container_knows_its_login_and_holds_no_password(mixed):
    # SAMBA_AUTH tells the entrypoint (and the healthcheck) how a session logs in.
    envs = samba_envs(mixed)
    assert envs["alice"]["SAMBA_AUTH"] == "password" and envs["bob"]["SAMBA_AUTH"] == "guest"
    assert "TM_CREDENTIALS_ID" in envs["alice"] and "TM_CREDENTIALS_ID" not in envs["bob"]
    assert "server signing = mandatory" in envs["alice"]["SMB_CONF"]
    assert not any("password =" in value for env in envs.values() for value in env.values())


def test_tmutil_commands_name_the_user_and_passwords_are_a_secret_output(mixed):
    commands = mixed.outputs["tmutilCommands"]
    assert commands["alice"] == (
        f"sudo tmutil setdestination -a -p smb://{DATA_USER}@tm-alice.example-tailnet.ts.net/alice"
    )
    assert commands["bob"] == "sudo tmutil setdestination -a smb://guest@tm-bob.example-tailnet.ts.net/bob"
    assert set(mixed.outputs["sharePasswords"]) == {"alice"}
    assert "sharePasswords" in mixed.secret_outputs


def test_guest_stacks_export_no_passwords():
    run = run_program(config())
    assert "sharePasswords" not in run.outputs
    assert not run.of_type(PASSWORD_T)
    assert not [r for r in run.of_type(FILES_T) if r.name.endswith("-credentials")]
