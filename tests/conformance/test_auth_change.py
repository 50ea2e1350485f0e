"""Changing a deployed share's login with `pulumi up` (shares[].auth: guest → password → guest):
its backups and its address stay, the password is made once and stays across `pulumi up`, and going
back to guests leaves no password behind. Only the `switch` share's container is replaced."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import NAME_PREFIX
from tests.support.smb import read_file, write_file
from tests.support.smb_logins import UserClient
from timemachine.planning import names
from timemachine.samba.smbconf import CREDENTIALS_PATH, DATA_USER

pytestmark = pytest.mark.conformance

SHARE = "switch"


def with_auth(config: dict, auth: str | None) -> dict:
    shares = [dict(s) for s in config["shares"]]
    for share in shares:
        if share["name"] == SHARE:
            share.pop("auth", None)
            if auth:
                share["auth"] = auth
    return {**config, "shares": shares}


def test_a_share_changes_its_login_and_keeps_its_data_and_address(deployment):
    stack, client, config = deployment["stack"], deployment["client"], deployment["config"]
    host, port = deployment["paths"][SHARE]
    before = stack.outputs()
    container = names.samba_container(NAME_PREFIX, SHARE)
    write_file(host, SHARE, "band-0", b"written as a guest", port)

    try:
        stack.write_config(with_auth(config, "password"))
        stack.up()
        after = stack.outputs(show_secrets=True)
        password = after["sharePasswords"][SHARE]
        assert after["shares"][SHARE]["ip"] == before["shares"][SHARE]["ip"]
        assert after["tmutilCommands"][SHARE].startswith(f"sudo tmutil setdestination -a -p smb://{DATA_USER}@")
        user = UserClient(host, port, DATA_USER, password)
        try:
            assert user.read(SHARE, "band-0") == b"written as a guest"
            user.write(SHARE, "band-1", b"written with the password")
        finally:
            user.close()

        # The password is made once: another `pulumi up` changes nothing, and it stays the same.
        stack.up("--expect-no-changes")
        assert stack.outputs(show_secrets=True)["sharePasswords"][SHARE] == password
    finally:
        stack.write_config(config)
        stack.up()

    back = stack.outputs()
    assert back["shares"][SHARE]["ip"] == before["shares"][SHARE]["ip"]
    assert "sharePasswords" in back  # fruitpw still has one
    assert back["tmutilCommands"][SHARE] == before["tmutilCommands"][SHARE]
    assert read_file(host, SHARE, "band-1", port) == b"written with the password"
    # No password left behind on the state volume (the entrypoint removes the file and the account).
    found = client.containers.get(container).exec_run(["test", "-e", CREDENTIALS_PATH]).exit_code
    assert found == 1
    accounts = client.containers.get(container).exec_run(["pdbedit", "--list"]).output.decode()
    assert f"{DATA_USER}:" not in accounts
