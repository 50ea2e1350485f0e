"""What a Mac needs to join a self-hosted tailnet: its join command, a macOS configuration profile
that makes it trust the stack's control CA, and one script that trusts, joins and sets its Time
Machine destinations. Plain functions over plain values."""

from __future__ import annotations

import hashlib
import plistlib
import uuid
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

# The macOS CLI of the Tailscale app (standalone and App Store) where no `tailscale` is on the PATH.
MAC_TAILSCALE = "/Applications/Tailscale.app/Contents/MacOS/Tailscale"
# Apple's payload type for a trusted root certificate (DeviceManagement: CertificateRoot).
ROOT_PAYLOAD_TYPE = "com.apple.security.root"
# UUIDs derived from the certificate: the same CA gives the same profile, so installing it again
# replaces the installed one instead of adding a second.
UUID_NAMESPACE = uuid.UUID("5c1d8b1e-4f7a-4f0e-9a59-7e3b1f0c2a61")


def join_command(control_url: str, key: str, mac: str) -> str:
    """What the Mac runs to join as its owner: single-use key, the Mac's name as its tailnet hostname."""
    return f"tailscale up --login-server={control_url} --auth-key={key} --hostname={mac}"


def certificate_der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def _uuid(der: bytes, part: str) -> str:
    return str(uuid.uuid5(UUID_NAMESPACE, hashlib.sha256(der).hexdigest() + part)).upper()


def ca_profile(ca_pem: str, stack: str, control_host: str) -> bytes:
    """A configuration profile (.mobileconfig, an XML property list) with one Certificate Root
    payload: the stack's control CA, installed in the System keychain as a trusted root. The keys
    are those Apple documents for a profile's top level and for CertificateRoot (PayloadContent:
    the DER certificate)."""
    der = certificate_der(ca_pem)
    identifier = f"tailscale-timemachine.{stack}"
    root = {
        "PayloadCertificateFileName": f"{stack}-control-ca.cer",
        "PayloadContent": der,
        "PayloadDescription": f"Lets this Mac trust the tailnet control server {control_host} (and nothing else).",
        "PayloadDisplayName": f"Time Machine tailnet control CA ({stack})",
        "PayloadIdentifier": f"{identifier}.control-ca",
        "PayloadType": ROOT_PAYLOAD_TYPE,
        "PayloadUUID": _uuid(der, "payload"),
        "PayloadVersion": 1,
    }
    profile = {
        "PayloadContent": [root],
        "PayloadDescription": (
            f"The certificate authority of the tailscale-timemachine stack {stack}; it may vouch for "
            f"{control_host} only (a name constraint)."
        ),
        "PayloadDisplayName": f"Time Machine tailnet ({stack})",
        "PayloadIdentifier": identifier,
        "PayloadOrganization": "tailscale-timemachine",
        "PayloadRemovalDisallowed": False,
        # The System keychain: the Tailscale network extension runs outside any user's session.
        "PayloadScope": "System",
        "PayloadType": "Configuration",
        "PayloadUUID": _uuid(der, "profile"),
        "PayloadVersion": 1,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def setup_script(
    *,
    mac: str,
    owner: str,
    stack: str,
    join: str,
    tmutil_commands: Sequence[str],
    ca_pem: str | None,
) -> str:
    """One script the Mac's user runs once in Terminal (`sudo sh <file>`): trust the stack's CA
    (when it has its own), join the tailnet with `join` (run as the user, not root: it talks to the
    Tailscale app) and run each `tmutil_commands` line (`tmutil setdestination -a …`, as root)."""
    lines = [
        "#!/bin/sh",
        f"# Enrols the Mac {mac!r} (owner {owner}) in the tailnet of the tailscale-timemachine stack {stack!r}.",
        f"# Run it once on that Mac, in Terminal: sudo sh enrol-{mac}.sh",
        "# It holds a single-use join key: delete it afterwards.",
        "set -eu",
        '[ "$(id -u)" -eq 0 ] || { echo "run it with sudo: sudo sh $0" >&2; exit 1; }',
    ]
    if ca_pem is not None:
        lines += [
            "",
            "# 1. Trust the stack's control CA (it can vouch for the control server only): macOS asks for",
            "#    an administrator's password to change the System keychain's trust settings.",
            'ca="$(mktemp /tmp/tm-control-ca.XXXXXX)"',
            "cat >\"$ca\" <<'CERTIFICATE'",
            ca_pem.strip(),
            "CERTIFICATE",
            'security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "$ca"',
            'rm -f "$ca"',
        ]
    lines += [
        "",
        "# 2. Join the tailnet as its owner (the Tailscale app must be installed and running).",
        f'tailscale="$(command -v tailscale || echo {MAC_TAILSCALE})"',
        'as_user() { if [ -n "${SUDO_USER:-}" ]; then sudo -u "$SUDO_USER" "$@"; else "$@"; fi; }',
        'as_user "$tailscale" ' + join.removeprefix("tailscale "),
        "",
        "# 3. Back up to the owner's share(s), beside any existing destination.",
    ]
    lines += [command.removeprefix("sudo ") for command in tmutil_commands]
    lines += ["echo 'Done: tmutil destinationinfo lists the destination; Time Machine backs up within the hour.'", ""]
    return "\n".join(lines)
