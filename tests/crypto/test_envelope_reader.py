"""The envelope's own compact JWE/JWS reader against joserfc's, on the same hostile input.

gsomia reads what it receives with ``cryptography`` and pybase64 (issue 18: joserfc's reading of a
batch cost more than its cryptography). These tests hold that reader to the one it replaced:
joserfc's ``decrypt_compact``, ``extract_compact`` and ``validate_compact`` with the registries
gsomia used, and joserfc's strict base64url. For every input tried, both accept with the same
result or both refuse with the same detail code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwa, jwe, jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import GuestProtocol, OKPKey
from joserfc.registry import HeaderParameter
from joserfc.util import urlsafe_b64decode
from tests.crypto.test_envelope import AT, LOOSE_JWE, TTL, Network, b64, make_network, sealed

# The JOSE hop (gsomia-envelope/1) is what nodes sealed before COSE; open_envelope still reads it for
# the envelopes in flight, so these tests hold that reader to its checks with the JOSE writer kept for it.
from gsomia.crypto import envelope as env
from gsomia.errors import EnvelopeError


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return make_network(tmp_path_factory.mktemp("reader"))


# --------------------------------------------------------------------------- the reader it replaced


class _EdDSAOnly(jws.JWSRegistry):
    max_payload_length = env.MAX_ENVELOPE_CHARS

    def get_alg(self, name: str) -> jwa.JWSAlgModel:
        if name != "EdDSA":
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


class _HopJWE(jwe.JWERegistry):
    max_ciphertext_length = env.MAX_ENVELOPE_CHARS


_JWS = _EdDSAOnly(header_registry={"iss": HeaderParameter("Issuing party", "str")}, algorithms=["EdDSA"])
_JWE = _HopJWE(
    header_registry={
        "v": HeaderParameter("gsomia envelope version", "int"),
        "iss": HeaderParameter("Sending party", "str"),
        "aud": HeaderParameter("Receiving party", "str"),
        "jti": HeaderParameter("Message id", "str"),
        "iat": HeaderParameter("Issued at, seconds since the epoch", "int"),
        "exp": HeaderParameter("Expires at, seconds since the epoch", "int"),
    },
    algorithms=["ECDH-ES", "A256GCM"],
)


def joserfc_open(net: Network, text: str, recipient: str = "JPN", at: datetime = AT) -> Any:
    """``open_envelope`` as it was with joserfc reading the JWE and the JWS (before issue 18's reader)."""
    ring = net.rings[recipient]
    envelope = json.loads(text)
    compact = envelope["jwe"]
    outer: dict[str, Any] = {}

    def key_for(token: GuestProtocol) -> OKPKey:
        header = token.headers()
        env._hop_header(header, ring.party)
        outer.update(header)
        return ring._decrypter(header["kid"], at)

    try:
        plain = jwe.decrypt_compact(compact, key_for, registry=_JWE).plaintext
    except (JoseError, ValueError, TypeError, RecursionError) as exc:
        raise EnvelopeError("decrypt-failed" if outer else "malformed") from exc
    assert plain is not None
    try:
        token = jws.extract_compact(plain, registry=_JWS)
    except (JoseError, ValueError, TypeError, RecursionError) as exc:
        raise EnvelopeError("malformed") from exc
    header = token.protected
    if (
        type(header) is not dict
        or header.keys() != env._HOP_JWS_HEADER
        or header["alg"] != "EdDSA"
        or header["typ"] != env.HOP_TYPE
        or not env._is_text(header["kid"])
    ):
        raise EnvelopeError("malformed")
    sender = net.lookup(outer["iss"])
    if sender is None:
        raise EnvelopeError("unknown-sender")
    try:
        valid = jws.validate_compact(token, sender._verifier(header["kid"], at), registry=_JWS)
    except (JoseError, ValueError, TypeError) as exc:
        raise EnvelopeError("bad-signature") from exc
    if not valid:
        raise EnvelopeError("bad-signature")
    return env._claims(token.payload, outer)["body"]


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "opened", call()
    except EnvelopeError as exc:
        return "refused", exc.detail


def exact(compact: str) -> str:
    """``compact`` in the wrapper exactly as ``seal`` writes it, which the reader takes by position."""
    return '{"format":"' + env.JOSE_FORMAT + '","jwe":' + json.dumps(compact) + "}"


def same(net: Network, text: str) -> tuple[str, Any]:
    ours = outcome(lambda: env.open_envelope(net.rings["JPN"], text, net.lookup, AT).body)
    theirs = outcome(lambda: joserfc_open(net, text))
    assert ours == theirs, text
    # the same JWE in seal's own wrapper (read by position, not by a JSON parser): the same verdict
    positional = exact(json.loads(text)["jwe"])
    assert outcome(lambda: env.open_envelope(net.rings["JPN"], positional, net.lookup, AT).body) == ours
    return ours


# --------------------------------------------------------------------------- base64url


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= .\n", max_size=14)
)
def test_base64url_is_read_exactly_as_joserfc_reads_it(text: str) -> None:
    data = text.encode()
    try:
        theirs: bytes | None = urlsafe_b64decode(data)
    except ValueError:
        theirs = None
    try:
        ours: bytes | None = env._unb64(data)
    except ValueError:
        ours = None
    assert ours == theirs


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=70))
def test_what_is_written_is_read_back(data: bytes) -> None:
    assert env._unb64(env._b64(data).encode()) == data


# --------------------------------------------------------------------------- whole envelopes


def test_every_single_character_change_of_the_jwe_is_judged_as_joserfc_judged_it(shared: Network) -> None:
    text = sealed(shared)
    compact = json.loads(text)["jwe"]
    assert same(shared, text)[0] == "opened"
    details: set[str] = set()
    for position in range(len(compact)):
        for character in "A_+=.w":
            if compact[position] == character:
                continue
            changed = compact[:position] + character + compact[position + 1 :]
            verdict, detail = same(shared, json.dumps({"format": env.JOSE_FORMAT, "jwe": changed}))
            assert verdict == "refused"
            details.add(detail)
    assert {"malformed", "decrypt-failed"} <= details


def test_cut_and_stretched_jwes_are_judged_as_joserfc_judged_them(shared: Network) -> None:
    compact = json.loads(sealed(shared))["jwe"]
    segments = compact.split(".")
    variants = [compact[:cut] for cut in range(0, len(compact), 37)]
    variants += [compact + ".", "." + compact, compact + "A", compact + "AA"]
    variants += [".".join([*segments[:i], "AAAA", *segments[i + 1 :]]) for i in range(5)]
    variants += [".".join([*segments[:i], "", *segments[i + 1 :]]) for i in range(5)]
    variants += [".".join([*segments[:i], "A" * 2000, *segments[i + 1 :]]) for i in range(5)]
    for variant in variants:
        if variant == compact:  # the empty encrypted key, emptied
            continue
        assert same(shared, json.dumps({"format": env.JOSE_FORMAT, "jwe": variant}))[0] == "refused"


def _inner(net: Network, token: str, outer: dict[str, Any] | None = None) -> str:
    """``token`` (any text) as the plaintext of a well-formed JWE to JPN, its header as gsomia's."""
    iat = int(AT.timestamp())
    to_kid, to_key = net.peers["JPN"].encryption_key(AT)
    protected = {
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "kid": to_kid,
        "cty": env.HOP_TYPE,
        "v": 1,
        "iss": "KOR",
        "aud": "JPN",
        "jti": "msg-0001",
        "iat": iat,
        "exp": iat + 600,
        **(outer or {}),
    }
    compact = jwe.encrypt_compact(protected, token, OKPKey.import_key(to_key), registry=LOOSE_JWE)
    return json.dumps({"format": env.JOSE_FORMAT, "jwe": compact})


def test_hostile_inner_signatures_are_judged_as_joserfc_judged_them(shared: Network) -> None:
    kid, signer = shared.rings["KOR"].signing_key(AT)
    iat = int(AT.timestamp())
    claims = env._canonical(
        {
            "v": 1,
            "iss": "KOR",
            "aud": "JPN",
            "jti": "msg-0001",
            "iat": iat,
            "exp": iat + 600,
            "body": {"a": 1},
        }
    )

    def signed(header: Any, payload: bytes = claims, raw_header: bytes | None = None) -> str:
        head = b64(raw_header if raw_header is not None else json.dumps(header).encode())
        signing_input = f"{head}.{b64(payload)}"
        return f"{signing_input}.{b64(signer.sign(signing_input.encode()))}"

    good = {"alg": "EdDSA", "kid": kid, "typ": env.HOP_TYPE}
    token = signed(good)
    head, body, signature = token.split(".")
    tokens = [
        token,
        signed({**good, "alg": "none"}),
        signed({**good, "alg": "ES256"}),
        signed({**good, "typ": "JWT"}),
        signed({**good, "kid": 7}),
        signed({**good, "crit": ["b64"], "b64": False}),
        signed({**good, "extra": 1}),
        signed({k: v for k, v in good.items() if k != "kid"}),
        signed(good, raw_header=b"[1, 2]"),
        signed(good, raw_header=b'"alg"'),
        signed(good, raw_header=b"not json"),
        signed(
            good, raw_header=b'{"alg": "EdDSA", "alg": "EdDSA", "kid": "' + kid.encode() + b'", "typ": "x"}'
        ),
        signed(good, payload=b"not json"),
        signed(good, payload=b"[]"),
        f"{head}.{body}",
        f"{head}.{body}.{signature}.",
        f"{head}.{body}.{signature}A",
        f"{head}.{body}.{signature[:-1]}",
        f"{head}.{body}.{signature[:-2]}+w",
        f"{head}.{body}.",
        f"{head}.{body}=.{signature}",
        f"{head}.{body[:-1]}.{signature}",
        f"{head}.{body}.{'A' * 1100}",
        f"{'A' * 600}.{body}.{signature}",
        f"{head}.{body}.{b64(bytes(64))}",
    ]
    for text in tokens:
        same(shared, _inner(shared, text))
    assert same(shared, _inner(shared, token)) == ("opened", {"a": 1})
    for outer in ({"kid": "nobody"}, {"aud": "USA"}, {"zip": "DEF"}, {"v": 2}):
        same(shared, _inner(shared, token, outer))


def test_the_originators_signature_is_judged_as_joserfc_judged_it(shared: Network) -> None:
    ring = shared.rings["KOR"]
    origin = env.sign_origin(ring, b'{"item":"x"}', AT)
    assert env.verify_origin(origin, shared.lookup, AT) == ("KOR", b'{"item":"x"}')
    for position in range(len(origin)):
        changed = origin[:position] + ("B" if origin[position] != "B" else "C") + origin[position + 1 :]
        with pytest.raises(EnvelopeError):
            env.verify_origin(changed, shared.lookup, AT)
        try:
            token = jws.extract_compact(changed.encode(), registry=_JWS)
            theirs = jws.validate_compact(token, ring._verifier(token.protected["kid"], AT), registry=_JWS)
        except (JoseError, ValueError, TypeError, KeyError, EnvelopeError):
            theirs = False
        assert theirs is False


def test_the_wrapper_is_read_as_json_reads_it(shared: Network) -> None:
    """orjson reads the wrapper where it reads it as ``json`` does; the rest goes to ``json`` as before."""
    text = sealed(shared)
    compact = json.loads(text)["jwe"]

    def verdict(wrapper: str | bytes) -> tuple[str, Any]:
        return outcome(lambda: env.open_envelope(shared.rings["JPN"], wrapper, shared.lookup, AT).body)

    opened = verdict(text)
    assert opened[0] == "opened"
    assert verdict(text.encode("utf-16")) == opened  # json detects UTF-16; orjson refuses it
    assert verdict(text.encode()) == opened
    assert verdict('{"format":"x","format":"gsomia-envelope/1","jwe":"' + compact + '"}') == opened
    assert verdict('{"format":"\\ud800","jwe":"' + compact + '"}') == ("refused", "unsupported-version")
    assert verdict('{"format":NaN,"jwe":"' + compact + '"}') == ("refused", "malformed")
    big = "1" * 30
    assert verdict('{"format":' + big + ',"jwe":"' + compact + '"}') == ("refused", "malformed")
    assert verdict('{"format":"gsomia-envelope/1","jwe":' + big + "}") == ("refused", "malformed")
    assert verdict(text[:-1] + ',"x":' + big + "}") == ("refused", "malformed")
    assert verdict("[" * 100_000 + "]" * 100_000) == ("refused", "malformed")


def _by_json(net: Network, text: str | bytes) -> tuple[str, Any]:
    """The verdict with the wrapper read by ``json`` (the reading before issue 18's by position)."""
    try:
        envelope = json.loads(text)
    except ValueError:
        return "refused", "malformed"
    if type(envelope) is not dict or type(envelope.get("format")) is not str:
        return "refused", "malformed"
    if envelope["format"] != env.JOSE_FORMAT:
        return "refused", "unsupported-version"
    if envelope.keys() != {"format", "jwe"} or type(envelope["jwe"]) is not str:
        return "refused", "malformed"
    spaced = json.dumps(envelope, separators=(", ", ": "))  # never seal's form: read by a JSON parser
    return outcome(lambda: env.open_envelope(net.rings["JPN"], spaced, net.lookup, AT).body)


def test_the_wrapper_read_by_position_decides_as_json_reading_it_does(shared: Network) -> None:
    """seal's own wrapper is read by position; every change to it is judged as a JSON reading judges it:
    a quote or a backslash (an escape that JSON reads as the same JWE opens), a control character, a
    non-ASCII character or an invalid UTF-8 byte inside the JWE, a changed head or tail."""
    text = sealed(shared)
    assert text.startswith('{"format":"' + env.JOSE_FORMAT + '","jwe":"')
    assert text.endswith('"}')
    compact = json.loads(text)["jwe"]
    head = len(text) - len(compact) - 2

    def verdict(wrapper: str | bytes) -> tuple[str, Any]:
        return outcome(lambda: env.open_envelope(shared.rings["JPN"], wrapper, shared.lookup, AT).body)

    opened = verdict(text)
    assert opened[0] == "opened"
    variants: list[str | bytes] = [
        text[:head] + "\\u" + format(ord(text[head]), "04x") + text[head + 1 :],  # JSON: the same JWE
        text[:-2] + "\\u0041" + text[-2:],
        text + " ",
        " " + text,
        text[:-1],
        text + "}",
        text[:-2] + '"' + text[-2:],
        text[:head] + '"' + text[head:],
        text.replace('","jwe":"', '", "jwe":"'),
        text.replace("gsomia-envelope/1", "gsomia-envelope/4"),
        text.encode()[:head] + b"\xff" + text.encode()[head:],
        text.encode()[:-40] + "é".encode() + text.encode()[-40:],
    ]
    for position in (head, head + 7, len(text) // 2, len(text) - 30, len(text) - 3):
        for character in ("\x00", "\x1f", "\n", "\t", "é", "\u2028", "\\", '"', "."):
            variants.append(text[:position] + character + text[position:])
            variants.append(text[:position] + character + text[position + 1 :])
    details: set[str] = set()
    for variant in variants:
        ours = verdict(variant)
        assert ours == _by_json(shared, variant), variant
        details.add(ours[1] if ours[0] == "refused" else "opened")
        if isinstance(variant, str):
            assert verdict(variant.encode()) == ours
    assert {"opened", "malformed", "unsupported-version", "decrypt-failed"} <= details


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=12),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= .", max_size=14),
    st.binary(max_size=12),
)
def test_a_segment_read_in_place_is_read_as_alone(before: bytes, text: str, after: bytes) -> None:
    """The reader decodes each segment where it lies in the received bytes: what surrounds it changes
    nothing (the bytes before and after are not read)."""
    segment = text.encode()
    try:
        alone: bytes | None = env._unb64(segment)
    except ValueError:
        alone = None
    try:
        placed: bytes | None = env._unb64_in(
            before + segment + after, len(before), len(before) + len(segment)
        )
    except ValueError:
        placed = None
    assert placed == alone


def test_an_item_moved_between_batches_is_refused(shared: Network) -> None:
    """Two batch envelopes KOR -> JPN: no part of one moves into the other (its ciphertext, its
    header, or its signed hop re-encrypted under the other's header), each is refused."""
    ring, jpn = shared.rings["KOR"], shared.peers["JPN"]

    def batch(first: int, msg_id: str) -> str:
        messages = [
            {"msg_id": f"{n:032x}", "body": {"kind": "item", "n": n}} for n in range(first, first + 3)
        ]
        body = {"kind": "batch", "messages": messages}
        return env._seal_jose(ring, jpn, body, msg_id=msg_id, at=AT, ttl=TTL)

    one, two = batch(0, "batch-0001"), batch(3, "batch-0002")
    a, b = json.loads(one)["jwe"].split("."), json.loads(two)["jwe"].split(".")
    assert same(shared, one)[0] == same(shared, two)[0] == "opened"
    for swapped in (0, 2, 3, 4):  # header, iv, ciphertext, tag of the one inside the other
        spliced = ".".join(a[i] if i == swapped else b[i] for i in range(5))
        assert same(shared, exact(spliced)) == ("refused", "decrypt-failed")
    key = OKPKey.import_key(shared.rings["JPN"].decryption_key(shared.rings["JPN"].encryption_kid(AT), AT))
    hop = jwe.decrypt_compact(json.loads(one)["jwe"], key, registry=LOOSE_JWE).plaintext
    assert hop is not None
    moved = _inner(shared, hop.decode(), {"jti": "batch-0002"})
    assert same(shared, moved) == ("refused", "malformed")  # signed as batch-0001, headed batch-0002
