"""Bad input answers 4xx with a problem that says what is wrong and nothing about the internals.

Each case of issue 15 §3, on SQLite and on PostgreSQL: far-future instants, cursors and
sequence numbers beyond 64 bits, NUL characters in query values and bodies, a boolean where a
number belongs, a method a route does not serve. Every refusal is audited.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests.api._through_app import Call, caller, chief_token, jpn_per_store
from tests.node_fixtures import jpn_label

from gsomia.api import create_app
from gsomia.errors import InvalidInputError
from gsomia.node import Node
from gsomia.store import ItemFilter
from gsomia.stream import parse_feed_message
from gsomia.ui import dashboard_scope

GSOMIA = "kor-jpn-gsomia-2016"
# What no answer may carry: SQL, driver names, Python's own words for a crash.
INTERNALS = (
    "SELECT", "INSERT", "[SQL", "psycopg", "sqlite", "sqlalchemy", "Traceback", "Internal Server Error",
)  # fmt: skip


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def jpn_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_status: str | None
) -> Iterator[Node]:
    """One JPN node per store for the whole module: every case below leaves it as it found it."""
    yield from jpn_per_store(request, tmp_path_factory, postgres_status)


@pytest.fixture(scope="module")
def token(jpn_node: Node) -> str:
    """A person holding every role: the refusals below are about input, not about rights."""
    return chief_token(jpn_node)


@pytest.fixture(scope="module")
def call(jpn_node: Node) -> Call:
    return caller(jpn_node)


def refused(response: httpx.Response, status: int, needle: str) -> dict[str, Any]:
    """``response`` is the problem document ``status`` whose detail names ``needle``, and no internals."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == status
    assert needle in body["detail"], body["detail"]
    for word in INTERNALS:
        assert word.lower() not in response.text.lower(), f"{word!r} leaked: {response.text}"
    return body


def last_refusal(node: Node) -> dict[str, Any]:
    """The newest refusal in the audit records (the edge's, or the service's own)."""
    rows = [r for r in node.store.audit(limit=1000) if r.outcome == "refused"]
    assert rows, "the refusal was not audited"
    return {"kind": rows[-1].kind, "subject": rows[-1].subject, "detail": rows[-1].detail}


@pytest.mark.parametrize(
    "url",
    [
        f"/agreements/{GSOMIA}/status?at=9999-12-31",
        f"/agreements/{GSOMIA}/status?at=0001-01-01",
        "/termination-report?at=9999-12-31",
        f"/agreements/{GSOMIA}/status?at=2019-02-29",
    ],
)
def test_an_instant_outside_the_calendar_is_422(call: Call, token: str, jpn_node: Node, url: str) -> None:
    refused(call("GET", url, token), 422, "instant")
    assert last_refusal(jpn_node)["subject"] == url.split("?")[0]


def test_the_matrix_refuses_a_far_future_instant(call: Call, token: str, jpn_node: Node) -> None:
    ui = dashboard_scope(jpn_node.ring).path
    response = call("GET", f"{ui}/api/matrix?at=9999-12-31", token)
    assert response.status_code == 422, response.text
    assert "Internal Server Error" not in response.text


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("/items?cursor=s9223372036854775808", "cursor"),
        ("/items?cursor=s99999999999999999999", "cursor"),
        ("/audit/log?since=9223372036854775808", "since"),
        ("/audit/consistency?first=1&second=9223372036854775808", "second"),
    ],
)
def test_numbers_beyond_64_bits_are_422(
    call: Call, token: str, jpn_node: Node, url: str, needle: str
) -> None:
    refused(call("GET", url, token), 422, needle)
    last_refusal(jpn_node)


@pytest.mark.parametrize(
    "url",
    [
        "/audit/inclusion?entry=a%00b",
        "/destructions?item=a%00b",
        "/outbox?state=a%00b",
        "/registers/flags?item=a%00b",
        "/registers/rules?party=a%00b",
        "/audit/log?kind=a%00b",
        "/items?topic=a%00b",
    ],
)
def test_a_nul_in_a_query_value_is_422_and_audited(call: Call, token: str, jpn_node: Node, url: str) -> None:
    name = url.split("?")[1].split("=")[0]
    refused(call("GET", url, token), 422, name)
    assert last_refusal(jpn_node)["subject"] == url.split("?")[0]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"id": "a\x00b", "label": jpn_label(), "payload": 1}, "id"),
        ({"label": jpn_label(topics=["dprk\x00missile"]), "payload": 1}, "topics"),
        ({"label": jpn_label(purpose="threat\x00assessment"), "payload": 1}, "purpose"),
        # a payload's text too: the same object a TAXII envelope carries is refused there (bytes
        # that hold a NUL are a payload_base64)
        ({"label": jpn_label(), "payload": {"k": "v\x00"}}, "body.payload.k"),
    ],
)
def test_a_nul_in_a_body_is_refused_alike_on_every_store(
    call: Call, token: str, jpn_node: Node, body: dict[str, Any], needle: str
) -> None:
    refused(call("POST", "/items", token, json=body), 422, needle)
    last_refusal(jpn_node)


@pytest.mark.parametrize(
    ("label", "needle"),
    [
        (jpn_label(caveats=[""]), "label.caveats"),
        (jpn_label(caveats=["\u3000"]), "label.caveats"),
        (jpn_label(topics=[" "]), "label.topics"),
        (jpn_label(purpose="\u2028"), "label.purpose"),
        (jpn_label(releasable_to=0.0), "label.releasable_to"),  # falsy, yet not a list (schemathesis)
        (jpn_label(topics=False), "label.topics"),
        (jpn_label(caveats=""), "label.caveats"),
        (jpn_label(alternatives=0), "label.alternatives"),
    ],
)
def test_a_label_word_that_says_nothing_is_422_as_the_schema_states(
    call: Call, token: str, jpn_node: Node, label: dict[str, Any], needle: str
) -> None:
    """The OpenAPI says a caveat, a topic and a purpose hold some words; the server agrees."""
    refused(call("POST", "/items", token, json={"label": label, "payload": 1}), 422, needle)
    last_refusal(jpn_node)
    decision = {
        "label": label,
        "sender": "JPN",
        "recipient": "KOR",
        "purpose": "threat-assessment",
        "at": "2024-06-01",
    }
    refused(call("POST", "/decisions", token, json=decision), 422, needle)


def test_a_misspelt_topic_is_422_naming_the_declared_ones(call: Call, token: str, jpn_node: Node) -> None:
    """A topic no party file or agreement declares is a misspelling, not silently a new topic: for
    an item's label, a decision's, and a new person's need-to-know; the OpenAPI lists the topics."""
    body = {"label": jpn_label(topics=["dprk-misile"]), "payload": 1}
    detail = refused(call("POST", "/items", token, json=body), 422, "unknown topic 'dprk-misile'")["detail"]
    assert "dprk-missile" in detail
    assert last_refusal(jpn_node)["kind"] == "item.ingest"
    decision = {
        "label": jpn_label(topics=["dprk-misile"]),
        "sender": "JPN",
        "recipient": "KOR",
        "purpose": "threat-assessment",
        "at": "2024-06-01",
    }
    refused(call("POST", "/decisions", token, json=decision), 422, "unknown topic 'dprk-misile'")
    person = {"id": "lee", "name": "Lee", "nationality": "JPN", "clearance": "秘", "need_to_know": ["navy"]}
    refused(call("POST", "/people", token, json=person), 422, "unknown topic 'navy'")
    assert call("GET", "/people/lee", token).status_code == 404
    declared = call("POST", "/decisions", token, json={**decision, "label": jpn_label(topics=["prc-navy"])})
    assert declared.status_code == 200, declared.text  # a declared topic: decided (outside TISA's scope)
    spec = call("GET", "/openapi.json", token).json()
    assert "prc-navy" in json.dumps(spec["components"]["schemas"]["PersonIn"])


def test_a_token_lifetime_must_be_a_number_not_a_boolean(call: Call, token: str) -> None:
    refused(call("POST", "/people/chief/tokens", token, json={"days": True}), 422, "days")
    refused(call("POST", "/people/chief/tokens", token, json={"days": "3"}), 422, "days")
    refused(call("POST", "/people/chief/tokens", token, json={"days": 1.5}), 422, "days")
    assert call("POST", "/people/chief/tokens", token, json={"days": 3}).status_code == 201


@pytest.mark.parametrize(
    ("method", "url", "allow"),
    [
        ("DELETE", "/items", {"GET", "POST"}),
        ("PUT", "/healthz", {"GET"}),
        ("PATCH", "/items/x", {"GET"}),
        ("GET", "/inbox", {"POST"}),
        ("GET", "/items/x/derive", {"POST"}),  # a route of an included router (the duties')
        ("DELETE", "/stream/tracks", {"POST"}),  # the stream's router
    ],
)
def test_405_names_every_method_the_resource_serves(
    call: Call, token: str, method: str, url: str, allow: set[str]
) -> None:
    response = call(method, url, token)
    refused(response, 405, method)
    assert {m.strip() for m in response.headers["allow"].split(",")} == allow


def test_a_duplicate_names_no_constraint(call: Call, token: str) -> None:
    body = {"id": f"dup-{uuid.uuid4().hex[:8]}", "label": jpn_label(), "payload": 1}
    assert call("POST", "/items", token, json=body).status_code == 201
    found = refused(call("POST", "/items", token, json=body), 409, "already")
    assert "UNIQUE" not in found["detail"]
    assert "pkey" not in found["detail"]


def test_a_login_form_of_more_fields_than_it_has_is_400_audited(call: Call, jpn_node: Node) -> None:
    """Nobody authenticated: five fields posted to the dashboard's login form (which reads at most
    four) made parse_qs raise, a 500. Now the login page again, 400 naming the form's fields,
    audited (``ui.login``, in the source's bounded tally)."""
    base = dashboard_scope(jpn_node.ring).path
    response = call(
        "POST",
        f"{base}/login",
        content=b"a=1&b=2&c=3&d=4&e=5",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": jpn_node.config.endpoint},
    )
    assert response.status_code == 400, response.text[:300]
    assert "the login form has two fields" in response.text
    for word in INTERNALS:
        assert word.lower() not in response.text.lower()
    assert last_refusal(jpn_node)["kind"] == "ui.login"


@pytest.mark.parametrize(
    "body",
    [
        b'{"track_id":"decoy","track_id":"t-1"}',  # the first a decoy, the last the track
        b'{"track_id":"t-1","launch":{"lat":1.0,"lat":2.0}}',  # nested
        b'{"track_id":"t-1","tr\\u0061ck_id":"t-1"}',  # spelt otherwise
    ],
)
def test_a_track_update_that_names_a_key_twice_is_422(call: Call, token: str, body: bytes) -> None:
    """What an originator signs must mean one thing to every reader: readers differ on a key given
    twice (the first, the last, an error). Before, read as its last."""
    headers = {"content-type": "application/json"}
    refused(call("POST", "/stream/tracks", token, content=body, headers=headers), 422, "names a key twice")


def test_a_feed_message_that_names_a_key_twice_is_refused() -> None:
    """The WebSocket feed's messages: a key given twice, in an update of an array too, refused."""
    assert parse_feed_message('[{"track_id":"t-1"}, {"b":[{"c":1}]}]') == [
        {"track_id": "t-1"},
        {"b": [{"c": 1}]},
    ]
    for text in ('{"track_id":"a","track_id":"a"}', '[{"a":1}, {"b":[{"c":1, "c":1}]}]'):
        with pytest.raises(InvalidInputError, match="names a key twice"):
            parse_feed_message(text)


# --- a JSON body whose object names a key twice (TextGate) ---
# Starlette's ``Request.json`` (and so every FastAPI route) keeps the last of two values given under
# one key, while a signer, an auditor or a proxy may read the first: a release or an ingest naming
# ``classification`` twice would be decided on a label its sender's tools never showed. The stream's
# routes refused such a body already; the API took it. Now refused for every route (422 naming the
# problem, audited as the edge's refusals are), on both stores.

TWICE = "names a key twice"


def _twice(label: dict[str, Any], second: str, spelt: str = "classification") -> str:
    """An ingest body whose label gives ``classification`` a second time (as ``spelt``), last."""
    text = json.dumps({"label": label, "payload": {"track": 1}}, ensure_ascii=False)
    return text.replace('"releasable_to"', f'"{spelt}": "{second}", "releasable_to"', 1)


def _held(node: Node) -> int:
    return len(node.store.list_items(ItemFilter(), None, 1000))


def _refusals(node: Node) -> int:
    return sum(1 for r in node.store.audit(limit=100_000) if r.outcome == "refused" and TWICE in r.detail)


@pytest.mark.parametrize(
    "spelt",
    [
        "classification",  # as the first
        "classific\\u0061tion",  # spelt otherwise: the same key once read
    ],
)
def test_an_ingest_naming_the_classification_twice_is_refused_and_audited(
    call: Call, token: str, jpn_node: Node, spelt: str
) -> None:
    """Two ``classification`` keys in an ingest's label: before, stored at the last one's level (201)."""
    body = _twice(jpn_label(classification="秘"), "極秘", spelt)
    held, audited = _held(jpn_node), _refusals(jpn_node)
    problem = refused(
        call("POST", "/items", token, content=body.encode(), headers={"content-type": "application/json"}),
        422,
        TWICE,
    )
    assert "'classification'" in problem["detail"]  # names the key, as JSON reads it
    assert problem["errors"] == [{"field": "body", "problem": problem["detail"].partition(": ")[2]}]
    assert _held(jpn_node) == held  # nothing stored
    assert _refusals(jpn_node) == audited + 1
    assert last_refusal(jpn_node)["kind"] == "api.refused"
    # the same body with the key once is taken: the refusal is the key given twice, nothing else
    once = json.dumps({"label": jpn_label(classification="秘"), "payload": {"track": 1}}, ensure_ascii=False)
    taken = call("POST", "/items", token, content=once.encode(), headers={"content-type": "application/json"})
    assert taken.status_code == 201, taken.text


def test_a_release_naming_a_key_twice_is_refused_and_audited(call: Call, token: str, jpn_node: Node) -> None:
    """A release whose body names ``to`` twice (a decoy partner first): refused before any decision."""
    body = b'{"to": "USA", "agreement": "kor-jpn-gsomia-2016", "to": "KOR"}'
    audited = _refusals(jpn_node)
    response = call(
        "POST", "/items/any-item/release", token, content=body, headers={"content-type": "application/json"}
    )
    refused(response, 422, TWICE)
    assert _refusals(jpn_node) == audited + 1


def _json_routes(node: Node) -> list[tuple[str, str]]:
    """Every route of the app whose request body is JSON, by its OpenAPI document (the method, the
    path with each parameter filled in)."""
    found = []
    for path, operations in create_app(node).openapi()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if any(kind == "application/json" or kind.endswith("+json") for kind in content):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return found


def test_every_route_taking_a_json_body_refuses_a_key_given_twice(
    call: Call, token: str, jpn_node: Node
) -> None:
    """Each route of the OpenAPI document that takes a JSON body (the API, TAXII, the stream), a key
    given twice nested in an array: 422 naming it, no internals, each refusal audited once."""
    routes = _json_routes(jpn_node)
    assert len(routes) > 30  # the whole API, not a few routes
    assert ("POST", "/items") in routes
    assert ("POST", "/items/x/release") in routes
    body = b'{"items": [{"id": "a", "id": "b"}], "label": {}}'
    for method, path in routes:
        audited = _refusals(jpn_node)
        headers = {"content-type": "application/json", "accept": "application/taxii+json;version=2.1"}
        response = call(method, path, token, content=body, headers=headers)
        assert response.status_code == 422, f"{method} {path}: {response.status_code} {response.text[:200]}"
        assert TWICE in response.text, f"{method} {path}: {response.text[:200]}"
        for word in INTERNALS:
            assert word.lower() not in response.text.lower(), f"{method} {path}: {word!r} leaked"
        assert _refusals(jpn_node) == audited + 1, f"{method} {path}: not audited once"


def test_an_unauthenticated_caller_naming_a_key_twice_is_refused_in_the_tally(
    call: Call, jpn_node: Node
) -> None:
    """Nobody authenticated: the same 422, the refusal audited in the source's bounded tally."""
    body = b'{"label": {"classification": "\xe7\xa7\x98", "classification": "x"}, "payload": 1}'
    response = call("POST", "/items", None, content=body, headers={"content-type": "application/json"})
    refused(response, 422, TWICE)
    refusal = last_refusal(jpn_node)
    assert refusal["kind"] == "api.refused"
    assert TWICE in refusal["detail"]


@pytest.mark.parametrize(
    "body",
    [
        '{"a": "{\\"a\\": 1, \\"a\\": 2}", "b": 1}',  # a key twice inside a string is no key
        '{"a": {"b": 1}, "b": {"a": 1}}',  # the same name in two objects
        '[{"a": 1}, {"a": 2}]',
    ],
)
def test_a_body_naming_each_key_once_is_not_refused_for_it(call: Call, token: str, body: str) -> None:
    response = call(
        "POST", "/items", token, content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422  # not an item; refused by the route's model, for that
    assert TWICE not in response.text


def test_json_in_utf16_naming_a_key_twice_is_refused(call: Call, token: str) -> None:
    """``json.loads`` reads UTF-16 too (Starlette's route would take it): the count of quote bytes
    does not stand for the strings there, so the keys are read one by one."""
    text = '{"label": {"classification": "秘", "classification": "極秘"}, "payload": 1}'
    response = call(
        "POST", "/items", token, content=text.encode("utf-16"), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert TWICE in response.text


NOT_FINITE = "holds NaN, an infinity or a number past the largest double"


@pytest.mark.parametrize(
    "payload",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        '{"speed": NaN}',
        "[1e400]",
        '{"note": "caf\\u00e9", "speed": NaN}',  # an escape beside it: the body read by json, not msgspec
        '{"note": "caf\\u00e9", "range": -1e400}',
    ],
)
def test_a_body_holding_nan_or_an_infinity_is_422_audited_and_nothing_stored(
    call: Call, token: str, jpn_node: Node, payload: str
) -> None:
    """``json.loads`` reads NaN, the infinities and 1e400 (as an infinity); no other reader of what is
    stored does: before, such an ingest was taken (201) and every read of the item after was a 500.
    Refused at the edge now, as not JSON, with the place named; audited; nothing stored."""
    label = json.dumps(jpn_label(classification="秘"), ensure_ascii=False)
    body = f'{{"label": {label}, "payload": {payload}}}'.encode()
    held = _held(jpn_node)
    audited = [r for r in jpn_node.store.audit(limit=100_000) if r.outcome == "refused"]
    response = call("POST", "/items", token, content=body, headers={"content-type": "application/json"})
    problem = refused(response, 422, NOT_FINITE)
    assert problem["errors"] == [{"field": "body", "problem": problem["detail"].partition(": ")[2]}]
    assert _held(jpn_node) == held
    now = [r for r in jpn_node.store.audit(limit=100_000) if r.outcome == "refused"]
    assert len(now) == len(audited) + 1
    assert now[-1].kind == "api.refused"
    assert NOT_FINITE in now[-1].detail


def test_nan_is_refused_by_every_route_taking_a_json_body(call: Call, token: str, jpn_node: Node) -> None:
    """The gate is in front of every route (the API, TAXII, the stream), in UTF-16 too."""
    for body in (b'{"items": [{"id": "a", "n": NaN}], "label": {}}', '{"n": [Infinity]}'.encode("utf-16")):
        for method, path in _json_routes(jpn_node):
            headers = {"content-type": "application/json", "accept": "application/taxii+json;version=2.1"}
            response = call(method, path, token, content=body, headers=headers)
            seen = f"{method} {path}: {response.status_code} {response.text[:200]}"
            assert response.status_code == 422, seen
            assert NOT_FINITE in response.text, f"{method} {path}: {response.text[:200]}"


def test_an_unauthenticated_body_holding_nan_is_refused(call: Call, jpn_node: Node) -> None:
    body = b'{"payload": NaN}'  # whatever its type says, read as JSON by the gate (and by FastAPI)
    response = call("POST", "/items", None, content=body, headers={"content-type": "text/plain"})
    refused(response, 422, NOT_FINITE)
    assert last_refusal(jpn_node)["kind"] == "api.refused"


def test_a_body_nested_deeper_than_the_node_reads_is_refused_not_crashed(call: Call, token: str) -> None:
    """Nested past the interpreter's reach, with an escape (read by json): 422 at the gate, fail
    closed (before, the gate let it by and the route answered 400)."""
    body = b'{"a": "\\u00e9", "b": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = call("POST", "/items", token, content=body, headers={"content-type": "application/json"})
    refused(response, 422, "nests objects and arrays deeper")
