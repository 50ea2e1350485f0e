"""Samba's own smbtorture suites against the share `pulumi up` deployed (vfs_fruit's two, and durable
handles v2), compared test by test with expected.toml; and the AAPL server capabilities the fruit
suites start from, bit by bit."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.smb import (
    AAPL_CLIENT_CAPS,
    AAPL_FULL_SYNC,
    AAPL_NFS_ACE,
    AAPL_OSX_COPYFILE,
    AAPL_READ_DIR_ATTR,
    AAPL_UNIX_BASED,
    aapl_query,
)

pytestmark = pytest.mark.conformance

EXPECTED = tomllib.loads((Path(__file__).parent / "expected.toml").read_text())
SUITES = ("vfs.fruit", "vfs.fruit_timemachine", "smb2.durable-v2-open")
RESULT = re.compile(r"^(success|failure|skip|error|xfail|uxsuccess): (.+?)( \[)?$")


@dataclass
class Outcome:
    outcome: str
    message: str


def smbtorture() -> str:
    path = shutil.which("smbtorture")
    if path is None:
        pytest.fail("smbtorture is missing: apt-get install samba-testsuite (scripts/setup.sh installs it)")
    return path


def parse(output: str) -> dict[str, Outcome]:
    """smbtorture's result lines: `success: NAME`, or `failure|skip|error: NAME [` with its
    message on the lines up to the closing `]`."""
    results: dict[str, Outcome] = {}
    lines = iter(output.splitlines())
    for line in lines:
        match = RESULT.match(line)
        if not match:
            continue
        outcome, name, bracket = match.groups()
        message = []
        if bracket:
            for more in lines:
                if more.startswith("]"):
                    break
                message.append(more)
        assert name not in results, f"{name} reported twice"
        results[name] = Outcome(outcome, "\n".join(message).strip())
    return results


@pytest.fixture(scope="module")
def runs(share) -> dict[str, dict[str, Outcome]]:
    """Each suite once, as a guest (`-U%`: no user, no password), against the deployed share."""
    binary = smbtorture()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[-1]
    assert version == EXPECTED["smbtorture_version"], (
        f"smbtorture {version}: expected.toml records the outcomes of {EXPECTED['smbtorture_version']}"
    )
    runs = {}
    for suite in SUITES:
        done = subprocess.run(
            [binary, f"//{share['ip']}/{share['name']}", "-U%", "-p", str(share["port"]), suite],
            capture_output=True,
            text=True,
            timeout=600,
        )
        results = parse(done.stdout)
        assert results, f"smbtorture {suite} reported no test (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        runs[suite] = results
    return runs


def expected_outcomes(suite: str) -> dict[str, dict]:
    """Test name → {"outcome": …, "reason": …, "cause": …} as listed for the suite."""
    return {name: ({"outcome": entry} if isinstance(entry, str) else entry) for name, entry in EXPECTED[suite].items()}


@pytest.mark.parametrize("suite", SUITES)
def test_the_suite_ran_exactly_the_listed_tests(runs, suite):
    assert sorted(runs[suite]) == sorted(expected_outcomes(suite))


@pytest.mark.parametrize("suite,name", [(suite, name) for suite in SUITES for name in expected_outcomes(suite)])
def test_outcome_is_the_listed_one(runs, suite, name):
    expected = expected_outcomes(suite)[name]
    got = runs[suite].get(name)
    assert got is not None, f"{suite} did not run {name!r}"
    assert got.outcome == expected["outcome"], f"{suite} {name!r}: {got.outcome}\n{got.message}"
    if expected["outcome"] != "success":
        assert expected["cause"].strip(), "a test that does not pass needs its cause in expected.toml"
        assert expected["reason"] in got.message, f"{suite} {name!r} now says:\n{got.message}"


def test_timemachine_volsize_is_the_quota(runs):
    # The suite checks 32 allocation units of 1 KiB in total (the 32K quota) and 16 free after its
    # two 8 KiB bands: the quota as volume size, minus what the sparsebundle holds.
    assert runs["vfs.fruit_timemachine"]["Timemachine-volsize"].outcome == "success"


def test_aapl_server_caps_as_the_suite_expects_them(share):
    """The caps the suites' enable_aapl() wants (exactly 0xf) and the volume caps macOS checks."""
    reply, guest = aapl_query(share["ip"], share["name"], share["port"])
    assert guest, "the session should be a guest session"
    assert reply.server_caps == AAPL_READ_DIR_ATTR | AAPL_OSX_COPYFILE | AAPL_UNIX_BASED | AAPL_NFS_ACE, (
        f"server caps {reply.server_caps:#x}"
    )
    assert reply.volume_caps == AAPL_FULL_SYNC, f"volume caps {reply.volume_caps:#x}"
    assert reply.model == "MacSamba"


def test_read_dir_attr_is_granted_only_to_a_client_that_asks(share):
    """vfs_fruit's check_aapl grants READ_DIR_ATTR when the client asks for it (and the share has
    named streams); it was never missing: caps 0x5 = READ_DIR_ATTR (0x1) | UNIX_BASED (0x4)."""
    without, _ = aapl_query(
        share["ip"], share["name"], share["port"], client_caps=AAPL_CLIENT_CAPS & ~AAPL_READ_DIR_ATTR
    )
    assert not without.server_caps & AAPL_READ_DIR_ATTR, f"server caps {without.server_caps:#x}"
    assert without.server_caps == AAPL_OSX_COPYFILE | AAPL_UNIX_BASED | AAPL_NFS_ACE
