"""Envelopes between nodes: sign-then-encrypt with COSE, and the originator's signature (JWS) on an item.

A hop from one node to another (:func:`seal`) is a COSE_Sign1 (EdDSA, the sender's Ed25519 key) over
canonical JSON claims, inside a COSE_Encrypt (A256GCM; one recipient, ECDH-ES + HKDF-256 with the
recipient's X25519 key) whose protected header repeats the claims that routing needs (``iss``,
``aud``, ``cti``, ``iat``, ``exp``, as CWT claims), so they are authenticated too: RFC 9052 with the
RFC 9053 algorithms, the layout in the COSE section below. The message travels in standard base64
(RFC 4648 section 4, padded) inside a small JSON object whose first member is the version marker::

    {"format": "gsomia-envelope/3", "cose": "<base64 COSE_Encrypt>"}

``gsomia-envelope/2`` is the same COSE message in unpadded base64url (RFC 4648 section 5), which
nodes sealed before ``/3`` (its URL-safe alphabet cost a batch three times the standard one's
coding, issue 18), and ``gsomia-envelope/1`` the JOSE hop sealed before that (a compact JWS inside a
compact JWE, ``ECDH-ES`` and ``A256GCM``, in ``{"format": "gsomia-envelope/1", "jwe": ...}``): both
are still opened, with the same checks, for the envelopes sealed before and still in flight, unless
the caller's ``accepts`` refuses that version from the sender the envelope names (the exchange's
envelope versions, per partner, kept in the store), which it is asked before any key is used;
:func:`seal` writes only ``/3``; any other marker is ``unsupported-version``.

ECDH-ES is anonymous: anyone holding the recipient's public key can encrypt to it, so
the outer header alone proves nothing. What the recipient trusts is the inner
signature, by the key of the party the header names, over claims that must equal the
header's.

The originator's signature on an item (:func:`sign_origin`, ``typ``
``gsomia-item+jws``) is separate: it binds the label and payload for as long as the item
lives, across hops (the idea of ADatP-4778's binding), and any node can check it with
the originator's published key (:func:`verify_origin`).

What this node writes as JOSE (:func:`sign_origin`) is serialised here from
``cryptography``'s primitives in the standard compact forms, and what it reads is parsed here in
the same forms, with joserfc's limits and strict base64url (pybase64 decodes and encodes); the
signed claims are read by msgspec where it reads them as ``json`` does. joserfc remains the
independent reader the tests check both directions against.

Every failure to open or verify is one :class:`EnvelopeError` whose message is only
"envelope refused"; its ``detail`` is for the audit log. Keys come from ``cryptography``
(see :mod:`gsomia.crypto.keys`). Nothing here reads the clock.
"""

from __future__ import annotations

import functools
import io
import json
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import cbor2
import orjson
import pybase64
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.ciphers.modes import GCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import OKPKey

from gsomia._canonical import canonical_tree_bytes, loads
from gsomia.errors import EnvelopeError, InstantError, InvalidInputError

if TYPE_CHECKING:
    from gsomia.crypto.keys import KeyRing, PeerIdentity, PublicKeyEntry

__all__ = [
    "APPROVAL_TYPE",
    "COSE_URL_FORMAT",
    "ENVELOPE_FORMAT",
    "ENVELOPE_VERSION",
    "FORMAT_VERSIONS",
    "ITEM_TYPE",
    "JOSE_FORMAT",
    "TRACKS_TYPE",
    "EnvelopeError",
    "Opened",
    "UnverifiedOrigin",
    "envelope_routing",
    "is_current",
    "open_envelope",
    "read_origin",
    "seal",
    "sign_origin",
    "signed_payload",
    "verify_origin",
    "verify_origin_until",
]

ENVELOPE_FORMAT = "gsomia-envelope/3"  # what seal writes: COSE in standard base64
COSE_URL_FORMAT = "gsomia-envelope/2"  # read: the same COSE in base64url, sealed before /3
JOSE_FORMAT = "gsomia-envelope/1"  # read for the envelopes sealed before the switch to COSE
# Each format's version, the number a node's envelope versions are kept in (gsomia.exchange)
FORMAT_VERSIONS = {JOSE_FORMAT: 1, COSE_URL_FORMAT: 2, ENVELOPE_FORMAT: 3}
ENVELOPE_VERSION = FORMAT_VERSIONS[ENVELOPE_FORMAT]  # what seal writes, always opened
VERSION = 1
HOP_TYPE = "gsomia-hop+jws"
ITEM_TYPE = "gsomia-item+jws"
# The originator's signature over the Merkle root of a batch of its missile tracks (gsomia.stream):
# a type of its own, so a signed batch is never taken for an item's signature or the reverse.
TRACKS_TYPE = "gsomia-tracks+jws"
# A release officer's two-person approval, signed by the node on the approver's word
# (gsomia.exchange): never taken for an item's or a batch's signature.
APPROVAL_TYPE = "gsomia-approval+jws"

# Large enough for a node's biggest item (1 MiB by default) after three base64 layers
# (payload in the body, JWS, JWE); anything longer is refused before it is parsed.
MAX_ENVELOPE_CHARS = 8 * 1024 * 1024
MAX_ID_CHARS = 200  # message ids, key ids and party codes
# The last second of 9999: keeps every instant representable as a datetime.
_LAST_SECOND = 253_402_300_799

_HOP_HEADER = frozenset({"alg", "enc", "epk", "kid", "cty", "v", "iss", "aud", "jti", "iat", "exp"})
_HOP_JWS_HEADER = frozenset({"alg", "kid", "typ"})
_ITEM_HEADER = frozenset({"alg", "kid", "typ", "iss"})
_EPK = frozenset({"kty", "crv", "x"})
_CLAIMS = frozenset({"v", "jti", "iss", "aud", "iat", "exp", "body"})
_ENVELOPE = frozenset({"format", "jwe"})


@dataclass(frozen=True, slots=True)
class Opened:
    """What an opened envelope says, every check passed."""

    sender: str
    recipient: str
    msg_id: str
    issued_at: datetime
    expires_at: datetime
    body: dict[str, Any]
    sender_kid: str
    # the envelope's format version (FORMAT_VERSIONS); 0: not an envelope (an imported binding's message)
    version: int = 0
    # every text the signed claims hold, keys included, can be stored (no NUL, no lone surrogate),
    # decided on their bytes (gsomia._canonical.storable_json of ``claims``) by the reader that asks
    # it, the inbox (gsomia.exchange._inbox), not by :func:`open_envelope`, which leaves it False
    # (issue 18: the check is not the hop's; made in every open it cost the envelope ratio 1.40x ->
    # 1.63x); False: not known, the reader asks gsomia._canonical.unstorable of what it takes
    storable: bool = False
    # the signed claims' bytes as verified (read-only; ``body`` was parsed from them); None where no
    # envelope was opened (an imported binding's message)
    claims: bytes | memoryview | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------- producing JOSE
#
# What this node signs and seals is written here with ``cryptography``'s primitives in the
# standard compact serialisations (RFC 7515 JWS with EdDSA, RFC 8037; RFC 7516 JWE with ECDH-ES in
# direct key agreement and A256GCM, RFC 7518 sections 4.6 and 5.3), byte for byte what joserfc
# would write but without its per-call registry and key-object work, which cost as much as the
# cryptography itself (issue 18's envelope ratio). What is received is read the same way (RFC 7515
# and 7516 compact forms, with joserfc's limits and its strict base64url; ``_parsed_jws``,
# ``_read_jwe``, ``_decrypt``): joserfc's reading decoded a batch's ciphertext and payload with the
# standard library's base64, which cost more than the cryptography. tests/crypto/
# test_envelope_reader.py holds the two readers to the same verdict on hostile input.

# Concat KDF "otherinfo" of ECDH-ES direct mode for A256GCM with no apu/apv (RFC 7518 4.6.2)
_A256GCM_OTHER_INFO = (
    struct.pack(">I", 7) + b"A256GCM" + struct.pack(">I", 0) + struct.pack(">I", 0) + struct.pack(">I", 256)
)
_HEADER_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def _b64(data: bytes | memoryview) -> str:
    # pybase64 writes the standard library's bytes (RFC 4648 section 5) with SIMD, about 15 times as
    # fast over a batch's claims: base64url was the largest cost of a JOSE hop after the cryptography
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# The last character of a segment whose length leaves 2 (or 1) characters over: only these carry
# no stray bits (RFC 4648 section 3.5), the rule joserfc reads base64url by.
_CLEAN_ENDING = (b"AEIMQUYcgkosw048", b"AQgw")


def _unb64(segment: bytes) -> bytes:
    """A base64url segment (RFC 7515 section 2: unpadded) decoded as strictly as joserfc decodes it:
    nothing outside the URL-safe alphabet, no padding, no stray bits; else ``ValueError``."""
    return _unb64_in(segment, 0, len(segment))


def _unb64_in(data: bytes, start: int, end: int) -> bytes:
    """:func:`_unb64` of ``data[start:end]``, read in place: a batch's ciphertext and payload are
    neither sliced nor padded by a copy of their own (issue 18: each copy of a batch's 350 KB cost
    about 9 µs, and ``bytes.split`` over it 130 µs)."""
    pad = -(end - start) % 4
    if pad == 3 or data.find(b"+", start, end) != -1 or data.find(b"/", start, end) != -1:
        raise ValueError("not base64url")
    if data.find(b"=", start, end) != -1 or (pad and data[end - 1] not in _CLEAN_ENDING[pad - 1]):
        raise ValueError("not base64url")
    view = memoryview(data)[start:end]
    return pybase64.b64decode(b"".join((view, b"=" * pad)) if pad else view, altchars=b"-_", validate=True)


def _unbase64_in(data: bytes, start: int, end: int) -> bytes:
    """``data[start:end]`` in standard base64 (RFC 4648 section 4, padded) decoded in place and strictly:
    nothing outside the alphabet, a length of whole quanta, padding only at the end (pybase64's
    ``validate``) and no stray bits before it (section 3.5), so every message has one spelling; else
    ``ValueError``. ``gsomia-envelope/3``'s wrapper: pybase64 codes this alphabet about three times as
    fast as the URL-safe one (issue 18)."""
    if (end - start) % 4:
        raise ValueError("not base64")
    pad = 2 if data.endswith(b"==", start, end) else 1 if data.endswith(b"=", start, end) else 0
    if pad and data[end - pad - 1] not in _CLEAN_ENDING[pad - 1]:
        raise ValueError("not base64")
    return pybase64.b64decode(memoryview(data)[start:end], validate=True)


def _cut(data: bytes, start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """The bounds of the ``parts`` dot-separated segments of ``data[start:end]`` (a compact form:
    RFC 7515 and 7516 section 7.1), found in place; ``malformed`` for any other number of dots."""
    bounds = []
    at = start
    for _ in range(parts - 1):
        dot = data.find(b".", at, end)
        if dot == -1:
            raise EnvelopeError("malformed")
        bounds.append((at, dot))
        at = dot + 1
    if data.find(b".", at, end) != -1:
        raise EnvelopeError("malformed")
    bounds.append((at, end))
    return bounds


def _b64_view(data: bytes | memoryview) -> memoryview:
    """:func:`_b64` as ASCII bytes, unpadded by a view rather than a copy (a batch's payload)."""
    written = pybase64.urlsafe_b64encode(data)
    return memoryview(written)[: len(written) - (-len(data) % 3)]


_SIGNATURE_CHARS = 86  # an Ed25519 signature (64 bytes, RFC 8032) in unpadded base64url


def _jws_bytes(header: dict[str, Any], payload: bytes, key: OKPKey) -> bytearray:
    """A compact JWS (RFC 7515 section 7.1) over ``payload``, signed EdDSA with ``key``'s Ed25519,
    as ASCII written once into one buffer (a batch's payload is not copied from string to string)."""
    return _jws_under(_jws_head(header), payload, key)


def _jws_head(header: dict[str, Any]) -> bytes:
    """A JWS's protected header as its first segment (base64url of its JSON, ASCII)."""
    return _b64(_HEADER_JSON.encode(header).encode()).encode("ascii")


@functools.lru_cache(maxsize=64)
def _origin_head(kid: str, typ: str, iss: str) -> bytes:
    """:func:`_jws_head` of an originator's signature header: the same for every item a key signs,
    so written once (its JSON and base64url were 2.4 us of an item's 46 us signature, issue 18)."""
    return _jws_head({"alg": "EdDSA", "kid": kid, "typ": typ, "iss": iss})


def _jws_under(head: bytes, payload: bytes, key: OKPKey) -> bytearray:
    """:func:`_jws_bytes` with the protected header's segment ``head`` written already."""
    signer = key.private_key
    if not (type(signer) is _ED25519_PRIVATE or isinstance(signer, Ed25519PrivateKey)):
        raise EnvelopeError("malformed")  # gsomia signs with Ed25519 keys only
    body = _b64_view(payload)
    cut = len(head) + 1 + len(body)
    token = bytearray(cut + 1 + _SIGNATURE_CHARS)
    token[: len(head)] = head
    token[len(head)] = 0x2E  # "."
    token[len(head) + 1 : cut] = body
    signature = _b64(signer.sign(memoryview(token)[:cut])).encode("ascii")
    token[cut] = 0x2E
    token[cut + 1 :] = signature  # exactly _SIGNATURE_CHARS: the buffer's size does not change
    return token


def _compact_jwe(
    header: dict[str, Any], plaintext: bytes | bytearray, key: OKPKey
) -> tuple[bytes | memoryview, ...]:
    """A compact JWE (RFC 7516 section 7.1) as its ASCII pieces in order, to be joined: ECDH-ES direct
    agreement with ``key``'s X25519 public key, a fresh ephemeral key in ``epk``, the Concat KDF of
    RFC 7518 section 4.6, A256GCM with the protected header as the additional data; the encrypted
    key is empty (direct mode)."""
    recipient = key.public_key
    if not (type(recipient) is _X25519_PUBLIC or isinstance(recipient, X25519PublicKey)):
        raise EnvelopeError("malformed")
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    protected = _b64(
        _HEADER_JSON.encode({**header, "epk": {"kty": "OKP", "crv": "X25519", "x": _b64(epk)}}).encode()
    ).encode("ascii")
    cek = ConcatKDFHash(hashes.SHA256(), 32, _A256GCM_OTHER_INFO).derive(ephemeral.exchange(recipient))
    iv = os.urandom(12)
    sealed = memoryview(AESGCM(cek).encrypt(iv, plaintext, protected))
    ciphertext, tag = _b64_view(sealed[:-16]), _b64(sealed[-16:]).encode("ascii")
    return protected, b"..", _b64(iv).encode("ascii"), b".", ciphertext, b".", tag


# The concrete classes behind ``cryptography``'s key ABCs: an exact type check first spares a hop
# a dozen ABC ``isinstance`` calls (about half a microsecond each); ``isinstance`` still decides the rest.
_ED25519_PRIVATE = type(Ed25519PrivateKey.from_private_bytes(bytes(32)))
_ED25519_PUBLIC = type(Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key())
_X25519_PRIVATE = type(X25519PrivateKey.from_private_bytes(bytes(32)))
_X25519_PUBLIC = type(X25519PrivateKey.from_private_bytes(bytes(32)).public_key())


def _aware(at: datetime) -> None:
    if at.utcoffset() is None:
        raise InstantError(f"instant {at.isoformat()} has no UTC offset; give one, e.g. +09:00")


# Deterministic JSON: sorted keys, no spaces, UTF-8 text kept as is, no NaN or infinities.
# Built once; a body that refers to itself ends in RecursionError instead of a circularity check.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)


def _canonical(data: dict[str, Any]) -> bytes:
    # the same bytes, by orjson, where it writes the same; checked as a tree (a hop's body is built
    # for the hop: a container met twice is looked at twice, as orjson writes it twice)
    written = canonical_tree_bytes(data)
    return written if written is not None else _CANONICAL.encode(data).encode()


def _is_text(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= MAX_ID_CHARS


def _is_second(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _LAST_SECOND


# --------------------------------------------------------------------------- originator's signature


def sign_origin(ring: KeyRing, content: bytes, at: datetime, *, typ: str = ITEM_TYPE) -> str:
    """The originator's compact JWS over ``content`` (canonical JSON binding label and payload).

    Signed with the ring's newest signing key valid at ``at``; the protected header names
    the key (``kid``) and the originating party (``iss``). ``typ`` says what is signed
    (``ITEM_TYPE``, or ``TRACKS_TYPE`` for a batch of missile tracks); :func:`verify_origin`
    accepts only the type it is asked for.
    """
    _aware(at)
    kid, key = ring._signer(at)
    return _jws_under(_origin_head(kid, typ, ring.party), content, key).decode("ascii")


def signed_payload(jws: str) -> bytes:
    """The payload of a compact JWS, decoded and NOT verified: for a signed text this node verified
    or signed when it kept it, or to peek at one before :func:`verify_origin` decides. ``ValueError``
    (or ``IndexError`` without its dots) where it is not one."""
    payload = jws.split(".")[1]
    # pybase64: the standard library's bytes and errors, without its translate and copy (the inbox
    # peeks at every item of a batch: issue 18)
    return pybase64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))


def read_origin(jws: str, *, typ: str = ITEM_TYPE) -> UnverifiedOrigin:
    """An originator's compact JWS of type ``typ`` read exactly as :func:`verify_origin` reads it
    (joserfc's limits, strict base64url, the header held to the convention), its signature NOT
    checked: to look at what it claims before :func:`verify_origin` decides, and to hand to
    :func:`verify_origin` then, so that it is not read twice (the inbox read each item's signed
    text twice, its payload decoded twice: issue 18). ``EnvelopeError("malformed")`` where
    :func:`verify_origin` refuses it as malformed."""
    return _parsed_jws(jws, _ITEM_HEADER, typ)


def verify_origin(
    jws: str | UnverifiedOrigin,
    identities: Callable[[str], PeerIdentity | None],
    at: datetime,
    own: KeyRing | None = None,
    *,
    typ: str = ITEM_TYPE,
) -> tuple[str, bytes]:
    """Check an originator's signature of type ``typ``; return (originating party, signed content).
    ``jws``: the compact text, or what :func:`read_origin` read of it (of the same ``typ``).

    The key is the one named by the header's ``kid``, of the party named by its ``iss``
    (``identities(iss)``, or ``own`` when ``iss`` is this node's party), usable at ``at``.
    Raises ``EnvelopeError`` with ``malformed``, ``unknown-sender``, ``unknown-key``,
    ``revoked-key``, ``key-not-valid`` or ``bad-origin-signature``.
    """
    iss, payload, _ = _verified_origin(jws, identities, at, own, typ)
    return iss, payload


def verify_origin_until(
    jws: str,
    identities: Callable[[str], PeerIdentity | None],
    at: datetime,
    own: KeyRing | None = None,
    *,
    typ: str = ITEM_TYPE,
) -> tuple[str, bytes, datetime | None]:
    """:func:`verify_origin`, and the first instant after ``at`` from which that verification no
    longer holds: the signing key's end or revocation, whichever first (``None``: neither). What is
    kept as verified (an assurance, say) stops counting then, whenever it was verified."""
    iss, payload, entry = _verified_origin(jws, identities, at, own, typ)
    return iss, payload, entry.usable_until


def _verified_origin(
    jws: str | UnverifiedOrigin,
    identities: Callable[[str], PeerIdentity | None],
    at: datetime,
    own: KeyRing | None,
    typ: str,
) -> tuple[str, bytes, PublicKeyEntry]:
    """The originating party, the signed content and the key entry that verified it."""
    _aware(at)
    if type(jws) is _Signed:
        token = jws  # read_origin's: held to the header of the type asked for, as _parsed_jws holds
        if token.protected.keys() != _ITEM_HEADER or token.protected["typ"] != typ:
            raise EnvelopeError("malformed")
    elif isinstance(jws, str):
        token = _parsed_jws(jws, _ITEM_HEADER, typ)
    else:
        raise EnvelopeError("malformed")
    iss = token.protected["iss"]
    if not _is_text(iss):
        raise EnvelopeError("malformed")
    signer = own if own is not None and iss == own.party else identities(iss)
    if signer is None:
        raise EnvelopeError("unknown-sender")
    entry = signer._verifying_entry(token.protected["kid"], at)
    _check_signature(token, entry._jose, "bad-origin-signature")
    return iss, token.payload, entry


@dataclass(frozen=True, slots=True)
class _Signed:
    """A compact JWS read, its header held to the convention, its signature not checked yet."""

    protected: dict[str, Any]
    payload: bytes
    signing_input: memoryview  # the header and payload segments as received, joined by a dot (not copied)
    signature: bytes  # the signature segment, still base64url


UnverifiedOrigin = _Signed  # what read_origin gives: read, its signature not checked yet

# joserfc's limits for a compact JWS (its registry's defaults; the payload's raised to a batch's size)
_JWS_MAX_HEADER = 512
_JWS_MAX_SIGNATURE = 1024
# The protected headers read, by their segment's bytes: the same for every item one key signs, so
# each is decoded and parsed once (``json.loads`` of it was a tenth of reading an item's signature,
# issue 18). Bounded as the COSE headers' tables are; the dicts are only read, never changed.
_JWS_HEADERS: dict[bytes, Any] = {}


def _parsed_jws(text: str | bytes, members: frozenset[str], typ: str) -> _Signed:
    """A compact JWS (RFC 7515 section 7.1) read as joserfc reads it, and its header held to the
    convention; its signature is not checked yet (:func:`_check_signature`).

    Read here rather than by joserfc so the payload is decoded once, by pybase64, and nothing is
    copied: joserfc's reading of a batch's 150 KB payload cost more than its verification. The
    limits, the strict base64url and the header checks are joserfc's and this module's, unchanged.
    """
    try:
        data = text.encode("ascii") if isinstance(text, str) else text
        if len(data) > MAX_ENVELOPE_CHARS:
            raise EnvelopeError("malformed")
        (head, head_end), (body, body_end), (sig, sig_end) = _cut(data, 0, len(data), 3)
        if head_end - head > _JWS_MAX_HEADER or sig_end - sig > _JWS_MAX_SIGNATURE:
            raise EnvelopeError("malformed")
        segment = bytes(data[head:head_end])  # the JOSE hop's plaintext may be a bytearray
        header = _JWS_HEADERS.get(segment)
        if header is None:
            header = json.loads(_unb64_in(data, head, head_end))
            if type(header) is dict:  # the checks below are made of every token, read or kept
                _kept(_JWS_HEADERS, segment, header)
        if type(header) is not dict or "alg" not in header:
            raise EnvelopeError("malformed")
        if (
            header.keys() != members
            or header["alg"] != "EdDSA"
            or header["typ"] != typ
            or not _is_text(header["kid"])
        ):
            raise EnvelopeError("malformed")
        payload = _unb64_in(data, body, body_end)
    except (ValueError, TypeError, RecursionError) as exc:
        raise EnvelopeError("malformed") from exc
    return _Signed(header, payload, memoryview(data)[:body_end], data[sig:sig_end])


def _check_signature(token: _Signed, key: OKPKey, detail: str) -> None:
    """The token's EdDSA signature (RFC 8037) by ``key``'s Ed25519, over the segments as received."""
    verifier = key.public_key
    if not (type(verifier) is _ED25519_PUBLIC or isinstance(verifier, Ed25519PublicKey)):
        raise EnvelopeError(detail)
    try:
        verifier.verify(_unb64(token.signature), token.signing_input)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise EnvelopeError(detail) from exc


# --------------------------------------------------------------------------- hops


def _hop_claims(
    ring: KeyRing, recipient: PeerIdentity, body: dict[str, Any], msg_id: str, at: datetime, ttl: timedelta
) -> tuple[dict[str, Any], bytes]:
    """The routing of a hop (``v``, ``iss``, ``aud``, ``jti``, ``iat``, ``exp``) and the canonical JSON
    claims signed in either format: the routing and the body."""
    _aware(at)
    if not _is_text(msg_id):
        raise InvalidInputError(f"msg_id must be a non-empty string of at most {MAX_ID_CHARS} characters")
    lifetime = int(ttl.total_seconds())
    if lifetime <= 0:
        raise InvalidInputError(f"ttl must be at least one second, found {ttl}")
    iat = int(at.timestamp())
    exp = iat + lifetime
    if not (_is_second(iat) and _is_second(exp)):
        raise InvalidInputError(
            f"the envelope's lifetime must fall between 1970 and 9999, found {at} + {ttl}"
        )
    routing: dict[str, Any] = {
        "v": VERSION,
        "iss": ring.party,
        "aud": recipient.party,
        "jti": msg_id,
        "iat": iat,
        "exp": exp,
    }
    try:
        claims = _canonical({**routing, "body": body})
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"the envelope body is not JSON: {exc}") from exc
    return routing, claims


def seal(
    ring: KeyRing,
    recipient: PeerIdentity,
    body: dict[str, Any],
    *,
    msg_id: str,
    at: datetime,
    ttl: timedelta,
) -> str:
    """Sign ``body`` with this node's key, encrypt it to ``recipient``, and return the envelope text
    (``gsomia-envelope/3``: a COSE_Sign1 inside a COSE_Encrypt, see the COSE section below).

    The envelope is valid from ``at`` for ``ttl`` (whole seconds). Raises
    ``InvalidInputError`` for a bad ``msg_id``, ``ttl`` or a body that is not JSON,
    ``ConfigError`` if this node has no signing key valid at ``at``, and ``EnvelopeError``
    (``revoked-key``, ``key-not-valid``) if the recipient has no usable encryption key.
    """
    routing, claims = _hop_claims(ring, recipient, body, msg_id, at, ttl)
    kid, signer = ring._signer(at)
    recipient_kid, recipient_key = recipient._encrypter(at)
    message = _cose_hop(routing, claims, kid, signer, recipient_kid, recipient_key)
    # standard base64 needs no escaping in a JSON string either ("+", "/" and "=" are plain characters);
    # written as text at once, one large string fewer than bytes joined and then decoded
    return "".join((_COSE_WRAPPER_TEXT, pybase64.b64encode_as_string(message), _WRAPPER_TAIL_TEXT))


def _seal_jose(
    ring: KeyRing,
    recipient: PeerIdentity,
    body: dict[str, Any],
    *,
    msg_id: str,
    at: datetime,
    ttl: timedelta,
) -> str:
    """:func:`seal` in the JOSE format this node wrote before COSE (``gsomia-envelope/1``), which
    :func:`open_envelope` still reads for the envelopes sealed before the switch and still in flight
    (an outbox entry is delivered in the envelope it was sealed in until that expires)."""
    routing, claims = _hop_claims(ring, recipient, body, msg_id, at, ttl)
    kid, signer = ring._signer(at)
    inner = _jws_bytes({"alg": "EdDSA", "kid": kid, "typ": HOP_TYPE}, claims, signer)
    recipient_kid, recipient_key = recipient._encrypter(at)
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": recipient_kid, "cty": HOP_TYPE, **routing}
    compact = _compact_jwe(header, inner, recipient_key)
    # A compact JWE is base64url and dots: nothing in it needs escaping in a JSON string.
    return b"".join((_WRAPPER_HEAD, *compact, _WRAPPER_TAIL)).decode("ascii")


def _hop_header(header: dict[str, Any], own_party: str) -> None:
    """Check the outer JWE header (not yet authenticated) before any key is used."""
    version = header.get("v")
    if type(version) is int and version != VERSION:
        raise EnvelopeError("unsupported-version")
    if (
        header.keys() != _HOP_HEADER
        or header["alg"] != "ECDH-ES"
        or header["enc"] != "A256GCM"
        or header["cty"] != HOP_TYPE
        or type(version) is not int
        or not (_is_text(header["kid"]) and _is_text(header["iss"]))
        or not (_is_text(header["aud"]) and _is_text(header["jti"]))
        or not (_is_second(header["iat"]) and _is_second(header["exp"]) and header["iat"] <= header["exp"])
    ):
        raise EnvelopeError("malformed")
    epk = header["epk"]
    if (
        type(epk) is not dict
        or epk.keys() != _EPK
        or epk["kty"] != "OKP"
        or epk["crv"] != "X25519"
        or type(epk["x"]) is not str
    ):
        raise EnvelopeError("malformed")
    if header["aud"] != own_party:
        raise EnvelopeError("wrong-recipient")


def _parsed_claims(payload: bytes | memoryview) -> Any:
    """The signed claims as the standard ``json`` parser reads them: :func:`gsomia._canonical.loads`
    (msgspec, which reads every integer exactly, so nothing is written again or scanned afterwards to
    find one read as a float; issue 18), ``json`` for what it refuses. ``ValueError`` or
    ``RecursionError`` where ``json`` refuses them."""
    return loads(payload)


def _claims(payload: bytes | memoryview, header: dict[str, Any]) -> dict[str, Any]:
    """The signed claims, which must repeat the outer header's routing exactly."""
    try:
        claims = _parsed_claims(payload)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed") from exc
    if type(claims) is not dict or claims.keys() != _CLAIMS or type(claims["body"]) is not dict:
        raise EnvelopeError("malformed")
    if claims["aud"] != header["aud"] or type(claims["aud"]) is not str:
        raise EnvelopeError("wrong-recipient")  # a hop signed for another party, re-encrypted to us
    for name in ("v", "iss", "jti", "iat", "exp"):
        if claims[name] != header[name] or type(claims[name]) is not type(header[name]):
            raise EnvelopeError("malformed")
    return claims


def _check_lifetime(issued_at: datetime, expires_at: datetime, at: datetime, skew: timedelta) -> None:
    """Refuse an envelope expired, or issued ahead of ``at``, by more than ``skew`` (the clocks' gap).

    The note says by how much, for the audit log: a partner whose clock runs ahead shows there.
    """
    if expires_at + skew < at:
        late = (at - expires_at).total_seconds()
        raise EnvelopeError(
            "expired", f"expired at {expires_at.isoformat()}, {late:.0f} s before {_here(at, skew)}"
        )
    if issued_at - skew > at:
        ahead = (issued_at - at).total_seconds()
        raise EnvelopeError(
            "not-yet-valid", f"issued at {issued_at.isoformat()}, {ahead:.0f} s ahead of {_here(at, skew)}"
        )


def _here(at: datetime, skew: timedelta) -> str:
    """The receiver's side of a lifetime refusal's note (written only for a refusal)."""
    return f"this node's {at.isoformat()}; allowed clock skew {skew.total_seconds():g} s"


# joserfc's limits for a compact JWE (its registry's defaults; the ciphertext's raised to a batch's)
_JWE_MAX_HEADER = 1024
_JWE_MAX_KEY = 1024
_JWE_MAX_IV = 64
_JWE_MAX_TAG = 64


def _read_jwe(
    data: bytes, start: int, end: int
) -> tuple[dict[str, Any], tuple[bytes, bytes, bytes, bytes, bytes]]:
    """A compact JWE (RFC 7516 section 7.1), ``data[start:end]``, read as joserfc reads it, before any
    key is used: its protected header (not yet authenticated), the header segment (the additional
    data), the encrypted key, IV, ciphertext and tag; ``malformed`` where joserfc refuses it.

    Read here rather than by joserfc so a batch's ciphertext is decoded once by pybase64, in place,
    instead of scanned three times and decoded by the standard library's slower codec.
    """
    try:
        (head, head_end), (key, key_end), (iv, iv_end), (body, body_end), (tag, tag_end) = _cut(
            data, start, end, 5
        )
        if (
            head_end - head > _JWE_MAX_HEADER
            or key_end - key > _JWE_MAX_KEY
            or iv_end - iv > _JWE_MAX_IV
            or body_end - body > MAX_ENVELOPE_CHARS
            or tag_end - tag > _JWE_MAX_TAG
        ):
            raise EnvelopeError("malformed")
        header_segment = data[head:head_end]
        header = json.loads(_unb64(header_segment))
        if type(header) is not dict or "alg" not in header or "enc" not in header:
            raise EnvelopeError("malformed")
        parts = _unb64_in(data, iv, iv_end), _unb64_in(data, body, body_end), _unb64_in(data, tag, tag_end)
        encrypted_key = _unb64_in(data, key, key_end)
    except (ValueError, TypeError, RecursionError) as exc:
        raise EnvelopeError("malformed") from exc
    return header, (header_segment, encrypted_key, *parts)


def _decrypt(header: dict[str, Any], jwe: tuple[bytes, bytes, bytes, bytes, bytes], key: OKPKey) -> bytes:
    """The plaintext of a JWE whose header passed :func:`_hop_header`: ECDH-ES in direct agreement
    (RFC 7518 section 4.6: the exchange of ``key``'s X25519 with ``epk``, the Concat KDF) and A256GCM
    over the header segment as the additional data, as joserfc decrypts it; ``decrypt-failed`` else."""
    aad, encrypted_key, iv, ciphertext, tag = jwe
    private = key.private_key
    try:
        if (
            encrypted_key
            or len(iv) != 12
            or not (type(private) is _X25519_PRIVATE or isinstance(private, X25519PrivateKey))
        ):
            raise ValueError("not ECDH-ES with A256GCM")  # direct agreement: the encrypted key is empty
        epk = X25519PublicKey.from_public_bytes(_unb64(header["epk"]["x"].encode("ascii")))
        cek = ConcatKDFHash(hashes.SHA256(), 32, _A256GCM_OTHER_INFO).derive(private.exchange(epk))
        decryptor = Cipher(AES(cek), GCM(iv, tag)).decryptor()
        decryptor.authenticate_additional_data(aad)
        plain = decryptor.update(ciphertext)
        rest = decryptor.finalize()  # the tag's check; GCM holds nothing back
        return plain + rest if rest else plain
    except (InvalidTag, ValueError, TypeError) as exc:
        raise EnvelopeError("decrypt-failed") from exc


# The wrappers as the writers write them, around a compact JWE or a base64 or base64url COSE message,
# none of which needs escaping in a JSON string
_WRAPPER_HEAD = f'{{"format":"{JOSE_FORMAT}","jwe":"'.encode("ascii")
_COSE_WRAPPER_HEAD = f'{{"format":"{ENVELOPE_FORMAT}","cose":"'.encode("ascii")
_COSE_URL_WRAPPER_HEAD = f'{{"format":"{COSE_URL_FORMAT}","cose":"'.encode("ascii")
_WRAPPER_TAIL = b'"}'
_COSE_WRAPPER_TEXT, _WRAPPER_TAIL_TEXT = _COSE_WRAPPER_HEAD.decode("ascii"), _WRAPPER_TAIL.decode("ascii")
_MEMBER = {JOSE_FORMAT: "jwe", COSE_URL_FORMAT: "cose", ENVELOPE_FORMAT: "cose"}
_HEADS = (
    (_COSE_WRAPPER_HEAD, ENVELOPE_FORMAT),
    (_COSE_URL_WRAPPER_HEAD, COSE_URL_FORMAT),
    (_WRAPPER_HEAD, JOSE_FORMAT),
)


def _wrapped(text: str | bytes) -> tuple[str, bytes, int, int]:
    """The format, and the compact JWE or the base64 (``/3``) or base64url (``/2``) COSE message inside
    the JSON wrapper as ``data[start:end]``; an unknown format is ``unsupported-version``.

    The wrapper exactly as a writer writes it (a head above, no quote or backslash in the string,
    the tail) is read by position, where the JSON parsers copied a batch's 350 KB string out of it
    (issue 18: 190 µs a batch with orjson). A string with a control or a non-ASCII character there,
    which JSON would refuse, is refused as ``malformed`` by the base64 reading, as JSON's refusal
    is. Any other text is read by orjson where it reads it as ``json`` does (an integer past 64 bits,
    read as a float, is refused below either way; what it refuses, NaN, a lone surrogate, UTF-16,
    ``json`` reads or refuses as it always did).
    """
    data = text.encode("ascii") if type(text) is str and text.isascii() else text
    if type(data) is bytes and data.endswith(_WRAPPER_TAIL):
        for head, name in _HEADS:
            if (
                data.startswith(head)
                and data.find(b'"', len(head), len(data) - len(_WRAPPER_TAIL)) == -1
                and data.find(b"\\", len(head), len(data) - len(_WRAPPER_TAIL)) == -1
            ):
                return name, data, len(head), len(data) - len(_WRAPPER_TAIL)
    try:
        try:
            envelope = orjson.loads(text)
        except orjson.JSONDecodeError:
            envelope = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed") from exc
    if type(envelope) is not dict or type(envelope.get("format")) is not str:
        raise EnvelopeError("malformed")
    name = envelope["format"]
    member = _MEMBER.get(name)
    if member is None:
        raise EnvelopeError("unsupported-version")
    inside = envelope.get(member)
    if envelope.keys() != {"format", member} or type(inside) is not str:
        raise EnvelopeError("malformed")
    try:
        data = inside.encode("ascii")
    except ValueError as exc:
        raise EnvelopeError("malformed") from exc
    return name, data, 0, len(data)


def is_current(text: str) -> bool:
    """Whether ``text`` is in the format :func:`seal` writes now (``/3``), as its writer wrote it:
    the sender seals anything older again before it goes (a receiver may no longer open it)."""
    return text.startswith(_COSE_WRAPPER_TEXT)


def envelope_routing(text: str) -> dict[str, Any]:
    """The routing of an envelope (``iss``, ``aud``, ``jti`` the message id, ``iat``, ``exp`` its
    expiry) read without decrypting and NOT authenticated: only for this node's own envelopes (an
    outbox entry's expiry, a transfer's manifest). ``EnvelopeError`` where it is not an envelope."""
    name, data, start, end = _wrapped(text)
    if name == JOSE_FORMAT:
        header, _ = _read_jwe(data, start, end)
        return {key: header.get(key) for key in ("iss", "aud", "jti", "iat", "exp")}
    routing, _ = _read_cose(data, start, end, name == ENVELOPE_FORMAT)
    return {key: routing[key] for key in ("iss", "aud", "jti", "iat", "exp")}


def open_envelope(
    ring: KeyRing,
    text: str | bytes,
    identities: Callable[[str], PeerIdentity | None],
    at: datetime,
    skew: timedelta = timedelta(minutes=5),
    *,
    accepts: Callable[[int, str], None] | None = None,
) -> Opened:
    """Decrypt and verify an envelope addressed to this node; every failure is ``EnvelopeError``.

    The checks, in order: the format marker (``unsupported-version``, ``malformed``); the
    outer header (``malformed``, ``unsupported-version``) and its ``aud`` (``wrong-recipient``);
    for a format older than the one :func:`seal` writes, ``accepts(version, sender)`` with the
    sender the header names (not yet authenticated: a refusal only), which raises ``EnvelopeError``
    for a version this node no longer opens from it (nothing more of the envelope is read then);
    this node's key named by ``kid`` at ``at`` (``unknown-key``, ``revoked-key``,
    ``key-not-valid``); decryption (``decrypt-failed``); the inner signature's header
    (``malformed``); the sender named by ``iss`` (``unknown-sender``) and its signing key
    named by the inner ``kid`` (key codes as above); the signature
    (``bad-signature``); the signed claims against the header (``wrong-recipient``,
    ``malformed``); and the lifetime, allowing ``skew`` either way (``expired``,
    ``not-yet-valid``). ``gsomia-envelope/3`` (COSE) is what :func:`seal` writes;
    ``gsomia-envelope/2`` (the same in base64url) and ``/1`` (JOSE) are read for the envelopes
    sealed before, as ``accepts`` allows. The opened envelope carries its format's version.
    """
    _aware(at)
    if len(text) > MAX_ENVELOPE_CHARS:
        raise EnvelopeError("malformed")
    name, data, start, end = _wrapped(text)
    payload: bytes | memoryview
    version = FORMAT_VERSIONS[name]
    if name != JOSE_FORMAT:
        outer, sealed = _read_cose(data, start, end, name == ENVELOPE_FORMAT)
        if outer["aud"] != ring.party:
            raise EnvelopeError("wrong-recipient")
        if accepts is not None and version != ENVELOPE_VERSION:
            accepts(version, outer["iss"])
        decrypted = _cose_decrypt(sealed, ring._decrypter(outer["kid"], at))
        protected, first, last, signature, sender_kid = _read_sign1(decrypted, _SIG_ROOM)
        sender = identities(outer["iss"])
        if sender is None:
            raise EnvelopeError("unknown-sender")
        payload = _check_sign1_in_place(
            decrypted, protected, first, last, signature, sender._verifier(sender_kid, at), "bad-signature"
        )
    else:
        outer, jwe = _read_jwe(data, start, end)
        _hop_header(outer, ring.party)  # before this node's key is chosen and used
        if accepts is not None:
            accepts(version, outer["iss"])  # and before the JOSE path reads any more of it
        plain = _decrypt(outer, jwe, ring._decrypter(outer["kid"], at))
        signed = _parsed_jws(plain, _HOP_JWS_HEADER, HOP_TYPE)
        sender = identities(outer["iss"])
        if sender is None:
            raise EnvelopeError("unknown-sender")
        sender_kid = signed.protected["kid"]
        _check_signature(signed, sender._verifier(sender_kid, at), "bad-signature")
        payload = signed.payload

    claims = _claims(payload, outer)
    issued_at = datetime.fromtimestamp(claims["iat"], UTC)
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    _check_lifetime(issued_at, expires_at, at, skew)
    return Opened(
        claims["iss"],
        claims["aud"],
        claims["jti"],
        issued_at,
        expires_at,
        claims["body"],
        sender_kid,
        version,
        claims=payload.toreadonly() if type(payload) is memoryview else payload,
    )


# --------------------------------------------------------------------------- COSE hops
#
# ``gsomia-envelope/2``: the hop as RFC 9052 messages with the RFC 9053 algorithms, written and read
# here with cbor2 and ``cryptography`` (pycose is the independent implementation the tests check
# both directions against; tests/crypto/test_cose.py). JOSE signs and encrypts base64url text, a
# third more bytes than the claims, twice over; COSE signs and encrypts the bytes themselves
# (issue 18's envelope ratio: the JOSE floor alone is 1.4-1.5 times bare ``cryptography``).
#
#   inner: COSE_Sign1 (tag 18) [protected {alg: EdDSA (-8), kid: sender's kid, typ (RFC 9596):
#          "application/gsomia-hop+json"}, {}, the canonical JSON claims, the Ed25519 signature of
#          the Sig_structure ["Signature1", protected, h'', claims]]
#   outer: COSE_Encrypt (tag 96) [protected {alg: A256GCM (3), content type: 18 (a COSE_Sign1),
#          CWT claims (RFC 9597, label 15): {iss (1), aud (3), exp (4), iat (6), cti (7): msg id}},
#          {iv (5)}, the AES-256-GCM ciphertext of the tagged COSE_Sign1 with the Enc_structure
#          ["Encrypt", protected, h''] as the additional data,
#          [recipient: [protected {alg: ECDH-ES + HKDF-256 (-25), kid: the recipient's kid},
#                       {ephemeral key (-1): COSE_Key {kty OKP (1), crv X25519 (4), x}}, h'']]]
#   the content key: HKDF-SHA-256, no salt, info the COSE_KDF_Context [A256GCM, [nil, nil, nil],
#          [nil, nil, nil], [256, the recipient's protected header]] (RFC 9053 section 5.2), of the
#          X25519 agreement of the ephemeral key with the recipient's (direct key agreement, 6.3.1).
#
# The outer routing is authenticated by the AEAD (and the recipient's kid by the KDF context); the
# signed claims repeat it and must equal it, as in the JOSE format. Every map's keys are exactly the
# ones above (so ``crit``, or any header this reader does not know, is refused), every value's type
# and value is checked, and every CBOR item must be in the deterministic encoding (RFC 8949 section
# 4.2.1) in which it is written: re-encoded it must give back the bytes received, which refuses
# duplicate map keys, trailing bytes, indefinite lengths and any other second spelling. The COSE_Encrypt
# and the COSE_Sign1 are read by position as the layout's own encoding (``_read_cose``, ``_read_sign1``:
# each head the shortest, the fixed parts byte for byte, nothing after), their large byte strings not
# copied out by a decoder: so the ephemeral key's map keys are its integers, not floats equal to them;
# the COSE_Encrypt's protected header is read by position too (``_read_encrypt_protected``); the two
# protected headers that are the same for every hop of a key, which ``_cbor`` decodes and re-encodes
# once, have their keys held to integers by type (``_int_labels``): a float 1.0 or ``true`` is a key
# equal to 1 and its own encoding.

_EDDSA, _A256GCM_ALG, _ECDH_ES_HKDF_256 = -8, 3, -25
HOP_COSE_TYPE = "application/gsomia-hop+json"
_ALG, _KID, _TYP = 1, 4, 16
_SIGN1_HEADER = frozenset({_ALG, _KID, _TYP})
_RECIPIENT_HEADER = frozenset({_ALG, _KID})
_COSE_MAX_HEADER = 1024
_X25519_PRIME = 2**255 - 19


# One cbor2 encoder per thread, kept: constructing one costs about 12 µs, more than encoding a header
# (issue 18's envelope ratio: a hop encodes a dozen small structures); dropped after any failure.
_ENCODERS = threading.local()


def _dumps(item: Any) -> bytes:
    """``item`` in CBOR's deterministic encoding (RFC 8949 section 4.2.1; cbor2's ``canonical``)."""
    pair: tuple[io.BytesIO, cbor2.CBOREncoder] | None = getattr(_ENCODERS, "pair", None)
    if pair is None:
        buffer = io.BytesIO()
        pair = _ENCODERS.pair = (buffer, cbor2.CBOREncoder(buffer, canonical=True))
    buffer, encoder = pair
    buffer.seek(0)
    buffer.truncate()
    try:
        encoder.encode(item)
    except BaseException:
        _ENCODERS.pair = None  # its state is not trusted after a failure
        raise
    return buffer.getvalue()


_CBOR_ERRORS = (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError, MemoryError)


def _cbor(data: bytes) -> Any:
    """One CBOR item in the deterministic encoding, decoded; ``malformed`` for anything else."""
    item = _decoded(data)
    try:
        if _dumps(item) != data:
            raise ValueError("not one deterministically encoded CBOR item")
    except _CBOR_ERRORS as exc:
        raise EnvelopeError("malformed") from exc
    return item


def _decoded(data: bytes) -> Any:
    """The CBOR item ``data`` starts with, decoded, its spelling not checked yet.

    cbor2 decodes the tags it knows as it reads them (a decimal fraction or bigfloat into a
    ``Decimal``, a date, an address...), and those decoders fail with their own errors, not all of
    them cbor2's (``decimal.Overflow``, ``decimal.InvalidOperation``: ArithmeticErrors): whatever
    fails in reading the sender's bytes, they are malformed (the hop's layout holds no such tag)."""
    try:
        return cbor2.loads(data)
    except Exception as exc:  # any failure to read the unauthenticated bytes is theirs
        raise EnvelopeError("malformed") from exc


def _kdf_context(recipient_protected: bytes) -> bytes:
    """The COSE_KDF_Context of RFC 9053 section 5.2 for A256GCM from direct ECDH-ES + HKDF-256."""
    return _dumps([_A256GCM_ALG, [None, None, None], [None, None, None], [256, recipient_protected]])


# What depends only on a kid (the COSE_Sign1's protected header; the recipient's protected header and
# the KDF context made of it) is written once per kid, and a protected header received again is read
# once: the bytes are the key and the deterministic encoding makes the mapping one to one, so a cached
# answer is the one reading the bytes again would give (issue 18: a hop encoded or decoded a dozen
# small CBOR items, as much as its X25519). Each table is bounded (cleared when full: a peer sending
# new headers costs itself the reading, not this node's memory).
_CACHE_LIMIT = 256
_SIGN1_PROTECTED: dict[str, bytes] = {}
_RECIPIENT_PROTECTED: dict[str, bytes] = {}
_KDF_CONTEXTS: dict[bytes, bytes] = {}
_HEADERS: dict[bytes, Any] = {}


def _kept(table: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(table) >= _CACHE_LIMIT:
        table.clear()
    table[key] = value
    return value


def _sign1_protected(kid: str) -> bytes:
    written = _SIGN1_PROTECTED.get(kid)
    if written is None:
        written = _kept(
            _SIGN1_PROTECTED, kid, _dumps({_ALG: _EDDSA, _KID: kid.encode(), _TYP: HOP_COSE_TYPE})
        )
    return written


def _recipient_protected(kid: str) -> bytes:
    """The recipient's protected header for ``kid`` (its KDF context is kept by :func:`_content_key`)."""
    written = _RECIPIENT_PROTECTED.get(kid)
    if written is None:
        written = _kept(_RECIPIENT_PROTECTED, kid, _dumps({_ALG: _ECDH_ES_HKDF_256, _KID: kid.encode()}))
    return written


def _content_key(shared: bytes, recipient_protected: bytes) -> bytes:
    context = _KDF_CONTEXTS.get(recipient_protected)
    if context is None:
        context = _kept(_KDF_CONTEXTS, recipient_protected, _kdf_context(recipient_protected))
    return HKDF(hashes.SHA256(), 32, None, context).derive(shared)


# The fixed bytes of the structures below in the deterministic encoding (RFC 8949 section 4.2.1), each
# written once beside its large byte string rather than through cbor2, which copied a batch's claims or
# ciphertext into its buffer and out again (issue 18); tests/crypto/test_cose.py holds them to cbor2's
_SIG_STRUCTURE_HEAD = b"\x84\x6aSignature1"  # an array of 4, the text "Signature1"
_ENC_STRUCTURE_HEAD = b"\x83\x67Encrypt"  # an array of 3, the text "Encrypt"
_SIGN1_HEAD = b"\xd2\x84"  # tag 18, an array of 4
_ENCRYPT_HEAD = b"\xd8\x60\x84"  # tag 96, an array of 4
_IV_MAP = b"\xa1\x05\x4c"  # a map of 1: the IV (5), a byte string of 12
_EMPTY_MAP, _EMPTY_BYTES = b"\xa0", b"\x40"
# the recipient list around its protected header and the ephemeral key: [[protected, {-1: {kty (1): OKP
# (1), crv (-1): X25519 (4), x (-2): 32 bytes}}, h'']]
_RECIPIENTS_HEAD = b"\x81\x83"
_EPHEMERAL_HEAD = b"\xa1\x20\xa3\x01\x01\x20\x04\x21\x58\x20"
_SIGNATURE_HEAD = b"\x58\x40"  # a byte string of 64: an Ed25519 signature (RFC 8032)
_SIGNATURE_BYTES = len(_SIGNATURE_HEAD) + 64
_TAG_BYTES = 16  # AES-GCM's tag, after the ciphertext
# How much longer a Sig_structure's head is than the COSE_Sign1's before the same payload (the text
# "Signature1" and the empty external data against the tag and the empty unprotected map): the room
# left before a decrypted COSE_Sign1 so its Sig_structure is written in place (:func:`open_envelope`)
_SIG_ROOM = len(_SIG_STRUCTURE_HEAD) + len(_EMPTY_BYTES) - len(_SIGN1_HEAD) - len(_EMPTY_MAP)


def _head(major: int, value: int) -> bytes:
    """The head of a CBOR item of major type ``major`` and argument ``value`` (an unsigned integer's
    value, a string's length) in the deterministic encoding: the shortest (RFC 8949 section 4.2.1)."""
    if value < 0x100:  # a header's ids and texts: written once (a hop writes a dozen heads, issue 18)
        return _SHORT_HEADS[major][value]
    return _written_head(major, value)


def _written_head(major: int, value: int) -> bytes:
    """:func:`_head`, written."""
    kind = major << 5
    if value < 24:
        return bytes((kind | value,))
    if value < 0x100:
        return bytes((kind | 24, value))
    if value < 0x10000:
        return bytes((kind | 25,)) + value.to_bytes(2, "big")
    if value < 0x1_0000_0000:
        return bytes((kind | 26,)) + value.to_bytes(4, "big")
    return bytes((kind | 27,)) + value.to_bytes(8, "big")


_SHORT_HEADS = tuple(tuple(_written_head(major, value) for value in range(0x100)) for major in range(8))


def _bytes_head(length: int) -> bytes:
    """The head of a byte string of ``length`` bytes in the deterministic encoding."""
    return _head(2, length)


# The COSE_Encrypt's protected header up to its CWT claims' issuer: a map of 3, alg (1): A256GCM (3),
# content type (3): 18, CWT claims (15): a map of 5
_ENCRYPT_PROTECTED_HEAD = b"\xa3\x01\x03\x03\x12\x0f\xa5\x01"


def _encrypt_protected(iss: str, aud: str, exp: int, iat: int, cti: bytes) -> bytes:
    """The COSE_Encrypt's protected header (the layout above: its keys in their deterministic order,
    the CWT claims iss 1, aud 3, exp 4, iat 6, cti 7), written here rather than by cbor2, which cost
    as much as reading it (issue 18); tests/crypto/test_cose.py holds it to cbor2's. The message id
    differs from hop to hop, so it is not kept as the per-kid headers are."""
    issuer, audience = iss.encode(), aud.encode()
    return b"".join(
        (
            _ENCRYPT_PROTECTED_HEAD,
            _head(3, len(issuer)),
            issuer,
            b"\x03",
            _head(3, len(audience)),
            audience,
            b"\x04",
            _head(0, exp),
            b"\x06",
            _head(0, iat),
            b"\x07",
            _head(2, len(cti)),
            cti,
        )
    )


def _enc_structure(protected: bytes) -> bytes:
    """The Enc_structure ["Encrypt", protected, h''] (RFC 9052 section 5.3)."""
    return b"".join((_ENC_STRUCTURE_HEAD, _bytes_head(len(protected)), protected, _EMPTY_BYTES))


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The Sig_structure ["Signature1", protected, h'', payload] (RFC 9052 section 4.4)."""
    return b"".join((_sig_structure_head(protected, len(payload)), payload))


# The bytes before a payload's head that depend only on a key's protected header (the same for every
# hop of a kid), written once per header as the headers themselves are (bounded the same way)
_SIG_PREFIXES: dict[bytes, bytes] = {}
_SIGN1_PREFIXES: dict[bytes, bytes] = {}
_RECIPIENT_PREFIXES: dict[bytes, bytes] = {}


def _around(table: dict[bytes, bytes], protected: bytes, before: bytes, after: bytes) -> bytes:
    """``before``, the byte string ``protected`` (a per-key protected header) and ``after``, kept in
    ``table`` by the header's bytes."""
    written = table.get(protected)
    if written is None:
        written = _kept(table, protected, b"".join((before, _bytes_head(len(protected)), protected, after)))
    return written


def _sig_structure_head(protected: bytes, payload_length: int) -> bytes:
    """A Sig_structure's bytes before its payload: written before the payload in place (:func:`_cose_hop`,
    :func:`open_envelope`), so the payload is signed and verified without a copy of its own."""
    return _around(_SIG_PREFIXES, protected, _SIG_STRUCTURE_HEAD, _EMPTY_BYTES) + _bytes_head(payload_length)


def _sign1_head(protected: bytes, payload_length: int) -> bytes:
    """A COSE_Sign1's bytes before its payload: the tag, the array, the protected header, an empty
    unprotected map and the payload's head."""
    return _around(_SIGN1_PREFIXES, protected, _SIGN1_HEAD, _EMPTY_MAP) + _bytes_head(payload_length)


def _encrypt_head(protected: bytes, iv: bytes, ciphertext_length: int) -> bytes:
    """A COSE_Encrypt's bytes before its ciphertext: the tag, the array, the protected header, the
    unprotected map holding only the IV and the ciphertext's head."""
    return b"".join(
        (_ENCRYPT_HEAD, _bytes_head(len(protected)), protected, _IV_MAP, iv, _bytes_head(ciphertext_length))
    )


def _recipients(recipient_protected: bytes, epk: bytes) -> bytes:
    """A COSE_Encrypt's bytes after its ciphertext: its one recipient, the ephemeral X25519 key."""
    prefix = _around(_RECIPIENT_PREFIXES, recipient_protected, _RECIPIENTS_HEAD, _EPHEMERAL_HEAD)
    return b"".join((prefix, epk, _EMPTY_BYTES))


def _cose_hop(
    routing: dict[str, Any], claims: bytes, kid: str, signer: OKPKey, recipient_kid: str, recipient: OKPKey
) -> bytearray:
    """The tagged COSE_Encrypt of a hop (the layout above)."""
    # the keys as imported (joserfc's ``private_key`` property tests four key ABCs a call); checked below
    private, public = signer.raw_value, recipient.public_key
    if not (type(private) is _ED25519_PRIVATE or isinstance(private, Ed25519PrivateKey)) or not (
        type(public) is _X25519_PUBLIC or isinstance(public, X25519PublicKey)
    ):
        raise EnvelopeError("malformed")  # gsomia signs with Ed25519 and encrypts to X25519 keys only
    sign_protected = _sign1_protected(kid)
    # The COSE_Sign1 is written in one buffer, the claims copied into it once: the Sig_structure's head
    # before them, signed in place; then the COSE_Sign1's own head (shorter by _SIG_ROOM, ending where the
    # claims start) over the end of it, and the signature after them. The COSE_Encrypt is written the
    # same way, its ciphertext by AES-GCM straight into place between its head and its recipient (issue
    # 18: each copy of a batch's 200-350 KB was about 5 µs, and a hop made five)
    signed_head = _sig_structure_head(sign_protected, len(claims))
    start = len(signed_head)
    end = start + len(claims)
    signed = bytearray(end + _SIGNATURE_BYTES)
    signed[:start] = signed_head
    signed[start:end] = claims
    view = memoryview(signed)
    signature = private.sign(view[:end])
    signed[end:] = _SIGNATURE_HEAD + signature  # exactly _SIGNATURE_BYTES: the buffer keeps its size
    sign1_head = _sign1_head(sign_protected, len(claims))
    first = start - len(sign1_head)
    signed[first:start] = sign1_head
    plaintext = view[first:]
    protected = _encrypt_protected(
        routing["iss"], routing["aud"], routing["exp"], routing["iat"], routing["jti"].encode()
    )
    recipient_protected = _recipient_protected(recipient_kid)
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cek = _content_key(ephemeral.exchange(public), recipient_protected)
    iv = os.urandom(12)
    sealed = len(plaintext) + _TAG_BYTES
    head = _encrypt_head(protected, iv, sealed)
    tail = _recipients(recipient_protected, epk)
    message = bytearray(len(head) + sealed + len(tail))
    message[: len(head)] = head
    into = memoryview(message)
    AESGCM(cek).encrypt_into(iv, plaintext, _enc_structure(protected), into[len(head) : len(head) + sealed])
    message[len(head) + sealed :] = tail
    return message


def _text_of(value: Any) -> str:
    """A kid or a message id carried as a CBOR byte string: UTF-8 text within the limits."""
    if type(value) is not bytes:
        raise EnvelopeError("malformed")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EnvelopeError("malformed") from exc
    if not _is_text(text):
        raise EnvelopeError("malformed")
    return text


_SIGN1_KIDS: dict[bytes, str] = {}
_RECIPIENT_KIDS: dict[bytes, str] = {}


def _sign1_kid(protected: bytes) -> str:
    """The signer's kid a COSE_Sign1's protected header names, the header held to the layout
    (EdDSA, the hop's type); ``malformed`` else. The same for every hop of a key: the answer is kept
    by the header's bytes (a refusal is not), so a hop received again pays one look-up, not the
    header's checks (issue 18)."""
    kid = _SIGN1_KIDS.get(protected)
    if kid is None:
        header = _header_map(protected, _SIGN1_HEADER, kept=True)
        if header[_ALG] != _EDDSA or type(header[_ALG]) is not int or header[_TYP] != HOP_COSE_TYPE:
            raise EnvelopeError("malformed")
        kid = _kept(_SIGN1_KIDS, protected, _text_of(header[_KID]))
    return kid


def _recipient_kid(protected: bytes) -> str:
    """The recipient's kid its protected header names (ECDH-ES + HKDF-256), kept as :func:`_sign1_kid`."""
    kid = _RECIPIENT_KIDS.get(protected)
    if kid is None:
        header = _header_map(protected, _RECIPIENT_HEADER, kept=True)
        if header[_ALG] != _ECDH_ES_HKDF_256 or type(header[_ALG]) is not int:
            raise EnvelopeError("malformed")
        kid = _kept(_RECIPIENT_KIDS, protected, _text_of(header[_KID]))
    return kid


def _header_map(protected: Any, members: frozenset[int], *, kept: bool = False) -> dict[Any, Any]:
    """A protected header's map with exactly ``members``; ``kept``: one that is the same for every
    hop of a key (the COSE_Sign1's, the recipient's), read once (the map is not to be changed)."""
    if type(protected) is not bytes or len(protected) > _COSE_MAX_HEADER:
        raise EnvelopeError("malformed")
    header = _HEADERS.get(protected) if kept else None
    if header is None:
        header = _cbor(protected)
        if kept:
            _kept(_HEADERS, protected, header)
    if type(header) is not dict or header.keys() != members or not _int_labels(header):
        raise EnvelopeError("malformed")
    return header


def _int_labels(mapping: dict[Any, Any]) -> bool:
    """Whether every key of ``mapping`` is an integer: a float 1.0 or ``true`` is a key equal to 1 in a
    Python dict, and its own deterministic encoding, so only its type tells it from the label 1."""
    return all(type(key) is int for key in mapping)


def _argument(data: bytes | bytearray, at: int, major: int) -> tuple[int, int]:
    """The argument of the CBOR head of major type ``major`` at ``data[at]`` (an unsigned integer's
    value, a string's length) and where the head ends; ``malformed`` for another type or a head not in
    its deterministic spelling (the shortest, RFC 8949 section 4.2.1)."""
    if at >= len(data):
        raise EnvelopeError("malformed")
    first = data[at]
    info = first & 31
    if first >> 5 != major or info > 27:
        raise EnvelopeError("malformed")
    if info < 24:
        return info, at + 1
    size = 1 << (info - 24)
    end = at + 1 + size
    value = int.from_bytes(data[at + 1 : end], "big")
    # one byte from 24, two from 256, four from 65,536, eight from 2**32; and the whole head there
    if end > len(data) or value < (24 if size == 1 else 1 << (4 * size)):
        raise EnvelopeError("malformed")
    return value, end


def _byte_string(data: bytes | bytearray, at: int) -> tuple[int, int]:
    """The bounds of the content of the byte string whose head is at ``data[at]``, in its deterministic
    spelling and whole; ``malformed`` else. A message's large byte strings are found by position
    (:func:`_read_cose`, :func:`_read_sign1`) instead of decoded out of it by cbor2, which copied them."""
    length, start = _argument(data, at, 2)
    if start + length > len(data):
        raise EnvelopeError("malformed")
    return start, start + length


def _text_string(data: bytes, at: int) -> tuple[str, int]:
    """The text string whose head is at ``data[at]`` (as :func:`_byte_string`; strict UTF-8), and its end."""
    length, start = _argument(data, at, 3)
    if start + length > len(data):
        raise EnvelopeError("malformed")
    try:
        return data[start : start + length].decode("utf-8"), start + length
    except UnicodeDecodeError as exc:
        raise EnvelopeError("malformed") from exc


def _read_encrypt_protected(protected: bytes) -> tuple[str, str, int, int, bytes]:
    """The COSE_Encrypt's protected header read by position as :func:`_encrypt_protected` writes it
    (its one deterministic encoding: the fixed labels and values byte for byte, each head the
    shortest, nothing after): ``iss``, ``aud``, ``exp``, ``iat`` and ``cti``; ``malformed`` else.
    Read here rather than decoded by cbor2 (which cost a hop about as much as writing it again to
    prove its spelling)."""
    iss, at = _text_string(protected, _after(protected, 0, _ENCRYPT_PROTECTED_HEAD))
    aud, at = _text_string(protected, _after(protected, at, b"\x03"))
    exp, at = _argument(protected, _after(protected, at, b"\x04"), 0)
    iat, at = _argument(protected, _after(protected, at, b"\x06"), 0)
    start, at = _byte_string(protected, _after(protected, at, b"\x07"))
    if at != len(protected):
        raise EnvelopeError("malformed")
    return iss, aud, exp, iat, protected[start:at]


def _after(data: bytes | bytearray, at: int, expected: bytes) -> int:
    """Where ``expected``, which must be at ``data[at]``, ends; ``malformed`` where it is not there."""
    if not data.startswith(expected, at):
        raise EnvelopeError("malformed")
    return at + len(expected)


def _read_cose(
    data: bytes, start: int, end: int, standard: bool
) -> tuple[dict[str, Any], tuple[bytes, bytes, memoryview, bytes, bytes]]:
    """The COSE_Encrypt of a hop, ``data[start:end]`` in standard base64 (``standard``: ``/3``) or
    base64url (``/2``), each read strictly (:func:`_unbase64_in`, :func:`_unb64_in`), read and held to
    the layout before any key is used: its routing (not yet authenticated) with the recipient's
    ``kid``, and what :func:`_cose_decrypt` needs (protected header, IV, ciphertext, recipient's
    header, ephemeral key).

    The message is read by position, as the layout's one deterministic encoding: the tag and array
    heads, the protected header, the map holding only the 12-byte IV, the ciphertext (a view, not
    copied), the one recipient with its protected header, the ephemeral X25519 key's map and an empty
    encrypted key, and nothing after. Any other bytes (another structure, a second spelling of a
    head, a key or a length, trailing bytes) are ``malformed``, as a decoding by cbor2 that must
    give back the same bytes was; only the two protected headers are decoded, and each is held to
    its own deterministic spelling."""
    try:
        raw = _unbase64_in(data, start, end) if standard else _unb64_in(data, start, end)
    except (ValueError, TypeError) as exc:
        raise EnvelopeError("malformed") from exc
    at = _after(raw, 0, _ENCRYPT_HEAD)
    head, at = _byte_string(raw, at)
    protected = raw[head:at]
    at = _after(raw, at, _IV_MAP)
    iv = raw[at : at + 12]
    body, at = _byte_string(raw, at + 12)
    ciphertext = memoryview(raw)[body:at]
    head, at = _byte_string(raw, _after(raw, at, _RECIPIENTS_HEAD))
    recipient_protected = raw[head:at]
    at = _after(raw, at, _EPHEMERAL_HEAD)
    ephemeral = raw[at : at + 32]
    if len(iv) != 12 or len(ephemeral) != 32 or raw[at + 32 :] != _EMPTY_BYTES:
        raise EnvelopeError("malformed")
    if int.from_bytes(ephemeral, "little") >= _X25519_PRIME:
        # another spelling of a key (RFC 7748 section 5: the top bit is masked and a u-coordinate
        # reduced); no X25519 writer sends one, and the key is not authenticated by the AEAD
        raise EnvelopeError("malformed")
    if len(protected) > _COSE_MAX_HEADER:
        raise EnvelopeError("malformed")
    iss, aud, exp, iat, cti = _read_encrypt_protected(protected)
    if not (_is_text(iss) and _is_text(aud) and _is_second(iat) and _is_second(exp) and iat <= exp):
        raise EnvelopeError("malformed")
    recipient_kid = _recipient_kid(recipient_protected)
    routing = {
        "v": VERSION,
        "iss": iss,
        "aud": aud,
        "jti": _text_of(cti),
        "iat": iat,
        "exp": exp,
        "kid": recipient_kid,
    }
    return routing, (protected, iv, ciphertext, recipient_protected, ephemeral)


def _cose_decrypt(sealed: tuple[bytes, bytes, memoryview, bytes, bytes], key: OKPKey) -> bytearray:
    """The plaintext of a COSE_Encrypt read by :func:`_read_cose`, by ``key``'s X25519, after
    ``_SIG_ROOM`` bytes left free for :func:`_check_sign1_in_place`; ``decrypt-failed``."""
    protected, iv, ciphertext, recipient_protected, epk = sealed
    private = key.raw_value  # as imported (see _cose_hop), held to an X25519 private key below
    try:
        if not (type(private) is _X25519_PRIVATE or isinstance(private, X25519PrivateKey)):
            raise ValueError("not an X25519 key")
        cek = _content_key(private.exchange(X25519PublicKey.from_public_bytes(epk)), recipient_protected)
        if len(ciphertext) < _TAG_BYTES:
            raise ValueError("shorter than its tag")
        plain = bytearray(_SIG_ROOM + len(ciphertext) - _TAG_BYTES)
        AESGCM(cek).decrypt_into(iv, ciphertext, _enc_structure(protected), memoryview(plain)[_SIG_ROOM:])
        return plain
    except (InvalidTag, ValueError, TypeError) as exc:
        raise EnvelopeError("decrypt-failed") from exc


def _read_sign1(plain: bytes | bytearray, start: int = 0) -> tuple[bytes, int, int, bytes, str]:
    """The COSE_Sign1 of a hop, ``plain[start:]``, held to the layout: its protected header, where its
    payload starts and ends, its signature and its kid.

    Read by position as :func:`_read_cose` reads the COSE_Encrypt: the tag and array heads, the
    protected header (decoded once per distinct spelling, :func:`_header_map`), the empty unprotected
    map, the payload, the signature and nothing after; anything else is ``malformed``."""
    head, at = _byte_string(plain, _after(plain, start, _SIGN1_HEAD))
    protected = bytes(plain[head:at])
    first, last = _byte_string(plain, _after(plain, at, _EMPTY_MAP))
    head, at = _byte_string(plain, last)
    if at != len(plain):
        raise EnvelopeError("malformed")
    signature = bytes(plain[head:at])
    return protected, first, last, signature, _sign1_kid(protected)


def _check_sign1_in_place(
    plain: bytearray, protected: bytes, first: int, last: int, signature: bytes, key: OKPKey, detail: str
) -> memoryview:
    """The COSE_Sign1's EdDSA signature (RFC 9053 section 2.2) by ``key``'s Ed25519 over its
    Sig_structure, for the COSE_Sign1 :func:`_read_sign1` read from ``plain`` (its payload
    ``plain[first:last]``): the Sig_structure is written in place over the COSE_Sign1's head and the
    room before it, so the payload is not copied for it (issue 18); the payload, verified, as a view
    (msgspec reads a view as fast as bytes; only ``json``, for what msgspec refuses, takes a copy)."""
    written = _sig_structure_head(protected, last - first)
    if len(written) > first:  # the layout read leaves exactly the room; a cause to refuse, not to trust
        raise EnvelopeError("malformed")
    plain[first - len(written) : first] = written
    view = memoryview(plain)
    _verify(key, signature, view[first - len(written) : last], detail)
    return view[first:last]


def _verify(key: OKPKey, signature: bytes, data: bytes | memoryview, detail: str) -> None:
    """An EdDSA signature by ``key``'s Ed25519 over ``data``; ``detail`` else."""
    verifier = key.public_key
    if not (type(verifier) is _ED25519_PUBLIC or isinstance(verifier, Ed25519PublicKey)):
        raise EnvelopeError(detail)
    try:
        verifier.verify(signature, data)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise EnvelopeError(detail) from exc
