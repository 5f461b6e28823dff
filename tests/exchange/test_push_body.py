"""The body of a push, as ``HttpTransport`` writes it (by orjson since 2026-12-08; httpx's ``json=``
before): the JSON the partner's ``/inbox`` reads, ``{"envelopes": [...]}`` in order, typed as JSON,
non-ASCII text as UTF-8; an envelope that is not UTF-8 text (a lone surrogate) fails as a transport
error before anything is sent. The real partner's reading of it: tests/exchange/test_exchange_http.py
and tests/api/test_http_parsers.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from gsomia.errors import TransportError
from gsomia.exchange import HttpTransport

PEER: Any = SimpleNamespace(party="JPN", endpoint="http://jpn.example/", tls=())


def _transport(seen: list[httpx.Request]) -> HttpTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        count = len(json.loads(request.content)["envelopes"])
        return httpx.Response(
            200, json={"results": [{"status": "stored", "receipt": "r", "reason": None}] * count}
        )

    return HttpTransport(httpx.Client(transport=httpx.MockTransport(answer)))


def test_the_push_body_is_the_envelopes_as_json() -> None:
    seen: list[httpx.Request] = []
    envelopes = ["eyJhIjoxfQ.x", '{"quoted": "\\u0041"}', "한국어 日本語 \u2028 \x00 \U0001f600", ""]
    results = _transport(seen).push(PEER, envelopes)
    assert [r["status"] for r in results] == ["stored"] * 4
    (request,) = seen
    assert request.method == "POST"
    assert request.url == "http://jpn.example/inbox"
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["content-length"]) == len(request.content)
    assert json.loads(request.content.decode("utf-8")) == {"envelopes": envelopes}
    assert "한국어".encode() in request.content  # UTF-8, not escaped


def test_an_envelope_that_is_not_utf8_is_not_sent() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(TransportError, match="not UTF-8"):
        _transport(seen).push(PEER, ["ok", "lone \ud800 surrogate"])
    assert seen == []
