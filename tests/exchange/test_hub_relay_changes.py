"""A hub's onward message carries what it decided at the instant of sending, not the copy that came in.

KOR releases an item to JPN through the USA (TISA, before GSOMIA). KOR then changes its label (the
whole item's, or one portion's) while the item is on its way. The USA applies the change to what
it holds (a change that overtook the item is applied on the item's arrival, in the same batch that
queues the relay) and decides the relay again at the instant of sending, on the label it holds. The
onward envelope must carry that: the originator's signed item as the hub holds it then, never the
stale copy it received (JPN would hold the item under a label the originator had replaced, the
hub having decided on the new one). The adversary's cases beside: a hub holding more of an item in
portions than it relays passes on only the portions it received for the recipient.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.exchange.test_portions import BODY, _label, report
from tests.node_fixtures import in_memory_network

from gsomia.crypto.envelope import signed_payload
from gsomia.node import Node

TISA_ONLY = datetime(2016, 11, 22, tzinfo=UTC)  # before GSOMIA: KOR reaches JPN only through the USA


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """KOR, the USA and JPN in this process over the in-memory transport, in November 2016."""
    yield from in_memory_network(tmp_path / "net", TISA_ONLY)


def _reclassify(kor: Node, item_id: str, portion: str | None = None) -> Callable[[Any], None]:
    """KOR's officer raises ``item_id`` (or one portion of it) to 군사II급비밀."""

    def change(officer: Any) -> None:
        kor.duties.reclassify(officer, item_id, "군사II급비밀", "a new source", portion=portion)

    return change


def _push(net: dict[str, Any], sender: Node, to: str, envelope: str) -> str:
    peer = sender.exchange.peer(to)
    assert peer is not None
    (answer,) = net["transport"].push(peer, [envelope])
    return str(answer["status"])


def _relay_with_change(
    net: dict[str, Any], item_id: str, change: Callable[[Any], None], *, early: bool
) -> None:
    """KOR releases ``item_id`` to JPN through the USA; ``change`` (KOR's officer) is made while the
    item is on the wire; the USA gets the change before the item (``early``) or after it, then sends
    on what it has to send."""
    kor, usa = net["nodes"]["KOR"], net["nodes"]["USA"]
    officer = kor.people.person("officer")
    in_flight = kor.exchange.release(officer, item_id, "JPN", via="USA", authorise_relay=True).envelope
    change(officer)
    (to_usa,) = [e for e in kor.exchange.fed.outbox() if e.kind == "duty" and e.final_recipient == "USA"]
    if early:
        assert _push(net, kor, "USA", to_usa.envelope) == "recorded"  # kept until the item lands
    assert _push(net, kor, "USA", in_flight) == "relayed"
    if not early:
        assert _push(net, kor, "USA", to_usa.envelope) == "recorded"  # applied to the USA's copy
    usa.exchange.deliver_due(net["transport"])  # the USA's outbox only: JPN's own change stays at KOR


def _sent_on(net: dict[str, Any], item_id: str) -> dict[str, Any]:
    """The originator's signed item in the message the USA's delivery sent JPN (as JPN logged it)."""
    jpn = net["nodes"]["JPN"]
    row = jpn.store.get_item(item_id)
    assert row is not None, "JPN holds no such item: the hub's relay did not reach it"
    origin = jpn.kernel.cipher.open(row.id, row.label, row.origin_jws).decode()
    content: dict[str, Any] = json.loads(signed_payload(origin))
    return content


def test_a_whole_items_change_that_overtook_it_goes_on_with_it(net: dict[str, Any]) -> None:
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    label = _label(net["clock"], "군사III급비밀", ["JPN", "USA"])
    kor.items.ingest(kor.people.person("officer"), label=label, payload=b'{"text": "w"}', item_id="w1")
    _relay_with_change(net, "w1", _reclassify(kor, "w1"), early=True)
    row = jpn.store.get_item("w1")
    assert row is not None
    assert (row.label_version, row.classification) == (2, "군사II급비밀")  # main: (1, 군사III급비밀)
    signed = _sent_on(net, "w1")
    assert (signed["label_version"], signed["label"]["classification"]) == (2, "군사II급비밀")


def test_a_whole_items_change_after_the_relay_was_queued_goes_on_with_it(net: dict[str, Any]) -> None:
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    label = _label(net["clock"], "군사III급비밀", ["JPN", "USA"])
    kor.items.ingest(kor.people.person("officer"), label=label, payload=b'{"text": "w"}', item_id="w2")
    _relay_with_change(net, "w2", _reclassify(kor, "w2"), early=False)
    row = jpn.store.get_item("w2")
    assert row is not None
    assert (row.label_version, row.classification) == (2, "군사II급비밀")


def test_a_portions_change_that_overtook_the_item_goes_on_with_it(net: dict[str, Any]) -> None:
    """The tearline raised to 군사II급비밀 (a new signed root) reaches the USA before the report; the
    USA sends JPN the tearline under the new root and label, and nothing of the body."""
    report(net)
    kor, jpn = net["nodes"]["KOR"], net["nodes"]["JPN"]
    _relay_with_change(net, "r1", _reclassify(kor, "r1", "tearline"), early=True)
    row = jpn.store.get_item("r1")
    assert row is not None  # main: the relay of an item in portions was refused at the hub's send
    assert (row.label_version, row.classification) == (2, "군사II급비밀")
    item = jpn.kernel.items.item(row)
    assert [(p.id, p.label.classification) for p in item.portions] == [("tearline", "군사II급비밀")]
    assert BODY not in jpn.kernel.items.payload(row)


def test_a_hub_holding_the_whole_report_relays_only_the_portions_it_received_for_the_recipient(
    net: dict[str, Any],
) -> None:
    """The USA holds both portions from KOR's release to it; KOR's release to JPN through the USA
    carries the tearline alone: built from the USA's store, the onward message carries the tearline
    and not the body the USA holds (nor could JPN's decision be asked to refuse what it never got)."""
    report(net)
    kor, usa, jpn = net["nodes"]["KOR"], net["nodes"]["USA"], net["nodes"]["JPN"]
    officer = kor.people.person("officer")
    to_usa = kor.exchange.release(officer, "r1", "USA").envelope
    assert _push(net, kor, "USA", to_usa) == "stored"
    held = usa.store.get_item("r1")
    assert held is not None
    assert sorted(p.id for p in usa.kernel.items.item(held).portions) == ["body", "tearline"]
    relayed = kor.exchange.release(officer, "r1", "JPN", via="USA", authorise_relay=True).envelope
    assert _push(net, kor, "USA", relayed) == "relayed"
    usa.exchange.deliver_due(net["transport"])
    row = jpn.store.get_item("r1")
    assert row is not None
    assert [p.id for p in jpn.kernel.items.item(row).portions] == ["tearline"]
    assert BODY not in jpn.kernel.items.payload(row)
    assert "USA-only" not in json.dumps(_sent_on(net, "r1"))
