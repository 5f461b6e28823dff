"""A link survives slow commits on either side: the window-root deadline measures the sender.

A hop's signed window root overdue drops the link (``no-batch-root``). What is overdue is the
sender's root, not this node's own commits: CI once saw KOR's link to JPN dropped under load, the
receiver counting its own wait for its commits as the sender's delay. The sender's root does wait
for its own audit record (a root never leaves that the sender's log does not hold), one commit a
window: a sender whose commits take longer than the receiver's deadline loses the link. Here each
side's store is made slow on purpose (a loaded disk).
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
from gsomia.stream._link import BatchVerifier

_DEADLINE_S = 2.0  # the window-root deadline in these tests (a loaded sender's own stall counts)
_SLOW_S = 4.0  # each slowed commit: twice the deadline
_SENDER_SLOW_S = 0.5  # each of the sender's commits of a root's record: under the deadline


def _ws(endpoint: str, path: str, token: str) -> Any:
    return connect(
        endpoint.replace("http", "ws") + path, additional_headers={"Authorization": f"Bearer {token}"}
    )


def _slowed(
    method: Callable[..., Any], slow: Callable[[list[AuditRow]], bool], seconds: float = _SLOW_S
) -> Callable[..., Any]:
    def wrapped(*args: Any, **named: Any) -> Any:
        rows = [r for a in args if isinstance(a, list) for r in a if isinstance(r, AuditRow)]
        if slow(rows):
            time.sleep(seconds)
        return method(*args, **named)

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


def test_a_window_root_leaves_only_once_its_signed_record_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOR's store takes 0.5 s to commit each signed root's audit record (``stream.batch``
    ``signed``): every root JPN verifies finds KOR's record of that very root committed already
    (before, the root left at once and its record went in a later commit: a sender crashing between
    the two had a root on the wire, recorded by the receiver, that its own log never named). Each
    root waits for its commit (its link's tracks do not); under JPN's deadline (2 s
    here) the link stays up and every update crosses it once."""
    monkeypatch.setattr(_service, "_ROOT_DEADLINE_S", _DEADLINE_S)
    verify = BatchVerifier.verify
    early: list[str] = []
    verified: list[str] = []

    with _crossing(tmp_path) as (nodes, cross):
        kor = nodes["KOR"].store

        def signed_root(rows: list[AuditRow]) -> bool:
            return any(r.kind == "stream.batch" and r.outcome == "signed" for r in rows)

        def watched(self: BatchVerifier, jws: str, sender: str, at: Any) -> Any:
            batch = verify(self, jws, sender, at)
            if sender == "KOR":
                recorded = {
                    json.loads(r.detail)["root"]
                    for r in kor.audit(after_seq=0, kind="stream.batch", limit=100_000)
                    if r.outcome == "signed"
                }
                verified.append(batch.root)
                if batch.root not in recorded:
                    early.append(batch.root)
            return batch

        monkeypatch.setattr(BatchVerifier, "verify", watched)
        for name in ("append_audit", "remember_signed_arrivals"):
            monkeypatch.setattr(kor, name, _slowed(getattr(kor, name), signed_root, _SENDER_SLOW_S))
        got = cross(40)  # 2 s of tracks: several roots, each behind its slow commit
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
    assert len(got) == 40
    assert len({t["update_ts"] for t in got}) == 40
    assert failures == {"KOR": [], "JPN": []}
    assert len(verified) >= 2, "JPN verified KOR's roots"
    assert not early, f"{len(early)} of {len(verified)} roots reached JPN before KOR's record of them"


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


def test_tracks_flow_while_a_window_root_waits_for_its_slow_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KOR's store takes 0.3 s to commit each signed root's record. The tracks KOR sends meanwhile
    are not held behind that root: JPN receives track frames of KOR's next window before the root
    of the one before (each root then matched to its window by the frames it names), and every
    root JPN verifies still finds KOR's record of it committed. Before, every track waited for the
    commit and its frame followed the root: no frame ever came ahead of an earlier window's root."""
    add, verify = BatchVerifier.add, BatchVerifier.verify
    # at each receiver of each link, in order: ("track", frame seq) or ("root", its last frame's seq)
    arrived: dict[int, list[tuple[str, int]]] = {}
    early: list[str] = []

    with _crossing(tmp_path) as (nodes, cross):
        kor = nodes["KOR"].store

        def added(self: BatchVerifier, seq: int, body: bytes, *mark: Any) -> None:
            arrived.setdefault(id(self), []).append(("track", seq))
            add(self, seq, body, *mark)

        def watched(self: BatchVerifier, jws: str, sender: str, at: Any) -> Any:
            batch = verify(self, jws, sender, at)
            if (sender, self.local) != ("KOR", "JPN"):
                return batch
            recorded = {
                json.loads(r.detail)["root"]
                for r in kor.audit(after_seq=0, kind="stream.batch", limit=100_000)
                if r.outcome == "signed"
            }
            if batch.root not in recorded:
                early.append(batch.root)
            arrived[id(self)].append(("root", batch.first_seq + batch.count - 1))
            return batch

        def signed_root(rows: list[AuditRow]) -> bool:
            return any(r.kind == "stream.batch" and r.outcome == "signed" for r in rows)

        monkeypatch.setattr(BatchVerifier, "add", added)
        monkeypatch.setattr(BatchVerifier, "verify", watched)
        for name in ("append_audit", "remember_signed_arrivals"):
            monkeypatch.setattr(kor, name, _slowed(getattr(kor, name), signed_root, 0.3))
        got = cross(40)  # 2 s of tracks, 50 ms apart: several 0.3 s commits
        failures = {p: _link_failures(nodes[p]) for p in ("KOR", "JPN")}  # before the servers stop
    assert len(got) == 40
    assert failures == {"KOR": [], "JPN": []}
    assert not early, f"{len(early)} roots reached JPN before KOR's record of them"
    kors = [events for events in arrived.values() if any(w == "root" for w, _ in events)]
    assert len(kors) == 1, "JPN's one link from KOR"
    (events,) = kors
    assert sum(w == "root" for w, _ in events) >= 2
    # the track frames JPN received while an earlier window's root was still to come
    ahead = 0
    for index, (what, seq) in enumerate(events):
        if what == "track":
            ahead += any(w == "root" and last < seq for w, last in events[index + 1 :])
    assert ahead >= 5, f"only {ahead} track frames came ahead of an earlier window's root: {events}"
