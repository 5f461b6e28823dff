"""What ``HttpTransport.push`` puts on the wire and how it reads the answer (issue 18: the body
written by orjson, the answer read by ``gsomia._canonical.loads``): byte for byte the request httpx's
``json=`` wrote, and the value ``response.json()`` read, for any text; a partner's answer that is no
answer (not JSON, the wrong count, a duplicate key, NaN, a huge integer, an error status) fails as a
transport failure, as it did."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import BodyTooLargeError, TransportError
from gsomia.exchange import HttpTransport


def _peer() -> PeerIdentity:
    return PeerIdentity("JPN", "jpn-1", "http://jpn.test:8000/", ())


class _Wire:
    """A partner's inbox that keeps each request and answers ``answer(request)``."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)


def _transport(wire: _Wire) -> HttpTransport:
    return HttpTransport(httpx.Client(transport=httpx.MockTransport(wire)))


def _as_httpx_wrote(envelopes: list[str]) -> bytes:
    """The body httpx's ``json=`` wrote (httpx._content.encode_json), the one sent before."""
    return json.dumps(
        {"envelopes": envelopes}, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def _ok(request: httpx.Request) -> httpx.Response:
    count = len(json.loads(request.content)["envelopes"])
    return httpx.Response(200, json={"results": [{"status": "stored", "n": i} for i in range(count)]})


# every text but the lone surrogates (which neither encoder writes as UTF-8)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=6))
def test_the_body_is_the_one_httpx_wrote(envelopes: list[str]) -> None:
    wire = _Wire(_ok)
    with _transport(wire) as transport:
        results = transport.push(_peer(), envelopes)
    (request,) = wire.requests
    assert request.content == _as_httpx_wrote(envelopes)
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["content-length"]) == len(request.content)
    assert request.url == "http://jpn.test:8000/inbox"
    assert results == [{"status": "stored", "n": i} for i in range(len(envelopes))]


def test_the_body_of_a_batch_as_sealed() -> None:
    """Envelopes as the exchange writes them (standard base64, ``/``, ``+``, ``=``; a JOSE form's
    dots), controls, quotes, backslashes, Korean and an astral character: the same bytes."""
    envelopes = [
        "gsomia-cose/1:" + "AbC+/=" * 500,
        "eyJhbGciOiJFZERTQSJ9.eyJ4IjoxfQ.c2ln",
        'a "quoted" \\ back\\slash \n\t\x00\x1f\x7f </script>',
        "군사III급비밀 \u2028 \U0001f600",
        "",
    ]
    wire = _Wire(_ok)
    with _transport(wire) as transport:
        transport.push(_peer(), envelopes)
    assert wire.requests[0].content == _as_httpx_wrote(envelopes)


def test_a_lone_surrogate_fails_the_push_as_before() -> None:
    wire = _Wire(_ok)
    with _transport(wire) as transport, pytest.raises(TransportError):
        transport.push(_peer(), ["ok", "bad \ud800"])
    assert wire.requests == []  # nothing went out


_ANSWERS = [
    b'{"results": [{"status": "stored", "big": 123456789012345678901234567890, "f": 1e400}]}',
    b'{"results": [{"status": "stored", "x": 1, "x": 2}]}',  # a key twice: json.loads keeps the last
    b'{"results": [{"status": "stored", "nan": NaN, "inf": -Infinity}]}',
    b'{"results": [{"status": "stored", "s": "\\ud800 \\u00e9 \\u0000"}]}',
    '{"results": [{"status": "저장"}]}'.encode(),
    b'\xef\xbb\xbf{"results": [{"status": "stored"}]}',  # a byte order mark
    '{"results": [{"status": "stored"}]}'.encode("utf-16"),
]


@pytest.mark.parametrize("raw", _ANSWERS)
def test_the_answer_is_read_as_response_json_read_it(raw: bytes) -> None:
    wire = _Wire(lambda _: httpx.Response(200, content=raw, headers={"content-type": "application/json"}))
    with _transport(wire) as transport:
        try:
            expected: Any = httpx.Response(200, content=raw).json()["results"]
        except ValueError:
            with pytest.raises(TransportError):
                transport.push(_peer(), ["e"])
            return
        got = transport.push(_peer(), ["e"])
    assert repr(got) == repr(expected)  # NaN compares unequal to itself: compared as written


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"results": [1, 2]}',  # two answers for one envelope
        b'{"results": "stored"}',
        b"[1]",
        b'{"results": [{"status": "stored"}]',  # cut short
        b'{"results": [{"status": "stored"}]} trailing',
        b"\xff\xfe\x00garbage",
    ],
)
def test_an_answer_that_is_no_answer_is_a_transport_failure(raw: bytes) -> None:
    wire = _Wire(lambda _: httpx.Response(200, content=raw))
    with _transport(wire) as transport, pytest.raises(TransportError):
        transport.push(_peer(), ["e"])


def test_error_statuses_are_failures_and_413_is_too_large() -> None:
    with _transport(_Wire(lambda _: httpx.Response(413))) as transport, pytest.raises(BodyTooLargeError):
        transport.push(_peer(), ["e"])
    failing = _Wire(lambda _: httpx.Response(500, json={"results": []}))
    with _transport(failing) as transport, pytest.raises(TransportError):
        transport.push(_peer(), ["e"])
