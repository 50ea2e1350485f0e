"""The two logins (samba.auth) of the deployed shares as a client meets them through the proxy: a
guest share takes anyone and signs nothing; a password share takes only its user with the password
from `sharePasswords`, only in signed sessions, and the password is nowhere but there and in its
0600 file on the share's state volume."""

from __future__ import annotations

import json
import subprocess

import pytest
from smbprotocol.exceptions import AccessDenied

from tests.conformance.conftest import NAME_PREFIX
from tests.support.containers import wait_healthy
from tests.support.smb import AAPL_FULL_SYNC, aapl_query, read_file, write_file
from tests.support.smb_logins import UserClient, aapl_query_as, user_tree
from timemachine.planning import names
from timemachine.samba.smbconf import CREDENTIALS_PATH, DATA_USER

pytestmark = pytest.mark.conformance

PASSWORD_SHARE = "fruitpw"


def smbclient(host: str, port: int, share: str, *login: str) -> subprocess.CompletedProcess:
    """The host's smbclient: one `ls` on the share."""
    return subprocess.run(
        ["smbclient", f"//{host}/{share}", "-p", str(port), *login, "-c", "ls"],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def password_share(deployment):
    host, port = deployment["paths"][PASSWORD_SHARE]
    return host, port, deployment["passwords"][PASSWORD_SHARE]


def test_smbclient_with_the_password_gets_in(password_share):
    host, port, password = password_share
    done = smbclient(host, port, PASSWORD_SHARE, "-U", f"{DATA_USER}%{password}")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    "login,refusal",
    [
        (["--no-pass"], "NT_STATUS_ACCESS_DENIED"),  # anonymous: no share for it (tree connect)
        (["-U", "guest%"], "NT_STATUS_LOGON_FAILURE"),  # not mapped to a guest
        (["-U", f"{DATA_USER}%wrong"], "NT_STATUS_LOGON_FAILURE"),
    ],
)
def test_smbclient_without_the_password_is_refused(password_share, login, refusal):
    host, port, _ = password_share
    done = smbclient(host, port, PASSWORD_SHARE, *login)
    assert done.returncode != 0
    assert refusal in done.stdout + done.stderr


def test_a_signing_client_works_and_an_unsigned_one_is_refused(password_share):
    host, port, password = password_share
    with user_tree(host, PASSWORD_SHARE, port, DATA_USER, password) as (session, _tree):
        assert session.signing_required and session.signing_key
    # The same login, but its requests unsigned: smbd (server signing = mandatory) refuses them.
    with pytest.raises(AccessDenied), user_tree(host, PASSWORD_SHARE, port, DATA_USER, password, sign=False):
        pass


def test_a_guest_share_takes_unsigned_guests(deployment):
    host, port = deployment["paths"]["fruit"]
    write_file(host, "fruit", "unsigned.txt", b"guest", port)
    assert read_file(host, "fruit", "unsigned.txt", port) == b"guest"


def test_a_guest_session_cannot_sign(deployment):
    # smbd answers with a guest session, which has no key to sign with: a client that insists on
    # signing (as macOS 26.0-26.3 is reported to) cannot use it. What samba.auth: password is for.
    host, port = deployment["paths"]["fruit"]
    with pytest.raises(Exception, match="signing"), user_tree(host, "fruit", port, "guest", ""):
        pass


def test_the_password_user_reads_and_writes_as_the_data_owner(deployment, password_share):
    host, port, password = password_share
    client = UserClient(host, port, DATA_USER, password)
    try:
        client.write(PASSWORD_SHARE, "owned.txt", b"backup band")
        assert client.read(PASSWORD_SHARE, "owned.txt") == b"backup band"
    finally:
        client.close()
    container = deployment["client"].containers.get(names.samba_container(NAME_PREFIX, PASSWORD_SHARE))
    owner = container.exec_run(["stat", "-c", "%u", "/data/owned.txt"]).output.decode().strip()
    assert owner == str(deployment["config"]["samba"]["dataUid"])


@pytest.mark.parametrize("share", ["fruit", PASSWORD_SHARE])
def test_the_aapl_reply_carries_full_sync_in_both_logins(deployment, share):
    """The volume capability macOS checks before it takes a network Time Machine destination."""
    host, port = deployment["paths"][share]
    if share == PASSWORD_SHARE:
        reply, signed = aapl_query_as(host, share, port, DATA_USER, deployment["passwords"][share])
        assert signed
    else:
        reply, guest = aapl_query(host, share, port)
        assert guest
    assert reply.volume_caps & AAPL_FULL_SYNC, f"volume caps {reply.volume_caps:#x}"
    assert reply.model == "MacSamba"


def test_the_password_is_only_in_the_secret_output_and_the_0600_file(deployment):
    stack, client = deployment["stack"], deployment["client"]
    password = deployment["passwords"][PASSWORD_SHARE]
    outputs = stack.outputs()
    assert outputs["sharePasswords"] == "[secret]"
    assert outputs["tmutilCommands"][PASSWORD_SHARE] == (
        f"sudo tmutil setdestination -a -p smb://{DATA_USER}@tm-{PASSWORD_SHARE}.e2e.ts.net/{PASSWORD_SHARE}"
    )
    assert password not in json.dumps(outputs) and password not in stack.export()
    container = client.containers.get(names.samba_container(NAME_PREFIX, PASSWORD_SHARE))
    # docker inspect: environment, healthcheck, labels, mounts: none holds it.
    assert password not in json.dumps(client.api.inspect_container(container.id))
    mode = container.exec_run(["stat", "-c", "%a %u", CREDENTIALS_PATH]).output.decode().split()
    assert mode == ["600", "0"]
    # The healthcheck's login (the file) is the one smbd checks: the container turns healthy (at
    # Docker's first check, one interval after the start).
    wait_healthy(container)
