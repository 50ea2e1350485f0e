"""The stack's own certificate authority for the control plane: a root constrained to the control
server's name, and the server certificate the embedded Headscale serves (control and DERP). Plain
functions over PEM text; the keys never leave the values they return."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The root outlives many server certificates: replacing it means every Mac trusts a new one.
AUTHORITY_DAYS = 3650
# Apple trusts no TLS server certificate valid for more than 825 days, whatever its root
# ("Requirements for trusted certificates in iOS 13 and macOS 10.15"); this stays under it.
SERVER_DAYS = 800
# `pulumi up` issues a new server certificate once fewer days than this are left.
RENEW_DAYS = 90
# A clock a little behind on a Mac must not see a certificate from the future.
BACKDATE = timedelta(hours=1)


@dataclass(frozen=True)
class Issued:
    certificate: str  # PEM
    key: str  # PEM, PKCS#8, unencrypted: a secret
    not_after: str  # RFC 3339


def _name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _constraint(host: str) -> x509.GeneralName:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return x509.DNSName(host)
    return x509.IPAddress(ipaddress.ip_network(f"{address}/{address.max_prefixlen}"))


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _issued(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    not_after = certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Issued(_pem(certificate), _pem_key(key), not_after)


def issue_authority(host: str, name: str, now: datetime | None = None) -> Issued:
    """A root CA named `name` that may vouch for `host` only (a critical name constraint): trusted on
    a Mac, it cannot be used to impersonate any other site, whoever gets hold of its key."""
    now = now or datetime.now(UTC)
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=AUTHORITY_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.NameConstraints(permitted_subtrees=[_constraint(host)], excluded_subtrees=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _issued(certificate, key)


def issue_server(host: str, authority: str, authority_key: str, now: datetime | None = None) -> Issued:
    """The certificate the control server serves for `host`, signed by the authority (PEM texts)."""
    now = now or datetime.now(UTC)
    ca = x509.load_pem_x509_certificate(authority.encode())
    ca_key = serialization.load_pem_private_key(authority_key.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    public = key.public_key()
    not_after = min(now + timedelta(days=SERVER_DAYS), ca.not_valid_after_utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        # Clients match the name in subjectAltName only (Apple and Go ignore the common name).
        .add_extension(x509.SubjectAlternativeName([_name(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return _issued(certificate, key)


def days_left(certificate: str, now: datetime | None = None) -> float:
    """Days until the PEM certificate expires (negative once it has)."""
    cert = x509.load_pem_x509_certificate(certificate.encode())
    return (cert.not_valid_after_utc - (now or datetime.now(UTC))).total_seconds() / 86400


def due_for_renewal(certificate: str | None, now: datetime | None = None) -> bool:
    return not certificate or days_left(certificate, now) < RENEW_DAYS


def fingerprint(certificate: str) -> str:
    """SHA-256 of the certificate's DER bytes, hex: what `openssl x509 -fingerprint -sha256` shows."""
    der = x509.load_pem_x509_certificate(certificate.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def der(certificate: str) -> bytes:
    return x509.load_pem_x509_certificate(certificate.encode()).public_bytes(serialization.Encoding.DER)
