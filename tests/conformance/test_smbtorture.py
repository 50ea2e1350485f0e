"""Samba's own smbtorture suites, from the Samba image's own release, against the shares `pulumi up`
deployed (vfs_fruit's two, and durable handles v2), once as a guest and once with the password of
a password share, compared test by test with expected.toml; and the AAPL server capabilities the
fruit suites start from, bit by bit."""

from __future__ import annotations

import tomllib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conformance.conftest import NAME_PREFIX
from tests.support.smb import (
    AAPL_CLIENT_CAPS,
    AAPL_FULL_SYNC,
    AAPL_NFS_ACE,
    AAPL_OSX_COPYFILE,
    AAPL_READ_DIR_ATTR,
    AAPL_UNIX_BASED,
    aapl_query,
)
from tests.support.smbtorture import Outcome, parse, run_suite, share_without_fruit, version
from timemachine.planning import names
from timemachine.samba.smbconf import credentials_file

pytestmark = pytest.mark.conformance

EXPECTED = tomllib.loads((Path(__file__).parent / "expected.toml").read_text())
SUITES = ("vfs.fruit", "vfs.fruit_timemachine", "smb2.durable-v2-open")
# Each login's share (tests/conformance/conftest.py).
LOGINS = {"guest": "fruit", "password": "fruitpw"}
ALL_CAPS = AAPL_READ_DIR_ATTR | AAPL_OSX_COPYFILE | AAPL_UNIX_BASED | AAPL_NFS_ACE


def run_login(deployment: dict, image: str, login: str) -> dict[str, dict[str, Outcome]]:
    """The suites against one login's share, one after the other (vfs.fruit with its second share,
    see share_without_fruit)."""
    client, share = deployment["client"], LOGINS[login]
    host, port = deployment["paths"][share]
    credentials = credentials_file(deployment["passwords"][share]) if login == "password" else None
    samba = client.containers.get(names.samba_container(NAME_PREFIX, share))
    results = {}
    for suite in SUITES:
        with ExitStack() as stack:
            options = []
            if suite == "vfs.fruit":
                options.append(f"torture:share2={stack.enter_context(share_without_fruit(samba, share))}")
            status, out, err = run_suite(
                client, image, deployment["caddy"], host, port, share, suite, credentials, options
            )
        found = parse(out)
        assert found, f"smbtorture {suite} as {login} reported no test (exit {status}):\n{out}\n{err}"
        results[suite] = found
    return results


@pytest.fixture(scope="module")
def runs(deployment, smbtorture_image) -> dict[str, dict[str, dict[str, Outcome]]]:
    """Each suite once per login (a guest: `-U%`; the password share: its user and password from
    `sharePasswords`), from trixie's smbtorture, against the deployed shares through the proxy. The
    two logins run side by side (their own shares and smbds): smb2.durable-v2-open waits out lease
    and reconnect timers for about 70 s, whatever the machine."""
    client = deployment["client"]
    tool = version(client, smbtorture_image)
    assert tool == EXPECTED["smbtorture_version"], (
        f"smbtorture {tool}: expected.toml records the outcomes of {EXPECTED['smbtorture_version']}"
    )
    served = client.containers.get(names.samba_container(NAME_PREFIX, LOGINS["guest"]))
    smbd = served.exec_run(["smbd", "--version"]).output.decode().split()[-1]
    assert smbd == tool, f"the share runs Samba {smbd}, the suites are those of {tool}: one release for both"
    with ThreadPoolExecutor(max_workers=len(LOGINS)) as pool:
        futures = {login: pool.submit(run_login, deployment, smbtorture_image, login) for login in LOGINS}
        return {login: future.result() for login, future in futures.items()}


def expected_outcomes(login: str, suite: str) -> dict[str, dict]:
    """Test name → {"outcome": …, "reason": …, "cause": …} as listed for the suite and login: the
    suite's table, and the login's own table where that login's outcome differs."""
    listed = {**EXPECTED[suite], **EXPECTED.get(login, {}).get(suite, {})}
    return {name: ({"outcome": entry} if isinstance(entry, str) else entry) for name, entry in listed.items()}


@pytest.mark.parametrize("login", LOGINS)
@pytest.mark.parametrize("suite", SUITES)
def test_the_suite_ran_exactly_the_listed_tests(runs, login, suite):
    assert sorted(runs[login][suite]) == sorted(expected_outcomes(login, suite))


@pytest.mark.parametrize(
    "login,suite,name",
    [(login, suite, name) for login in LOGINS for suite in SUITES for name in expected_outcomes(login, suite)],
)
def test_outcome_is_the_listed_one(runs, login, suite, name):
    expected = expected_outcomes(login, suite)[name]
    got = runs[login][suite].get(name)
    assert got is not None, f"{suite} as {login} did not run {name!r}"
    assert got.outcome == expected["outcome"], f"{suite} {name!r} as {login}: {got.outcome}\n{got.message}"
    if expected["outcome"] != "success":
        assert expected["cause"].strip(), "a test that does not pass needs its cause in expected.toml"
        assert expected["reason"] in got.message, f"{suite} {name!r} as {login} now says:\n{got.message}"


def test_nothing_is_skipped(runs):
    skipped = [
        (login, suite, name)
        for login in runs
        for suite in runs[login]
        for name, got in runs[login][suite].items()
        if got.outcome == "skip"
    ]
    assert not skipped


@pytest.mark.parametrize("login", LOGINS)
def test_timemachine_volsize_is_the_quota(runs, login):
    # The suite checks 32 allocation units of 1 KiB in total (the 32K quota) and 16 free after its
    # two 8 KiB bands: the quota as volume size, minus what the sparsebundle holds.
    assert runs[login]["vfs.fruit_timemachine"]["Timemachine-volsize"].outcome == "success"


def test_aapl_server_caps_as_the_suite_expects_them(deployment):
    """The caps the suites' enable_aapl() wants (exactly 0xf) and the volume caps macOS checks."""
    host, port = deployment["paths"]["fruit"]
    reply, guest = aapl_query(host, "fruit", port)
    assert guest, "the session should be a guest session"
    assert reply.server_caps == ALL_CAPS, f"server caps {reply.server_caps:#x}"
    assert reply.volume_caps == AAPL_FULL_SYNC, f"volume caps {reply.volume_caps:#x}"
    assert reply.model == "MacSamba"


def test_read_dir_attr_is_granted_only_to_a_client_that_asks(deployment):
    """vfs_fruit's check_aapl grants READ_DIR_ATTR when the client asks for it (and the share has
    named streams); it was never missing: caps 0x5 = READ_DIR_ATTR (0x1) | UNIX_BASED (0x4)."""
    host, port = deployment["paths"]["fruit"]
    without, _ = aapl_query(host, "fruit", port, client_caps=AAPL_CLIENT_CAPS & ~AAPL_READ_DIR_ATTR)
    assert not without.server_caps & AAPL_READ_DIR_ATTR, f"server caps {without.server_caps:#x}"
    assert without.server_caps == AAPL_OSX_COPYFILE | AAPL_UNIX_BASED | AAPL_NFS_ACE
