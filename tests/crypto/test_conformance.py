"""Conformance: gsomia's envelopes are plain JOSE, readable and writable by jwcrypto, a second library.

gsomia produces and opens with joserfc; here jwcrypto alone opens what gsomia sealed
(the recipient's X25519 key as a JWK from the key ring file, the sender's Ed25519 key as
the JWK from its identity document), and gsomia opens what jwcrypto built following
the same header conventions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwe as jc_jwe
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

# The JOSE hop (gsomia-envelope/1) is what nodes sealed before COSE; open_envelope still reads it for
# the envelopes in flight, so these tests hold that reader to its checks with the JOSE writer kept for it.
from gsomia.crypto.envelope import (
    JOSE_FORMAT as ENVELOPE_FORMAT,
)
from gsomia.crypto.envelope import (
    EnvelopeError,
    open_envelope,
    sign_origin,
    verify_origin,
)
from gsomia.crypto.envelope import (
    _seal_jose as seal,
)
from gsomia.crypto.keys import KeyRing, PeerIdentity

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AT = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)
BODY: dict[str, Any] = {"item": "jpn-2024-0042", "classification": "極秘", "payload": "x" * 1024}
STANDARD = ("kty", "crv", "x", "d", "kid", "use", "alg")


class Pair:
    """A KOR and a JPN node, and what each publishes."""

    def __init__(self, directory: Path) -> None:
        self.kor = KeyRing.create(directory / "kor.json", "KOR", "kor-1", T0)
        self.jpn = KeyRing.create(directory / "jpn.json", "JPN", "jpn-1", T0)
        self.kor_doc = self.kor.identity("https://kor.example")
        self.jpn_doc = self.jpn.identity("https://jpn.example")
        self.peers = {
            "KOR": PeerIdentity.from_document(self.kor_doc),
            "JPN": PeerIdentity.from_document(self.jpn_doc),
        }

    def lookup(self, party: str) -> PeerIdentity | None:
        return self.peers.get(party)


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    return Pair(tmp_path)


def jwcrypto_key(jwk: dict[str, Any]) -> jc_jwk.JWK:
    """A jwcrypto key from a gsomia JWK, keeping the RFC 7517/8037 members only."""
    return jc_jwk.JWK(**{name: jwk[name] for name in STANDARD if name in jwk})


def private_jwk(ring: KeyRing, kid: str) -> dict[str, Any]:
    """The private JWK as the key ring file holds it."""
    keys: list[dict[str, Any]] = json.loads(ring.path.read_text())["keys"]
    return next(k for k in keys if k["kid"] == kid)


def public_jwk(doc: dict[str, Any], kid: str) -> dict[str, Any]:
    keys: list[dict[str, Any]] = doc["keys"]
    return next(k for k in keys if k["kid"] == kid)


def test_jwcrypto_reads_the_key_ids_as_rfc7638_thumbprints(pair: Pair) -> None:
    for jwk in pair.kor_doc["keys"]:
        assert jwcrypto_key(jwk).thumbprint() == jwk["kid"]
    for kid in (pair.jpn.encryption_kid(AT), pair.jpn.signing_key(AT)[0]):
        private = jwcrypto_key(private_jwk(pair.jpn, kid))
        assert private.has_private
        assert private.thumbprint() == kid


def test_jwcrypto_alone_opens_a_gsomia_envelope(pair: Pair) -> None:
    text = seal(pair.kor, pair.peers["JPN"], BODY, msg_id="msg-7", at=AT, ttl=TTL)
    envelope = json.loads(text)
    assert envelope["format"] == ENVELOPE_FORMAT

    # Decrypt with the recipient's X25519 private key, exported as a JWK by the key ring file.
    recipient_kid = pair.jpn.encryption_kid(AT)
    token = jc_jwe.JWE()
    token.deserialize(envelope["jwe"], key=jwcrypto_key(private_jwk(pair.jpn, recipient_kid)))
    outer = token.jose_header
    iat = int(AT.timestamp())
    routing = {"v": 1, "iss": "KOR", "aud": "JPN", "jti": "msg-7", "iat": iat, "exp": iat + 600}
    assert outer["alg"] == "ECDH-ES"
    assert outer["enc"] == "A256GCM"
    assert outer["kid"] == recipient_kid
    assert outer["cty"] == "gsomia-hop+jws"
    assert {name: outer[name] for name in routing} == routing

    # Verify the inner JWS with the sender's public key from its identity document.
    hop = jc_jws.JWS()
    hop.deserialize(token.payload.decode())
    sender_kid = hop.jose_header["kid"]
    assert sender_kid == pair.kor.signing_key(AT)[0]
    assert hop.jose_header["typ"] == "gsomia-hop+jws"
    hop.verify(jwcrypto_key(public_jwk(pair.kor_doc, sender_kid)), alg="EdDSA")

    claims = json.loads(hop.payload)
    assert claims == {**routing, "body": BODY}


def test_jwcrypto_refuses_a_gsomia_envelope_signed_by_another_key(pair: Pair, tmp_path: Path) -> None:
    """The check above is a real check: the inner signature does not verify under another key."""
    text = seal(pair.kor, pair.peers["JPN"], BODY, msg_id="msg-7", at=AT, ttl=TTL)
    token = jc_jwe.JWE()
    token.deserialize(
        json.loads(text)["jwe"], key=jwcrypto_key(private_jwk(pair.jpn, pair.jpn.encryption_kid(AT)))
    )
    hop = jc_jws.JWS()
    hop.deserialize(token.payload.decode())
    other = KeyRing.create(tmp_path / "other.json", "KOR", "kor-2", T0)
    other_doc = other.identity("https://kor-2.example")
    with pytest.raises(jc_jws.InvalidJWSSignature):
        hop.verify(jwcrypto_key(public_jwk(other_doc, other.signing_key(AT)[0])), alg="EdDSA")


def test_jwcrypto_verifies_an_origin_signature(pair: Pair) -> None:
    content = b'{"label":{"originator":"KOR"},"payload":"..."}'
    token = sign_origin(pair.kor, content, AT)
    signed = jc_jws.JWS()
    signed.deserialize(token)
    header = signed.jose_header
    assert header == {
        "alg": "EdDSA",
        "kid": pair.kor.signing_key(AT)[0],
        "typ": "gsomia-item+jws",
        "iss": "KOR",
    }
    signed.verify(jwcrypto_key(public_jwk(pair.kor_doc, header["kid"])), alg="EdDSA")
    assert signed.payload == content


def jwcrypto_sign(ring: KeyRing, header: dict[str, Any], payload: bytes) -> str:
    kid = header["kid"]
    signed = jc_jws.JWS(payload)
    signed.add_signature(jwcrypto_key(private_jwk(ring, kid)), alg="EdDSA", protected=json.dumps(header))
    text: str = signed.serialize(compact=True)
    return text


def jwcrypto_envelope(pair: Pair, claims: dict[str, Any], **header_changes: Any) -> str:
    """An envelope from KOR to JPN built by jwcrypto alone, following gsomia's conventions."""
    kid = pair.kor.signing_key(AT)[0]
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    hop = jwcrypto_sign(pair.kor, {"alg": "EdDSA", "kid": kid, "typ": "gsomia-hop+jws"}, payload)
    recipient_kid = pair.jpn.encryption_kid(AT)
    routing = {name: claims[name] for name in ("v", "iss", "aud", "jti", "iat", "exp")} | header_changes
    protected = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": recipient_kid, "cty": "gsomia-hop+jws", **routing}
    token = jc_jwe.JWE(hop.encode(), protected=json.dumps(protected))
    token.add_recipient(jwcrypto_key(public_jwk(pair.jpn_doc, recipient_kid)))
    return json.dumps({"format": ENVELOPE_FORMAT, "jwe": token.serialize(compact=True)})


def test_gsomia_opens_an_envelope_built_by_jwcrypto(pair: Pair) -> None:
    iat = int(AT.timestamp())
    claims = {"v": 1, "jti": "msg-jc", "iss": "KOR", "aud": "JPN", "iat": iat, "exp": iat + 600, "body": BODY}
    opened = open_envelope(pair.jpn, jwcrypto_envelope(pair, claims), pair.lookup, AT)
    assert (opened.sender, opened.recipient, opened.msg_id) == ("KOR", "JPN", "msg-jc")
    assert opened.body == BODY
    assert opened.sender_kid == pair.kor.signing_key(AT)[0]


def test_gsomia_refuses_a_jwcrypto_envelope_whose_header_disagrees_with_its_claims(pair: Pair) -> None:
    """A well-formed JOSE object from another library is still held to the signed claims."""
    iat = int(AT.timestamp())
    claims = {"v": 1, "jti": "msg-jc", "iss": "KOR", "aud": "JPN", "iat": iat, "exp": iat + 600, "body": BODY}
    text = jwcrypto_envelope(pair, claims, exp=iat + 86_400)
    with pytest.raises(EnvelopeError) as caught:
        open_envelope(pair.jpn, text, pair.lookup, AT)
    assert caught.value.detail == "malformed"


def test_gsomia_verifies_an_origin_signature_made_by_jwcrypto(pair: Pair) -> None:
    content = b'{"label":{"originator":"KOR"},"payload":"..."}'
    kid = pair.kor.signing_key(AT)[0]
    token = jwcrypto_sign(
        pair.kor, {"alg": "EdDSA", "kid": kid, "typ": "gsomia-item+jws", "iss": "KOR"}, content
    )
    assert verify_origin(token, pair.lookup, AT) == ("KOR", content)
