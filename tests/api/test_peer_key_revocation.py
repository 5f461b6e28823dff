"""Attack: ``POST /peers/{party}/keys/{kid}/revoke``, the API's way to refuse a partner's leaked key.

Only a security officer may revoke (not an analyst, not an administrator, not a token of another
node); an unknown party or key is a clear 404, malformed input a 422, neither naming internals;
every refusal is audited. A revocation repeated changes nothing and is audited once; one racing a
registration written by another process of the node is decided again (compare-and-set), so
neither write is lost. On SQLite and on PostgreSQL (``jpn_node``)."""

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
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

Call = Callable[..., httpx.Response]
GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture
def kor(tmp_path: Path, jpn_node: Node, clock: FakeClock) -> Iterator[Node]:
    """KOR's node, registered at JPN as its peer under the GSOMIA."""
    node = make_node(tmp_path / "kor", "KOR", clock=clock)
    try:
        jpn_node.exchange.register_peer(None, node.exchange.identity(), [GSOMIA])
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


def _kid(node: Node) -> str:
    return node.ring.signing_key(node.clock())[0]


def _revoked_at(jpn: Node, kid: str) -> str | None:
    """When JPN refuses KOR's key ``kid`` from, as its store holds it now (any process's write)."""
    jpn.kernel.peers.invalidate()
    held = jpn.exchange.peer("KOR")
    assert held is not None
    entry = next(e for e in held.keys if e.kid == kid)
    return None if entry.revoked_at is None else entry.revoked_at.isoformat()


def _audited(jpn: Node, kind: str, outcome: str) -> list[dict[str, Any]]:
    return [
        {"actor": r.actor, "subject": r.subject, **json.loads(r.detail)}
        for r in jpn.store.audit(limit=1000)
        if (r.kind, r.outcome) == (kind, outcome)
    ]


def test_a_security_officer_revokes_once_and_a_repeat_changes_nothing(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node
) -> None:
    kid = _kid(kor)
    path = f"/peers/KOR/keys/{kid}/revoke"
    first = call("POST", path, tokens["inoue"], json={})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["kid"], body["changed"], body["peer"]["party"]) == (kid, True, "KOR")
    assert body["revoked_at"] == jpn_node.clock().isoformat() == _revoked_at(jpn_node, kid)
    again = call(
        "POST", path, tokens["inoue"], json={"at": (jpn_node.clock() + timedelta(days=1)).isoformat()}
    )
    assert again.status_code == 200, again.text
    assert (again.json()["changed"], again.json()["revoked_at"]) == (False, body["revoked_at"])
    changes = _audited(jpn_node, "key.revoke", "allowed")
    assert [(c["actor"], c["subject"], c["kid"]) for c in changes] == [("inoue", "KOR", kid)]  # once
    # an earlier instant is a change: the key is refused from then on (retroactively)
    earlier = (jpn_node.clock() - timedelta(hours=1)).isoformat()
    moved = call("POST", path, tokens["inoue"], json={"at": earlier})
    assert (moved.json()["changed"], moved.json()["revoked_at"]) == (True, earlier)
    assert _revoked_at(jpn_node, kid) == earlier
    assert len(_audited(jpn_node, "key.revoke", "allowed")) == 2


@pytest.mark.parametrize("who", ["tanaka", "admin"])
def test_only_a_security_officer_may_revoke(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node, who: str
) -> None:
    """An analyst, and an administrator (who registers peers, so must not also decide on keys)."""
    kid = _kid(kor)
    detail = problem_detail(call("POST", f"/peers/KOR/keys/{kid}/revoke", tokens[who], json={}), 403)
    assert "security_officer" in detail
    assert _revoked_at(jpn_node, kid) is None
    refused = _audited(jpn_node, "authz.key.revoke", "refused")
    assert [r["actor"] for r in refused] == [who]


def test_another_nodes_token_or_none_is_401_and_audited(call: Call, jpn_node: Node, kor: Node) -> None:
    """KOR's own security officer's token means nothing at JPN: KOR may not revoke its key here."""
    add(kor, "kim", "KOR", None, [], ["security_officer"])
    foreign = kor.credentials.issue(None, "kim")[1]
    kid = _kid(kor)
    for token in (foreign, None, "gsm_deadbeef_forged"):
        problem_detail(call("POST", f"/peers/KOR/keys/{kid}/revoke", token, json={}), 401)
    assert _revoked_at(jpn_node, kid) is None
    assert len([r for r in jpn_node.store.audit(limit=1000) if r.outcome == "refused"]) >= 3


def test_an_unknown_party_or_key_is_404_and_audited(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node
) -> None:
    kid = _kid(kor)
    detail = problem_detail(call("POST", f"/peers/USA/keys/{kid}/revoke", tokens["inoue"], json={}), 404)
    assert detail == "USA is not a registered peer"
    detail = problem_detail(call("POST", f"/peers/KOR/keys/{'A' * 43}/revoke", tokens["inoue"], json={}), 404)
    assert f"no key {'A' * 43}" in detail
    # JPN's own key, named as KOR's: not KOR's key
    problem_detail(call("POST", f"/peers/KOR/keys/{_kid(jpn_node)}/revoke", tokens["inoue"], json={}), 404)
    refused = _audited(jpn_node, "key.revoke", "refused")
    assert [(r["actor"], r["subject"], r["error"]) for r in refused] == [
        ("inoue", "USA", "NotFoundError"),
        ("inoue", "KOR", "NotFoundError"),
        ("inoue", "KOR", "NotFoundError"),
    ]
    assert _revoked_at(jpn_node, kid) is None


MALFORMED = [
    ("/peers/kor/keys/{kid}/revoke", {}),  # a party code is three capitals
    ("/peers/KORE/keys/{kid}/revoke", {}),
    ("/peers/KOR/keys/{kid}%00/revoke", {}),  # NUL in the key id
    ("/peers/KOR/keys/{kid}{kid}{kid}/revoke", {}),  # beyond 100 characters
    ("/peers/KOR/keys/{kid}/revoke", {"at": "yesterday"}),
    ("/peers/KOR/keys/{kid}/revoke", {"at": "9999-01-01T00:00:00+00:00"}),  # beyond the years served
    ("/peers/KOR/keys/{kid}/revoke", {"at": 1700000000}),  # a number is not an instant
    ("/peers/KOR/keys/{kid}/revoke", {"kid": "other"}),  # no field beyond those declared
    ("/peers/KOR/keys/{kid}/revoke", None),  # no body at all
]


def test_malformed_input_is_422_naming_the_problem(
    call: Call, tokens: dict[str, str], jpn_node: Node, kor: Node
) -> None:
    kid = _kid(kor)
    for path, body in MALFORMED:
        kwargs = {} if body is None else {"json": body}
        assert problem_detail(call("POST", path.format(kid=kid), tokens["inoue"], **kwargs), 422), path
    assert _revoked_at(jpn_node, kid) is None
    refused = [
        r for r in jpn_node.store.audit(limit=1000) if (r.kind, r.outcome) == ("api.refused", "refused")
    ]
    assert len(refused) == len(MALFORMED)


def test_a_revocation_racing_a_registration_in_another_process_loses_neither(
    call: Call,
    tokens: dict[str, str],
    jpn_node: Node,
    kor: Node,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The security officer's revocation reads KOR's registration; before it writes, an administrator
    in another process of JPN registers KOR's next identity document. Written over blindly, the
    revocation would drop the new document (or the document the revocation): compare-and-set makes
    the revocation decide again on the new registration."""
    kid = _kid(kor)
    clock.advance(seconds=60)
    newer = kor.exchange.identity()
    other = Node(jpn_node.config, clock=clock)  # another process of JPN: its own caches
    try:
        real = jpn_node.exchange.fed.put_peer
        attempts: list[bool] = []

        def put_peer(*args: Any, **kwargs: Any) -> Any:
            if not attempts:  # once, between the revocation's read and its write
                other.exchange.register_peer(None, newer, [GSOMIA])
            attempts.append(real(*args, **kwargs))
            return attempts[-1]

        monkeypatch.setattr(jpn_node.exchange.fed, "put_peer", put_peer)
        done = call("POST", f"/peers/KOR/keys/{kid}/revoke", tokens["inoue"], json={})
        assert done.status_code == 200, done.text
    finally:
        other.close()
    assert attempts == [False, True]  # the first write found the registration moved on, the second held
    assert _revoked_at(jpn_node, kid) == clock.now.isoformat()
    held = jpn_node.exchange.peer("KOR")
    assert held is not None
    assert held.issued == clock.now  # the newer document stands, with the key revoked in it
    assert len(_audited(jpn_node, "key.revoke", "allowed")) == 1
    assert len(_audited(jpn_node, "peer.register", "allowed")) == 2


def test_the_route_is_in_the_openapi_document(call: Call) -> None:
    spec = call("GET", "/openapi.json").json()
    operation = spec["paths"]["/peers/{party}/keys/{kid}/revoke"]["post"]
    assert "security officer" in operation["description"]
    assert operation["requestBody"]["required"] is True
