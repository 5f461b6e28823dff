"""Attack: ``GET /peers/envelopes`` and ``PUT /peers/envelopes/{party}``, the API's way to set which
envelope versions the node opens from its partners (until now only ``gsomia peer envelopes``).

Only an administrator or a security officer sets (not an analyst, not an anonymous caller); what is
set reaches the inbox at once (a JOSE envelope refused unopened, a COSE one opened); bad input is a
clear 4xx naming no internals, and changes nothing; every change and refusal is audited. On SQLite
and on PostgreSQL (``jpn_node``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add, app_caller, problem_detail

from gsomia.core.access import Person
from gsomia.crypto.envelope import _seal_jose, seal
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

Call = Callable[..., httpx.Response]
GSOMIA = "kor-jpn-gsomia-2016"
SOURCE = "192.0.2.7"


@pytest.fixture
def kor(tmp_path: Path, jpn_node: Node, clock: FakeClock) -> Iterator[Node]:
    """KOR's node and JPN's, each registered at the other under the GSOMIA."""
    node = make_node(tmp_path / "kor", "KOR", clock=clock)
    try:
        jpn_node.exchange.register_peer(None, node.exchange.identity(), [GSOMIA])
        node.exchange.register_peer(None, jpn_node.exchange.identity(), [GSOMIA])
        yield node
    finally:
        node.close()


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    add(jpn_node, "inoue", "JPN", None, [], ["security_officer"])
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in [*people, "inoue"]}


@pytest.fixture
def call(jpn_node: Node) -> Call:
    return app_caller(jpn_node)


def _answer(kor: Node, jpn: Node, msg_id: str, *, jose: bool) -> str | None:
    """What JPN's inbox answers an envelope of KOR's of a kind it does not know: ``unknown message
    kind`` if it opened, ``envelope refused`` if it was refused unopened."""
    peer = kor.exchange.peer("JPN")
    assert peer is not None
    how = _seal_jose if jose else seal
    text = how(
        kor.exchange.ring,
        peer,
        {"kind": "nonsense"},
        msg_id=msg_id,
        at=kor.clock(),
        ttl=timedelta(minutes=10),
    )
    (answer,) = jpn.exchange.receive([text], source=SOURCE)
    return answer["reason"]


def _rows(call: Call, token: str) -> dict[str, dict[str, Any]]:
    response = call("GET", "/peers/envelopes", token)
    assert response.status_code == 200, response.text
    return {row["party"]: row for row in response.json()}


def _audited(jpn: Node, outcome: str) -> list[dict[str, Any]]:
    return [
        {"actor": r.actor, "subject": r.subject, **json.loads(r.detail)}
        for r in jpn.store.audit(kind="envelope.versions", limit=1000)
        if r.outcome == outcome
    ]


def test_an_administrator_raises_a_partners_lowest_and_the_inbox_refuses_jose_at_once(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node
) -> None:
    assert _answer(kor, jpn_node, "j-before", jose=True) == "unknown message kind"  # JOSE opened
    assert _rows(call, tokens["tanaka"]) == {}  # nothing set; any reader may look

    response = call("PUT", "/peers/envelopes/KOR", tokens["admin"], json={"lowest": 2})
    assert response.status_code == 200, response.text
    (row,) = response.json()
    assert row | {"since": None} == {
        "party": "KOR", "lowest": 2, "effective": 2, "since": None, "pending": False,
        "cause": "set", "by": "admin",
    }  # fmt: skip
    assert _answer(kor, jpn_node, "j-after", jose=True) == "envelope refused"
    assert _answer(kor, jpn_node, "c-after", jose=False) == "unknown message kind"  # COSE opens
    (audit,) = _audited(jpn_node, "allowed")
    assert (audit["actor"], audit["subject"], audit["lowest"], audit["previous"]) == ("admin", "KOR", 2, None)

    lowered = call("PUT", "/peers/envelopes/KOR", tokens["inoue"], json={"lowest": 1})  # a security officer
    assert lowered.status_code == 200, lowered.text
    assert _answer(kor, jpn_node, "j-lowered", jose=True) == "unknown message kind"
    (by_officer,) = [r for r in _audited(jpn_node, "allowed") if r["actor"] == "inoue"]
    assert (by_officer["lowest"], by_officer["previous"]) == (1, 2)  # with the row it replaced


def test_a_cut_off_for_every_partner_from_an_instant_is_pending_until_then(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node, clock: FakeClock
) -> None:
    later = clock.now + timedelta(days=1)
    response = call(
        "PUT", "/peers/envelopes/all", tokens["inoue"], json={"lowest": 2, "from": later.isoformat()}
    )
    assert response.status_code == 200, response.text
    row = _rows(call, tokens["sato"])["all"]
    assert (row["lowest"], row["effective"], row["pending"]) == (2, 1, True)  # not in force yet
    assert _answer(kor, jpn_node, "j-now", jose=True) == "unknown message kind"
    clock.advance(days=1, seconds=1)
    assert _rows(call, tokens["sato"])["all"]["effective"] == 2
    assert _answer(kor, jpn_node, "j-later", jose=True) == "envelope refused"


def test_only_an_administrator_or_security_officer_sets_and_each_refusal_is_audited(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node
) -> None:
    detail = problem_detail(call("PUT", "/peers/envelopes/KOR", tokens["tanaka"], json={"lowest": 3}), 403)
    assert "tanaka" in detail or "role" in detail, detail
    assert call("PUT", "/peers/envelopes/KOR", None, json={"lowest": 3}).status_code == 401
    assert call("GET", "/peers/envelopes", None).status_code == 401
    assert call("PUT", "/peers/envelopes/KOR", "not-a-token", json={"lowest": 3}).status_code == 401
    assert _rows(call, tokens["admin"]) == {}  # nothing was set
    denied = jpn_node.store.audit(kind="authz.envelope.versions", limit=100)
    assert [(r.actor, r.outcome) for r in denied] == [("tanaka", "refused")]
    assert _answer(kor, jpn_node, "j-still", jose=True) == "unknown message kind"


@pytest.mark.parametrize(
    ("path", "body", "status", "names"),
    [
        ("/peers/envelopes/KOR", {"lowest": 0}, 422, "lowest"),
        ("/peers/envelopes/KOR", {"lowest": 4}, 422, "lowest"),
        ("/peers/envelopes/KOR", {"lowest": "2"}, 422, "lowest"),  # no JSON value coerced
        ("/peers/envelopes/KOR", {"lowest": True}, 422, "lowest"),  # nor is true 1
        ("/peers/envelopes/KOR", {"lowest": 2.5}, 422, "lowest"),
        ("/peers/envelopes/KOR", {}, 422, "lowest"),
        ("/peers/envelopes/KOR", {"lowest": 2, "at": "2026-01-01"}, 422, "at"),  # no field beyond
        ("/peers/envelopes/KOR", {"lowest": 2, "from": "yesterday"}, 422, "from"),
        ("/peers/envelopes/KOR", {"lowest": 2, "from": "2030-01-01T00:00Z"}, 422, "every partner"),
        ("/peers/envelopes/kor", {"lowest": 2}, 422, "party"),
        ("/peers/envelopes/ALL", {"lowest": 2}, 404, "ALL"),  # a trigraph no peer has
        ("/peers/envelopes/FRA", {"lowest": 2}, 404, "FRA"),
        ("/peers/envelopes/%2A", {"lowest": 2}, 422, "party"),  # '*' is the store's, not the API's
    ],
)
@pytest.mark.usefixtures("kor")  # KOR registered: only the body or the party is at fault
def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    call: Call,
    tokens: dict[str, str],
    jpn_node: Node,
    path: str,
    body: Any,
    status: int,
    names: str,
) -> None:
    response = call("PUT", path, tokens["admin"], json=body)
    assert names in problem_detail(response, status) or names in response.text
    assert _rows(call, tokens["admin"]) == {}
    assert _audited(jpn_node, "allowed") == []


@pytest.mark.parametrize(
    ("path", "content", "status", "names"),
    [
        ("/peers/envelopes/KOR", b"[]", 422, "object"),  # a body that is not an object
        ("/peers/envelopes/KOR", b'"3"', 422, "object"),
        ("/peers/envelopes/KOR", b"null", 422, "body"),
        ("/peers/envelopes/KOR", b"3", 422, "object"),
        ("/peers/envelopes/KOR", b'{"lowest": 3', 422, "JSON"),  # not JSON at all
        # Python's json takes these; the request gate refuses them for every route (not JSON, and
        # no other reader of what is stored takes them), before the route reads "lowest"
        ("/peers/envelopes/KOR", b'{"lowest": NaN}', 422, "NaN, an infinity"),
        ("/peers/envelopes/KOR", b'{"lowest": Infinity}', 422, "NaN, an infinity"),
        ("/peers/envelopes/KOR", b'{"lowest": 1e400}', 422, "past the largest double"),
        ("/peers/envelopes/KOR", b'{"lowest": 3.0000000000000004}', 422, "lowest"),  # just over 3
        ("/peers/envelopes/KOR", b'{"lowest": 18446744073709551619}', 422, "lowest"),  # 2**64 + 3
        ("/peers/envelopes/KOR%0A", b'{"lowest": 2}', 422, "party"),  # a trigraph and a line feed
        ("/peers/envelopes/%20KOR", b'{"lowest": 2}', 422, "party"),
        ("/peers/envelopes/JPN", b'{"lowest": 2}', 404, "JPN"),  # the node's own party: not a partner
        ("/peers/envelopes/all", b'{"lowest": 2, "from": "2030-01-01T00:00"}', 422, "from"),  # no offset
        ("/peers/envelopes/all", b'{"lowest": 2, "from": "2030-01-01T00:00Z\\u0000"}', 422, "from"),
        (
            "/peers/envelopes/all",
            b'{"lowest": 2, "from": 1893456000}',
            422,
            "from",
        ),  # a number, not an instant
    ],
)
@pytest.mark.usefixtures("kor")
def test_a_body_or_party_the_route_cannot_take_is_a_clear_4xx_and_changes_nothing(
    call: Call,
    tokens: dict[str, str],
    jpn_node: Node,
    path: str,
    content: bytes,
    status: int,
    names: str,
) -> None:
    response = call(
        "PUT", path, tokens["admin"], content=content, headers={"Content-Type": "application/json"}
    )
    assert names in problem_detail(response, status) or names in response.text
    assert _rows(call, tokens["admin"]) == {}
    assert _audited(jpn_node, "allowed") == []


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH"])
@pytest.mark.usefixtures("kor")
def test_no_other_method_reaches_the_rows(call: Call, tokens: dict[str, str], method: str) -> None:
    response = call(method, "/peers/envelopes/KOR", tokens["admin"], json={"lowest": 3})
    assert response.status_code == 405, response.text
    assert call(method, "/peers/envelopes", tokens["admin"], json={"lowest": 3}).status_code == 405
    assert _rows(call, tokens["admin"]) == {}
