"""The REST API through httpx.ASGITransport against the real app and a real store."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import app_caller, jpn_label, kor_label

from gsomia.core.access import Person
from gsomia.demo import network
from gsomia.node import Node
from gsomia.testing import make_node

Call = Callable[..., httpx.Response]
GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture
def call(jpn_node: Node) -> Call:
    return app_caller(jpn_node)


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in people}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["detail"]
    assert body["type"].startswith("urn:gsomia:problem:")
    return body


def receive(node: Node, item_id: str = "kor-1", **label: Any) -> None:
    """A KOR item as JPN holds it once received (the operator enters it as the exchange would store
    it: a person may not enter another party's item, see tests/security/test_fabricated_items.py)."""
    node.items.ingest(
        None,
        label=kor_label(**label),
        payload=b'{"track": 7}',
        item_id=item_id,
        received_from="KOR",
        agreement=GSOMIA,
    )


def test_health_and_openapi(call: Call) -> None:
    assert call("GET", "/healthz").json() == {
        "status": "ok",
        "party": "JPN",
        "bus": {"kind": "in-process", "state": "connected"},
    }
    spec = call("GET", "/openapi.json").json()
    assert "/items" in spec["paths"]
    assert "/decisions" in spec["paths"]


def test_no_or_bad_token_is_401_with_a_challenge(call: Call) -> None:
    body = problem(call("GET", "/items"), 401)
    assert "Bearer" in body["detail"]
    response = call("GET", "/items", "gsm_deadbeef_nope")
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_ingest_then_read_as_cleared_and_under_cleared(
    call: Call, tokens: dict[str, str], jpn_node: Node
) -> None:
    created = call("POST", "/items", tokens["tanaka"], json={"id": "j-1", "label": jpn_label(), "payload": 1})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/items/j-1"
    receive(jpn_node)
    read = call("GET", "/items/kor-1", tokens["tanaka"])
    assert read.json()["label"]["alternatives"] == [
        {"party": "JPN", "classification": "極秘", "agreement": GSOMIA}
    ]
    assert read.status_code == 200
    assert read.json()["payload"] == {"track": 7}
    refused = problem(call("GET", "/items/kor-1", tokens["sato"]), 404)  # as an unknown id
    assert "checks" not in refused
    assert "極秘" not in str(refused)
    inventory = call("GET", "/items/kor-1/inventory", tokens["tanaka"]).json()
    assert inventory[0]["kind"] == "received"


def test_bytes_payload_round_trips(call: Call, tokens: dict[str, str]) -> None:
    raw = bytes(range(256))
    body = {"id": "blob", "label": jpn_label(), "payload_base64": base64.b64encode(raw).decode()}
    assert call("POST", "/items", tokens["tanaka"], json=body).status_code == 201
    got = call("GET", "/items/blob", tokens["tanaka"]).json()
    assert base64.b64decode(got["payload_base64"]) == raw


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"label": jpn_label()}, 422, "exactly one of payload"),
        ({"payload": 1}, 422, "label"),
        ({"label": jpn_label(classification="cho-gokuhi"), "payload": 1}, 422, "JPN has no classification"),
        ({"label": jpn_label(created="2024-01-01T00:00:00"), "payload": 1}, 422, "no UTC offset"),
        ({"label": "secret", "payload": 1}, 422, "label"),
        ({"label": jpn_label(), "payload_base64": "***"}, 422, "base64"),
        ({"label": jpn_label(), "payload": 1, "id": "a/b"}, 422, "body.id"),
        ({"label": jpn_label(), "payload": 1, "colour": "red"}, 422, "colour"),
        ({"label": kor_label(), "payload": 1}, 422, "only with KOR's signature"),
    ],
)
def test_bad_ingest_is_a_clear_problem(
    call: Call, tokens: dict[str, str], jpn_node: Node, body: dict[str, Any], status: int, needle: str
) -> None:
    found = problem(call("POST", "/items", tokens["tanaka"], json=body), status)
    assert needle in found["detail"]
    assert jpn_node.store.count_items() == 0


def test_duplicate_is_409_and_oversize_is_413(call: Call, tokens: dict[str, str], jpn_node: Node) -> None:
    body = {"id": "j-1", "label": jpn_label(), "payload": 1}
    assert call("POST", "/items", tokens["tanaka"], json=body).status_code == 201
    problem(call("POST", "/items", tokens["tanaka"], json=body), 409)
    limit = jpn_node.config.max_payload_bytes
    just_over = {"label": jpn_label(), "payload_base64": base64.b64encode(b"x" * (limit + 1)).decode()}
    problem(call("POST", "/items", tokens["tanaka"], json=just_over), 413)
    huge = b"{" + b" " * (limit * 3) + b"}"
    body = problem(
        call("POST", "/items", tokens["tanaka"], content=huge, headers={"content-type": "application/json"}),
        413,
    )
    assert "limit" in body["detail"]
    assert jpn_node.store.count_items() == 1


def test_above_clearance_ingest_is_403(call: Call, tokens: dict[str, str]) -> None:
    problem(call("POST", "/items", tokens["sato"], json={"label": jpn_label(), "payload": 1}), 403)


def test_listing_pages_with_a_cursor(call: Call, tokens: dict[str, str], jpn_node: Node) -> None:
    for n in range(5):
        receive(jpn_node, f"k{n}")
    first = call("GET", "/items", tokens["tanaka"], params={"limit": 3}).json()
    assert [i["id"] for i in first["items"]] == ["k0", "k1", "k2"]
    second = call(
        "GET", "/items", tokens["tanaka"], params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    assert [i["id"] for i in second["items"]] == ["k3", "k4"]
    assert second["next_cursor"] is None
    filtered = call("GET", "/items", tokens["tanaka"], params={"originator": "JPN"}).json()
    assert filtered["items"] == []
    assert "withheld" not in call("GET", "/items", tokens["sato"]).json()  # nothing counts the unreadable
    problem(call("GET", "/items", tokens["tanaka"], params={"cursor": "zzz"}), 422)
    problem(call("GET", "/items", tokens["tanaka"], params={"limit": 0}), 422)
    problem(call("GET", "/items", tokens["tanaka"], params={"created_from": "last week"}), 422)


def test_people_and_tokens(call: Call, tokens: dict[str, str]) -> None:
    new = {
        "id": "ito",
        "name": "Ito",
        "nationality": "JPN",
        "clearance": "hi",
        "need_to_know": ["dprk-missile"],
        "roles": ["analyst"],
    }
    problem(call("POST", "/people", tokens["tanaka"], json=new), 403)
    made = call("POST", "/people", tokens["admin"], json=new)
    assert made.status_code == 201
    assert made.json()["clearance"] == "秘"
    problem(call("POST", "/people", tokens["admin"], json=new), 409)
    problem(call("POST", "/people", tokens["admin"], json={**new, "id": "x", "clearance": "SECRET"}), 422)
    issued = call("POST", "/people/ito/tokens", tokens["admin"], json={"days": 2})
    assert issued.status_code == 201
    ito = issued.json()
    assert call("GET", "/people/ito", ito["token"]).json()["id"] == "ito"
    problem(call("GET", "/people/tanaka", ito["token"]), 403)
    assert call("DELETE", f"/tokens/{ito['id']}", ito["token"]).status_code == 204
    problem(call("GET", "/people/ito", ito["token"]), 401)
    assert len(call("GET", "/people", tokens["admin"]).json()) == 7


def test_agreements_and_status(call: Call, tokens: dict[str, str]) -> None:
    ids = {a["id"] for a in call("GET", "/agreements", tokens["tanaka"]).json()}
    assert GSOMIA in ids
    assert "usa-kor-gsomia-1987" not in ids  # not a JPN agreement
    status = call("GET", f"/agreements/{GSOMIA}/status", tokens["tanaka"], params={"at": "2019-08-24"}).json()
    assert status["status"] == "termination_notified"
    assert status["in_force"] is True
    suspended = call(
        "GET", f"/agreements/{GSOMIA}/status", tokens["tanaka"], params={"at": "2020-01-01"}
    ).json()
    assert "notice_suspended" in {a["about"] for a in suspended["assumptions"]}  # Seoul's reading (§3)
    assert all(a["consequence"] for a in suspended["assumptions"])
    problem(call("GET", "/agreements/nope", tokens["tanaka"]), 404)
    problem(call("GET", f"/agreements/{GSOMIA}/status", tokens["tanaka"], params={"at": "soon"}), 422)


def test_decisions(call: Call, tokens: dict[str, str], jpn_node: Node, tmp_path: Path) -> None:
    body = {
        "sender": "JPN",
        "recipient": "KOR",
        "purpose": "threat-assessment",
        "label": jpn_label(),
        "at": "2024-03-01",
    }
    unassured = call("POST", "/decisions", tokens["tanaka"], json=body).json()
    assert unassured["allowed"] is False  # Art. 7(5): KOR has given this node no assurance yet
    assert [c["rule"] for c in unassured["checks"] if not c["passed"]] == ["assurance"]
    kor = make_node(tmp_path / "kor", "KOR", clock=jpn_node.clock)  # type: ignore[arg-type]
    try:
        jpn_node.exchange.register_peer(None, kor.exchange.identity(), [GSOMIA])
        network.assure({"KOR": kor, "JPN": jpn_node})
    finally:
        kor.close()
    decided = call("POST", "/decisions", tokens["tanaka"], json=body).json()
    assert decided["allowed"] is True
    assert decided["marking"]["text"] == "JPN 군사II급비밀"
    assumed = " ".join(a["text"] for a in decided["assumptions"])  # what the decision rests on (§3)
    assert "purposes listed" in assumed
    assert "特定秘密 above 極秘" in assumed
    refused = call("POST", "/decisions", tokens["tanaka"], json={**body, "at": "2016-11-01"}).json()
    assert refused["allowed"] is False
    problem(
        call(
            "POST",
            "/decisions",
            tokens["tanaka"],
            json={
                **body,
                "consents": [
                    {
                        "kind": "blessing",
                        "originator": "JPN",
                        "recipient": "KOR",
                        "given_at": "2024-01-01",
                        "reference": "r",
                    }
                ],
            },
        ),
        422,
    )


def test_unknown_route_is_a_problem(call: Call) -> None:
    problem(call("GET", "/nowhere"), 404)


def test_every_refusal_at_the_edge_is_audited(call: Call, tokens: dict[str, str], jpn_node: Node) -> None:
    problem(
        call("POST", "/items", tokens["tanaka"], json={"payload": 1}), 422
    )  # refused by the request model
    problem(call("GET", "/nowhere"), 404)
    suspended = call(
        "GET", f"/agreements/{GSOMIA}/status", tokens["tanaka"], params={"at": "2020-01-01"}
    ).json()
    assert "notice_suspended" in {a["about"] for a in suspended["assumptions"]}  # Seoul's reading (§3)
    assert all(a["consequence"] for a in suspended["assumptions"])
    problem(call("GET", "/agreements/nope", tokens["tanaka"]), 404)
    problem(call("POST", "/items", tokens["sato"], json={"label": jpn_label(), "payload": 1}), 403)
    refused = [(r.kind, r.subject) for r in jpn_node.store.audit(limit=1000) if r.outcome == "refused"]
    assert ("api.refused", "/items") in refused
    assert ("api.refused", "/nowhere") in refused
    assert ("api.refused", "/agreements/nope") in refused
    assert sum(1 for kind, _ in refused if kind == "item.ingest") == 1  # the service's own record, not twice
    assert sum(1 for kind, subject in refused if kind == "api.refused" and subject == "/items") == 1


def test_public_inclusion_proofs_show_only_partners_envelope_entries(call: Call, jpn_node: Node) -> None:
    jpn_node.people.add_person(None, {"id": "x", "name": "X", "nationality": "JPN"})
    entry = jpn_node.store.audit(kind="person.add")[-1].entry_id
    problem(call("GET", "/audit/inclusion", params={"entry": entry}), 404)
    jpn_node.audit.sign_head()  # the node's writer brings it under a signed head: still not public
    problem(call("GET", "/audit/inclusion", params={"entry": entry}), 404)
    assert jpn_node.audit.inclusion(entry)["entry_id"] == entry  # the node's own operator may prove it


def test_equivalence_changes_are_proposed_by_a_security_officer_and_listed(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    """POST /agreements/{id}/equivalence-changes (security officers), GET lists them; a change in the
    past, or one that breaks the table, is a 422 problem and nothing is written."""
    jpn_node.people.add_person(
        None,
        {
            "id": "mori", "name": "Mori", "nationality": "JPN", "clearance": "極秘",
            "need_to_know": ["dprk-missile"], "roles": ["security_officer"],
        },
    )  # fmt: skip
    officer = jpn_node.credentials.issue(None, "mori")[1]
    url = "/agreements/kor-jpn-gsomia-2016/equivalence-changes"
    body = {
        "remaps": [{"level": "極秘", "partner": "KOR", "partner_level": "군사III급비밀"}],
        "effective": "2030-01-01T00:00:00+09:00",
        "reason": "a stricter review",
    }
    refused = call("POST", url, tokens["admin"], json=body)
    assert refused.status_code == 403
    past = problem(call("POST", url, officer, json={**body, "effective": "2020-01-01"}), 422)
    assert "now or later" in past["detail"]
    caveat = {**body, "remaps": [{"level": "極秘", "partner": "KOR", "partner_level": "대외비"}]}
    assert "handling caveat" in problem(call("POST", url, officer, json=caveat), 422)["detail"]
    problem(call("POST", url, officer, json={**body, "remaps": []}), 422)
    assert call("GET", url, officer).json() == []
    made = call("POST", url, officer, json=body)
    assert made.status_code == 201, made.text
    assert (made.json()["party"], made.json()["sequence"]) == ("JPN", 1)
    (listed,) = call("GET", url, officer).json()
    assert listed["remaps"] == [
        {"party": "JPN", "level": "極秘", "partner": "KOR", "partner_level": "군사III급비밀"}
    ]
    assert call("GET", url, tokens["tanaka"]).status_code == 403  # an analyst does not read policy
    assert call("GET", "/agreements/nope/equivalence-changes", officer).status_code == 404
