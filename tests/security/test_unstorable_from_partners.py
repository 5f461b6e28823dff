"""A partner's batch carrying text no store can hold (a NUL, a lone surrogate) in what it signed or
in the message around it: each such item refused with an audited reason naming the place, the
batch's other items received, nothing of the refused ones stored; the same on SQLite and
PostgreSQL. KOR signs for real (the attacker is the partner, or its compromised node).

Before, a NUL in a signed item's ``payload_type`` was stored on SQLite and made PostgreSQL refuse
the whole batch's transaction; a lone surrogate in a label's topic was a 500 on either store."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import kst
from tests.node_fixtures import kor_label

from gsomia.crypto.envelope import seal, sign_origin
from gsomia.demo import network
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

GSOMIA = "kor-jpn-gsomia-2016"


@pytest.fixture
def kor_jpn(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node, FakeClock]]:
    """KOR (SQLite) and JPN on the store under test, each registered at the other, assured."""
    clock = FakeClock(kst(2024, 3, 1))
    kor = make_node(tmp_path / "kor", "KOR", clock=clock)
    jpn = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    try:
        kor.exchange.register_peer(None, jpn.exchange.identity(), [GSOMIA])
        jpn.exchange.register_peer(None, kor.exchange.identity(), [GSOMIA])
        network.assure({"KOR": kor, "JPN": jpn})
        yield kor, jpn, clock
    finally:
        kor.close()
        jpn.close()


def message(
    kor: Node, clock: FakeClock, item_id: str, *, label: dict[str, Any] | None = None, **content: Any
) -> dict[str, Any]:
    """An item message KOR signs: its content as JSON with the escapes a partner may write
    (valid UTF-8, so it signs and verifies), the body around it as KOR's exchange writes it."""
    signed = {
        "v": 1,
        "kind": "item",
        "item": item_id,
        "label": {**(label or kor_label()), "alternatives": []},
        "payload_type": "json",
        "payload": base64.b64encode(b'{"track": 1}').decode(),
        **content,
    }
    text = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    return {
        "kind": "item",
        "origin": sign_origin(kor.ring, text, clock.now),
        "purpose": "threat-assessment",
        "agreement": GSOMIA,
        "route": {"sender": "KOR", "via": [], "recipient": "JPN"},
        "consents": [],
    }


def test_a_batch_with_unstorable_text_refuses_those_items_and_takes_the_rest(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    kor, jpn, clock = kor_jpn
    bad_purpose = {**message(kor, clock, "in-body"), "purpose": "threat\x00assessment"}
    messages = [
        ("m-good", message(kor, clock, "good")),
        ("m-topic", message(kor, clock, "topic", label=kor_label(topics=["dprk-missile", "\ud800"]))),
        ("m-type", message(kor, clock, "type", payload_type="json\x00")),
        ("m-id", message(kor, clock, "id\udfff")),
        ("m-purpose", bad_purpose),
        ("m-id\x00", message(kor, clock, "msg-id")),
        ("m-good-2", message(kor, clock, "good-2")),
    ]
    places = [
        None,
        "item.label.topics.1",
        "item.payload_type",
        "item.item",
        "message.body.purpose",
        "message.msg_id",
        None,
    ]
    body = {"kind": "batch", "messages": [{"msg_id": m, "body": b} for m, b in messages]}
    jpn_at_kor = kor.exchange.peer("JPN")
    assert jpn_at_kor is not None
    envelope = seal(kor.ring, jpn_at_kor, body, msg_id="batch-1", at=clock.now, ttl=timedelta(hours=1))
    before = len(jpn.store.audit(limit=100_000))

    [answer] = jpn.exchange.receive([envelope])

    results = answer["results"]
    assert [r["status"] for r in results] == ["stored" if place is None else "refused" for place in places], (
        results
    )
    for result, place in zip(results, places, strict=True):
        if place is not None:
            assert result["reason"].startswith(f"{place}: "), result
            assert "U+0000" in result["reason"] or "U+D800" in result["reason"], result
    assert answer["receipt"], "the batch's items taken are receipted"
    assert jpn.store.count_items() == 2
    assert set(jpn.store.existing_items(["good", "good-2"])) == {"good", "good-2"}
    refusals = [
        json.loads(r.detail)["reason"]
        for r in jpn.store.audit(after_seq=0, limit=100_000)[before:]
        if (r.kind, r.outcome) == ("envelope.refused", "refused")
    ]
    for place in filter(None, places):
        assert any(reason.startswith(f"{place}: ") for reason in refusals), (place, refusals)
    assert jpn.audit.verify().ok
