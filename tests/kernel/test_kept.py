"""People, tokens and visits are kept read by each process of a node (issue 18: no store query
per request for them) and are the store's all the same: a revocation, a disabled account or a
visit made by one process is in force in every other within the watch interval, and at once in
the process that made it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.node_fixtures import add, analyst, received_from_kor

from gsomia.errors import AccessDenied, AuthenticationError, NotFoundError
from gsomia.kernel import DEFAULT_INTERVAL, ChangeWatch, Kept
from gsomia.node import Node
from gsomia.store import SharedState
from gsomia.testing import FakeClock, make_node

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def two(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node]]:
    """Two processes of one JPN node: two ``Node`` objects over the same directory and store."""
    clock = FakeClock(NOW)
    first = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    second = Node.open(tmp_path / "jpn", clock=clock)
    add(first, "admin", "JPN", None, [], ["administrator", "security_officer"])
    analyst(first)
    add(first, "kim", "KOR", "군사II급비밀", ["dprk-missile"], ["analyst"])
    yield first, second
    first.close()
    second.close()


def _settle() -> None:
    time.sleep(DEFAULT_INTERVAL + 0.05)


def test_a_token_revoked_in_one_process_is_refused_in_the_other(two: tuple[Node, Node]) -> None:
    serving, operator = two
    token_id, token, _ = serving.credentials.issue(None, "reader")
    assert serving.credentials.authenticate(token).id == "reader"
    assert operator.credentials.authenticate(token).id == "reader"  # both keep it now
    operator.credentials.revoke(None, token_id)
    with pytest.raises(AuthenticationError, match="revoked"):
        operator.credentials.authenticate(token)  # at once where it was revoked
    _settle()
    with pytest.raises(AuthenticationError, match="revoked"):
        serving.credentials.authenticate(token)  # within the interval everywhere else


def test_a_disabled_account_is_refused_everywhere_and_its_record_read_again(two: tuple[Node, Node]) -> None:
    serving, operator = two
    _, token, _ = serving.credentials.issue(None, "reader")
    assert serving.credentials.authenticate(token).active
    operator.people.set_active(None, "reader", False)
    _settle()
    with pytest.raises(AuthenticationError):
        serving.credentials.authenticate(token)
    assert serving.people.person("reader").active is False  # the record kept before is read again
    operator.people.set_active(None, "reader", True)
    _settle()
    assert serving.people.person("reader").active is True
    with pytest.raises(AuthenticationError, match="revoked"):
        serving.credentials.authenticate(token)  # revoked stays revoked


def test_an_expired_token_is_refused_though_it_is_kept(two: tuple[Node, Node]) -> None:
    serving, _ = two
    _, token, expires = serving.credentials.issue(None, "reader", days=1)
    assert serving.credentials.authenticate(token).id == "reader"
    serving.kernel.clock.now = expires  # type: ignore[attr-defined]
    with pytest.raises(AuthenticationError, match="expired"):
        serving.credentials.authenticate(token)


def test_a_visit_authorised_by_another_process_caps_reads_within_the_interval(
    two: tuple[Node, Node],
) -> None:
    """A visit caps what a visitor reads (Art. 8): the cap is in force here once another process
    authorised it, though this process kept the visitor's (empty) visits read before."""
    serving, operator = two
    received_from_kor(serving, "visit-1")
    visitor = serving.people.person("kim")
    serving.items.read(visitor, "visit-1")  # not yet a visitor: the ordinary rules
    operator.duties.authorise_visit(
        operator.people.person("admin"),
        "kim",
        highest="秘",
        starts=NOW - timedelta(hours=1),
        ends=NOW + timedelta(hours=8),
        purpose="liaison",
    )
    _settle()
    with pytest.raises((AccessDenied, NotFoundError)):  # refused (main hides what a reader may not see)
        serving.items.read(visitor, "visit-1")
    refusal = [r for r in serving.store.audit(kind="item.read") if r.outcome == "refused"][-1]
    assert "allows up to 秘" in refusal.detail


def test_an_unknown_token_or_person_is_never_kept(tmp_path: Path) -> None:
    node = make_node(tmp_path / "kor", "KOR", clock=FakeClock(NOW))
    loads: list[str] = []

    def load(key: str) -> str | None:
        loads.append(key)
        return None if key.startswith("guess") else key.upper()

    kept: Kept[str, str] = Kept(ChangeWatch(SharedState(node.store)), "tokens", load, limit=3)
    for n in range(5):
        assert kept.get(f"guess-{n}") is None
        assert kept.get(f"guess-{n}") is None
    assert len(loads) == 10  # every guess is a query, none is kept
    assert [kept.get(k) for k in ("a", "a", "b", "c", "d", "a")] == ["A", "A", "B", "C", "D", "A"]
    assert loads[10:] == ["a", "b", "c", "d", "a"]  # the fourth key cleared the three kept
    with pytest.raises(AuthenticationError):
        node.credentials.authenticate("not-a-token")
    with pytest.raises(NotFoundError):
        node.people.person("nobody")
    node.close()
