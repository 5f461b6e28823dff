"""The COSE hop (``gsomia-envelope/2``, RFC 9052/9053): interoperable with pycose both ways, and refused
whole when forged, swapped, truncated, misaddressed, re-spelt or replayed past its lifetime.

pycose 1.1 is the independent implementation: it decodes what :func:`seal` writes, writes the same
COSE_KDF_Context, decrypts it with its own Enc_structure and verifies the COSE_Sign1 inside with its
own Sig_structure; and gsomia opens a hop pycose wrote. pycose's key agreement takes EC2 keys only,
so the X25519 agreement (RFC 9053 section 6.3, HKDF over pycose's own KDF context) is done here by
``cryptography`` in both directions; everything else, framing, headers and AEAD, is pycose's.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cbor2 import CBORTag
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pycose import algorithms as cose_alg
from pycose import headers as cose_hdr
from pycose.keys import OKPKey, SymmetricKey
from pycose.messages import CoseMessage, EncMessage, Sign1Message
from pycose.messages.enccommon import EncCommon
from pycose.messages.recipient import DirectKeyAgreement

from gsomia.crypto import envelope as env
from gsomia.crypto.envelope import EnvelopeError, open_envelope, seal
from gsomia.crypto.keys import KeyRing, PeerIdentity

T0 = datetime(2024, 1, 1, tzinfo=UTC)
AT = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(minutes=10)
BODY: dict[str, Any] = {
    "kind": "batch",
    "messages": [
        {"msg_id": f"{n:032x}", "body": {"item": f"kor-{n}", "classification": "군사II급비밀"}}
        for n in range(3)
    ],
}


class Net:
    def __init__(self, directory: Path) -> None:
        self.rings = {
            party: KeyRing.create(directory / f"{party}.json", party, f"{party.lower()}-1", T0)
            for party in ("KOR", "JPN", "USA")
        }
        self.peers = {
            party: PeerIdentity.from_document(ring.identity(f"https://{party.lower()}.example"))
            for party, ring in self.rings.items()
        }

    def sealed(self, sender: str = "KOR", recipient: str = "JPN", **changes: Any) -> str:
        arguments: dict[str, Any] = {"msg_id": "msg-0001", "at": AT, "ttl": TTL, **changes}
        return seal(self.rings[sender], self.peers[recipient], BODY, **arguments)

    def open(self, text: str | bytes, party: str = "JPN", at: datetime = AT) -> env.Opened:
        return open_envelope(self.rings[party], text, self.peers.get, at)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Net:
    return Net(tmp_path_factory.mktemp("cose"))


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(EnvelopeError) as caught:
        call()
    assert str(caught.value) == "envelope refused"
    return caught.value.detail


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def message_of(text: str) -> bytes:
    """The COSE message of an envelope: ``/3`` (what seal writes) in standard base64, ``/2`` base64url."""
    wrapper = json.loads(text)
    assert list(wrapper) == ["format", "cose"]
    if wrapper["format"] == env.COSE_URL_FORMAT:
        return _unb64(wrapper["cose"])
    assert wrapper["format"] == env.ENVELOPE_FORMAT
    return base64.b64decode(wrapper["cose"], validate=True)


def wrapped(message: bytes, format: str = env.ENVELOPE_FORMAT) -> str:
    """``message`` in an envelope of ``format``: ``/3`` in standard base64, padded; ``/2`` base64url."""
    if format == env.COSE_URL_FORMAT:
        cose = base64.urlsafe_b64encode(message).rstrip(b"=").decode()
    else:
        cose = base64.b64encode(message).decode()
    return json.dumps({"format": format, "cose": cose})


def _hkdf(shared: bytes, context: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, None, context).derive(shared)


# --------------------------------------------------------------------------- pycose reads what gsomia writes


def pycose_opens(net: Net, text: str, recipient: str = "JPN") -> tuple[Any, Any, bytes]:
    """pycose's reading of a gsomia hop: the COSE_Encrypt's headers, the COSE_Sign1's, and the claims."""
    message = CoseMessage.decode(message_of(text))
    assert isinstance(message, EncMessage)
    (entry,) = message.recipients
    ring = net.rings[recipient]
    private = ring.decryption_key(entry.phdr[cose_hdr.KID].decode(), AT)
    epk = entry.uhdr[cose_hdr.EphemeralKey]
    assert isinstance(epk, OKPKey)
    assert epk.crv.fullname == "X25519"
    context = entry.get_kdf_context(cose_alg.A256GCM).encode()  # pycose's COSE_KDF_Context
    message.key = SymmetricKey(k=_hkdf(private.exchange(X25519PublicKey.from_public_bytes(epk.x)), context))
    plaintext = EncCommon.decrypt(message)  # pycose's A256GCM over its Enc_structure
    signed = CoseMessage.decode(plaintext)
    assert isinstance(signed, Sign1Message)
    signed.plaintext = plaintext
    sender_kid = signed.phdr[cose_hdr.KID].decode()
    public = net.peers["KOR"].verification_key(sender_kid, AT).public_bytes(Encoding.Raw, PublicFormat.Raw)
    signed.key = OKPKey(crv="Ed25519", x=public)
    assert signed.verify_signature(), "pycose: the COSE_Sign1 does not verify"
    return message, signed, signed.payload


def test_pycose_decrypts_and_verifies_what_seal_writes(net: Net) -> None:
    text = net.sealed()
    outer, inner, claims = pycose_opens(net, text)
    assert outer.phdr[cose_hdr.Algorithm] is cose_alg.A256GCM
    assert outer.recipients[0].phdr[cose_hdr.Algorithm] is cose_alg.EcdhEsHKDF256
    assert inner.phdr[cose_hdr.Algorithm] is cose_alg.EdDSA
    cwt = cbor2.loads(outer.phdr_encoded)[15]
    assert cwt == {1: "KOR", 3: "JPN", 4: int(AT.timestamp()) + 600, 6: int(AT.timestamp()), 7: b"msg-0001"}
    decoded = json.loads(claims)
    assert decoded["body"] == BODY
    assert decoded["aud"] == "JPN"
    assert decoded["jti"] == "msg-0001"
    assert net.open(text).body == BODY


def test_a_hop_sealed_to_jpn_is_not_opened_by_pycose_with_usas_key(net: Net) -> None:
    message = CoseMessage.decode(message_of(net.sealed()))
    usa = net.rings["USA"]
    private = usa.decryption_key(usa.encryption_kid(AT), AT)
    epk = message.recipients[0].uhdr[cose_hdr.EphemeralKey]
    context = message.recipients[0].get_kdf_context(cose_alg.A256GCM).encode()
    message.key = SymmetricKey(k=_hkdf(private.exchange(X25519PublicKey.from_public_bytes(epk.x)), context))
    with pytest.raises(InvalidTag):  # pycose's AES-GCM under the key USA agrees
        EncCommon.decrypt(message)


# --------------------------------------------------------------------------- gsomia reads what pycose writes


def _x25519_agreement(recipient: X25519PublicKey, kid: bytes) -> DirectKeyAgreement:
    """pycose's direct key agreement recipient with the X25519 exchange its 1.1 lacks: the content key
    is HKDF-SHA-256 over pycose's own COSE_KDF_Context; the header, the framing and the AEAD stay pycose's."""
    ephemeral = X25519PrivateKey.generate()
    epk = OKPKey(crv="X25519", x=ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    entry = DirectKeyAgreement(
        phdr={cose_hdr.Algorithm: cose_alg.EcdhEsHKDF256, cose_hdr.KID: kid},
        uhdr={cose_hdr.EphemeralKey: epk},
    )
    entry.key = epk  # set: pycose makes no (EC2) ephemeral key of its own
    entry.local_attrs = {
        cose_hdr.StaticKey: OKPKey(crv="X25519", x=recipient.public_bytes(Encoding.Raw, PublicFormat.Raw))
    }

    def compute_cek(target_alg: Any, _ops: str) -> SymmetricKey:
        context = entry.get_kdf_context(target_alg).encode()
        return SymmetricKey(k=_hkdf(ephemeral.exchange(recipient), context))

    entry.compute_cek = compute_cek  # type: ignore[method-assign]
    return entry


def pycose_hop(
    net: Net,
    claims: bytes | None = None,
    *,
    cwt: dict[int, Any] | None = None,
    sign_phdr: dict[Any, Any] | None = None,
    signer: str = "KOR",
) -> bytes:
    """A hop KOR -> JPN written by pycose: its COSE_Sign1 (EdDSA) inside its COSE_Encrypt (A256GCM)."""
    iat = int(AT.timestamp())
    routing = {"v": 1, "iss": "KOR", "aud": "JPN", "jti": "msg-0002", "iat": iat, "exp": iat + 600}
    if claims is None:
        claims = json.dumps({**routing, "body": BODY}, sort_keys=True, separators=(",", ":")).encode()
    kid, private = net.rings[signer].signing_key(AT)
    d = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    inner = Sign1Message(
        phdr=sign_phdr
        or {cose_hdr.Algorithm: cose_alg.EdDSA, cose_hdr.KID: kid.encode(), 16: env.HOP_COSE_TYPE},
        payload=claims,
    )
    inner.key = OKPKey(crv="Ed25519", d=d)
    plaintext = inner.encode()
    cwt = cwt or {1: "KOR", 3: "JPN", 4: iat + 600, 6: iat, 7: b"msg-0002"}
    outer = EncMessage(
        phdr={cose_hdr.Algorithm: cose_alg.A256GCM, cose_hdr.ContentType: 18, 15: cwt},
        uhdr={cose_hdr.IV: os.urandom(12)},
        payload=plaintext,
    )
    jpn = net.rings["JPN"]
    recipient_kid = jpn.encryption_kid(AT)
    outer.recipients = [
        _x25519_agreement(jpn.decryption_key(recipient_kid, AT).public_key(), recipient_kid.encode())
    ]
    written: bytes = outer.encode()
    return written


def test_gsomia_opens_a_hop_pycose_wrote(net: Net) -> None:
    opened = net.open(wrapped(pycose_hop(net)))
    assert (opened.sender, opened.recipient, opened.msg_id, opened.body) == ("KOR", "JPN", "msg-0002", BODY)


def test_what_pycose_writes_is_what_seal_writes_in_its_structure(net: Net) -> None:
    """The same layout from both writers: every map's keys, every header's value but the keys and nonces."""

    def shape(message: bytes) -> Any:
        tag = cbor2.loads(message)
        protected, unprotected, _, (recipient,) = tag.value
        return (
            tag.tag,
            {k: v for k, v in cbor2.loads(protected).items() if k != 15},
            sorted(cbor2.loads(protected)[15]),
            sorted(unprotected),
            cbor2.loads(recipient[0])[1],
            {k: sorted(v) for k, v in recipient[1].items()},
            recipient[2],
        )

    assert shape(pycose_hop(net)) == shape(message_of(net.sealed()))


# --------------------------------------------------------------------------- the adversary


def _reencrypted(net: Net, plaintext: bytes, header: bytes | None = None, recipient: str = "JPN") -> bytes:
    """A COSE_Encrypt to ``recipient`` around ``plaintext``, made as seal makes it (anyone can: the
    agreement is anonymous), so only what the inner signature binds can refuse it."""
    iat = int(AT.timestamp())
    protected = header or cbor2.dumps(
        {1: 3, 3: 18, 15: {1: "KOR", 3: recipient, 4: iat + 600, 6: iat, 7: b"msg-0001"}}, canonical=True
    )
    kid = net.rings[recipient].encryption_kid(AT)
    recipient_protected = cbor2.dumps({1: -25, 4: kid.encode()}, canonical=True)
    ephemeral = X25519PrivateKey.generate()
    public = net.rings[recipient].decryption_key(kid, AT).public_key()
    context = cbor2.dumps([3, [None, None, None], [None, None, None], [256, recipient_protected]])
    cek = _hkdf(ephemeral.exchange(public), context)
    iv = os.urandom(12)
    ciphertext = AESGCM(cek).encrypt(iv, plaintext, cbor2.dumps(["Encrypt", protected, b""]))
    epk = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    entry = [recipient_protected, {-1: {1: 1, -1: 4, -2: epk}}, b""]
    return cbor2.dumps(CBORTag(96, [protected, {5: iv}, ciphertext, [entry]]), canonical=True)


def _inner(net: Net, text: str, recipient: str = "JPN") -> bytes:
    """The COSE_Sign1 inside a hop, decrypted with the recipient's key."""
    plaintext: bytes = pycose_opens(net, text, recipient)[1].plaintext
    return plaintext


def test_a_forged_signature_is_refused(net: Net) -> None:
    sign1 = cbor2.loads(_inner(net, net.sealed()))
    sign1.value[3] = bytes(64)
    assert (
        refusal(lambda: net.open(wrapped(_reencrypted(net, cbor2.dumps(sign1, canonical=True)))))
        == "bad-signature"
    )
    forged = pycose_hop(net, signer="USA")  # signed by USA's key, naming KOR's kid
    assert refusal(lambda: net.open(wrapped(forged))) in {"unknown-key", "bad-signature"}


def test_changed_bytes_anywhere_are_refused(net: Net) -> None:
    message = message_of(net.sealed())
    for position in range(0, len(message), max(1, len(message) // 97)):
        changed = bytearray(message)
        changed[position] ^= 0x01
        assert refusal(lambda c=bytes(changed): net.open(wrapped(c))) in {  # type: ignore[misc]
            "malformed",
            "decrypt-failed",
            "unknown-key",
            "wrong-recipient",
            "bad-signature",
            "expired",
            "not-yet-valid",
        }


def test_swapped_algorithms_and_kids_are_refused(net: Net) -> None:
    iat = int(AT.timestamp())
    cwt = {1: "KOR", 3: "JPN", 4: iat + 600, 6: iat, 7: b"msg-0002"}
    kid = net.rings["KOR"].signing_key(AT)[0].encode()
    for phdr in (
        {cose_hdr.Algorithm: cose_alg.Es256, cose_hdr.KID: kid, 16: env.HOP_COSE_TYPE},
        {cose_hdr.Algorithm: cose_alg.EdDSA, cose_hdr.KID: kid, 16: "application/gsomia-item+json"},
        {cose_hdr.Algorithm: cose_alg.EdDSA, cose_hdr.KID: kid},
        {
            cose_hdr.Algorithm: cose_alg.EdDSA,
            cose_hdr.KID: kid,
            16: env.HOP_COSE_TYPE,
            cose_hdr.Critical: [99],
        },
    ):
        assert refusal(lambda p=phdr: net.open(wrapped(pycose_hop(net, sign_phdr=p)))) == "malformed"  # type: ignore[misc]
    swapped = {cose_hdr.Algorithm: cose_alg.EdDSA, cose_hdr.KID: b"not-a-kid", 16: env.HOP_COSE_TYPE}
    assert refusal(lambda: net.open(wrapped(pycose_hop(net, sign_phdr=swapped)))) == "unknown-key"
    # the outer algorithm, content type and an unknown critical header, and a kid that is not JPN's
    sealed = {**cwt, 7: b"msg-0001"}  # the routing of net.sealed(), so only the header's change refuses
    for header in (
        {1: 1, 3: 18, 15: sealed},  # A128GCM
        {1: 3, 3: 0, 15: sealed},
        {1: 3, 2: [99], 3: 18, 15: sealed},  # an unknown critical header
        {1: 3, 3: 18, 15: {**sealed, 8: {}}},
        {1: 3, 3: 18, 4: b"kid", 15: sealed},
    ):
        plain = _inner(net, net.sealed())
        forged = _reencrypted(net, plain, cbor2.dumps(header, canonical=True))
        assert refusal(lambda f=forged: net.open(wrapped(f))) == "malformed"  # type: ignore[misc]
    control = _reencrypted(
        net, _inner(net, net.sealed()), cbor2.dumps({1: 3, 3: 18, 15: sealed}, canonical=True)
    )
    assert net.open(wrapped(control)).msg_id == "msg-0001"  # the forgeries above differ only in the header
    tag = cbor2.loads(message_of(net.sealed()))
    tag.value[3][0][0] = cbor2.dumps({1: -25, 4: b"no-such-kid"})
    assert refusal(lambda: net.open(wrapped(cbor2.dumps(tag, canonical=True)))) == "unknown-key"
    tag.value[3][0][0] = cbor2.dumps({1: -27, 4: net.rings["JPN"].encryption_kid(AT).encode()})  # ECDH-SS
    assert refusal(lambda: net.open(wrapped(cbor2.dumps(tag, canonical=True)))) == "malformed"


def test_truncated_and_stretched_messages_are_refused(net: Net) -> None:
    message = message_of(net.sealed())
    for cut in (0, 1, 2, len(message) // 3, len(message) - 1):
        assert refusal(lambda c=cut: net.open(wrapped(message[:c]))) == "malformed"  # type: ignore[misc]
    assert refusal(lambda: net.open(wrapped(message + b"\x00"))) == "malformed"  # trailing bytes
    assert (
        refusal(lambda: net.open(wrapped(cbor2.dumps(cbor2.loads(message).value)))) == "malformed"
    )  # untagged


def test_the_wrong_recipient_is_refused(net: Net) -> None:
    for_usa = net.sealed(recipient="USA")
    assert refusal(lambda: net.open(for_usa)) == "wrong-recipient"
    # a hop KOR signed for USA, re-encrypted to JPN by USA with a header naming JPN: the claims' aud refuses
    assert (
        refusal(lambda: net.open(wrapped(_reencrypted(net, _inner(net, for_usa, "USA")))))
        == "wrong-recipient"
    )


def test_duplicate_map_keys_and_second_spellings_are_refused(net: Net) -> None:
    message = message_of(net.sealed())
    tag = cbor2.loads(message)
    protected = tag.value[0]
    assert protected[0] == 0xA3  # a map of three: alg, content type, CWT claims
    duplicated = b"\xa4\x01\x01" + protected[1:]  # alg twice: A128GCM first, then A256GCM
    forged = cbor2.dumps(CBORTag(96, [duplicated, *tag.value[1:]]))
    assert refusal(lambda: net.open(wrapped(forged))) == "malformed"
    # the unprotected map spelt with a duplicate IV key, written by hand (cbor2 cannot write one)
    iv = tag.value[1][5]
    spelt = bytearray(message)
    at = spelt.find(b"\xa1\x05\x4c" + iv)
    assert at > 0
    spelt[at : at + 15] = b"\xa2\x05\x4c" + iv
    spelt[at + 15 : at + 15] = b"\x05\x4c" + iv
    assert refusal(lambda: net.open(wrapped(bytes(spelt)))) == "malformed"
    # a non-minimal length (a byte string's length in two bytes where one does)
    longer = cbor2.dumps(CBORTag(96, tag.value))
    assert longer == message
    head = message.find(b"\x4c" + iv)
    stretched = message[:head] + b"\x58\x0c" + message[head + 1 :]
    assert refusal(lambda: net.open(wrapped(stretched))) == "malformed"


def test_a_replayed_hop_is_refused_after_its_lifetime(net: Net) -> None:
    text = net.sealed()
    assert net.open(text).msg_id == "msg-0001"  # the inbox's replay memory refuses the second delivery
    late = AT + TTL + timedelta(minutes=5, seconds=1)
    assert refusal(lambda: net.open(text, at=late)) == "expired"
    early = AT - timedelta(minutes=5, seconds=1)
    assert refusal(lambda: net.open(text, at=early)) == "not-yet-valid"


def test_the_routing_is_the_signed_claims_and_a_changed_cwt_is_refused(net: Net) -> None:
    plain = _inner(net, net.sealed())
    iat = int(AT.timestamp())
    for cwt in (
        {1: "KOR", 3: "JPN", 4: iat + 6000, 6: iat, 7: b"msg-0001"},  # a longer life
        {1: "KOR", 3: "JPN", 4: iat + 600, 6: iat, 7: b"msg-0009"},  # another message id
        {1: "USA", 3: "JPN", 4: iat + 600, 6: iat, 7: b"msg-0001"},  # another sender
    ):
        header = cbor2.dumps({1: 3, 3: 18, 15: cwt}, canonical=True)
        assert refusal(lambda h=header: net.open(wrapped(_reencrypted(net, plain, h)))) in {  # type: ignore[misc]
            "malformed",
            "bad-signature",
            "unknown-key",  # USA: KOR's kid is not one of its keys
        }


def test_an_unknown_format_fails_closed_and_the_routing_reads_both(net: Net) -> None:
    text = net.sealed()
    inside = json.loads(text)["cose"]
    for wrapper in (
        {"format": "gsomia-envelope/4", "cose": inside},
        {"format": env.JOSE_FORMAT, "cose": inside},
        {"format": env.ENVELOPE_FORMAT, "jwe": inside},
        {"format": env.ENVELOPE_FORMAT, "cose": inside, "extra": 1},
    ):
        assert refusal(lambda w=wrapper: net.open(json.dumps(w))) in {"unsupported-version", "malformed"}  # type: ignore[misc]
    assert (
        refusal(lambda: net.open(json.dumps({"format": "gsomia-envelope/4", "cose": inside})))
        == "unsupported-version"
    )
    jose = env._seal_jose(net.rings["KOR"], net.peers["JPN"], BODY, msg_id="msg-0001", at=AT, ttl=TTL)
    assert (
        env.envelope_routing(text)
        == env.envelope_routing(jose)
        == {
            "iss": "KOR",
            "aud": "JPN",
            "jti": "msg-0001",
            "iat": int(AT.timestamp()),
            "exp": int(AT.timestamp()) + 600,
        }
    )
    assert net.open(jose).body == net.open(text).body == BODY  # an envelope sealed before the switch


@pytest.mark.parametrize(
    "item",
    [
        "d823622828",  # a regular expression (tag 35) that does not compile
        "c11b7fffffffffffffff",  # an epoch datetime (tag 1) past any calendar
        "d8246161",  # a MIME message (tag 36)
        "d81c81d81d00",  # a shared reference to itself (tags 28/29): a cycle
        "d81d05",  # a shared reference to nothing
        "d9d9f7a0",  # the self-described CBOR tag around an empty map
        "5f4161ff",  # an indefinite-length byte string
        "1817",  # an integer in a longer head than it needs
    ],
)
def test_hostile_cbor_items_are_refused_as_malformed(net: Net, item: str) -> None:
    hostile = bytes.fromhex(item)
    assert refusal(lambda: net.open(wrapped(hostile))) == "malformed"
    tag = cbor2.loads(message_of(net.sealed()))
    good = cbor2.dumps(CBORTag(96, [tag.value[0], {}, *tag.value[2:]]), canonical=True)
    at = good.find(b"\xa0")  # the unprotected map, emptied, then one hostile item put in as its IV
    assert at > 0
    spliced = good[:at] + b"\xa1\x05" + hostile + good[at + 1 :]
    assert refusal(lambda: net.open(wrapped(spliced))) == "malformed"


# --------------------------------------------------------------------------- what a hop keeps (issue 18)
#
# The COSE_Sign1's and the recipient's protected headers are written once per kid and read once per
# distinct byte string (``_HEADERS``): the attacks below run with those tables filled by hops that
# opened, so nothing a table holds lets a changed header, body, recipient or lifetime through.


def _warm(net: Net) -> None:
    assert net.open(net.sealed()).body == BODY
    assert env._HEADERS, "an opened hop's constant headers are kept"


def test_a_kept_header_read_under_another_spelling_is_refused(net: Net) -> None:
    _warm(net)
    tag = cbor2.loads(message_of(net.sealed()))
    recipient_protected = tag.value[3][0][0]
    assert recipient_protected in env._HEADERS
    # the kept recipient header with its alg spelt twice, and with its kid in a longer head
    kid = net.rings["JPN"].encryption_kid(AT).encode()
    for spelling in (
        b"\xa3\x01\x38\x18" + recipient_protected[1:],  # alg twice (-25 then -25 again in the rest)
        b"\xa2\x01\x38\x18\x04\x59" + len(kid).to_bytes(2, "big") + kid,  # kid's length in 2 bytes
    ):
        assert spelling != recipient_protected
        tag.value[3][0][0] = spelling
        assert refusal(lambda: net.open(wrapped(cbor2.dumps(tag, canonical=True)))) == "malformed"
    # the kept COSE_Sign1 header, its content changed: the signature's header is read again and refused
    plain = cbor2.loads(_inner(net, net.sealed()))
    assert plain.value[0] in env._HEADERS
    plain.value[0] = cbor2.dumps({1: -8, 4: kid, 16: "application/gsomia-item+json"}, canonical=True)
    assert (
        refusal(lambda: net.open(wrapped(_reencrypted(net, cbor2.dumps(plain, canonical=True)))))
        == "malformed"
    )


def test_attacks_on_a_hop_are_refused_with_the_headers_kept(net: Net) -> None:
    _warm(net)
    text = net.sealed()
    message = message_of(text)
    ciphertext_at = len(message) // 2  # inside the ciphertext: the body's bytes, encrypted
    changed = bytearray(message)
    changed[ciphertext_at] ^= 0x01
    assert refusal(lambda: net.open(wrapped(bytes(changed)))) == "decrypt-failed"  # a tampered body
    assert refusal(lambda: net.open(net.sealed(recipient="USA"))) == "wrong-recipient"
    assert (
        refusal(lambda: net.open(wrapped(_reencrypted(net, _inner(net, net.sealed(recipient="USA"), "USA")))))
        == "wrong-recipient"
    )  # signed for USA, re-encrypted to JPN
    late = AT + TTL + timedelta(minutes=5, seconds=1)
    assert refusal(lambda: net.open(text, at=late)) == "expired"  # replayed past its lifetime
    sign1 = cbor2.loads(_inner(net, text))
    sign1.value[3] = bytes(64)
    assert (
        refusal(lambda: net.open(wrapped(_reencrypted(net, cbor2.dumps(sign1, canonical=True)))))
        == "bad-signature"
    )
    # no other form is read for it: the versions are the three markers, whatever a peer sends
    inside = json.loads(text)["cose"]
    for marker in ("gsomia-envelope/4", "gsomia-envelope/0", "gsomia-envelope/3 ", "gsomia-envelope/2 "):
        assert (
            refusal(lambda m=marker: net.open(json.dumps({"format": m, "cose": inside})))
            == "unsupported-version"
        )  # type: ignore[misc]
    assert net.open(text).msg_id == "msg-0001"  # the same hop, untouched, still opens


def test_the_kept_tables_stay_bounded(net: Net) -> None:
    for n in range(env._CACHE_LIMIT + 40):
        env._header_map(cbor2.dumps({1: -8, 4: f"kid-{n}".encode(), 16: "x"}), env._SIGN1_HEADER, kept=True)
    assert len(env._HEADERS) <= env._CACHE_LIMIT
    for n in range(env._CACHE_LIMIT + 40):
        env._recipient_protected(f"kid-{n}")
        env._content_key(bytes(32), cbor2.dumps({1: -25, 4: f"kid-{n}".encode()}))
    assert len(env._RECIPIENT_PROTECTED) <= env._CACHE_LIMIT
    assert len(env._KDF_CONTEXTS) <= env._CACHE_LIMIT
    _warm(net)  # and a hop still opens after the tables were cleared


def test_what_is_kept_is_what_writing_it_again_gives(net: Net) -> None:
    kid = net.rings["JPN"].encryption_kid(AT)
    protected = env._recipient_protected(kid)
    assert protected == cbor2.dumps({1: -25, 4: kid.encode()}, canonical=True)
    env._content_key(bytes(32), protected)  # keeps the KDF context of the recipient's header
    context = env._KDF_CONTEXTS[protected]
    assert context == cbor2.dumps([3, [None, None, None], [None, None, None], [256, protected]])
    sender_kid = net.rings["KOR"].signing_key(AT)[0]
    assert env._sign1_protected(sender_kid) == cbor2.dumps(
        {1: -8, 4: sender_kid.encode(), 16: env.HOP_COSE_TYPE}, canonical=True
    )


# ------------------------------------------------------------------------- the large byte strings (issue 18)
#
# The Sig_structure, the Enc_structure, the COSE_Sign1 and the COSE_Encrypt are written beside their one
# large byte string (the claims, the ciphertext) and read back checked around it (``_spelt``) instead
# of through cbor2 whole: the bytes must be cbor2's deterministic encoding all the same.


@pytest.mark.parametrize("length", [0, 1, 23, 24, 255, 256, 65_535, 65_536, 300_000])
def test_what_is_written_beside_a_large_byte_string_is_cbor2s_deterministic_encoding(length: int) -> None:
    def cbor(item: Any) -> bytes:
        written: bytes = cbor2.dumps(item, canonical=True)
        return written

    large, protected, signature = os.urandom(length), os.urandom(40), os.urandom(64)
    iv, epk, recipient = os.urandom(12), os.urandom(32), cbor({1: -25, 4: b"jpn-1"})
    assert env._bytes_head(length) + large == cbor(large)
    assert env._sig_structure(protected, large) == cbor(["Signature1", protected, b"", large])
    assert env._enc_structure(large) == cbor(["Encrypt", large, b""])
    assert env._sign1_head(protected, length) + large + env._bytes_head(64) + signature == cbor(
        CBORTag(18, [protected, {}, large, signature])
    )
    written = env._encrypt_head(protected, iv, length) + large + env._recipients(recipient, epk)
    entry = [recipient, {-1: {1: 1, -1: 4, -2: epk}}, b""]
    assert written == cbor(CBORTag(96, [protected, {5: iv}, large, [entry]]))


def _respelt(data: bytes, old: bytes, new: bytes) -> bytes:
    at = data.find(old)
    assert at != -1
    assert data.find(old, at + 1) == -1, "the spelling to change is there once"
    return data[:at] + new + data[at + len(old) :]


def test_a_large_byte_string_or_a_key_spelt_otherwise_is_refused(net: Net) -> None:
    """Each message decodes to the layout, but is not in its one deterministic encoding: refused."""
    message = message_of(net.sealed())
    tag = cbor2.loads(message)
    ciphertext = tag.value[2]
    head = cbor2.dumps(ciphertext)[: -len(ciphertext)]
    longer = b"\x5a" + len(ciphertext).to_bytes(4, "big")  # the ciphertext's length in a longer head
    assert head != longer
    for spelt in (
        _respelt(message, head + ciphertext[:8], longer + ciphertext[:8]),
        _respelt(message, b"\xa1\x20\xa3\x01", b"\xa1\xf9\xbc\x00\xa3\x01"),  # the key -1 as a float
        _respelt(message, b"\x20\x04\x21\x58\x20", b"\x20\x04\xf9\xc0\x00\x58\x20"),  # the key -2 as one
        message[:-1] + b"\x41\x00",  # an encrypted key where the recipient has none
        message + b"\x00",
    ):
        assert cbor2.loads(spelt).value[2] == ciphertext
        assert refusal(lambda s=spelt: net.open(wrapped(s))) == "malformed"  # type: ignore[misc]
    plain = _inner(net, net.sealed())
    claims = cbor2.loads(plain).value[2]
    signed = _respelt(
        plain,
        cbor2.dumps(claims)[: -len(claims)] + claims[:8],
        b"\x5a" + len(claims).to_bytes(4, "big") + claims[:8],
    )
    for spelt in (
        signed,
        plain + b"\x00",
        _respelt(plain, b"json\xa0", b"json\xbf\xff"),
    ):  # an indefinite empty map
        assert refusal(lambda s=spelt: net.open(wrapped(_reencrypted(net, s)))) == "malformed"  # type: ignore[misc]
    assert net.open(wrapped(_reencrypted(net, plain))).body == BODY  # the same, spelt as written: opened


@pytest.mark.parametrize(
    ("iss", "aud", "seconds", "cti"),
    [
        ("KOR", "JPN", 1_717_243_200, b"msg-0001"),
        ("한국", "日本", 0, b""),
        ("K" * 200, "J" * 23, 23, "m" * 200),
        ("K" * 24, "J" * 255, 255, "메" * 200),
        ("K", "J", 65_535, "x" * 24),
        ("K", "J", 65_536, "x" * 256),
        ("K", "J", 2**32 - 1, "x"),
        ("K", "J", 2**32, "x"),
        ("K", "J", 253_402_300_799, "x"),
    ],
)
def test_the_encrypts_protected_header_is_cbor2s_deterministic_encoding(
    iss: str, aud: str, seconds: int, cti: bytes | str
) -> None:
    cti = cti.encode() if isinstance(cti, str) else cti
    for exp, iat in ((seconds, seconds), (seconds + 600, seconds), (seconds, 0)):
        written = env._encrypt_protected(iss, aud, exp, iat, cti)
        cwt = {1: iss, 3: aud, 4: exp, 6: iat, 7: cti}
        assert written == cbor2.dumps({1: 3, 3: 18, 15: cwt}, canonical=True)
        assert env._read_encrypt_protected(written) == (iss, aud, exp, iat, cti)  # read by position
        for cut in range(len(written)):
            with pytest.raises(EnvelopeError):
                env._read_encrypt_protected(written[:cut])
        with pytest.raises(EnvelopeError):
            env._read_encrypt_protected(written + b"\x00")


def test_the_encrypts_protected_header_spelt_otherwise_is_refused(net: Net) -> None:
    """Authenticated all the same (the additional data is whatever was sent), but not the one spelling."""
    plain = _inner(net, net.sealed())
    iat = int(AT.timestamp())
    cwt = {1: "KOR", 3: "JPN", 4: iat + 600, 6: iat, 7: b"msg-0001"}
    header = cbor2.dumps({1: 3, 3: 18, 15: cwt}, canonical=True)
    assert net.open(wrapped(_reencrypted(net, plain, header))).msg_id == "msg-0001"
    exp = (iat + 600).to_bytes(4, "big")
    for spelt in (
        _respelt(header, b"\xa3\x01\x03", b"\xa3\xf9\x3c\x00\x03"),  # alg's key 1 as a float
        _respelt(header, b"\x03\x12", b"\xf9\x42\x00\x12"),  # content type's key 3 as a float
        _respelt(header, b"\xa5\x01", b"\xa5\xf9\x3c\x00"),  # the issuer's key 1 as a float
        _respelt(header, b"\x04\x1a" + exp, b"\x04\x1b\x00\x00\x00\x00" + exp),  # exp in a longer head
        _respelt(header, b"\x07\x48", b"\x07\x58\x08"),  # the message id's length in a longer head
    ):
        assert cbor2.loads(spelt) == cbor2.loads(header)
        assert refusal(lambda s=spelt: net.open(wrapped(_reencrypted(net, plain, s)))) == "malformed"  # type: ignore[misc]


# ------------------------------------------------------------------------- read by position (issue 18)
#
# The COSE_Encrypt and the COSE_Sign1 are read by position as the layout's one deterministic encoding
# (``_read_cose``, ``_read_sign1``), their large byte strings not copied out by cbor2: every cut of a
# message and every changed byte of its framing must still be refused.


def _framing(message: bytes, large: bytes) -> list[int]:
    """The positions of ``message`` outside its one large byte string ``large``."""
    start = message.find(large)
    assert start != -1
    return [*range(start), *range(start + len(large), len(message))]


@pytest.mark.parametrize("format", [env.ENVELOPE_FORMAT, env.COSE_URL_FORMAT])
def test_every_cut_and_every_changed_framing_byte_of_the_encrypt_is_refused(net: Net, format: str) -> None:
    message = message_of(net.sealed())
    for cut in range(len(message)):
        assert refusal(lambda c=cut: net.open(wrapped(message[:c], format))) == "malformed"  # type: ignore[misc]
    for at in _framing(message, cbor2.loads(message).value[2]):
        for flip in (0x01, 0x20, 0x80):
            changed = bytearray(message)
            changed[at] ^= flip
            refusal(lambda c=bytes(changed): net.open(wrapped(c, format)))  # type: ignore[misc]
    assert net.open(wrapped(message, format)).body == BODY


def test_an_ephemeral_key_spelt_otherwise_is_refused(net: Net) -> None:
    """X25519 masks the top bit of a public key and reduces it (RFC 7748 section 5), so the same key
    has other spellings, which opened (found by the test above): the key is in the unprotected header,
    so anyone could re-spell a hop in flight. Refused now; the key as written opens."""
    message = message_of(net.sealed())
    epk = cbor2.loads(message).value[3][0][1][-1][-2]
    u = int.from_bytes(epk, "little")
    for other in (u | 1 << 255, u + 2**255 - 19):
        if other < 2**256:
            respelt = _respelt(message, epk, other.to_bytes(32, "little"))
            assert refusal(lambda r=respelt: net.open(wrapped(r))) == "malformed"  # type: ignore[misc]
    assert net.open(wrapped(message)).body == BODY


@pytest.mark.parametrize("format", [env.ENVELOPE_FORMAT, env.COSE_URL_FORMAT])
def test_every_cut_and_every_changed_framing_byte_of_the_sign1_is_refused(net: Net, format: str) -> None:
    """The COSE_Sign1 is decrypted into a buffer with room before it and its Sig_structure written
    there in place (issue 18): a cut or changed framing byte is still refused, never verified over
    what the room held."""
    plain = _inner(net, net.sealed())
    for cut in range(len(plain)):
        assert refusal(lambda c=cut: net.open(wrapped(_reencrypted(net, plain[:c]), format))) == "malformed"  # type: ignore[misc]
    for at in _framing(plain, cbor2.loads(plain).value[2]):
        for flip in (0x01, 0x20, 0x80):
            changed = bytearray(plain)
            changed[at] ^= flip
            refusal(lambda c=bytes(changed): net.open(wrapped(_reencrypted(net, c), format)))  # type: ignore[misc]
    assert net.open(wrapped(_reencrypted(net, plain), format)).body == BODY


# ------------------------------------------------------------------------- gsomia-envelope/3 (issue 18)
#
# /3 is /2's COSE message in standard base64, padded (pybase64 codes it about three times as fast as
# base64url). The envelopes sealed as /2 and still in flight open as before; the base64 of either is
# read strictly, so a message has one spelling under each marker and none under the other's.


def test_seal_writes_v3_and_an_envelope_sealed_as_v2_still_opens(net: Net) -> None:
    text = net.sealed()
    assert text.startswith('{"format":"gsomia-envelope/3","cose":"')
    assert text.endswith('"}')
    message = message_of(text)
    before = wrapped(message, env.COSE_URL_FORMAT)  # the same hop as a node sealed it before /3
    assert json.loads(before)["format"] == "gsomia-envelope/2"
    assert net.open(before).body == net.open(text).body == BODY
    assert env.envelope_routing(before) == env.envelope_routing(text)
    # a JSON spelling of the wrapper other than the writer's (escaped solidus, spaces) reads as JSON does
    respelt = json.dumps({"format": env.ENVELOPE_FORMAT, "cose": json.loads(text)["cose"]}).replace(
        "/", "\\/"
    )
    assert net.open(respelt).body == BODY


def _cose_text(text: str) -> str:
    return str(json.loads(text)["cose"])


def _with_cose(format: str, cose: str) -> str:
    return f'{{"format":"{format}","cose":"{cose}"}}'


def test_the_v3_base64_is_read_in_its_one_spelling(net: Net) -> None:
    # msg ids of three lengths: the message's length falls on each remainder, so each padding is met
    texts = [net.sealed(msg_id="m" * n) for n in range(1, 4)]
    paddings = {len(_cose_text(t)) - len(_cose_text(t).rstrip("=")) for t in texts}
    assert paddings == {0, 1, 2}
    for text in texts:
        cose = _cose_text(text)
        bare = cose.rstrip("=")
        pad = len(cose) - len(bare)
        forms = [
            cose + "=",  # padding past the last quantum
            cose[:-1] if pad else cose + "==",  # a quantum cut short, or padding with no room for it
            cose[:-4],  # a quantum missing
            cose[:100] + "\n" + cose[100:],  # a line break inside (as MIME's base64 writes it)
            cose[:100] + " " + cose[100:],
            cose[:100] + "=" + cose[101:],  # padding inside
            cose.replace("+", "-").replace("/", "_")
            if ("+" in cose or "/" in cose)
            else cose + "-",  # base64url's alphabet under /3
            bare,  # unpadded, as /2 writes it
        ]
        if pad:  # the last character before the padding with a stray bit set: another spelling of the message
            last = bare[-1]
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            forms.append(bare[:-1] + alphabet[alphabet.index(last) + 1] + "=" * pad)
        for form in forms:
            if form != cose:
                assert refusal(lambda f=form: net.open(_with_cose(env.ENVELOPE_FORMAT, f))) == "malformed"  # type: ignore[misc]
        # a /3 message under /2's marker, and a /2 message under /3's, are not read across
        url = base64.urlsafe_b64encode(message_of(text)).rstrip(b"=").decode()
        if url != bare:
            assert refusal(lambda c=cose: net.open(_with_cose(env.COSE_URL_FORMAT, c))) == "malformed"  # type: ignore[misc]
            assert refusal(lambda u=url: net.open(_with_cose(env.ENVELOPE_FORMAT, u))) == "malformed"  # type: ignore[misc]
        assert net.open(text).body == BODY


def test_a_v3_envelope_forged_or_cut_in_its_text_is_refused(net: Net) -> None:
    text = net.sealed()
    cose = _cose_text(text)
    for cut in range(0, len(cose), 7):  # the text cut anywhere (the tail kept): never opens
        assert refusal(lambda c=cut: net.open(_with_cose(env.ENVELOPE_FORMAT, cose[:c]))) == "malformed"  # type: ignore[misc]
    assert refusal(lambda: net.open(text[:-2])) == "malformed"  # the wrapper's tail cut
    for at in range(0, len(cose) - 4, 11):  # a character changed to another of the alphabet
        other = "A" if cose[at] != "A" else "B"
        forged = cose[:at] + other + cose[at + 1 :]
        assert refusal(lambda f=forged: net.open(_with_cose(env.ENVELOPE_FORMAT, f))) in {  # type: ignore[misc]
            "malformed",
            "decrypt-failed",
            "wrong-recipient",
            "unknown-key",
        }


@pytest.mark.parametrize("length", [0, 23, 24, 255, 256, 65_536])
def test_a_byte_strings_head_is_read_only_in_its_shortest_spelling(length: int) -> None:
    content = os.urandom(length)
    written = cbor2.dumps(content)
    assert env._byte_string(written, 0) == (len(written) - length, len(written))
    for size, marker in ((1, 0x58), (2, 0x59), (4, 0x5A), (8, 0x5B)):
        if length >= 1 << (8 * size):
            continue
        longer = bytes((marker,)) + length.to_bytes(size, "big") + content
        if longer != written:
            with pytest.raises(EnvelopeError):
                env._byte_string(longer, 0)
    for bad in (written[:-1] if length else b"", b"\x5c" + content, b"\x60", b"\x41"):
        with pytest.raises(EnvelopeError):
            env._byte_string(bad, 0)


def test_a_protected_header_whose_text_is_not_utf8_is_refused() -> None:
    written = env._encrypt_protected("K", "J", 1, 1, b"x")
    assert env._read_encrypt_protected(written) == ("K", "J", 1, 1, b"x")
    for bad in (b"\x61\xff", b"\x61\x80", b"\x62\xed\xa0"):  # not UTF-8; a lone surrogate's lead
        with pytest.raises(EnvelopeError):
            env._read_encrypt_protected(written.replace(b"\x61K", bad, 1))
