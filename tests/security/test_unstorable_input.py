"""The adversary's text no store can hold (a NUL, U+0000, which PostgreSQL's text type refuses; a
lone surrogate, which UTF-8 cannot encode) sent by an AUTHENTICATED caller to every kind of entry
point: an item's label, id and payload, a person, a decision, a release, a peer, a duty, a TAXII
envelope, the dashboard's login form, a query parameter, a path, a header.

On both stores alike: 422 naming the place (never the value, never SQL or a traceback), the refusal
audited naming it too, nothing stored. Before the one gate (``gsomia.api._text``), SQLite stored a
NUL where PostgreSQL refused it, and a lone surrogate was a 500 (the driver could not encode it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy
from tests.api._through_app import Call, caller, chief_token, jpn_per_store, websocket_scope
from tests.node_fixtures import jpn_label

from gsomia.api import create_app
from gsomia.node import Node
from gsomia.testing import FakeClock
from gsomia.ui import dashboard_scope

INTERNALS = ("SELECT", "INSERT", "psycopg", "sqlite", "sqlalchemy", "Traceback", "Internal Server Error")
# what a refusal may add: the audit records, the tree over them, the bounded tallies and budgets
AUDITING = {"audit_records", "merkle_nodes", "tree_heads", "refusal_tallies", "rate_counters", "generations"}
NUL, LONE = "\x00", "\ud800"
TAXII = "application/taxii+json;version=2.1"
GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def jpn_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_status: str | None
) -> Iterator[Node]:
    """One JPN node per store for the module: every request below is refused, nothing is stored."""
    yield from jpn_per_store(request, tmp_path_factory, postgres_status)


@pytest.fixture(scope="module")
def token(jpn_node: Node) -> str:
    """A person holding every role: the refusals below are about the text, not about rights."""
    return chief_token(jpn_node)


@pytest.fixture(scope="module")
def call(jpn_node: Node) -> Call:
    return caller(jpn_node)


def stored(node: Node) -> dict[str, int]:
    """The rows of every table but those a refusal adds to (the audit records and their tallies)."""
    tables = sqlalchemy.inspect(node.store.engine).get_table_names()
    with node.store.engine.connect() as conn:
        return {
            t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one()  # noqa: S608 - own names
            for t in tables
            if t not in AUDITING and t != "alembic_version"
        }


def raw(body: dict[str, Any]) -> bytes:
    """``body`` as JSON whose text may hold a lone surrogate (written as its escape, as a client does)."""
    return json.dumps(body).encode()


def item(**kw: Any) -> dict[str, Any]:
    return {"label": jpn_label(), "payload": {"track": 1}, **kw}


def decision(**kw: Any) -> dict[str, Any]:
    return {
        "sender": "JPN",
        "recipient": "KOR",
        "purpose": "threat-assessment",
        "label": jpn_label(),
        "at": "2024-06-01",
        **kw,
    }


def bodies(bad: str) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, body, the place the refusal names) for one bad character."""
    return [
        ("POST", "/items", item(id=f"a{bad}b"), "body.id"),
        ("POST", "/items", item(label=jpn_label(classification=f"極{bad}秘")), "body.label.classification"),
        ("POST", "/items", item(label=jpn_label(topics=["dprk-missile", bad])), "body.label.topics.1"),
        ("POST", "/items", item(label=jpn_label(caveats=[f"x{bad}"])), "body.label.caveats.0"),
        ("POST", "/items", item(payload={"note": f"x{bad}"}), "body.payload.note"),
        (
            "POST",
            "/items",
            {"portions": [{"id": "p1", "label": jpn_label(purpose=f"t{bad}"), "payload": 1}]},
            "body.portions.0.label.purpose",
        ),
        ("POST", "/people", {"id": "lee", "name": f"Lee{bad}", "nationality": "JPN"}, "body.name"),
        ("POST", "/decisions", decision(purpose=f"threat{bad}"), "body.purpose"),
        ("POST", "/decisions", decision(label={**jpn_label(), f"k{bad}": 1}), "body.label (a name in it)"),
        ("POST", "/items/x/release", {"recipient": "KOR", "purpose": f"p{bad}"}, "body.purpose"),
        ("POST", "/releases", {"recipient": "KOR", "items": ["x", f"y{bad}"]}, "body.items.1"),
        (
            "POST",
            "/peers",
            {"document": {"payload": f"x{bad}"}, "agreements": ["a"]},
            "body.document.payload",
        ),
        (
            "POST",
            "/assurances",
            {"agreement": "kor-jpn-gsomia-2016", "reference": f"r{bad}"},
            "body.reference",
        ),
        (
            "POST",
            "/items/x/consent-requests",
            {"third_party": "USA", "purpose": "p", "reason": f"r{bad}"},
            "body.reason",
        ),
        ("POST", "/items/x/incidents", {"description": f"d{bad}"}, "body.description"),
        ("POST", "/registers/authorities", {"name": f"n{bad}"}, "body.name"),
        (
            "POST",
            f"/agreements/{GSOMIA}/equivalence-changes",
            {"remaps": [], "effective": "2024-06-01", "reason": f"r{bad}"},
            "body.reason",
        ),
        ("POST", "/stream/tracks", {"launch": f"l{bad}"}, "body.launch"),
    ]


CASES = [
    pytest.param(method, path, body, place, id=f"{name}-{path}-{place}")
    for name, bad in (("nul", NUL), ("lone-surrogate", LONE))
    for method, path, body, place in bodies(bad)
]


def refused(response: httpx.Response, place: str, node: Node, before: dict[str, int]) -> None:
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    detail = response.json().get("detail") or response.json().get("description")
    assert detail.startswith(f"{place}: "), detail
    assert "U+0000" in detail or "U+D800" in detail, detail
    for word in INTERNALS:
        assert word.lower() not in response.text.lower(), f"{word!r} leaked: {response.text}"
    rows = [r for r in node.store.audit(limit=1000) if r.outcome == "refused"]
    assert rows, "not audited"
    assert place in json.loads(rows[-1].detail)["reason"], rows[-1]
    assert rows[-1].actor == "chief", rows[-1]
    assert stored(node) == before, "something was stored"


@pytest.mark.parametrize(("method", "path", "body", "place"), CASES)
def test_a_json_body_holding_unstorable_text_is_refused_alike(
    call: Call, token: str, jpn_node: Node, method: str, path: str, body: dict[str, Any], place: str
) -> None:
    before = stored(jpn_node)
    response = call(method, path, token, content=raw(body), headers={"Content-Type": "application/json"})
    refused(response, place, jpn_node, before)


@pytest.mark.parametrize("bad", [NUL, LONE], ids=["nul", "lone-surrogate"])
def test_the_same_body_as_utf8_bytes(call: Call, token: str, jpn_node: Node, bad: str) -> None:
    """The character itself in the body's bytes, not its escape (json.loads reads UTF-8's bytes of
    a surrogate, as Starlette's Request.json does): not a way round the gate."""
    before = stored(jpn_node)
    text = json.dumps(item(id=f"a{bad}b"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    response = call("POST", "/items", token, content=text, headers={"Content-Type": "application/json"})
    refused(response, "body.id", jpn_node, before)


@pytest.mark.parametrize("bad", [NUL, LONE], ids=["nul", "lone-surrogate"])
def test_a_taxii_envelope_holding_unstorable_text(call: Call, token: str, jpn_node: Node, bad: str) -> None:
    before = stored(jpn_node)
    objects = [{"type": "indicator", "id": "indicator--1", "name": f"n{bad}"}]
    response = call(
        "POST",
        "/taxii2/api/collections/x/objects/",
        token,
        content=raw({"objects": objects}),
        headers={"Content-Type": TAXII},
    )
    assert response.headers["content-type"].startswith("application/taxii+json")
    assert response.json()["error_code"] == "invalid-input"
    refused(response, "body.objects.0.name", jpn_node, before)


@pytest.mark.parametrize(
    ("url", "place"),
    [
        ("/items?topic=a%00b", "query.topic"),
        ("/items?cursor=%00", "query.cursor"),
        ("/audit/log?kind=a%00b", "query.kind"),
        ("/feed?topic=%00", "query.topic"),
        ("/people/a%00b", "path"),
        ("/agreements/kor-jpn-gsomia-2016%00/status", "path"),
    ],
)
def test_a_query_or_a_path_holding_a_nul(
    call: Call, token: str, jpn_node: Node, url: str, place: str
) -> None:
    before = stored(jpn_node)
    refused(call("GET", url, token), place, jpn_node, before)


def test_a_header_holding_a_nul(call: Call, token: str, jpn_node: Node) -> None:
    """A header read into a decision (the purpose a caller states): refused, and not on the word of
    the headers' own credentials (counted against the source, as nobody's)."""
    before = stored(jpn_node)
    response = call("GET", "/items", token, headers={"Gsomia-Purpose": "threat\x00assessment"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("header.gsomia-purpose: "), response.text
    rows = [r for r in jpn_node.store.audit(limit=1000) if r.outcome == "refused"]
    assert "header.gsomia-purpose" in json.loads(rows[-1].detail)["reason"]
    assert stored(jpn_node) == before


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_the_dashboard_login_form_holding_a_nul(call: Call, jpn_node: Node, content_type: str) -> None:
    """Unauthenticated: refused all the same, audited in bounded space (the source's tally). The
    login page reads its body as a form whatever the type (``text/plain`` passed the gate before)."""
    before = stored(jpn_node)
    base = dashboard_scope(jpn_node.ring).path
    response = call(
        "POST",
        f"{base}/login",
        content=b"token=a%00b&next=x",
        headers={"Content-Type": content_type, "Origin": jpn_node.config.endpoint},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("body.token: "), response.text
    assert stored(jpn_node) == before


def test_text_that_only_looks_like_it_passes(call: Call, token: str) -> None:
    """An escaped backslash before ``u0000``, a surrogate pair (an astral character), Korean text
    (whose UTF-8 starts with the byte a surrogate's does): stored as any other text."""
    body = item(id="looks-alike", payload={"a": "\\u0000", "b": "\U0001f600", "c": "힘"})
    text = json.dumps(body, ensure_ascii=False).encode()
    response = call("POST", "/items", token, content=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert call("GET", "/items/looks-alike", token).json()["payload"] == body["payload"]


def test_a_websocket_handshake_holding_a_nul_is_closed(jpn_node: Node) -> None:
    """The feed's WebSocket asked with a NUL in its query: closed (1008) before it is accepted,
    naming the place, audited; driven through the whole app as a server would."""
    app = create_app(jpn_node)
    sent: list[dict[str, Any]] = []
    scope = websocket_scope("/feed/ws", "192.0.2.7", query=b"topic=%00")

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert [m["type"] for m in sent] == ["websocket.close"], sent
    assert sent[0]["code"] == 1008
    assert sent[0]["reason"].startswith("query.topic: ")
    rows = [r for r in jpn_node.store.audit(limit=1000) if r.outcome == "refused"]
    assert "query.topic" in json.loads(rows[-1].detail)["reason"]


@pytest.mark.parametrize(
    "content_type",
    [
        b"\xa0application/json",  # FastAPI's reading strips a Unicode space (NBSP, NEL): JSON to it
        b"application/json\x85; charset=utf-8",
        b"text/plain",  # no route reads it: refused all the same, nothing to guess
    ],
    ids=["nbsp-before", "nel-after", "text-plain"],
)
def test_a_content_type_the_gate_might_not_read_as_json(
    call: Call, token: str, jpn_node: Node, content_type: bytes
) -> None:
    """The gate read a body only when its own reading of ``Content-Type`` said JSON or a form, while
    FastAPI reads that header its own way (the email package's, which strips any Unicode space): a
    NBSP before ``application/json`` made the gate pass the body as "not text" and FastAPI parse it
    as JSON, so a NUL was stored on SQLite (201). Every body is now looked at."""
    before = stored(jpn_node)
    body = raw(item(id="typed", payload={"note": f"x{NUL}"}))
    response = call("POST", "/items", token, content=body, headers={"Content-Type": content_type})
    refused(response, "body.payload.note", jpn_node, before)


@pytest.mark.parametrize("content_type", ["application/json, text/plain", ",application/json"])
def test_a_taxii_post_whose_content_type_is_a_list(
    call: Call, token: str, jpn_node: Node, content_type: str
) -> None:
    """TAXII's own reading of ``Content-Type`` takes the first media type of a comma list (an empty
    one skipped) and took the body as JSON; the gate's did not, and an agreement's collection stored
    the object's NUL (202)."""
    cid = next(
        c["id"]
        for c in call("GET", "/taxii2/api/collections/", token).json()["collections"]
        if c["title"] == f"agreement:{GSOMIA}"
    )
    before = stored(jpn_node)
    objects = [{"type": "indicator", "id": "indicator--1", "name": f"n{NUL}"}]
    response = call(
        "POST",
        f"/taxii2/api/collections/{cid}/objects/",
        token,
        content=raw({"objects": objects}),
        headers={"Content-Type": content_type},
    )
    refused(response, "body.objects.0.name", jpn_node, before)


def test_a_taxii_post_nested_deeper_than_the_parser_goes(call: Call, token: str, jpn_node: Node) -> None:
    """A TAXII envelope nested past the JSON parser's depth was a RecursionError the route did not
    take for "not JSON": a 500. Then the 400 it answers any body that is not JSON; now the request
    gate's 422, read once for every route (``loads_strict``), naming the nesting, audited."""
    cid = next(
        c["id"]
        for c in call("GET", "/taxii2/api/collections/", token).json()["collections"]
        if c["title"] == f"agreement:{GSOMIA}"
    )
    deep = b'{"objects": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    url = f"/taxii2/api/collections/{cid}/objects/"
    response = call("POST", url, token, content=deep, headers={"Content-Type": TAXII})
    assert response.status_code == 422, response.text[:300]
    assert response.json()["description"] == "body: nests objects and arrays deeper than this node reads"
    for word in INTERNALS:
        assert word.lower() not in response.text.lower()
    rows = [r for r in jpn_node.store.audit(limit=1000) if r.outcome == "refused"]
    assert "deeper than this node reads" in rows[-1].detail, rows[-1]


def test_the_publishers_feed_refuses_a_message_holding_unstorable_text(token: str, jpn_node: Node) -> None:
    """After the handshake, each text message of the publisher's feed (a release officer's, so
    authenticated): a NUL or a lone surrogate anywhere in it, a key's included, is refused whole
    with a frame naming the place (never the value), and audited in bounded space: of 12 such
    messages in a minute, 10 are records of their own and one ``refusal.tally`` counts all 12 once
    the minute has closed. Before, the NUL in a key was echoed in the refusal and the surrogate was
    "not JSON", each refused update an audit record of its own, as many as the feed sent."""
    app = create_app(jpn_node)
    messages = [
        json.dumps({"track_id": f"t{NUL}"}),
        json.dumps([{"track_id": "t"}, {f"launch{NUL}": 1}]),
        json.dumps({"missile_class": f"x{LONE}"}),
    ] * 4
    places = ["message.track_id", "message.1 (a name in it)", "message.missile_class"] * 4
    inbound = [
        {"type": "websocket.connect"},
        *({"type": "websocket.receive", "text": text} for text in messages),
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[dict[str, Any]] = []
    scope = websocket_scope("/stream/tracks/publish", "192.0.2.9", token=token)

    async def receive() -> dict[str, Any]:
        return inbound.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def records(kind: str) -> list[dict[str, Any]]:
        return [json.loads(r.detail) for r in jpn_node.store.audit(kind=kind, limit=1000)]

    before = stored(jpn_node)
    published = len(records("stream.publish"))
    asyncio.run(app(scope, receive, send))
    assert [m["type"] for m in sent] == ["websocket.accept"] + ["websocket.send"] * 12, sent
    answers = [json.loads(m["text"]) for m in sent[1:]]
    assert [a["detail"].split(": ")[0] for a in answers] == places
    assert all(a["error"] == "InvalidInputError" for a in answers)
    assert all("U+0000" in a["detail"] or "U+D800" in a["detail"] for a in answers)
    audited = records("stream.publish")[: len(records("stream.publish")) - published]
    assert len(audited) == 10  # NodeContext.REFUSALS_RECORDED
    assert all(d["source"] == "192.0.2.9" and d["person"] == "chief" for d in audited), audited
    assert {d["reason"].split(": ")[0] for d in audited} == set(places)
    clock: FakeClock = jpn_node.kernel.clock  # type: ignore[assignment]
    clock.advance(seconds=60)
    jpn_node.kernel.close_refusal_tallies()
    tallies = [(d["source"], d["code"], d["count"]) for d in records("refusal.tally")]
    assert ("192.0.2.9", "unstorable", 12) in tallies
    assert stored(jpn_node) == before
