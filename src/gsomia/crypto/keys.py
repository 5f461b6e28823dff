"""Node keys and identity documents: the node's own key ring, and the peers' published public keys.

A node holds one Ed25519 key for signing and one X25519 key for receiving encrypted
envelopes at a time, each valid from an instant (``nbf``) until an optional end
(``exp``, exclusive, as JWT's ``exp``) unless revoked first (``revoked_at``: refused
from that instant on). A rotation adds new keys and ends the old ones after an
overlap, so envelopes in flight still open. Key ids are RFC 7638 JWK thumbprints.

The ring is a JSON file of private JWKs, created with mode 0600 and refused on load
if group or others may read it. The identity document is what a node publishes to
its partners: its public JWKs with their validity, read back strictly by
:meth:`PeerIdentity.from_document`; a node that runs TLS also names its certificates there by
their pins (``tls``: :mod:`gsomia.crypto.tls`), and its partners accept on a connection only a
certificate the document they registered names.

The document is published signed (:meth:`KeyRing.signed_identity`): a JWS (RFC 7515) in the
general JSON serialization whose payload is the document, with the instant it was signed
(``issued``), signed with EdDSA by each of the node's signing keys valid then. A partner reads it
with :meth:`PeerIdentity.from_signed`: every signature must verify with a key the document itself
names, and its newest signing key must be among them, so the keys and the TLS pins it names are
bound to whoever holds that key; a document for a party already registered must also be signed by
the newest key registered for it that is still valid (a rotation's overlap carries the succession,
forward only: an older key in its overlap does not vouch alone for a document that drops or redates
the newer one), and be issued later than the registered one (an older document replayed is
refused). The payload names each member once and is bounded in size and depth.

Nothing here reads the clock: every instant is an argument.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from joserfc import jwa, jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import GuestProtocol, OKPKey

from gsomia.crypto.tls import PIN_PATTERN
from gsomia.errors import ConfigError, EnvelopeError, InstantError, InvalidInputError, NotFoundError

__all__ = ["KeyRing", "PeerIdentity", "PublicKeyEntry"]

IDENTITY_FORMAT = "gsomia-identity/1"
IDENTITY_SKEW = timedelta(minutes=5)  # how far ahead of the reader's clock a document may say it was signed
_MAX_SIGNED_CHARS = 64_000  # a signed identity document's payload, base64url
_MAX_SIGNATURES = 8
KEYRING_FORMAT = "gsomia-keyring/1"

Use = Literal["sig", "enc"]
PublicKey = Ed25519PublicKey | X25519PublicKey
PrivateKey = Ed25519PrivateKey | X25519PrivateKey

_USES: tuple[Use, ...] = ("sig", "enc")
_CURVE: dict[str, str] = {"sig": "Ed25519", "enc": "X25519"}
_ALG: dict[str, str] = {"sig": "EdDSA", "enc": "ECDH-ES"}
_PUBLIC_TYPE: dict[str, type] = {"sig": Ed25519PublicKey, "enc": X25519PublicKey}
_TRIGRAPH = re.compile(r"[A-Z]{3}")
# 32 octets in unpadded base64url: 43 characters, the last one carrying 4 zero bits.
_KEY_32 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_PUBLIC_MEMBERS = ("kty", "crv", "x", "kid", "use", "alg", "nbf", "exp", "revoked_at")
_PRIVATE_MEMBERS = (*_PUBLIC_MEMBERS, "d")
_PRIVATE_OWNER_ONLY = stat.S_IRWXG | stat.S_IRWXO


class _EdDSAOnly(jws.JWSRegistry):
    """JWS with EdDSA over Ed25519 and nothing else (joserfc's deprecation warning for the
    polymorphic name carries no news: gsomia's signing keys are Ed25519 only)."""

    max_payload_length = _MAX_SIGNED_CHARS

    def get_alg(self, name: str) -> jwa.JWSAlgModel:
        if name != "EdDSA":
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


_IDENTITY_JWS = _EdDSAOnly(algorithms=["EdDSA"])


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _members_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose members are each named once (``json.loads``' ``object_pairs_hook``): a
    signed document must mean the same to every reader, and readers differ on a repeated name."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise InvalidInputError(f"payload: member {name!r} appears twice")
        seen.add(name)
    return dict(pairs)


def _unb64url(text: str, where: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise InvalidInputError(f"{where}: not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(f"{where}: not base64url") from exc


_MAX_PINS = 4  # the certificate in use and the next ones, during a rotation


def _require_aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise InstantError(f"{what} {at.isoformat()} has no UTC offset; give one, e.g. +09:00")
    return at


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _in_window(entry: PublicKeyEntry, at: datetime) -> bool:
    """``not_before <= at < not_after`` (no end: valid on)."""
    return entry.not_before <= at and (entry.not_after is None or at < entry.not_after)


def _usable(entry: PublicKeyEntry, at: datetime) -> bool:
    """In its window and not revoked by ``at`` (a revocation takes effect at its instant)."""
    return _in_window(entry, at) and (entry.revoked_at is None or at < entry.revoked_at)


def _refusal(entry: PublicKeyEntry, at: datetime) -> str:
    """Why an entry that is not usable at ``at`` is refused: the ``EnvelopeError`` detail."""
    if entry.revoked_at is not None and entry.revoked_at <= at:
        return "revoked-key"
    return "key-not-valid"


@dataclass(frozen=True, slots=True)
class PublicKeyEntry:
    """One public key with its use and validity: ``not_before <= at < not_after``, unless revoked by ``at``.

    ``kid`` must be the key's RFC 7638 thumbprint and ``key`` must fit ``use``
    (``"sig"``: Ed25519, ``"enc"``: X25519); instants must carry an offset.
    """

    kid: str
    use: Use
    key: PublicKey = field(hash=False)  # the key objects are unhashable; the kid is its thumbprint
    not_before: datetime
    not_after: datetime | None = None
    revoked_at: datetime | None = None
    _jose: OKPKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.use not in _PUBLIC_TYPE:
            raise InvalidInputError(f"key {self.kid}: use must be 'sig' or 'enc', found {self.use!r}")
        if not isinstance(self.key, _PUBLIC_TYPE[self.use]):
            raise InvalidInputError(
                f"key {self.kid}: a {self.use!r} key must be {_CURVE[self.use]}, "
                f"found {type(self.key).__name__}"
            )
        _require_aware(self.not_before, f"key {self.kid}: not_before")
        if self.not_after is not None:
            _require_aware(self.not_after, f"key {self.kid}: not_after")
            if self.not_after < self.not_before:
                raise InvalidInputError(f"key {self.kid}: not_after is before not_before")
        if self.revoked_at is not None:
            _require_aware(self.revoked_at, f"key {self.kid}: revoked_at")
        jose = OKPKey.import_key(self.key, {"kid": self.kid, "use": self.use})
        if jose.thumbprint() != self.kid:
            raise InvalidInputError(f"key {self.kid}: the kid is not the key's RFC 7638 thumbprint")
        # joserfc's key object, built once: the envelope's hot path signs, encrypts and verifies with it.
        object.__setattr__(self, "_jose", jose)

    @property
    def usable_until(self) -> datetime | None:
        """The instant it stops being usable: its end or its revocation, whichever first (``None``:
        neither)."""
        ends = [at for at in (self.not_after, self.revoked_at) if at is not None]
        return min(ends, default=None)

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK with gsomia's validity members ``nbf``, ``exp`` and ``revoked_at``."""
        x = self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": _CURVE[self.use],
            "x": base64.urlsafe_b64encode(x).rstrip(b"=").decode("ascii"),
            "kid": self.kid,
            "use": self.use,
            "alg": _ALG[self.use],
            "nbf": self.not_before.isoformat(),
            "exp": _iso(self.not_after),
            "revoked_at": _iso(self.revoked_at),
        }


def _newest_first(entries: Iterable[PublicKeyEntry], use: Use) -> tuple[PublicKeyEntry, ...]:
    """The entries of ``use``, latest ``not_before`` first (equals keep their order)."""
    return tuple(sorted((e for e in entries if e.use == use), key=lambda e: e.not_before, reverse=True))


# --------------------------------------------------------------------------- parsing JWKs


def _b64_key(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not _KEY_32.fullmatch(value):
        raise InvalidInputError(f"{where}: must be 32 octets in unpadded base64url (43 characters)")
    return base64.urlsafe_b64decode(value + "=")


def _optional_instant(value: Any, where: str) -> datetime | None:
    return None if value is None else _instant(value, where, " or null")


def _instant(value: Any, where: str, alternative: str = "") -> datetime:
    if not isinstance(value, str):
        raise InvalidInputError(f"{where}: must be an ISO 8601 instant with an offset{alternative}")
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInputError(f"{where}: {value!r} is not an ISO 8601 instant") from exc
    if at.utcoffset() is None:
        raise InvalidInputError(f"{where}: {value!r} has no UTC offset")
    return at


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{where}: must be a non-empty string")
    return value


def _party(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TRIGRAPH.fullmatch(value):
        raise InvalidInputError(f"{where}: must be a party trigraph such as KOR")
    return value


def _parse_jwk(raw: Any, where: str, *, private: bool) -> tuple[PublicKeyEntry, PrivateKey | None]:
    """One JWK of an identity document (public) or a key ring (private); names the bad member."""
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where}: must be a JSON object (a JWK)")
    allowed = _PRIVATE_MEMBERS if private else _PUBLIC_MEMBERS
    for name in raw:
        if name not in allowed:
            what = "a private key member" if name == "d" else "not a member gsomia knows"
            raise InvalidInputError(f"{where}.{name}: {what}")
    for name in allowed:
        if name not in raw:
            raise InvalidInputError(f"{where}.{name}: missing")
    use = raw["use"]
    if use not in _USES:  # a tuple: an unhashable value (a list, an object) is just not found
        raise InvalidInputError(f"{where}.use: must be 'sig' or 'enc'")
    if raw["kty"] != "OKP":
        raise InvalidInputError(f"{where}.kty: must be 'OKP'")
    if raw["crv"] != _CURVE[use]:
        raise InvalidInputError(f"{where}.crv: a {use!r} key must be on curve {_CURVE[use]!r}")
    if raw["alg"] != _ALG[use]:
        raise InvalidInputError(f"{where}.alg: a {use!r} key must have alg {_ALG[use]!r}")
    x = _b64_key(raw["x"], f"{where}.x")
    key: PublicKey
    secret: PrivateKey | None = None
    if use == "sig":
        key = Ed25519PublicKey.from_public_bytes(x)
    else:
        key = X25519PublicKey.from_public_bytes(x)
        try:  # a low-order point would make every key agreement fail (or leak nothing but zeros)
            X25519PrivateKey.generate().exchange(key)
        except ValueError as exc:
            raise InvalidInputError(f"{where}.x: not a usable X25519 public key") from exc
    if private:
        d = _b64_key(raw["d"], f"{where}.d")
        secret = (
            Ed25519PrivateKey.from_private_bytes(d)
            if use == "sig"
            else X25519PrivateKey.from_private_bytes(d)
        )
        if secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) != x:
            raise InvalidInputError(f"{where}.d: does not match the public key x")
    kid = raw["kid"]
    if not isinstance(kid, str):
        raise InvalidInputError(f"{where}.kid: must be a string")
    not_before = _instant(raw["nbf"], f"{where}.nbf")
    not_after = _optional_instant(raw["exp"], f"{where}.exp")
    revoked_at = _optional_instant(raw["revoked_at"], f"{where}.revoked_at")
    if not_after is not None and not_after < not_before:
        raise InvalidInputError(f"{where}.exp: is before nbf")
    try:
        entry = PublicKeyEntry(kid, use, key, not_before, not_after, revoked_at)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{where}.kid: {exc}") from exc
    return entry, secret


def _parse_keys(raw: Any, *, private: bool) -> list[tuple[PublicKeyEntry, PrivateKey | None]]:
    if not isinstance(raw, list) or not raw:
        raise InvalidInputError("keys: must be a non-empty list of JWKs")
    parsed = [_parse_jwk(item, f"keys[{i}]", private=private) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, (entry, _) in enumerate(parsed):
        if entry.kid in seen:
            raise InvalidInputError(f"keys[{i}].kid: {entry.kid} appears twice")
        seen.add(entry.kid)
    for use in _USES:
        if not any(entry.use == use for entry, _ in parsed):
            raise InvalidInputError(f"keys: no {'signing' if use == 'sig' else 'encryption'} key ({use!r})")
    return parsed


def _check_members(
    raw: dict[str, Any], expected: tuple[str, ...], marker: str, optional: tuple[str, ...] = ()
) -> None:
    fmt = raw.get("format")
    if fmt != marker:
        raise InvalidInputError(f"format: must be {marker!r}, found {fmt!r}")
    for name in raw:
        if name not in expected and name not in optional:
            raise InvalidInputError(f"{name}: not a member gsomia knows")
    for name in expected:
        if name not in raw:
            raise InvalidInputError(f"{name}: missing")


def _pins(raw: Any) -> tuple[str, ...]:
    """The ``tls`` member: 1 to ``_MAX_PINS`` distinct certificate pins (SHA-256 of the
    SubjectPublicKeyInfo, unpadded base64url), in the order given."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= _MAX_PINS:
        raise InvalidInputError(f"tls: must be a list of 1 to {_MAX_PINS} certificate pins")
    for i, pin in enumerate(raw):
        if not isinstance(pin, str) or not PIN_PATTERN.fullmatch(pin):
            raise InvalidInputError(
                f"tls[{i}]: must be a certificate pin (SHA-256 of its key, 43 base64url characters)"
            )
    if len(set(raw)) != len(raw):
        raise InvalidInputError("tls: a pin appears twice")
    return tuple(raw)


# --------------------------------------------------------------------------- peers


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """A partner node as its identity document describes it: party, node, endpoint, public keys and
    the pins of the TLS certificates it connects with (``tls``; none: it runs no TLS).

    >>> PeerIdentity.from_document({"format": "gsomia-identity/2", "party": "KOR"})
    Traceback (most recent call last):
    ...
    gsomia.errors.InvalidInputError: identity document: format: must be 'gsomia-identity/1', found ...
    """

    party: str
    node: str
    endpoint: str
    keys: tuple[PublicKeyEntry, ...]
    tls: tuple[str, ...] = ()
    issued: datetime | None = None  # when its node signed it (None: registered unsigned, before signing)
    _by_kid: dict[str, PublicKeyEntry] = field(init=False, repr=False, compare=False)
    _encryption: tuple[PublicKeyEntry, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _party(self.party, "party")
        _text(self.node, "node")
        _text(self.endpoint, "endpoint")
        if self.tls:
            _pins(list(self.tls))
        if self.issued is not None:
            _require_aware(self.issued, "issued")
        by_kid = {entry.kid: entry for entry in self.keys}
        if len(by_kid) != len(self.keys):
            raise InvalidInputError(f"peer {self.party}/{self.node}: a key id appears twice")
        object.__setattr__(self, "_by_kid", by_kid)
        object.__setattr__(self, "_encryption", _newest_first(self.keys, "enc"))

    @classmethod
    def from_document(cls, doc: Any) -> PeerIdentity:
        """Read an identity document strictly; ``InvalidInputError`` names the offending field."""
        try:
            if not isinstance(doc, dict):
                raise InvalidInputError("(document): must be a JSON object")
            _check_members(
                doc,
                ("format", "party", "node", "endpoint", "keys"),
                IDENTITY_FORMAT,
                optional=("tls", "issued"),
            )
            party = _party(doc["party"], "party")
            node = _text(doc["node"], "node")
            endpoint = _text(doc["endpoint"], "endpoint")
            entries = tuple(entry for entry, _ in _parse_keys(doc["keys"], private=False))
            pins = _pins(doc["tls"]) if "tls" in doc else ()
            issued = _instant(doc["issued"], "issued") if "issued" in doc else None
        except InvalidInputError as exc:
            raise InvalidInputError(f"identity document: {exc}") from exc
        return cls(party, node, endpoint, entries, pins, issued)

    @classmethod
    def from_signed(
        cls,
        signed: Any,
        at: datetime,
        registered: Callable[[str], PeerIdentity | None] = lambda _party: None,
    ) -> PeerIdentity:
        """Read a signed identity document (:meth:`KeyRing.signed_identity`) and check it at ``at``;
        ``registered(party)`` is the identity this node holds for the document's party, if any.

        Refused (``InvalidInputError`` saying why): a document not signed; a signature that does not
        verify, or by a key the document does not name; a document its newest signing key did not
        sign; one signed later than ``at`` (beyond the allowed skew); a payload naming a member twice
        or nested too deeply; for a registered party, one signed by none of the keys registered for
        it that are valid at ``at`` (another party's signature, or a key revoked here), or not by
        the newest of them (an older key rolling the succession back), or issued before the
        registered one (replayed)."""
        _require_aware(at, "reading instant")
        try:
            identity, signers = cls._verified(signed)
            issued = identity.issued
            if issued is None:
                raise InvalidInputError("issued: missing: a signed document says when it was signed")
            if issued > at + IDENTITY_SKEW:
                raise InvalidInputError(f"issued: {issued.isoformat()} is later than now")
            newest = next((e for e in _newest_first(identity.keys, "sig") if _usable(e, issued)), None)
            if newest is None:
                raise InvalidInputError("keys: no signing key valid when it was signed")
            if newest.kid not in signers:
                raise InvalidInputError(
                    f"signatures: its newest signing key {newest.kid} did not sign it (that key's holder "
                    "has not vouched for the document)"
                )
            known = registered(identity.party)
            if known is not None:
                identity._succeeds(known, signers, at)
        except InvalidInputError as exc:
            raise InvalidInputError(f"signed identity document: {exc}") from exc
        return identity

    @classmethod
    def _verified(cls, signed: Any) -> tuple[PeerIdentity, frozenset[str]]:
        """The document a JWS general JSON serialization carries, every signature verified with a
        signing key it names; and the ids of the keys that signed it."""
        if isinstance(signed, dict) and "format" in signed and "signatures" not in signed:
            raise InvalidInputError(
                "not signed: a partner's identity document is accepted only as its node signed it "
                "(`gsomia node identity`, GET /identity)"
            )
        if not isinstance(signed, dict) or set(signed) != {"payload", "signatures"}:
            raise InvalidInputError("must be a JWS in the general JSON serialization (payload, signatures)")
        payload, members = signed["payload"], signed["signatures"]
        if not isinstance(payload, str) or len(payload) > _MAX_SIGNED_CHARS:
            raise InvalidInputError(
                f"payload: must be base64url text of at most {_MAX_SIGNED_CHARS} characters"
            )
        if not isinstance(members, list) or not 1 <= len(members) <= _MAX_SIGNATURES:
            raise InvalidInputError(f"signatures: must be a list of 1 to {_MAX_SIGNATURES} signatures")
        try:
            doc = json.loads(_unb64url(payload, "payload"), object_pairs_hook=_members_once)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInputError("payload: not a JSON document") from exc
        except RecursionError as exc:  # well inside the size bound, yet deeper than any document
            raise InvalidInputError("payload: nested too deeply to be an identity document") from exc
        identity = cls.from_document(doc)
        signers: list[str] = []

        def key_for(member: GuestProtocol) -> OKPKey:
            kid = member.headers().get("kid")
            entry = identity._by_kid.get(kid) if isinstance(kid, str) else None
            if entry is None or entry.use != "sig":
                raise InvalidInputError(
                    f"signatures: signed by key {kid!r}, which the document does not name"
                )
            signers.append(entry.kid)
            return entry._jose

        try:
            for i, member in enumerate(members):
                if not isinstance(member, dict) or set(member) != {"protected", "signature"}:
                    raise InvalidInputError(f"signatures[{i}]: must hold a protected header and a signature")
            jws.deserialize_json(cast(jws.GeneralJSONSerialization, signed), key_for, registry=_IDENTITY_JWS)
        except InvalidInputError:
            raise
        except JoseError as exc:
            raise InvalidInputError(f"signatures: do not verify ({exc.error})") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInputError("signatures: not a JWS signature") from exc
        if len(set(signers)) != len(signers):
            raise InvalidInputError("signatures: a key signed twice")
        return identity, frozenset(signers)

    def _succeeds(self, known: PeerIdentity, signers: frozenset[str], at: datetime) -> None:
        """Nothing if this document may replace ``known``, the one registered for its party."""
        vouching = [
            kid
            for kid in signers
            if (e := known._by_kid.get(kid)) is not None and e.use == "sig" and _usable(e, at)
        ]
        if not vouching:
            raise InvalidInputError(
                f"signatures: signed by none of the keys registered for {known.party} that are valid "
                "now (another party's signature, or a key revoked or ended here): check the document "
                "out of band and register it afresh (replace)"
            )
        if known.issued is not None and self.issued is not None:  # else: the first signed one
            if self.issued < known.issued:
                raise InvalidInputError(
                    f"issued: {self.issued.isoformat()} is before the document registered for "
                    f"{known.party} ({known.issued.isoformat()}): an older document replayed"
                )
            if self.issued == known.issued and (self.endpoint, self.tls, {e.kid for e in self.keys}) != (
                known.endpoint,
                known.tls,
                {e.kid for e in known.keys},
            ):
                raise InvalidInputError("issued: the same instant as the registered document, but it differs")
        # the succession moves forward only: an older key still in its overlap vouches alongside the
        # newest registered one, never alone (else its holder could drop or redate the newer key and
        # swap the pins; a key's validity is not part of its id, the thumbprint)
        usable = [e for e in _newest_first(known.keys, "sig") if _usable(e, at)]
        newest = {e.kid for e in usable if e.not_before == usable[0].not_before}
        if not newest & signers:
            raise InvalidInputError(
                f"signatures: the newest key registered for {known.party} that is valid now "
                f"({', '.join(sorted(newest))}) did not sign it; an older key does not vouch alone for "
                "what follows it: check the document out of band and register it afresh (replace)"
            )

    def to_document(self) -> dict[str, Any]:
        """The identity document, JSON-ready; ``from_document`` reads it back equal."""
        return {
            "format": IDENTITY_FORMAT,
            "party": self.party,
            "node": self.node,
            "endpoint": self.endpoint,
            "keys": [entry.to_jwk() for entry in self.keys],
            **({"tls": list(self.tls)} if self.tls else {}),
            **({"issued": self.issued.isoformat()} if self.issued is not None else {}),
        }

    def names_certificate(self, pin: str) -> bool:
        """Whether this identity names the TLS certificate of pin ``pin`` (:mod:`gsomia.crypto.tls`)."""
        return pin in self.tls

    def verification_key(self, kid: str, at: datetime) -> Ed25519PublicKey:
        """The signing key ``kid`` if usable at ``at``; else ``EnvelopeError`` (unknown/revoked/not valid)."""
        key = self._signing_entry(kid, at).key
        if not isinstance(key, Ed25519PublicKey):  # never: a 'sig' entry holds an Ed25519 key
            raise EnvelopeError("unknown-key")
        return key

    def encryption_key(self, at: datetime) -> tuple[str, X25519PublicKey]:
        """The newest encryption key valid at ``at`` (kid, key); else ``EnvelopeError``."""
        entry = self._encryption_entry(at)
        if not isinstance(entry.key, X25519PublicKey):  # never: an 'enc' entry holds an X25519 key
            raise EnvelopeError("unknown-key")
        return entry.kid, entry.key

    def check_key(self, kid: str, at: datetime) -> None:
        """Nothing if key ``kid`` (either use) is usable at ``at``; else ``EnvelopeError``
        (``unknown-key``, ``revoked-key``, ``key-not-valid``): for a session opened with it earlier."""
        entry = self._by_kid.get(kid)
        if entry is None:
            raise EnvelopeError("unknown-key")
        if not _usable(entry, at):
            raise EnvelopeError(_refusal(entry, at))

    def key_usable_until(self, kid: str, at: datetime) -> datetime | None:
        """The instant key ``kid`` (either use), usable at ``at``, stops being usable: its end or
        its revocation, whichever first (``None``: neither); else ``EnvelopeError`` as
        :meth:`check_key`. What was checked at ``at`` and kept is checked again from then on."""
        self.check_key(kid, at)
        return self._by_kid[kid].usable_until

    def with_revoked(self, kid: str, at: datetime) -> PeerIdentity:
        """This identity with key ``kid`` revoked from ``at`` (an earlier revocation stands)."""
        _require_aware(at, "revocation instant")
        entry = self._by_kid.get(kid)
        if entry is None:
            raise NotFoundError(f"peer {self.party}/{self.node} has no key {kid}")
        if entry.revoked_at is not None and entry.revoked_at <= at:
            return self
        revoked = replace(entry, revoked_at=at)
        return replace(self, keys=tuple(revoked if e.kid == kid else e for e in self.keys))

    # The envelope's hot path uses joserfc's key objects, cached on the entries.

    def _signing_entry(self, kid: str, at: datetime) -> PublicKeyEntry:
        entry = self._by_kid.get(kid)
        if entry is None or entry.use != "sig":
            raise EnvelopeError("unknown-key")
        if not _usable(entry, at):
            raise EnvelopeError(_refusal(entry, at))
        return entry

    def _encryption_entry(self, at: datetime) -> PublicKeyEntry:
        for entry in self._encryption:
            if _usable(entry, at):
                return entry
        # Only revoked keys cover ``at``: say so; otherwise no key covers it at all.
        revoked = any(_in_window(e, at) for e in self._encryption)
        raise EnvelopeError("revoked-key" if revoked else "key-not-valid")

    def _verifier(self, kid: str, at: datetime) -> OKPKey:
        return self._signing_entry(kid, at)._jose

    def _verifying_entry(self, kid: str, at: datetime) -> PublicKeyEntry:
        return self._signing_entry(kid, at)

    def _encrypter(self, at: datetime) -> tuple[str, OKPKey]:
        entry = self._encryption_entry(at)
        return entry.kid, entry._jose


# --------------------------------------------------------------------------- own keys


@dataclass(frozen=True, slots=True)
class _OwnKey:
    entry: PublicKeyEntry
    secret: PrivateKey
    jose: OKPKey  # joserfc's private key object, built once


def _own(entry: PublicKeyEntry, secret: PrivateKey) -> _OwnKey:
    return _OwnKey(entry, secret, OKPKey.import_key(secret, {"kid": entry.kid, "use": entry.use}))


def _generate(use: Use, at: datetime) -> _OwnKey:
    secret: PrivateKey = Ed25519PrivateKey.generate() if use == "sig" else X25519PrivateKey.generate()
    kid = OKPKey.import_key(secret.public_key()).thumbprint()
    return _own(PublicKeyEntry(kid, use, secret.public_key(), at.astimezone(UTC)), secret)


def _private_jwk(key: _OwnKey) -> dict[str, Any]:
    d = key.secret.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {**key.entry.to_jwk(), "d": base64.urlsafe_b64encode(d).rstrip(b"=").decode("ascii")}


def _fsync_directory(directory: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: Path, text: str, *, replace_existing: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600, atomically: a reader sees the old file or the new one.

    Without ``replace_existing`` an existing file is never overwritten (``FileExistsError``).
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace_existing:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if path exists, symlink included: no overwrite, no race
        _fsync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@dataclass(frozen=True, slots=True)
class _Keys:
    """One immutable state of a ring: its keys, by id, and newest first per use (swapped whole)."""

    keys: tuple[_OwnKey, ...]
    by_kid: dict[str, _OwnKey]
    newest_by_use: dict[Use, tuple[_OwnKey, ...]]


def _index(keys: tuple[_OwnKey, ...]) -> _Keys:
    by_kid = {key.entry.kid: key for key in keys}
    newest = {use: tuple(by_kid[e.kid] for e in _newest_first((k.entry for k in keys), use)) for use in _USES}
    return _Keys(keys, by_kid, newest)


def _parse_ring(raw: Any) -> tuple[str, str, tuple[_OwnKey, ...]]:
    """(party, node, keys) of a private key ring document; ``InvalidInputError`` names the field."""
    if not isinstance(raw, dict):
        raise InvalidInputError("(document): must be a JSON object")
    _check_members(raw, ("format", "party", "node", "keys"), KEYRING_FORMAT)
    party = _party(raw["party"], "party")
    node = _text(raw["node"], "node")
    keys: list[_OwnKey] = []
    for entry, secret in _parse_keys(raw["keys"], private=True):
        if secret is None:  # never: a private parse reads 'd' for every key
            raise InvalidInputError(f"key {entry.kid} has no private part")
        keys.append(_own(entry, secret))
    return party, node, tuple(keys)


class KeyRing:
    """The node's own private keys.

    As a file (readable by the owner only): make one with :meth:`create` and open it with
    :meth:`load`; :meth:`rotate` and :meth:`revoke` write the file again (atomically) before
    they change the ring in memory. As a document (:meth:`to_document`,
    :meth:`from_document`) for a node that keeps its ring elsewhere (its store, sealed);
    :meth:`rotated` and :meth:`revoked` give the changed ring without writing anything.
    The keys are swapped as one value, so a reader never sees half a change; a ring is not
    safe to change from two threads at once.
    """

    __slots__ = ("_node", "_party", "_path", "_state")

    def __init__(self, path: Path, party: str, node: str, keys: tuple[_OwnKey, ...]) -> None:
        """Use :meth:`create`, :meth:`load` or :meth:`from_document`: this only assembles a checked ring."""
        self._path = path
        self._party = party
        self._node = node
        self._state = _index(keys)

    # -- making and reading the file

    @classmethod
    def create(cls, path: Path, party: str, node: str, at: datetime) -> KeyRing:
        """Generate a signing and an encryption key valid from ``at`` and write a new ring at ``path``."""
        ring = cls.generate(path, party, node, at)
        try:
            _write_private(path, ring._to_json(ring._state.keys), replace_existing=False)
        except FileExistsError as exc:
            raise ConfigError(f"{path}: a key ring is already there; refusing to overwrite it") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write the key ring ({exc.strerror})") from exc
        return ring

    @classmethod
    def generate(cls, where: Path, party: str, node: str, at: datetime) -> KeyRing:
        """A new ring (a signing and an encryption key valid from ``at``), written nowhere;
        ``where`` names it in error messages."""
        _require_aware(at, "key validity start")
        try:
            _party(party, "party")
            _text(node, "node")
        except InvalidInputError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        return cls(where, party, node, (_generate("sig", at), _generate("enc", at)))

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read the ring at ``path``; ``ConfigError`` naming the file (and field) on any problem."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot open the key ring ({exc.strerror})") from exc
        try:
            with os.fdopen(fd, "rb") as source:
                mode = os.fstat(source.fileno()).st_mode
                if not stat.S_ISREG(mode):
                    raise ConfigError(f"{path}: the key ring is not a regular file")
                if mode & _PRIVATE_OWNER_ONLY:
                    raise ConfigError(
                        f"{path}: the key ring is open to group or others (mode {stat.S_IMODE(mode):04o}); "
                        f"run 'chmod 600 {path}' after checking who could have read it"
                    )
                data = source.read()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the key ring ({exc.strerror})") from exc
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ConfigError(f"{path}: the key ring is not valid JSON: {exc}") from exc
        return cls.from_document(raw, path)

    @classmethod
    def from_document(cls, raw: Any, where: Path) -> KeyRing:
        """A ring from its private document (:meth:`to_document`); ``ConfigError`` naming ``where``
        and the field on any problem."""
        try:
            party, node, keys = _parse_ring(raw)
        except InvalidInputError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        return cls(where, party, node, keys)

    def to_document(self) -> dict[str, Any]:
        """The ring's private document (private JWKs): :meth:`from_document` reads it back equal.
        It holds the private keys: seal it before it is stored anywhere."""
        return self._document(self._state.keys)

    def _document(self, keys: tuple[_OwnKey, ...]) -> dict[str, Any]:
        return {
            "format": KEYRING_FORMAT,
            "party": self._party,
            "node": self._node,
            "keys": [_private_jwk(key) for key in keys],
        }

    def _to_json(self, keys: tuple[_OwnKey, ...]) -> str:
        return json.dumps(self._document(keys), indent=2) + "\n"

    def _take(self, other: KeyRing) -> None:
        """Take ``other``'s keys as this ring's, in one assignment."""
        self._state = other._state

    def _adopt(self, keys: tuple[_OwnKey, ...]) -> None:
        """Take ``keys`` as this ring's, in one assignment (readers see the old keys or the new)."""
        self._state = _index(keys)

    def _commit(self, keys: tuple[_OwnKey, ...]) -> None:
        """Persist ``keys`` first, then adopt them, so memory never runs ahead of the file."""
        try:
            _write_private(self._path, self._to_json(keys), replace_existing=True)
        except OSError as exc:
            raise ConfigError(f"{self._path}: cannot write the key ring ({exc.strerror})") from exc
        self._adopt(keys)

    # -- reading

    @property
    def party(self) -> str:
        return self._party

    @property
    def node(self) -> str:
        return self._node

    @property
    def path(self) -> Path:
        return self._path

    @property
    def entries(self) -> tuple[PublicKeyEntry, ...]:
        """The public side of every key, newest first."""
        return tuple(key.entry for key in self._current().keys)

    def signing_key(self, at: datetime) -> tuple[str, Ed25519PrivateKey]:
        """The newest signing key valid at ``at`` (kid, key); ``ConfigError`` if there is none."""
        key = self._newest("sig", at)
        if not isinstance(key.secret, Ed25519PrivateKey):  # never: 'sig' keys are Ed25519
            raise ConfigError(f"{self._path}: signing key {key.entry.kid} is not Ed25519")
        return key.entry.kid, key.secret

    def encryption_kid(self, at: datetime) -> str:
        """The id of the newest encryption key valid at ``at``; ``ConfigError`` if there is none."""
        return self._newest("enc", at).entry.kid

    def decryption_key(self, kid: str, at: datetime) -> X25519PrivateKey:
        """The private encryption key ``kid`` if usable at ``at``; else ``EnvelopeError``."""
        secret = self._key_for(kid, "enc", at).secret
        if not isinstance(secret, X25519PrivateKey):  # never: 'enc' keys are X25519
            raise EnvelopeError("unknown-key")
        return secret

    def identity(self, endpoint: str, tls: tuple[str, ...] = ()) -> dict[str, Any]:
        """This node's identity document (public keys only, and the pins ``tls`` of its TLS
        certificates when it runs TLS), JSON-ready."""
        _text(endpoint, "endpoint")
        return {
            "format": IDENTITY_FORMAT,
            "party": self._party,
            "node": self._node,
            "endpoint": endpoint,
            "keys": [key.entry.to_jwk() for key in self._current().keys],
            **({"tls": list(_pins(list(tls)))} if tls else {}),
        }

    def signed_identity(self, endpoint: str, at: datetime, tls: tuple[str, ...] = ()) -> dict[str, Any]:
        """This node's identity document as published: signed at ``at`` (JWS general JSON
        serialization, RFC 7515 7.2.1) by each of its signing keys valid then, newest first, so a
        partner holding an older one (a rotation's overlap) sees the succession. Its payload is
        :meth:`identity` with ``issued``."""
        _require_aware(at, "signing instant")
        document = {**self.identity(endpoint, tls), "issued": at.astimezone(UTC).isoformat()}
        signers = [key for key in self._current().newest_by_use["sig"] if _usable(key.entry, at)]
        if not signers:
            raise ConfigError(f"{self._path}: no signing key valid at {at.isoformat()}; rotate to make one")
        by_kid = {key.entry.kid: key.jose for key in signers}
        payload = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        signed = jws.serialize_json(
            [{"protected": {"alg": "EdDSA", "kid": kid}} for kid in by_kid],
            payload,
            lambda member: by_kid[member.headers()["kid"]],
            registry=_IDENTITY_JWS,
        )
        return dict(signed)

    def _current(self) -> _Keys:
        """The keys every read uses."""
        self._check()
        return self._state

    def _check(self) -> None:
        """Before every read: a ring kept elsewhere (the node's store) reads its keys again here
        when they changed there. A ring of a file never does: only it changes its file."""

    # -- changing

    def rotated(self, at: datetime, overlap: timedelta) -> KeyRing:
        """This ring with new signing and encryption keys valid from ``at``, the older keys ending at
        ``at + overlap``; nothing is written and this ring is unchanged."""
        _require_aware(at, "rotation instant")
        if overlap < timedelta(0):
            raise ConfigError(f"{self._path}: the rotation overlap must not be negative, found {overlap}")
        keys = self._current().keys
        latest = max(key.entry.not_before for key in keys)
        if at < latest:
            raise ConfigError(
                f"{self._path}: cannot rotate at {at.isoformat()}: a key is already valid from "
                f"{latest.isoformat()}, later than that"
            )
        until = (at + overlap).astimezone(UTC)
        ended = tuple(
            key
            if key.entry.not_after is not None and key.entry.not_after <= until
            else replace(key, entry=replace(key.entry, not_after=until))
            for key in keys
        )
        fresh = (_generate("sig", at), _generate("enc", at))
        return KeyRing(self._path, self._party, self._node, (*fresh, *ended))

    def revoked(self, kid: str, at: datetime) -> KeyRing:
        """This ring with key ``kid`` revoked from ``at`` (an earlier revocation stands); nothing is
        written and this ring is unchanged."""
        _require_aware(at, "revocation instant")
        state = self._current()
        key = state.by_kid.get(kid)
        if key is None:
            raise NotFoundError(f"{self._path}: no key {kid} in this key ring")
        if key.entry.revoked_at is not None and key.entry.revoked_at <= at:
            return KeyRing(self._path, self._party, self._node, state.keys)
        changed = replace(key, entry=replace(key.entry, revoked_at=at.astimezone(UTC)))
        return KeyRing(
            self._path, self._party, self._node, tuple(changed if k is key else k for k in state.keys)
        )

    def rotate(self, at: datetime, overlap: timedelta) -> None:
        """New signing and encryption keys valid from ``at``; the older keys end at ``at + overlap``."""
        self._commit(self.rotated(at, overlap)._state.keys)

    def revoke(self, kid: str, at: datetime) -> None:
        """Mark key ``kid`` revoked from ``at`` (refused at ``at`` and after); an earlier one stands."""
        changed = self.revoked(kid, at)._state.keys
        if changed != self._state.keys:
            self._commit(changed)

    # -- for gsomia.crypto.envelope: joserfc's key objects, cached

    def _newest(self, use: Use, at: datetime) -> _OwnKey:
        for key in self._current().newest_by_use[use]:
            if _usable(key.entry, at):
                return key
        what = "signing" if use == "sig" else "encryption"
        raise ConfigError(f"{self._path}: no {what} key valid at {at.isoformat()}; rotate to make one")

    def _key_for(self, kid: str, use: Use, at: datetime) -> _OwnKey:
        key = self._current().by_kid.get(kid)
        if key is None or key.entry.use != use:
            raise EnvelopeError("unknown-key")
        if not _usable(key.entry, at):
            raise EnvelopeError(_refusal(key.entry, at))
        return key

    def _signer(self, at: datetime) -> tuple[str, OKPKey]:
        key = self._newest("sig", at)
        return key.entry.kid, key.jose

    def _decrypter(self, kid: str, at: datetime) -> OKPKey:
        return self._key_for(kid, "enc", at).jose

    def _verifier(self, kid: str, at: datetime) -> OKPKey:
        return self._key_for(kid, "sig", at).jose

    def _verifying_entry(self, kid: str, at: datetime) -> PublicKeyEntry:
        return self._key_for(kid, "sig", at).entry

    def __repr__(self) -> str:
        return f"KeyRing({self._party}/{self._node}, {len(self._state.keys)} keys, {self._path})"
