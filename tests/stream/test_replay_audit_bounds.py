"""Attack: a partner under the replay bound makes the receiver write audit records without end.

Duplicates up to ``HANDOFF_RESENDS`` within 60 s keep a partner's link (a redelivery can be that
many), and each group of them was an audit record of its own: a partner sending one duplicate a
group made the receiver write up to 21,000 records a minute, for ever. A partner refused, that
reconnects to be refused again, made one record a link. Both are now audited in bounded space, in
the store's tally (every process of the node): per partner and code, a window's first groups (or
refusals) a record each, the rest counted, and one ``refusal.tally`` record says how many once the
window closed: the audit trail still shows that duplicates came, from whom, and how many.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.stream._kor_jpn import kor_jpn_nodes, kor_link, kor_messages, resent_to, resigned

from gsomia.kernel import NodeContext
from gsomia.node import Node
from gsomia.stream import StreamService
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock

GROUPS = 60


@pytest.fixture
def kor_jpn(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node, FakeClock]]:
    yield from kor_jpn_nodes(tmp_path, store_url)


def _records(node: Node, kind: str) -> list[tuple[str | None, str, dict[str, Any]]]:
    return [(r.subject, r.outcome, json.loads(r.detail)) for r in node.store.audit(kind=kind, limit=10_000)]


def test_duplicates_under_the_bound_are_audited_in_bounded_space_with_their_count(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    """KOR sends an update, then the same update again in 60 groups of one, each re-signed, within
    one minute: JPN keeps the link (60 is far under the bound) and shows the update once; of the 60
    duplicate groups, 16 are records of their own, and once the minute has closed one
    ``refusal.tally`` record counts all 60, from KOR."""
    kor, jpn, clock = kor_jpn
    messages = kor_messages(kor, 1, "KOR-dup")

    refused, shown = resent_to(jpn, kor, resigned(kor, clock, messages, 1 + GROUPS))
    ended = refused.detail
    assert (ended, shown) == ("unsigned", 1)  # kept the link to the end; the update shown once
    duplicates = [d for _, outcome, d in _records(jpn, "stream.receive") if outcome == "duplicate"]
    assert len(duplicates) == 16  # NodeContext.GROUPS_RECORDED
    assert {
        (d["sender"], d["count"], len(d["tracks"]), d["tracks"][0].split("@")[0]) for d in duplicates
    } == {("KOR", 1, 1, "KOR-dup-0")}
    assert _records(jpn, "refusal.tally") == []  # the window has not closed
    clock.advance(seconds=NodeContext.REFUSAL_WINDOW_S)
    jpn.kernel.close_refusal_tallies()
    tallies = [(s, d["source"], d["code"], d["count"]) for s, _, d in _records(jpn, "refusal.tally")]
    assert tallies == [("stream.receive", "KOR", "duplicate", GROUPS)]


def test_a_partner_refused_again_and_again_is_audited_in_bounded_space(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    """KOR replays one signed batch on link after link, 25 links within a minute, each refused as
    ``replayed-batch``: 10 refusals are records of their own, and once the minute has closed one
    ``refusal.tally`` record counts all 25."""
    kor, jpn, clock = kor_jpn
    body = sign_batch(kor.ring, kor_messages(kor, 1, "KOR-replayed"), clock())
    links = 25

    async def run() -> list[str]:
        service = StreamService(jpn)
        ended = [(await kor_link(service, kor, iter([body, body]))).detail]
        for _ in range(links - 1):
            clock.advance(milliseconds=10)
            ended.append((await kor_link(service, kor, iter([body]))).detail)
        await service.close()
        return ended

    assert asyncio.run(run()) == ["replayed-batch"] * links
    refused = [d for _, outcome, d in _records(jpn, "stream.link") if outcome == "refused"]
    assert [d["error"] for d in refused] == ["replayed-batch"] * NodeContext.REFUSALS_RECORDED
    clock.advance(seconds=NodeContext.REFUSAL_WINDOW_S)
    jpn.kernel.close_refusal_tallies()
    tallies = [(s, d["source"], d["code"], d["count"]) for s, _, d in _records(jpn, "refusal.tally")]
    assert sorted(tallies) == [
        ("stream.link", "KOR", "opened", links),  # its links opened, counted the same way
        ("stream.link", "KOR", "replayed-batch", links),
    ]


def test_a_partner_reconnecting_again_and_again_is_audited_in_bounded_space(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    """KOR opens 25 links within a minute, each ended by JPN (an unsigned track): each link opened
    was a ``stream.link`` ``opened`` record of its own, so a partner reconnecting as fast as it can
    made JPN write a record a link for ever, beside the refusals' bounded ones. Now the first 10 a
    minute are records of their own and one ``refusal.tally`` record (code ``opened``) counts all 25
    once the minute has closed, beside the refusals' own."""
    kor, jpn, clock = kor_jpn
    links = 25

    async def run() -> list[str]:
        service = StreamService(jpn)
        ended = []
        for _ in range(links):
            clock.advance(milliseconds=10)
            ended.append((await kor_link(service, kor, iter([]))).detail)
        await service.close()
        return ended

    assert asyncio.run(run()) == ["unsigned"] * links
    opened = [s for s, outcome, _ in _records(jpn, "stream.link") if outcome == "opened"]
    assert opened == ["KOR"] * NodeContext.REFUSALS_RECORDED
    clock.advance(seconds=NodeContext.REFUSAL_WINDOW_S)
    jpn.kernel.close_refusal_tallies()
    tallies = [(s, d["source"], d["code"], d["count"]) for s, _, d in _records(jpn, "refusal.tally")]
    assert sorted(tallies) == [
        ("stream.link", "KOR", "opened", links),
        ("stream.link", "KOR", "unsigned", links),
    ]


def test_a_partners_tracks_refused_by_the_decision_are_audited_in_bounded_space(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    """KOR sends 25 tracks, each under a label of its own (another creation instant) that JPN's
    decision refuses (not releasable to JPN): the decision is kept per label, so each was decided
    and each refusal a ``stream.receive`` record of its own, as many as a partner cares to send.
    Now per partner and minute the first 10 are records of their own and one ``refusal.tally``
    record counts all 25 once the minute has closed."""
    kor, jpn, clock = kor_jpn
    tracks = 25
    messages = []
    for n, message in enumerate(kor_messages(kor, tracks, "KOR-refused")):
        data = orjson.loads(message)
        created = datetime.fromisoformat(data["label"]["created"]) - timedelta(seconds=n + 1)
        data["label"] = {**data["label"], "releasable_to": ["USA"], "created": created.isoformat()}
        messages.append(orjson.dumps(data))
    refused, shown = resent_to(jpn, kor, iter([sign_batch(kor.ring, messages, clock())]))
    assert (refused.detail, shown) == ("unsigned", 0)
    records = [d for _, outcome, d in _records(jpn, "stream.receive") if outcome == "refused"]
    assert len(records) == NodeContext.REFUSALS_RECORDED
    clock.advance(seconds=NodeContext.REFUSAL_WINDOW_S)
    jpn.kernel.close_refusal_tallies()
    tallies = [(s, d["source"], d["code"], d["count"]) for s, _, d in _records(jpn, "refusal.tally")]
    assert ("stream.receive", "KOR", "refused", tracks) in tallies
