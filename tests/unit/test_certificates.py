"""The stack's control CA and server certificate (timemachine/headscale/tls.py) checked by an X.509
path validator (cryptography's, the WebPKI rules), against what Apple requires of a TLS server
certificate, and the provider's renewal (timemachine/dynamic/certificates.py)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from timemachine.dynamic.certificates import ControlCertificatesProvider
from timemachine.headscale import tls

HOST = "headscale.internal"


def verify(leaf_pem: str, roots: list[str], name: str, at: datetime | None = None) -> None:
    """Raises VerificationError unless `leaf_pem` is valid for `name` under `roots`."""
    store = verification.Store([x509.load_pem_x509_certificate(r.encode()) for r in roots])
    builder = verification.PolicyBuilder().store(store)
    if at is not None:
        builder = builder.time(at)
    subject = x509.IPAddress(ipaddress.ip_address(name)) if name[0].isdigit() else x509.DNSName(name)
    builder.build_server_verifier(subject).verify(x509.load_pem_x509_certificate(leaf_pem.encode()), [])


@pytest.fixture(scope="module")
def authority() -> tls.Issued:
    return tls.issue_authority(HOST, "tailscale-timemachine test/local control CA")


def test_the_server_certificate_chains_to_the_root_for_the_control_name_only(authority):
    server = tls.issue_server(HOST, authority.certificate, authority.key)
    verify(server.certificate, [authority.certificate], HOST)
    with pytest.raises(verification.VerificationError):
        verify(server.certificate, [authority.certificate], "other.internal")
    # Another root (an impostor's own CA) does not vouch for it.
    other = tls.issue_authority(HOST, "impostor")
    with pytest.raises(verification.VerificationError):
        verify(server.certificate, [other.certificate], HOST)


def test_the_root_cannot_vouch_for_any_other_name(authority):
    """Its name constraint: a certificate the root's key signs for another site is refused, so the root
    on a Mac is no master key to the web, whoever gets the key (it is in the stack's state)."""
    forged = tls.issue_server("bank.example.com", authority.certificate, authority.key)
    with pytest.raises(verification.VerificationError, match="constraint|name"):
        verify(forged.certificate, [authority.certificate], "bank.example.com")
    sub = tls.issue_server(f"derp.{HOST}", authority.certificate, authority.key)
    verify(sub.certificate, [authority.certificate], f"derp.{HOST}")


def test_a_loopback_address_gets_an_ip_name_and_constraint():
    root = tls.issue_authority("127.0.0.1", "loopback CA")
    server = tls.issue_server("127.0.0.1", root.certificate, root.key)
    verify(server.certificate, [root.certificate], "127.0.0.1")
    san = x509.load_pem_x509_certificate(server.certificate.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_the_server_certificate_meets_apples_requirements(authority):
    """Apple's requirements for TLS server certificates (iOS 13 / macOS 10.15 on): the name in
    subjectAltName, serverAuth in extendedKeyUsage, SHA-2 signature, at most 825 days; an ECDSA key of
    256 bits or more (RSA would need 2048)."""
    server = x509.load_pem_x509_certificate(
        tls.issue_server(HOST, authority.certificate, authority.key).certificate.encode()
    )
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert server.signature_hash_algorithm is not None and server.signature_hash_algorithm.name == "sha256"
    assert server.public_key().key_size >= 256  # type: ignore[union-attr]
    assert (server.not_valid_after_utc - server.not_valid_before_utc) <= timedelta(days=825)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    root = x509.load_pem_x509_certificate(authority.certificate.encode())
    constraints = root.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical and constraints.value.permitted_subtrees == [x509.DNSName(HOST)]
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0


def test_renewal_is_due_within_its_window_and_a_fingerprint_is_the_der_sha256(authority):
    server = tls.issue_server(HOST, authority.certificate, authority.key)
    now = datetime.now(UTC)
    assert not tls.due_for_renewal(server.certificate, now)
    assert tls.due_for_renewal(server.certificate, now + timedelta(days=tls.SERVER_DAYS - tls.RENEW_DAYS + 1))
    assert tls.due_for_renewal(None)
    assert len(tls.fingerprint(server.certificate)) == 64


def test_the_provider_makes_both_renews_from_the_same_root_and_replaces_on_a_new_host(monkeypatch):
    provider = ControlCertificatesProvider()
    news = {"host": HOST, "authority_name": "test CA", "certificate": None, "key": None}
    made = provider.create(dict(news))
    assert made.outs is not None
    outs: dict = made.outs
    verify(outs["certificate"], [outs["ca_certificate"]], HOST)
    assert made.id == tls.fingerprint(outs["ca_certificate"])
    # Nothing changed and nothing due: no change planned.
    assert not provider.diff(made.id, outs, dict(news)).changes
    # A new host: replaced (the root names the host).
    assert provider.diff(made.id, outs, {**news, "host": "hs.example.com"}).replaces == ["host"]
    # Within the renewal window: an update, which keeps the root and issues a new server certificate.
    later = datetime.now(UTC) + timedelta(days=tls.SERVER_DAYS - 10)
    monkeypatch.setattr(tls, "due_for_renewal", lambda cert, now=None: tls.days_left(cert, later) < tls.RENEW_DAYS)
    monkeypatch.setattr("timemachine.dynamic.certificates.due_for_renewal", tls.due_for_renewal)
    planned = provider.diff(made.id, outs, dict(news))
    assert planned.changes and not planned.replaces
    renewed = provider.update(made.id, outs, dict(news)).outs
    assert renewed is not None
    assert renewed["ca_certificate"] == outs["ca_certificate"] and renewed["ca_key"] == outs["ca_key"]
    assert renewed["certificate"] != outs["certificate"] and renewed["fingerprint"] != outs["fingerprint"]
    verify(renewed["certificate"], [outs["ca_certificate"]], HOST)
