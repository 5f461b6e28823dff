"""TLS bound to the node identity: certificates, their pins, and the TLS contexts of a node.

A node that runs TLS has three files (``node.toml``'s ``tls_cert``, ``tls_key``, ``tls_ca``): its
certificate chain, the certificate's private key, and the certificates of the authorities it
accepts its partners' certificates from. It serves HTTPS with the first two and presents them as
its client certificate when it calls a partner (mutual TLS). An authority's signature is not
enough: the node's identity document names its certificate's key by its **pin**, the SHA-256 of
the certificate's SubjectPublicKeyInfo in unpadded base64url (RFC 7469's ``pin-sha256``, in the
URL-safe alphabet), and a partner accepts a certificate only when the identity document it
registered for that node names the certificate's pin. A certificate the authority signed for
someone else, or an old one the identity no longer names, is refused.

:func:`make_ca` and :func:`issue` are the small local authority ``gsomia net up`` uses for a
network on one machine (P-256 keys, SHA-256 signatures, ``cryptography``'s X.509 builder); an
operator's own PKI fits the same files.

Nothing here reads the clock: the validity of what it issues starts at an instant given.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gsomia.errors import ConfigError, InvalidInputError

__all__ = [
    "PIN_PATTERN",
    "Issued",
    "TlsFiles",
    "certificate_pin",
    "der_pin",
    "issue",
    "make_ca",
]

# 32 octets (SHA-256) in unpadded base64url: 43 characters, the last carrying 4 zero bits
PIN_PATTERN = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_CA_DAYS = 3650
_NODE_DAYS = 825  # the longest a publicly trusted server certificate was allowed; rotate before


def certificate_pin(certificate: x509.Certificate) -> str:
    """The pin of ``certificate``'s key: SHA-256 of its SubjectPublicKeyInfo, unpadded base64url."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode("ascii")


def der_pin(der: bytes) -> str:
    """The pin of a DER certificate (as a TLS connection hands over its peer's);
    ``InvalidInputError`` when it is no certificate."""
    try:
        return certificate_pin(x509.load_der_x509_certificate(der))
    except ValueError as exc:
        raise InvalidInputError("the peer's certificate is not an X.509 certificate") from exc


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key, as PEM: what :func:`make_ca` and :func:`issue` return."""

    certificate: bytes
    key: bytes

    @property
    def pin(self) -> str:
        return certificate_pin(x509.load_pem_x509_certificate(self.certificate))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """An authority signs certificates (and revocation lists) only; a node's key signs its TLS
    handshakes (ECDHE: no key encipherment) only."""
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(name: str, at: datetime) -> Issued:
    """A self-signed authority that may sign node certificates only (path length 0), valid ten
    years from ``at``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - timedelta(minutes=5))
        .not_valid_after(at + timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(ca: Issued, name: str, hosts: tuple[str, ...], at: datetime) -> Issued:
    """A node certificate from ``ca`` for the host names and addresses ``hosts`` (its subject
    alternative names), for serving and for calling partners (server and client authentication)."""
    if not hosts:
        raise InvalidInputError("a node certificate names at least one host")
    authority = x509.load_pem_x509_certificate(ca.certificate)
    signer = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise InvalidInputError("the authority's key is not an elliptic-curve key")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - timedelta(minutes=5))
        .not_valid_after(at + timedelta(days=_NODE_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
        .sign(signer, hashes.SHA256())
    )
    return Issued(certificate.public_bytes(serialization.Encoding.PEM), _key_pem(key))


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A node's TLS files: its certificate chain (PEM, its own first), the certificate's private
    key, and the authorities it accepts partners' certificates from."""

    cert: Path
    key: Path
    ca: Path

    def _load(self, context: ssl.SSLContext) -> ssl.SSLContext:
        for path in (self.cert, self.key, self.ca):
            if not path.is_file():
                raise ConfigError(f"{path}: no such TLS file")
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.cert.name} and {self.key.name} are not a PEM certificate and its private key"
            ) from exc
        try:
            context.load_verify_locations(cafile=self.ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"{self.ca}: not a PEM file of authorities' certificates") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def server_context(self) -> ssl.SSLContext:
        """The context a node serves with: its certificate; a client certificate asked for and, when
        one is given, verified against the authorities (a client without one still connects:
        analysts and browsers carry bearer tokens; the node-to-node routes refuse it)."""
        context = self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
        context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def client_context(self) -> ssl.SSLContext:
        """The context a node calls partners with: its certificate presented, the partner's verified
        against the authorities and its host name (the pin is checked by the caller)."""
        return self._load(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))

    def pin(self) -> str:
        """The pin of this node's certificate (the first of its chain)."""
        try:
            certificate = x509.load_pem_x509_certificate(self.cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.cert}: not a PEM certificate") from exc
        return certificate_pin(certificate)
