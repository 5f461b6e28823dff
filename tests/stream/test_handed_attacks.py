"""Adversarial review of the handed tracks' decision at the holder's frame (issue 18, trust hole 2):
the holder decides a handed track on the label, recipient and hub the track carries, so the link
it makes the frame on must be the one those name. A message on the node's handover stream that
hands a track for JPN to the link to the USA (forged: anyone who reaches the bus may publish; or a
process's bug) must not put it on the USA's link, where no decision let it go."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tests.node_fixtures import framed, missile_label, wire_links
from tests.stream.test_handed_decisions import _update

from gsomia._codec import label_to_dict
from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build
from gsomia.errors import InvalidInputError
from gsomia.node import Node, load_config
from gsomia.stream import StreamService
from gsomia.stream._link import TRACK, TRACKS
from gsomia.testing import FakeClock

AT = datetime(2024, 3, 1, tzinfo=UTC)


def _handed(
    track: bytes, label: bytes, recipient: str, via: str | None, agreement: str | None, kind: int = TRACK
) -> bytes:
    """A handover message as ``_hand_off`` writes it for this node's own track."""
    header = orjson.dumps({"k": kind, "a": agreement, "c": [], "g": False, "s": None})
    tail = orjson.dumps({"originator": "KOR", "recipient": recipient, "via": via})[1:]
    return header + b"\n" + b'{"track":' + track + b',"label":' + label + b"," + tail


def _frame_handed(
    tmp_path: Path, cases: Callable[[bytes, bytes], list[tuple[str, bytes, str]]]
) -> tuple[dict[str, list[str]], list[str], list[dict[str, Any]], str]:
    """KOR's service with links to JPN and the USA (kept wires), given each handed message of
    ``cases(track, label)`` (party, message, name) in turn: what each link framed, the names
    acknowledged, KOR's ``stream.send`` audit records, and the track's update instant."""
    clock = FakeClock(AT)
    members = {m.party: m for m in build(tmp_path / "net", clock=clock)}
    kor = Node(load_config(members["KOR"].directory), clock=clock)
    partners = {p: Node(load_config(members[p].directory), clock=clock) for p in ("JPN", "USA")}
    update = _update(AT - timedelta(seconds=20))
    track = orjson.dumps(track_update_to_json(update))
    only_jpn = missile_label(kor.catalogue, AT - timedelta(minutes=1), releasable_to=("JPN",))
    label = orjson.dumps(label_to_dict(only_jpn))

    async def run() -> tuple[dict[str, list[str]], list[str]]:
        service = StreamService(kor)
        acked: list[str] = []
        try:
            wires = wire_links(service, kor, partners, clock())

            def ack(name: str) -> Any:
                async def done() -> None:
                    acked.append(name)

                return done

            for party, message, name in cases(track, label):
                await service._send_handed(party, message, ack(name))
                link = service._links.get(party)
                if link is not None and link.drainer is not None:
                    await link.drainer  # until the link's queue is framed or dropped, however long
            return framed(wires), acked
        finally:
            service._links.clear()
            await service.close()

    try:
        on_links, acked = asyncio.run(run())
        sent = [{"outcome": r.outcome, **orjson.loads(r.detail)} for r in kor.store.audit(kind="stream.send")]
        return on_links, acked, sent, orjson.loads(track)["update_ts"]
    finally:
        for node in (kor, *partners.values()):
            node.close()


def test_a_track_handed_for_one_recipient_never_goes_on_another_partners_link(tmp_path: Path) -> None:
    def cases(track: bytes, label: bytes) -> list[tuple[str, bytes, str]]:
        return [
            ("USA", _handed(track, label, "JPN", None, None), "forged-usa-none"),
            ("USA", _handed(track, label, "JPN", None, "usa-kor-gsomia-1987"), "forged-usa-agreement"),
            ("USA", _handed(track, label, "JPN", "USA", None), "forged-usa-as-hub"),
            # the right link, but no agreement named (the link's registration unchecked), or
            # another kind of frame than a track: not what a process of the node hands over
            ("JPN", _handed(track, label, "JPN", None, None), "no-agreement"),
            (
                "JPN",
                _handed(track, label, "JPN", None, "kor-jpn-gsomia-2016", kind=TRACKS),
                "not-a-track",
            ),
            ("JPN", _handed(track, label, "JPN", None, "kor-jpn-gsomia-2016"), "right-jpn"),
        ]

    on_links, acked, _, stamp = _frame_handed(tmp_path, cases)
    assert on_links["JPN"] == [stamp]  # the control: the track for JPN on JPN's link goes
    assert on_links["USA"] == []  # decided for JPN: never framed for the USA
    # dropped at once (nothing for the link's next holder to send again)
    assert {"forged-usa-none", "forged-usa-agreement", "forged-usa-as-hub"} <= set(acked)
    assert {"no-agreement", "not-a-track"} <= set(acked)


def test_a_track_handed_under_one_agreement_never_goes_under_another_agreements_decision(
    tmp_path: Path,
) -> None:
    """The hand-over names the agreement its decision let the track go under (the link is registered
    for it, Art. 9). Decided again at the holder's frame, KOR to JPN directly is allowed under their
    GSOMIA (the bilateral, most specific), not under the trilateral arrangement a hand-over names
    (stale, or forged: anyone who reaches the bus may publish). Fail closed: a track goes only under
    the decision of the agreement it was handed under; otherwise it is dropped and audited."""

    def cases(track: bytes, label: bytes) -> list[tuple[str, bytes, str]]:
        return [
            ("JPN", _handed(track, label, "JPN", None, "trilateral-missile-warning-2023"), "other-agreement"),
            ("JPN", _handed(track, label, "JPN", None, "kor-jpn-gsomia-2016"), "right-jpn"),
        ]

    on_links, acked, sent, stamp = _frame_handed(tmp_path, cases)
    assert on_links["JPN"] == [stamp]  # the one handed under GSOMIA, once
    assert "other-agreement" in acked  # dropped: nothing for the link's next holder to send again
    assert [(r["outcome"], r["agreement"], r["decided_under"]) for r in sent] == [
        ("refused", "trilateral-missile-warning-2023", "kor-jpn-gsomia-2016")
    ]


def test_a_relayed_track_handed_at_the_hub_is_bound_to_its_recipients_link(tmp_path: Path) -> None:
    """At the hub (the USA under TISA) a relayed KOR track for JPN is decided again at its frame as a
    relay to JPN: handed to the link to JPN it is taken; handed to KOR's link, or naming another hub,
    it is refused as malformed before any decision."""
    clock = FakeClock(AT)
    members = {m.party: m for m in build(tmp_path / "net", clock=clock)}
    usa = Node(load_config(members["USA"].directory), clock=clock)
    try:
        service = StreamService(usa)
        update = _update(AT - timedelta(seconds=20))
        kor_label = missile_label(usa.catalogue, AT - timedelta(minutes=1))

        def message(recipient: str, via: str | None) -> bytes:
            return orjson.dumps(
                {
                    "track": track_update_to_json(update),
                    "label": label_to_dict(kor_label),
                    "originator": "KOR",
                    "recipient": recipient,
                    "via": via,
                }
            )

        terms = service._handed_terms(message("JPN", "USA"), "KOR", "JPN")
        assert (terms.recipient, terms.via, terms.sender, terms.until) == ("JPN", "USA", "KOR", 0.0)
        for text, party in (
            (message("JPN", "USA"), "KOR"),  # the recipient's track on the originator's link
            (message("JPN", "USA"), "USA"),
            (message("JPN", "JPN"), "JPN"),  # a relay naming another hub than this node
            (message("JPN", None), "JPN"),  # a direct track is no relay of this node's
        ):
            with pytest.raises(InvalidInputError):
                service._handed_terms(text, "KOR", party)
        # this node's own track (no sender): the next hop is the hub it names, else the recipient
        own = missile_label(
            usa.catalogue, AT - timedelta(minutes=1), originator="USA", classification="SECRET",
            releasable_to=("JPN", "KOR"),
        )  # fmt: skip
        mine = orjson.dumps(
            {"track": track_update_to_json(update), "label": label_to_dict(own), "originator": "USA",
             "recipient": "KOR", "via": None}
        )  # fmt: skip
        assert service._handed_terms(mine, None, "KOR").recipient == "KOR"
        with pytest.raises(InvalidInputError):
            service._handed_terms(mine, None, "JPN")
    finally:
        usa.close()
