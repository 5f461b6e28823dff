"""Who signs a 4778 binding, in a form any XML Signature or JOSE tool can check: X.509.

XML Signature (``signxml``) and ADatP-4778.2 want ECDSA or RSA keys with X.509 certificates; a
node's identity key is Ed25519. So each binding is signed with a fresh P-256 key whose
certificate the node's identity key issues: the chain is ``[binding certificate, node
certificate]``, the node certificate self-signed by the same Ed25519 key partners already pinned
from its identity document (the key id is in its subject). A tool that knows nothing of gsomia
checks the signature with the binding certificate and the chain with the node certificate; gsomia
also checks that the node certificate's key IS the signing party's registered key, usable then.

Everything here is ``cryptography``; nothing reads the clock (instants are arguments).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import EnvelopeError, GsomiaError

__all__ = ["BindingKey", "Signer", "check_chain", "new_binding_key"]

_SKEW = timedelta(minutes=5)  # the certificates start a little before the instant they are made


@dataclass(frozen=True, slots=True)
class BindingKey:
    """A fresh P-256 signing key and its chain: (binding certificate, node certificate)."""

    private: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, x509.Certificate]
    party: str

    def chain_pem(self) -> list[str]:
        return [c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain]


@dataclass(frozen=True, slots=True)
class Signer:
    """The party a verified binding was signed by, and the key id its node certificate names."""

    party: str
    kid: str


def _name(party: str, what: str, kid: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"gsomia {party} {what}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, party),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kid),
        ]
    )


def new_binding_key(ring: KeyRing, at: datetime, validity: timedelta) -> BindingKey:
    """A P-256 key for one binding, certified by the node's Ed25519 key valid at ``at``."""
    kid, identity = ring.signing_key(at)
    node_name = _name(ring.party, "node", kid)
    start, end = at - _SKEW, at + validity
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(node_name)
        .issuer_name(node_name)
        .public_key(identity.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, False, False, False), critical=True
        )
        .sign(identity, None)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    binding_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(ring.party, "binding", kid))
        .issuer_name(node_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(identity, None)
    )
    return BindingKey(key, (binding_cert, node_cert), ring.party)


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    found = name.get_attributes_for_oid(oid)
    if len(found) != 1:
        raise EnvelopeError("malformed", "a binding certificate without exactly one party and key id")
    return str(found[0].value)


def check_chain(
    certificates: Sequence[x509.Certificate],
    at: datetime,
    identities: Callable[[str], PeerIdentity | None],
    own: KeyRing,
) -> tuple[x509.Certificate, Signer]:
    """The binding certificate of a ``[binding, node]`` chain that holds at ``at``, and who signed.

    Fails closed with :class:`EnvelopeError`: an unknown party, a node certificate whose key is not
    that party's registered signing key (usable at ``at``), a broken or expired chain.
    """
    if len(certificates) != 2:
        raise EnvelopeError("malformed", f"a binding carries {len(certificates)} certificates, not 2")
    leaf, node = certificates
    party = _attribute(node.subject, NameOID.ORGANIZATION_NAME)
    kid = _attribute(node.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    root_key = node.public_key()
    if not isinstance(root_key, Ed25519PublicKey):
        raise EnvelopeError("bad-signature", "the node certificate's key is not Ed25519")
    try:
        if party == own.party:
            registered = own._verifier(kid, at).get_op_key("verify")
        else:
            identity = identities(party)
            if identity is None:
                raise EnvelopeError("unknown-sender", f"{party} is not a registered peer")
            registered = identity.verification_key(kid, at)
    except EnvelopeError:
        raise
    except GsomiaError as exc:
        raise EnvelopeError("unknown-key", str(exc)) from exc
    raw = serialization.Encoding.Raw
    public = serialization.PublicFormat.Raw
    if not isinstance(registered, Ed25519PublicKey) or registered.public_bytes(
        raw, public
    ) != root_key.public_bytes(raw, public):
        raise EnvelopeError("bad-signature", f"the node certificate's key is not {party}'s key {kid}")
    for cert in (node, leaf):
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise EnvelopeError("expired", f"a binding certificate is not valid at {at.isoformat()}")
    try:
        node.verify_directly_issued_by(node)
        leaf.verify_directly_issued_by(node)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise EnvelopeError(
            "bad-signature", "the binding certificate was not issued by the node key"
        ) from exc
    if not isinstance(leaf.public_key(), ec.EllipticCurvePublicKey):
        raise EnvelopeError("bad-signature", "the binding certificate's key is not an EC key")
    if _attribute(leaf.subject, NameOID.ORGANIZATION_NAME) != party:
        raise EnvelopeError("bad-signature", "the binding certificate names another party")
    return leaf, Signer(party, kid)
