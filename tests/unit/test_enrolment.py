"""A Mac's enrolment (timemachine/tailnet/enrolment.py): the configuration profile read back with a
property-list parser and checked against the keys Apple documents, and the setup script run by a
real shell with stand-ins for macOS's `security`, `tmutil` and the Tailscale CLI."""

from __future__ import annotations

import plistlib
import re
import stat
import subprocess
from pathlib import Path

import pytest

from timemachine.headscale.tls import der, issue_authority
from timemachine.tailnet.enrolment import MAC_TAILSCALE, ca_profile, join_command, setup_script

HOST = "headscale.internal"
# Apple, Device Management, "TopLevel" (the profile) and "CommonPayloadKeys"/"CertificateRoot" (a
# payload): the keys each may carry, and those it must.
TOP_LEVEL_KEYS = {
    "PayloadContent",
    "PayloadDescription",
    "PayloadDisplayName",
    "PayloadExpirationDate",
    "PayloadIdentifier",
    "PayloadOrganization",
    "PayloadUUID",
    "PayloadRemovalDisallowed",
    "PayloadType",
    "PayloadVersion",
    "PayloadScope",
    "RemovalDate",
    "DurationUntilRemoval",
    "ConsentText",
    "TargetDeviceType",
}
TOP_LEVEL_REQUIRED = {"PayloadIdentifier", "PayloadType", "PayloadUUID", "PayloadVersion"}
ROOT_KEYS = {
    "PayloadType",
    "PayloadVersion",
    "PayloadIdentifier",
    "PayloadUUID",
    "PayloadDisplayName",
    "PayloadDescription",
    "PayloadOrganization",
    "PayloadCertificateFileName",
    "PayloadContent",
}
ROOT_REQUIRED = {"PayloadType", "PayloadVersion", "PayloadIdentifier", "PayloadUUID", "PayloadContent"}
UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")


@pytest.fixture(scope="module")
def ca() -> str:
    return issue_authority(HOST, "tailscale-timemachine test/local control CA").certificate


def test_the_profile_is_a_configuration_with_one_certificate_root_payload(ca):
    profile = plistlib.loads(ca_profile(ca, "local", HOST))
    assert set(profile) <= TOP_LEVEL_KEYS and TOP_LEVEL_REQUIRED <= set(profile), set(profile) ^ TOP_LEVEL_KEYS
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    assert profile["PayloadScope"] == "System" and profile["PayloadRemovalDisallowed"] is False
    (root,) = profile["PayloadContent"]
    assert set(root) <= ROOT_KEYS and ROOT_REQUIRED <= set(root), set(root) ^ ROOT_KEYS
    assert root["PayloadType"] == "com.apple.security.root" and root["PayloadVersion"] == 1
    # PayloadContent: the certificate's DER bytes (a <data> element), exactly the stack's root.
    assert isinstance(root["PayloadContent"], bytes) and root["PayloadContent"] == der(ca)
    assert root["PayloadCertificateFileName"].endswith(".cer")
    for payload in (profile, root):
        assert UUID.match(payload["PayloadUUID"]), payload["PayloadUUID"]
        assert payload["PayloadDisplayName"]
    assert root["PayloadIdentifier"].startswith(profile["PayloadIdentifier"] + ".")
    assert root["PayloadUUID"] != profile["PayloadUUID"]


def test_the_same_root_gives_the_same_profile_so_installing_it_again_replaces_it(ca):
    assert ca_profile(ca, "local", HOST) == ca_profile(ca, "local", HOST)
    other = issue_authority(HOST, "another").certificate
    assert (
        plistlib.loads(ca_profile(other, "local", HOST))["PayloadUUID"]
        != plistlib.loads(ca_profile(ca, "local", HOST))["PayloadUUID"]
    )


def stub(folder: Path, name: str) -> None:
    """A command that appends its arguments (and, for security, the certificate file) to calls.log."""
    path = folder / name
    path.write_text(
        "#!/bin/sh\n"
        f'echo "{name} $*" >> "{folder}/calls.log"\n'
        f'[ "{name}" = security ] && cat "$7" >> "{folder}/trusted.pem"\n'
        "exit 0\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_setup_script_trusts_joins_and_sets_each_destination(ca, tmp_path):
    join = join_command("https://headscale.internal:8080", "hskey-auth-SECRET", "alice-macbook")
    assert join == (
        "tailscale up --login-server=https://headscale.internal:8080 --auth-key=hskey-auth-SECRET "
        "--hostname=alice-macbook"
    )
    script = setup_script(
        mac="alice-macbook",
        owner="alice@",
        stack="local",
        join=join,
        tmutil_commands=[
            "sudo tmutil setdestination -a smb://guest@tm-alice/alice",
            "sudo tmutil setdestination -a -p smb://alice@tm-alice-photos/alice-photos",
        ],
        ca_pem=ca,
    )
    (tmp_path / "enrol.sh").write_text(script)
    assert subprocess.run(["sh", "-n", str(tmp_path / "enrol.sh")], check=False).returncode == 0
    for command in ("security", "tmutil", "tailscale"):
        stub(tmp_path, command)
    # The script insists on root, as `sudo sh` gives it on the Mac.
    (tmp_path / "id").write_text("#!/bin/sh\necho 0\n")
    (tmp_path / "id").chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["sh", str(tmp_path / "enrol.sh")], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0].startswith("security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain ")
    assert calls[1:] == [
        "tailscale up --login-server=https://headscale.internal:8080 --auth-key=hskey-auth-SECRET "
        "--hostname=alice-macbook",
        "tmutil setdestination -a smb://guest@tm-alice/alice",
        "tmutil setdestination -a -p smb://alice@tm-alice-photos/alice-photos",
    ]
    assert (tmp_path / "trusted.pem").read_text().strip() == ca.strip(), "the stack's root, byte for byte"
    assert not list(Path("/tmp").glob("tm-control-ca.*")), "the temporary certificate file is removed"


def test_the_script_without_a_ca_of_its_own_only_joins_and_falls_back_to_the_apps_cli():
    script = setup_script(
        mac="bob-mac", owner="bob@", stack="s", join="tailscale up --auth-key=k", tmutil_commands=[], ca_pem=None
    )
    assert "security" not in script and MAC_TAILSCALE in script
