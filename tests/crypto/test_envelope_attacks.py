"""Adversarial review of the in-place envelope reader (issue 18): key ids and algorithms swapped
between the signing and the encryption keys, protected headers with duplicate members, segments
in the wrong order, extra, truncated or with stray base64 bits, in a batch-sized envelope. For every
input, gsomia's reader gives the verdict joserfc's reading gave (``same``), and what must be
refused is refused."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from tests.crypto.test_envelope import AT, TTL, Network, b64, make_network
from tests.crypto.test_envelope_reader import _inner, exact, same

# The JOSE hop (gsomia-envelope/1) is what nodes sealed before COSE; open_envelope still reads it for
# the envelopes in flight, so these tests hold that reader to its checks with the JOSE writer kept for it.
from gsomia.crypto import envelope as env


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return make_network(tmp_path_factory.mktemp("attacks"))


def _hop(net: Network, sender: str = "KOR", kid: str | None = None, **claims: Any) -> str:
    """A hop's JWS signed by ``sender``'s signing key, its header naming ``kid``."""
    own_kid, signer = net.rings[sender].signing_key(AT)
    iat = int(AT.timestamp())
    body = {
        "v": 1,
        "iss": sender,
        "aud": "JPN",
        "jti": "msg-0001",
        "iat": iat,
        "exp": iat + 600,
        "body": {"a": 1},
    }
    content = env._canonical({**body, **claims})
    head = b64(json.dumps({"alg": "EdDSA", "kid": kid or own_kid, "typ": env.HOP_TYPE}).encode())
    signing_input = f"{head}.{b64(content)}"
    return f"{signing_input}.{b64(signer.sign(signing_input.encode()))}"


def _raw_jwe(net: Network, header: str, plaintext: bytes) -> str:
    """A compact JWE to JPN whose protected header is exactly ``header`` (``EPK`` stands for the
    ephemeral key), so it may hold what a JSON encoder never writes: duplicate members."""
    _, to_key = net.peers["JPN"].encryption_key(AT)
    recipient = to_key if isinstance(to_key, X25519PublicKey) else X25519PublicKey.from_public_bytes(to_key)
    ephemeral = X25519PrivateKey.generate()
    x = b64(ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    protected = b64(header.replace("EPK", json.dumps({"kty": "OKP", "crv": "X25519", "x": x})).encode())
    cek = ConcatKDFHash(hashes.SHA256(), 32, env._A256GCM_OTHER_INFO).derive(ephemeral.exchange(recipient))
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return json.dumps(
        {
            "format": env.JOSE_FORMAT,
            "jwe": f"{protected}..{b64(iv)}.{b64(sealed[:-16])}.{b64(sealed[-16:])}",
        }
    )


def _header(net: Network, *members: tuple[str, Any], **instead: Any) -> str:
    """The outer header's members in order (``members`` after the usual ones, whose values
    ``instead`` replaces; a name may repeat)."""
    to_kid, _ = net.peers["JPN"].encryption_key(AT)
    iat = int(AT.timestamp())
    usual: list[tuple[str, Any]] = [
        ("alg", "ECDH-ES"),
        ("enc", "A256GCM"),
        ("kid", to_kid),
        ("cty", env.HOP_TYPE),
        ("v", 1),
        ("iss", "KOR"),
        ("aud", "JPN"),
        ("jti", "msg-0001"),
        ("iat", iat),
        ("exp", iat + 600),
    ]
    usual = [(k, instead.get(k, v)) for k, v in usual]
    text = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in (*usual, *members))
    return "{" + text + ',"epk":EPK}'


def test_signing_and_encryption_key_ids_swapped_are_refused(shared: Network) -> None:
    """The recipient's signing key id where its encryption key's is due, the sender's encryption key
    id under its signature, the recipient's own signing key id there, and the algorithms swapped:
    each refused, as joserfc refused it."""
    jpn_sign_kid, _ = shared.rings["JPN"].signing_key(AT)
    kor_enc_kid = shared.rings["KOR"].encryption_kid(AT)
    good = _hop(shared)
    assert same(shared, _inner(shared, good)) == ("opened", {"a": 1})
    cases = [
        _inner(shared, good, {"kid": jpn_sign_kid}),  # decrypt with a signing key's id
        _inner(shared, _hop(shared, kid=kor_enc_kid)),  # verify with an encryption key's id
        _inner(shared, _hop(shared, kid=jpn_sign_kid)),  # the recipient's own signing key's id
        _raw_jwe(shared, _header(shared, alg="A256GCM", enc="ECDH-ES"), good.encode()),
        _raw_jwe(shared, _header(shared, alg="dir"), good.encode()),
        _raw_jwe(shared, _header(shared, alg="EdDSA"), good.encode()),
        _raw_jwe(shared, _header(shared, cty=env.ITEM_TYPE), good.encode()),
    ]
    verdicts = [same(shared, text) for text in cases]
    assert all(v[0] == "refused" for v in verdicts), verdicts
    # an item's signature (typ gsomia-item+jws) of the same claims is no hop signature
    origin = env.sign_origin(shared.rings["KOR"], env._canonical({"a": 1}), AT)
    assert same(shared, _inner(shared, origin))[0] == "refused"


def test_duplicate_header_members_are_read_as_joserfc_read_them(shared: Network) -> None:
    """A protected header naming a member twice is read as JSON reads it (the last), by both readers
    alike: never one member for routing and the other for the signature's check."""
    hop = _hop(shared).encode()
    jpn_sign_kid, _ = shared.rings["JPN"].signing_key(AT)
    plain = same(shared, _raw_jwe(shared, _header(shared), hop))
    assert plain == ("opened", {"a": 1})
    cases = {
        "aud USA then JPN": (("aud", "USA"), ("aud", "JPN")),
        "aud JPN then USA": (("aud", "JPN"), ("aud", "USA")),
        "iss USA then KOR": (("iss", "USA"), ("iss", "KOR")),
        "iss KOR then USA": (("iss", "KOR"), ("iss", "USA")),
        "kid twice": (("kid", jpn_sign_kid),),
        "alg twice": (("alg", "ECDH-ES+A256KW"),),
        "jti twice": (("jti", "msg-0002"),),
    }
    verdicts = {
        name: same(shared, _raw_jwe(shared, _header(shared, *members), hop))
        for name, members in cases.items()
    }
    assert verdicts["aud USA then JPN"] == plain  # the last one is read: JPN
    assert verdicts["iss USA then KOR"] == plain
    for name in ("aud JPN then USA", "iss KOR then USA", "kid twice", "alg twice", "jti twice"):
        assert verdicts[name][0] == "refused", name


def _batch(net: Network) -> str:
    messages = [
        {"msg_id": f"{n:032x}", "body": {"kind": "item", "n": n, "pad": "x" * 2000}} for n in range(40)
    ]
    return env._seal_jose(
        net.rings["KOR"],
        net.peers["JPN"],
        {"kind": "batch", "messages": messages},
        msg_id="batch-9",
        at=AT,
        ttl=TTL,
    )


def test_a_batch_envelopes_segments_reordered_extra_cut_or_with_stray_bits_are_refused(
    shared: Network,
) -> None:
    text = _batch(shared)
    assert same(shared, text)[0] == "opened"
    compact = json.loads(text)["jwe"]
    segments = compact.split(".")
    variants = [
        ".".join([segments[0], segments[1], segments[4], segments[3], segments[2]]),  # iv and tag swapped
        ".".join([segments[3], segments[1], segments[2], segments[0], segments[4]]),  # header and body
        ".".join([*segments, segments[4]]),  # a sixth segment
        ".".join([*segments[:3], segments[3] + "." + segments[3][:4], segments[4]]),
        ".".join([*segments[:3], segments[3][: len(segments[3]) // 2], segments[4]]),  # truncated body
        ".".join(segments[:4]),
        compact[: compact.rfind(".")],
        compact + "=",
        ".".join([*segments[:3], segments[3] + "==", segments[4]]),
    ]
    for index, segment in enumerate(segments):  # the last character's stray bits set, where it has any
        pad = -len(segment) % 4
        if pad in (1, 2) and segment:
            clean = b"AEIMQUYcgkosw048" if pad == 2 else b"AQgw"
            alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
            stray = next(c for c in alphabet if c.encode() not in clean and c != segment[-1])
            variants.append(".".join([*segments[:index], segment[:-1] + stray, *segments[index + 1 :]]))
        # the same segment's bytes read with "+" and "/": standard base64, not base64url
        if "-" in segment or "_" in segment:
            std = segment.replace("-", "+").replace("_", "/")
            variants.append(".".join([*segments[:index], std, *segments[index + 1 :]]))
    for variant in variants:
        assert same(shared, exact(variant))[0] == "refused", variant[:80]
        assert same(shared, json.dumps({"jwe": variant, "format": env.JOSE_FORMAT}))[0] == "refused"
