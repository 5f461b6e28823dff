"""A link survives slow commits on either side: the window-root deadline measures the sender.

A hop's signed window root overdue drops the link (``no-batch-root``). What is overdue is the
sender's root, not this node's own commits: CI once saw KOR's link to JPN dropped under load,
the sender's ticker waiting on the audit record of its last root before signing the next, the
receiver counting its own wait for its commits as the sender's delay. Here each side's store is
made slow on purpose (a loaded disk), with a deadline shorter than the delay.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes, serve_in_threads
from gsomia.node import Node
from gsomia.node._service import system_clock
from gsomia.store import AuditRow
from gsomia.stream import _service, launches, replay

_DEADLINE_S = 2.0  # the window-root deadline in these tests (a loaded sender's own stall counts)
_SLOW_S = 4.0  # each slowed commit: twice the deadline


def _ws(endpoint: str, path: str, token: str) -> Any:
    return connect(
        endpoint.replace("http", "ws") + path, additional_headers={"Authorization": f"Bearer {token}"}
    )


def _slowed(method: Callable[..., Any], slow: Callable[[list[AuditRow]], bool]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        rows = [r for a in args if isinstance(a, list) for r in a if isinstance(r, AuditRow)]
        if slow(rows):
            time.sleep(_SLOW_S)
        return method(*args)

    return wrapped


def _link_failures(node: Node) -> list[dict[str, Any]]:
    rows = node.store.audit(after_seq=0, kind="stream.link", limit=1000)
    return [json.loads(r.detail) for r in rows if r.outcome in ("failed", "refused")]


@contextmanager
def _crossing(tmp_path: Path) -> Iterator[tuple[dict[str, Node], Callable[[int], list[dict[str, Any]]]]]:
    """KOR and JPN serving; the callable sends ``n`` of KOR's updates, 50 ms apart, on KOR's feed
    and returns what JPN's analyst received of them (10 s for each at most)."""
    members = build(tmp_path / "net")
    nodes = open_nodes(members, system_clock)
    endpoint = {m.party: m.endpoint for m in members}
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    try:
        with (
            serve_in_threads(nodes, members),
            _ws(endpoint["JPN"], "/stream/tracks/ws", tokens["JPN"]["analyst"]) as consumer,
            _ws(endpoint["KOR"], "/stream/tracks/publish", tokens["KOR"]["officer"]) as feed,
        ):

            def cross(n: int) -> list[dict[str, Any]]:
                updates = replay(launches(2019)[9], originator="KOR", every_s=1)[:n]
                for update in updates:
                    feed.send(json.dumps(track_update_to_json(update)))
                    time.sleep(0.05)
                return [json.loads(consumer.recv(timeout=10)) for _ in updates]

            yield nodes, cross
    finally:
        for node in nodes.values():
            node.close()


def test_a_slow_audit_commit_at_the_sender_never_holds_back_its_next_window_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOR's store takes 4 s to commit each signed root's audit record; its roots still go every
    50 ms, so JPN (deadline 2 s here) keeps the link, and every update crosses it once."""
    monkeypatch.setattr(_service, "_ROOT_DEADLINE_S", _DEADLINE_S)
    with _crossing(tmp_path) as (nodes, cross):
        kor = nodes["KOR"].store

        def signed_root(rows: list[AuditRow]) -> bool:
            return any(r.kind == "stream.batch" and r.outcome == "signed" for r in rows)

        for name in ("append_audit", "remember_signed_arrivals"):
            monkeypatch.setattr(kor, name, _slowed(getattr(kor, name), signed_root))
        got = cross(100)  # 5 s of tracks: past the deadline, with roots' records still committing
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
        time.sleep(_SLOW_S)
        signed = nodes["KOR"].store.audit(after_seq=0, kind="stream.batch", limit=1000)
    assert len(got) == 100
    assert len({t["update_ts"] for t in got}) == 100
    assert failures == {"KOR": [], "JPN": []}
    assert any(r.outcome == "signed" for r in signed), "a root's audit record is written, only later"


def test_the_receivers_own_slow_commits_are_not_counted_against_the_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JPN's store takes 4 s for each of its first two group commits of what it receives; it
    reads no further than its read-ahead meanwhile, and that wait is its own: the link stays up,
    and every update crosses it."""
    monkeypatch.setattr(_service, "_ROOT_DEADLINE_S", _DEADLINE_S)
    monkeypatch.setattr(_service, "_READ_AHEAD", 2)  # the reader waits on its commits at once
    with _crossing(tmp_path) as (nodes, cross):
        jpn = nodes["JPN"].store
        slowed = iter([True, True])
        name = "remember_signed_arrivals"
        monkeypatch.setattr(jpn, name, _slowed(getattr(jpn, name), lambda _rows: next(slowed, False)))
        got = cross(40)
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
    assert len(got) == 40
    assert failures == {"KOR": [], "JPN": []}
