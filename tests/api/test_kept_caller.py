"""The API recognises a kept token on the event loop (issue 18: one worker-thread hand-off a request,
not one per dependency) and that shortcut lets in nothing the store would refuse.

Attacks through the real app, on two processes of one JPN node (two ``Node`` objects over one
store): a token revoked, or a person disabled, by the other process; an expired token; an unknown
token; another node's token; a dashboard session presented as a bearer token; a reader without the
clearance reading an item through the shortcut. Each refusal is a 401 (or the read's 404) and is
audited; each read, allowed or refused, is decided and audited exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.node_fixtures import JPN_ANALYSTS, app_caller, kor_label

from gsomia.kernel import DEFAULT_INTERVAL, ChangeWatch, Kept
from gsomia.node import Node
from gsomia.store import SharedState
from gsomia.testing import FakeClock, make_node

NOW = datetime(2024, 3, 1, tzinfo=UTC)
ITEM = "kept-1"


@pytest.fixture
def two(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node]]:
    """Two processes of one JPN node: the one serving the app and one beside it (the CLI, another
    API process); a cleared reader, one without the clearance, and a KOR item they would read."""
    clock = FakeClock(NOW)
    serving = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    other = Node.open(tmp_path / "jpn", clock=clock)
    for person in (
        {"id": "admin", "name": "Admin", "nationality": "JPN", "roles": ["administrator"]},
        *JPN_ANALYSTS,
    ):
        serving.people.add_person(None, person)
    serving.items.ingest(
        None,
        label=kor_label(),
        payload=b'{"track": 1}',
        item_id=ITEM,
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
    )
    yield serving, other
    serving.close()
    other.close()


def _settle() -> None:
    time.sleep(DEFAULT_INTERVAL + 0.05)


def _kept_after_a_request(call: Callable[..., Any], serving: Node, token: str) -> bool:
    """Whether ``serving`` keeps ``token`` just after a request it served: asked again after a
    request when the watch's interval ran out in between (a loaded machine: CI saw it do so)."""
    for _ in range(20):
        assert call("GET", "/agreements", token).status_code == 200
        if serving.credentials.recognise(token) is not None:
            return True
    return False


def _auth_refusals(node: Node) -> int:
    return len([r for r in node.store.audit(kind="auth") if r.outcome == "refused"])


def _reads(node: Node, outcome: str) -> int:
    return len([r for r in node.store.audit(kind="item.read") if r.outcome == outcome])


def test_a_token_revoked_by_another_process_is_refused_by_the_app_within_the_interval(
    two: tuple[Node, Node],
) -> None:
    serving, other = two
    call = app_caller(serving)
    token_id, token, _ = serving.credentials.issue(None, "reader")
    assert _kept_after_a_request(call, serving, token)  # kept: the next request takes the shortcut
    other.credentials.revoke(None, token_id)
    _settle()
    assert serving.credentials.recognise(token) is None  # the counters are due: the store decides
    refused = call("GET", "/agreements", token)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]
    assert call("GET", f"/items/{ITEM}", token).status_code == 401
    assert _reads(serving, "allowed") == 0  # refused before any read


def test_a_person_disabled_by_another_process_is_refused_by_the_app(two: tuple[Node, Node]) -> None:
    serving, other = two
    call = app_caller(serving)
    _, token, _ = serving.credentials.issue(None, "reader")
    assert call("GET", f"/items/{ITEM}", token).status_code == 200
    other.people.set_active(None, "reader", False)
    _settle()
    before = _auth_refusals(serving)
    assert call("GET", f"/items/{ITEM}", token).status_code == 401
    assert _auth_refusals(serving) == before + 1  # the refusal is audited (the store's path)


def test_a_kept_token_past_its_expiry_is_refused_at_once(two: tuple[Node, Node]) -> None:
    serving, _ = two
    call = app_caller(serving)
    _, token, expires = serving.credentials.issue(None, "reader", days=1)
    assert call("GET", "/agreements", token).status_code == 200
    serving.kernel.clock.now = expires  # type: ignore[attr-defined]
    assert serving.credentials.recognise(token) is None
    refused = call("GET", "/agreements", token)
    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]


def test_unknown_and_other_nodes_tokens_are_refused_and_audited_while_a_valid_one_is_kept(
    two: tuple[Node, Node], tmp_path: Path
) -> None:
    serving, _ = two
    call = app_caller(serving)
    _, token, _ = serving.credentials.issue(None, "reader")
    assert call("GET", "/agreements", token).status_code == 200
    kor = make_node(tmp_path / "kor", "KOR", clock=FakeClock(NOW))
    kor.people.add_person(
        None, {"id": "reader", "name": "Reader", "nationality": "KOR", "roles": ["analyst"]}
    )
    _, korean, _ = kor.credentials.issue(None, "reader")  # the same person id, another node's token
    kor.close()
    before = _auth_refusals(serving)
    for wrong in (korean, token + "x", token[:-1], "gsm_0000000000000000_" + "A" * 43):
        assert serving.credentials.recognise(wrong) is None
        assert call("GET", f"/items/{ITEM}", wrong).status_code == 401
    assert _auth_refusals(serving) == before + 4
    assert _reads(serving, "allowed") == 0


def test_a_dashboard_session_is_not_a_bearer_token_on_the_shortcut(two: tuple[Node, Node]) -> None:
    serving, _ = two
    call = app_caller(serving)
    _, token, _ = serving.credentials.issue(None, "reader")
    secret, _, _ = serving.credentials.open_session(token)
    serving.credentials.session(secret)  # the session's row is kept now
    assert serving.credentials.recognise(secret) is None
    refused = call("GET", "/agreements", secret)
    assert refused.status_code == 401
    assert "session" in refused.json()["detail"]


def test_each_read_through_the_shortcut_is_decided_and_audited_once(two: tuple[Node, Node]) -> None:
    """The person the shortcut names still meets the one read decision: the reader without the
    clearance is refused (404, like an item not held) and each of their attempts is audited once."""
    serving, _ = two
    call = app_caller(serving)
    _, cleared, _ = serving.credentials.issue(None, "reader")
    _, junior, _ = serving.credentials.issue(None, "junior")
    for token in (cleared, junior):  # both kept before the reads counted
        assert _kept_after_a_request(call, serving, token)
    for _ in range(3):
        assert call("GET", f"/items/{ITEM}", cleared).json()["id"] == ITEM
        assert call("GET", f"/items/{ITEM}", junior).status_code == 404
    assert _reads(serving, "allowed") == 3
    assert _reads(serving, "refused") == 3
    page = call("GET", "/items?limit=20", junior).json()
    assert page["items"] == []  # the listing decides for the shortcut's person too


def test_peek_never_reads_the_store(tmp_path: Path) -> None:
    """What an event loop may ask: a value only while the counters' last read holds, and no query."""
    node = make_node(tmp_path / "kor", "KOR", clock=FakeClock(NOW))
    loads: list[str] = []
    watch = ChangeWatch(SharedState(node.store), interval=60.0)

    def load(key: str) -> str:
        loads.append(key)
        return key.upper()

    kept: Kept[str, str] = Kept(watch, "tokens", load)
    assert kept.peek("a") is None  # the counters were never read: nothing is known
    assert watch.reads == 0
    assert kept.get("a") == "A"
    assert kept.peek("a") == "A"
    assert kept.peek("b") is None  # not kept: no query for it
    assert loads == ["a"]
    watch.stale()  # a change announced: the counters are due
    assert kept.peek("a") is None
    assert watch.reads == 1
    node.close()


def test_the_shortcut_follows_the_watch_interval(two: tuple[Node, Node]) -> None:
    """A kept token is recognised only until the counters are due again; then the store decides."""
    serving, _ = two
    _, token, _ = serving.credentials.issue(None, "reader")
    serving.credentials.authenticate(token)
    assert serving.credentials.recognise(token) is not None
    time.sleep(DEFAULT_INTERVAL + 0.05)
    assert serving.credentials.recognise(token) is None
    assert serving.credentials.authenticate(token).id == "reader"  # reads the counters again
    assert serving.credentials.recognise(token) is not None
    assert serving.kernel.clock() < NOW + timedelta(days=1)
