"""Certificates bound to the identity document: pins, the local authority, the ``tls`` member."""

from __future__ import annotations

import base64
import hashlib
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.crypto.tls import TlsFiles, der_pin, issue, make_ca
from gsomia.errors import ConfigError, InvalidInputError

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys.json", "KOR", "kor-1", AT)


def test_a_pin_is_the_sha256_of_the_certificates_key_and_the_authority_signs_node_certificates() -> None:
    ca = make_ca("test authority", AT)
    node = issue(ca, "gsomia KOR node", ("127.0.0.1", "localhost"), AT)
    cert = x509.load_pem_x509_certificate(node.certificate)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(spki).digest()).rstrip(b"=").decode()
    assert node.pin == expected == der_pin(cert.public_bytes(serialization.Encoding.DER))
    authority = x509.load_pem_x509_certificate(ca.certificate)
    cert.verify_directly_issued_by(authority)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert issue(ca, "gsomia KOR node", ("127.0.0.1",), AT).pin != node.pin  # a new key each time
    with pytest.raises(InvalidInputError):
        der_pin(b"not a certificate")


def test_the_identity_document_names_the_certificates_and_reads_back_equal(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    pin = issue(make_ca("a", AT), "n", ("127.0.0.1",), AT).pin
    doc = ring.identity("https://127.0.0.1:1", (pin,))
    assert doc["tls"] == [pin]
    peer = PeerIdentity.from_document(doc)
    assert peer.tls == (pin,)
    assert peer.names_certificate(pin)
    assert not peer.names_certificate(pin[:-1] + ("A" if pin[-1] != "A" else "E"))
    assert peer.to_document() == doc
    assert "tls" not in ring.identity("http://127.0.0.1:1")  # no TLS: the document as before


@pytest.mark.parametrize(
    ("tls", "words"),
    [
        ([], "tls: must be a list of 1 to 4"),
        ("abc", "tls: must be a list"),
        (["x" * 43, "y" * 43, "z" * 43, "w" * 43, "A" * 43], "tls: must be a list of 1 to 4"),
        (["not a pin"], "tls[0]: must be a certificate pin"),
        ([7], "tls[0]: must be a certificate pin"),
        (["A" * 43, "A" * 43], "tls: a pin appears twice"),
        (["A" * 42 + "B"], "tls[0]"),  # the last character carries bits SHA-256 does not have
    ],
)
def test_a_bad_tls_member_is_refused_naming_it(tmp_path: Path, tls: Any, words: str) -> None:
    doc = _ring(tmp_path).identity("https://127.0.0.1:1")
    doc["tls"] = tls
    with pytest.raises(InvalidInputError, match=f"identity document: {words}".replace("[", r"\[")):
        PeerIdentity.from_document(doc)


def test_tls_files_that_cannot_serve_are_refused_naming_them(tmp_path: Path) -> None:
    ca = make_ca("a", AT)
    node, other = issue(ca, "n", ("127.0.0.1",), AT), issue(ca, "o", ("127.0.0.1",), AT)
    for name, data in {
        "n.crt": node.certificate,
        "n.key": node.key,
        "o.key": other.key,
        "ca.crt": ca.certificate,
    }.items():
        (tmp_path / name).write_bytes(data)
    good = TlsFiles(tmp_path / "n.crt", tmp_path / "n.key", tmp_path / "ca.crt")
    assert good.server_context().verify_mode == ssl.CERT_OPTIONAL
    assert good.client_context().verify_mode == ssl.CERT_REQUIRED
    assert good.pin() == node.pin
    with pytest.raises(ConfigError, match="not a PEM certificate and its private key"):
        TlsFiles(tmp_path / "n.crt", tmp_path / "o.key", tmp_path / "ca.crt").server_context()
    with pytest.raises(ConfigError, match="no such TLS file"):
        TlsFiles(tmp_path / "n.crt", tmp_path / "n.key", tmp_path / "absent.crt").client_context()
    with pytest.raises(ConfigError, match="authorities"):
        TlsFiles(tmp_path / "n.crt", tmp_path / "n.key", tmp_path / "n.key").client_context()
