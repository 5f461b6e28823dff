"""Signed identity documents: the keys and TLS pins a document names are bound to the node holding
its newest signing key, and a registered partner's next document must come from a key registered
for it. The adversary's documents: a pin or a key swapped, an older document replayed after a
rotation, a document signed by another party, a revoked key vouching, an unsigned one."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import InvalidInputError

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
ENDPOINT = "https://kor-1.gsomia.example"
PIN = "A" * 42 + "E"
OTHER_PIN = "B" * 42 + "E"


@pytest.fixture
def kor(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "kor.json", "KOR", "kor-1", T0)


@pytest.fixture
def jpn(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "jpn.json", "JPN", "jpn-1", T0)


def _payload(signed: dict[str, Any]) -> dict[str, Any]:
    text = signed["payload"]
    return dict(json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))))


def _with_payload(signed: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """``signed``'s signatures over another payload (what a forger who cannot sign would send)."""
    raw = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return {**signed, "payload": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed_by(ring: KeyRing, document: dict[str, Any], at: datetime) -> dict[str, Any]:
    """``document`` signed by ``ring``'s signing key: a well-formed JWS (RFC 7515 5.1) naming that key."""
    kid, key = ring.signing_key(at)
    protected = _b64(json.dumps({"alg": "EdDSA", "kid": kid}).encode())
    payload = _b64(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    signature = _b64(key.sign(f"{protected}.{payload}".encode()))
    return {"payload": payload, "signatures": [{"protected": protected, "signature": signature}]}


def refusal(signed: Any, at: datetime, known: PeerIdentity | None = None) -> str:
    with pytest.raises(InvalidInputError) as caught:
        PeerIdentity.from_signed(signed, at, lambda _party: known)
    message = str(caught.value)
    assert message.startswith("signed identity document: ")
    return message


def test_a_signed_document_reads_back_with_its_keys_pins_and_instant(kor: KeyRing) -> None:
    at = T0 + timedelta(minutes=1)
    signed = kor.signed_identity(ENDPOINT, at, (PIN,))
    assert set(signed) == {"payload", "signatures"}  # RFC 7515 general JSON serialization
    identity = PeerIdentity.from_signed(signed, at)
    assert (identity.party, identity.endpoint, identity.tls, identity.issued) == ("KOR", ENDPOINT, (PIN,), at)
    assert {e.kid for e in identity.keys} == {e.kid for e in kor.entries}
    assert PeerIdentity.from_document(identity.to_document()) == identity  # as the store keeps it


def test_an_unsigned_document_is_refused(kor: KeyRing) -> None:
    assert "not signed" in refusal(kor.identity(ENDPOINT, (PIN,)), T0)


def test_a_swapped_tls_pin_breaks_the_signature(kor: KeyRing) -> None:
    signed = kor.signed_identity(ENDPOINT, T0, (PIN,))
    forged = _with_payload(signed, {**_payload(signed), "tls": [OTHER_PIN]})
    assert "do not verify" in refusal(forged, T0)


def test_a_swapped_key_breaks_the_signature_or_is_not_vouched_for(kor: KeyRing, jpn: KeyRing) -> None:
    signed = kor.signed_identity(ENDPOINT, T0, (PIN,))
    document = _payload(signed)
    theirs = {k["use"]: k for k in jpn.identity("x")["keys"]}
    swapped = {**document, "keys": [theirs["enc"] if k["use"] == "enc" else k for k in document["keys"]]}
    assert "do not verify" in refusal(_with_payload(signed, swapped), T0)  # an encryption key swapped
    # the signing key swapped for the forger's, and signed by it: it proves only the forger's key,
    # and the party's registered keys vouch for none of it
    forged_keys = [theirs["sig"] if k["use"] == "sig" else k for k in document["keys"]]
    forged = _signed_by(jpn, {**document, "keys": forged_keys}, T0)
    registered = PeerIdentity.from_signed(signed, T0)
    assert "signed by none of the keys registered for KOR" in refusal(forged, T0, registered)


def test_a_document_signed_by_another_party_is_refused(kor: KeyRing, jpn: KeyRing) -> None:
    document = _payload(kor.signed_identity(ENDPOINT, T0, (PIN,)))
    assert "which the document does not name" in refusal(_signed_by(jpn, document, T0), T0)
    # a document naming the forger's own keys for KOR is self-consistent, but not KOR's successor
    registered = PeerIdentity.from_signed(kor.signed_identity(ENDPOINT, T0, (PIN,)), T0)
    own = {
        **jpn.identity(ENDPOINT, (OTHER_PIN,)),
        "party": "KOR",
        "issued": (T0 + timedelta(hours=1)).isoformat(),
    }
    message = refusal(_signed_by(jpn, own, T0 + timedelta(hours=1)), T0 + timedelta(hours=1), registered)
    assert "signed by none of the keys registered for KOR" in message


def test_a_rotation_is_accepted_and_an_older_document_replayed_after_it_is_refused(kor: KeyRing) -> None:
    first = kor.signed_identity(ENDPOINT, T0, (PIN,))
    registered = PeerIdentity.from_signed(first, T0)
    rotated_at = T0 + timedelta(days=30)
    kor.rotate(rotated_at, timedelta(days=2))
    second = kor.signed_identity(ENDPOINT, rotated_at + timedelta(minutes=1), (OTHER_PIN,))
    assert len(second["signatures"]) == 2  # the new key and the old one, still in its overlap
    now = rotated_at + timedelta(minutes=2)
    successor = PeerIdentity.from_signed(second, now, lambda _party: registered)
    assert successor.tls == (OTHER_PIN,)
    # the old document, still validly signed by the old key, is older than the registered one
    assert "an older document replayed" in refusal(first, now, successor)
    # after the overlap only the new key signs: the registered successor knows it
    later = rotated_at + timedelta(days=10)
    third = kor.signed_identity(ENDPOINT, later, (OTHER_PIN,))
    assert len(third["signatures"]) == 1
    assert PeerIdentity.from_signed(third, later, lambda _party: successor).issued == later
    # but to a node that still holds only the first document, the new key alone vouches for nothing
    assert "signed by none of the keys registered for KOR" in refusal(third, later, registered)


def test_a_document_its_newest_key_did_not_sign_is_refused(kor: KeyRing) -> None:
    kor.rotate(T0 + timedelta(days=1), timedelta(days=2))
    signed = kor.signed_identity(ENDPOINT, T0 + timedelta(days=1, minutes=1))
    old_only = {**signed, "signatures": signed["signatures"][1:]}  # the newest key's signature dropped
    assert "newest signing key" in refusal(old_only, T0 + timedelta(days=1, minutes=2))


def test_a_key_revoked_here_vouches_for_nothing(kor: KeyRing) -> None:
    registered = PeerIdentity.from_signed(kor.signed_identity(ENDPOINT, T0), T0)
    kid, _ = kor.signing_key(T0)
    revoked = registered.with_revoked(kid, T0 + timedelta(hours=1))
    later = T0 + timedelta(hours=2)
    message = refusal(kor.signed_identity(ENDPOINT, later), later, revoked)
    assert "signed by none of the keys registered for KOR" in message


def test_a_document_from_the_future_is_refused(kor: KeyRing) -> None:
    assert "later than now" in refusal(kor.signed_identity(ENDPOINT, T0 + timedelta(hours=1)), T0)


def test_a_partner_registered_unsigned_moves_to_signed_documents(kor: KeyRing) -> None:
    """A registration from before documents were signed (no ``issued``): the first signed document
    must come from a key it names; after that, replays are refused as for any other."""
    legacy = PeerIdentity.from_document(kor.identity(ENDPOINT, (PIN,)))
    assert legacy.issued is None
    signed = kor.signed_identity(ENDPOINT, T0 + timedelta(hours=1), (PIN,))
    assert PeerIdentity.from_signed(signed, T0 + timedelta(hours=1), lambda _party: legacy).issued is not None


@pytest.mark.parametrize(
    ("mangle", "says"),
    [
        (lambda s: [s], "must be a JWS"),
        (lambda s: {**s, "extra": 1}, "must be a JWS"),
        (lambda s: {**s, "payload": "!!"}, "payload: not base64url"),
        (lambda s: {**s, "payload": "bm90IGpzb24"}, "payload: not a JSON document"),
        (lambda s: {**s, "signatures": []}, "signatures: must be a list of 1 to"),
        (lambda s: {**s, "signatures": [{"signature": "x"}]}, "must hold a protected header"),
        (lambda s: {**s, "signatures": s["signatures"] * 2}, "a key signed twice"),
        (lambda s: {**s, "signatures": [{**s["signatures"][0], "signature": "AAAA"}]}, "do not verify"),
    ],
)
def test_malformed_signed_documents_are_refused_with_the_reason(kor: KeyRing, mangle: Any, says: str) -> None:
    assert says in refusal(mangle(kor.signed_identity(ENDPOINT, T0)), T0)


def test_only_eddsa_is_accepted(kor: KeyRing) -> None:
    signed = kor.signed_identity(ENDPOINT, T0)
    kid = json.loads(base64.urlsafe_b64decode(signed["signatures"][0]["protected"] + "=="))["kid"]
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid}).encode()).rstrip(b"=").decode()
    unsigned = {**signed, "signatures": [{"protected": header, "signature": ""}]}
    assert "do not verify" in refusal(unsigned, T0)
