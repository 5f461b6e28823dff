"""The node kernel: the one read decision (visit window included, for the stream too), refusals
recorded once without marking the error, the receiver's label worked out in one place, and the
node's time zone and hubs derived from its agreements."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gsomia.core.access import Person
from gsomia.core.policy import ReleaseRequest, assumed_assurances
from gsomia.errors import AccessDenied, InvalidInputError, LabelError
from gsomia.node import Node
from gsomia.stream import StreamService, launches, replay
from gsomia.testing import FakeClock, make_node

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def jpn(tmp_path: Path, clock: FakeClock) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn", "JPN", clock=clock)
    yield node
    node.close()


def _analyst(node: Node, person_id: str) -> Person:
    return node.people.add_person(
        None,
        {
            "id": person_id,
            "name": person_id,
            "nationality": "JPN",
            "clearance": "極秘",
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst"],
        },
    )


def test_a_refusal_is_recorded_once_and_the_error_is_left_unmarked(jpn: Node) -> None:
    error = InvalidInputError("bad")
    for _ in range(2):
        assert jpn.kernel.refuse("test.refuse", "someone", "x", error) is error
    assert [r.kind for r in jpn.store.audit(kind="test.refuse")] == ["test.refuse"]
    assert jpn.kernel.recorded(error)
    assert not jpn.kernel.recorded(InvalidInputError("bad"))  # the same text is another refusal
    assert "audited" not in vars(error)


def test_the_node_time_zone_and_hubs_come_from_its_agreements(tmp_path: Path, clock: FakeClock) -> None:
    node = make_node(tmp_path / "usa", "USA", clock=clock)
    try:
        # USA: TISA, the 2023 arrangement and the KOR GSOMIA reckon in Seoul, the JPN GSOMIA in Tokyo
        assert node.kernel.timezone == ZoneInfo("Asia/Seoul")
        assert node.kernel.hubs == ("USA",)  # the hub of TISA, the only hub agreement
    finally:
        node.close()


def test_the_receiver_label_is_the_decisions_marking(jpn: Node, clock: FakeClock) -> None:
    """What the inbox stores under and what the stream marks a track with: one computation."""
    label = jpn.catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=clock.now,
    )
    decision = jpn.engine.decide(
        ReleaseRequest(
            label, "KOR", "JPN", "threat-assessment", assurances=assumed_assurances(jpn.catalogue)
        ),
        at=clock.now,
    )
    assert decision.allowed
    assert decision.marking is not None
    assert decision.agreement is not None
    held = jpn.kernel.items.received_label(label, "KOR", decision.agreement)
    assert held == label.with_alternative(decision.marking.alternative_label())
    kept = jpn.catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["USA"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=clock.now,
    )
    with pytest.raises(LabelError, match="releasable"):  # an item its label keeps from JPN is not held
        jpn.kernel.items.received_label(kept, "KOR", decision.agreement)


def test_the_receiver_label_is_worked_out_again_for_another_instant_or_choice(
    jpn: Node, clock: FakeClock
) -> None:
    """The label held is remembered per (label, sender, agreement, instant, preferred level): asked
    again the same, the same answer; at an instant where the Art. 4.2 alternative (特定秘密, from
    2014-12-10) does not apply, or without the preference, not the answer remembered before."""
    label = jpn.catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=datetime(2010, 1, 1, tzinfo=UTC),
    )
    agreement = "kor-jpn-gsomia-2016"
    items = jpn.kernel.items

    def level(at: datetime, prefer: str | None) -> str | None:
        alternative = items.received_label(label, "KOR", agreement, at=at, prefer=prefer).alternative_for(
            "JPN"
        )
        return None if alternative is None else alternative.classification

    assert level(clock.now, "特定秘密") == "特定秘密"
    assert level(clock.now, "特定秘密") == "特定秘密"  # remembered
    assert level(datetime(2014, 1, 1, tzinfo=UTC), "特定秘密") == "極秘"  # the alternative's row not yet
    assert level(clock.now, None) == "極秘"  # the agreement's default
    with pytest.raises(LabelError):  # a label this node may not hold, asked twice: refused each time
        items.received_label(label, "USA", agreement, at=clock.now)
    with pytest.raises(LabelError):
        items.received_label(label, "USA", agreement, at=clock.now)


def test_a_read_gate_follows_the_visit_window(jpn: Node, clock: FakeClock) -> None:
    visitor = _analyst(jpn, "sato")
    label = jpn.catalogue.label(
        originator="JPN",
        classification="極秘",
        releasable_to=["KOR"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=clock.now,
    )
    gate = jpn.kernel.reader(visitor)
    assert gate.decide(label).allowed  # not a visitor: the ordinary rules
    jpn.duties.authorise_visit(
        None,
        "sato",
        highest="極秘",
        starts=clock.now + timedelta(hours=1),
        ends=clock.now + timedelta(hours=2),
        purpose="liaison",
    )
    gate = jpn.kernel.reader(visitor)
    first = gate.generation
    assert not gate.decide(label).allowed  # a visitor, before the visit
    clock.advance(hours=1)
    assert gate.decide(label).allowed
    assert gate.generation != first
    clock.advance(hours=1)
    refused = gate.decide(label)
    assert not refused.allowed
    assert "no visit in force" in refused.failed()[-1].reason


def test_the_stream_asks_the_kernel_so_a_visitor_reads_only_during_the_visit(
    jpn: Node, clock: FakeClock
) -> None:
    """Before the kernel, the stream decided reads without the visit window (Art. 8). Once the visit
    is over nothing more is sent, and the stream itself ends (the visitor may no longer follow it)."""
    visitor = _analyst(jpn, "sato")
    jpn.duties.authorise_visit(
        None,
        "sato",
        highest="極秘",
        starts=clock.now + timedelta(hours=1),
        ends=clock.now + timedelta(hours=2),
        purpose="liaison",
    )
    updates = replay(launches(2019)[2], originator="JPN", every_s=60)

    async def run() -> list[int]:
        service = StreamService(jpn)
        try:
            with pytest.raises(AccessDenied, match="no visit in force"):
                await service.subscribe(visitor, "sse")
            clock.advance(hours=1)
            feed = await service.subscribe(visitor, "sse")
            await service.publish_update(updates[0])
            got = [seq for seq, _ in [await anext(feed)]]
            clock.advance(hours=1)  # the visit ends: the next track is withheld, the stream ended
            await service.publish_update(updates[1])
            with pytest.raises(AccessDenied, match="no visit in force"):
                await asyncio.wait_for(anext(feed), 10)
            await feed.aclose()
            return got
        finally:
            await service.close()

    assert asyncio.run(run()) == [1]
    refusals = [  # the track withheld (stream.read) or the stream ended (stream.sse) first
        json.loads(r.detail)
        for r in jpn.store.audit()
        if r.kind in ("stream.read", "stream.sse") and r.outcome == "refused"
    ]
    assert refusals
    assert "no visit in force" in json.dumps(refusals[-1], ensure_ascii=False)


def test_a_message_kind_has_one_handler(jpn: Node) -> None:
    with pytest.raises(ValueError, match="registered already"):
        jpn.exchange.register("duty", jpn.duties.receive)
