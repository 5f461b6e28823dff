"""Issue 14 §3: a consent authorises exactly what it names, and nothing else.

The attacker is the hub (the USA under TISA), holding every consent KOR ever sent through it: the
standing authorisation to relay KOR's missile tracks to JPN, and a hub-relay authorisation for one
item. KOR released item ``x`` to the USA only. The USA relays ``x`` to JPN as KOR→USA→JPN anyway,
first with the track authorisation, then with the other item's authorisation, then relays that
other item for a purpose its authorisation does not name. JPN refuses each (the release engine's
hub authorisation finds no consent naming this item, hub, recipient and purpose), stores nothing
and audits the refusal; the genuine relay passes. Three nodes in one process, exchanging sealed
envelopes through the in-memory transport.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.policy import ConsentKind
from gsomia.demo import network
from gsomia.exchange import MemoryTransport
from gsomia.node import Node
from gsomia.stream import StreamService
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)
PURPOSE = "threat-assessment"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[dict[str, Node], MemoryTransport, FakeClock]]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    yield nodes, MemoryTransport(nodes), clock
    for node in nodes.values():
        node.close()


def _deliver(nodes: dict[str, Node], transport: MemoryTransport) -> None:
    for _ in range(6):
        if not [d for p in ("KOR", "USA", "JPN") for d in nodes[p].exchange.deliver_due(transport)]:
            return


def _own_item(kor: Node, item_id: str, clock: FakeClock) -> None:
    kor.items.ingest(
        kor.people.person("officer"),
        label={"originator": "KOR", "classification": "군사II급비밀", "releasable_to": ["JPN", "USA"],
               "purpose": PURPOSE, "topics": ["dprk-missile"],
               "created": (clock.now - timedelta(hours=1)).isoformat()},
        payload=b'{"track": 1}', item_id=item_id,
    )  # fmt: skip


def _relay_as_hub(
    transport: MemoryTransport, usa: Node, item_id: str, consents: list[str], purpose: str = PURPOSE
) -> dict[str, Any]:
    """The hostile hub sends JPN KOR's signed item as if KOR had addressed it to JPN through it
    (sealed and sent by hand: its own sender would decide again and refuse)."""
    origin = usa.kernel.items.origin(usa.kernel.items.row(item_id))
    body: dict[str, Any] = {
        "kind": "item",
        "origin": origin,
        "purpose": purpose,
        "agreement": "tisa-2014",
        "route": {"sender": "KOR", "via": ["USA"], "recipient": "JPN"},
        "consents": consents,
    }
    peer = usa.exchange.peer("JPN")
    assert peer is not None
    answer: dict[str, Any] = transport.push(
        peer, [usa.exchange.queue(peer, body, "item", item_id, usa.clock()).envelope]
    )[0]
    return answer


def _refused(jpn: Node, item_id: str) -> list[str]:
    rows = jpn.store.audit(kind="envelope.refused")
    return [json.loads(r.detail).get("reason", "") for r in rows if r.subject == item_id]


def _jws(node: Node, kind: ConsentKind, item: str | None) -> str:
    rows = node.exchange.consent_rows("KOR", item or "")
    return next(r.jws for r in rows if r.kind == kind.value and r.item_id == item)


def test_a_hub_cannot_reuse_a_consent_beyond_what_it_names(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    nodes, transport, clock = net
    kor, usa, jpn = nodes["KOR"], nodes["USA"], nodes["JPN"]
    StreamService(kor).authorise_relay(None, "JPN", "USA")  # tracks only: KOR -> USA -> JPN
    _own_item(kor, "y", clock)
    kor.exchange.release(kor.people.person("officer"), "y", "JPN", via="USA", authorise_relay=True)
    _own_item(kor, "x", clock)
    kor.exchange.release(kor.people.person("officer"), "x", "USA")  # to the USA only
    _deliver(nodes, transport)
    assert jpn.store.get_item("y") is not None  # the genuine relay passed
    assert usa.store.get_item("x") is not None
    tracks = _jws(kor, ConsentKind.TRACK_RELAY, None)
    other_item = _jws(kor, ConsentKind.HUB_RELAY, "y")

    for consents in ([tracks], [other_item]):  # the stream's authorisation; another item's
        assert _relay_as_hub(transport, usa, "x", consents)["status"] == "refused"
    assert jpn.store.get_item("x") is None
    reasons = _refused(jpn, "x")
    assert len(reasons) == 2
    assert all("hub_authorisation" in r for r in reasons), reasons

    again = _relay_as_hub(transport, usa, "y", [other_item], purpose="intelligence-exchange")
    assert again["status"] == "refused"  # a purpose its authorisation does not name
    assert any("hub_authorisation" in r for r in _refused(jpn, "y")), _refused(jpn, "y")
    # KOR's inventory still says x went to the USA only
    assert [(r.kind, r.party) for r in kor.store.inventory("x") if r.kind == "sent"] == [("sent", "USA")]
