"""Issue 14 §9: only a hub an agreement names passes messages on, and only along the item's path.

The attackers are partners that use another node as a relay: the USA sends a duty message it
signed, addressed to KOR, to JPN (which no agreement names as a hub); KOR routes a duty message
about an item it gave JPN directly through the USA hub (which never carried that item). Each
would-be relay refuses, audits the refusal (``envelope.refused``) and queues nothing onward; the
control, a duty about an item the hub did relay, still passes. Three nodes in one process,
exchanging sealed envelopes through the in-memory transport.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gsomia.core.investigation import IncidentNature, open_investigation
from gsomia.demo import network
from gsomia.duties._messages import destruction_request_content, incident_content
from gsomia.exchange import MemoryTransport
from gsomia.node import Node
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)
BEFORE_GSOMIA = datetime(2016, 11, 22, tzinfo=UTC)  # only TISA, through the US hub


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


def _own_item(node: Node, item_id: str, clock: FakeClock) -> None:
    node.items.ingest(
        node.people.person("officer"),
        label={
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN", "USA"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (clock.now - timedelta(hours=1)).isoformat(),
        },
        payload=b'{"track": 1}',
        item_id=item_id,
    )


def _send_duty(sender: Node, to: str, hop: str, item_id: str, holder: str, clock: FakeClock) -> None:
    """``sender`` signs a destruction request for ``holder`` and sends it to ``to`` through ``hop``."""
    content = destruction_request_content(item_id, sender.party, holder, clock.now)
    sender.exchange.enqueue([sender.duties._duty(to, hop, content, item_id, clock.now)])


def _refusals(node: Node) -> list[str]:
    return [json.loads(r.detail).get("reason", "") for r in node.store.audit(kind="envelope.refused")]


def _onward(node: Node, to: str) -> list[str]:
    return [e.msg_id for e in node.exchange.outbox(None) if e.kind == "duty" and e.final_recipient == to]


def test_a_party_no_agreement_names_as_a_hub_relays_nothing(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    """The USA sends JPN a duty message it signed for KOR: JPN is no hub, so it is refused there."""
    nodes, transport, clock = net
    _send_duty(nodes["USA"], "KOR", "JPN", "u1", "KOR", clock)
    _deliver(nodes, transport)
    assert any("JPN passed no item 'u1' on between USA and KOR" in r for r in _refusals(nodes["JPN"]))
    assert _onward(nodes["JPN"], "KOR") == []
    assert not nodes["KOR"].store.audit(kind="duty.destruction-request")


def test_a_hub_relays_no_duty_about_an_item_that_did_not_pass_through_it(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    """KOR gave JPN k1 directly, then routes a duty about k1 through the USA: the hub refuses it.
    The control, k2 relayed by the USA, passes the same way."""
    nodes, transport, clock = net
    kor = nodes["KOR"]
    clock.now = BEFORE_GSOMIA  # TISA only: KOR reaches JPN through the US hub
    _own_item(kor, "k2", clock)
    kor.exchange.release(kor.people.person("officer"), "k2", "JPN", via="USA", authorise_relay=True)
    _deliver(nodes, transport)
    clock.now = NOW  # GSOMIA in force: KOR gives JPN k1 directly
    _own_item(kor, "k1", clock)
    kor.exchange.release(kor.people.person("officer"), "k1", "JPN")
    _deliver(nodes, transport)
    assert nodes["JPN"].store.get_item("k1") is not None

    _send_duty(kor, "JPN", "USA", "k1", "JPN", clock)
    _deliver(nodes, transport)
    assert any("USA passed no item 'k1' on between KOR and JPN" in r for r in _refusals(nodes["USA"]))
    assert _onward(nodes["USA"], "JPN") == []

    _send_duty(kor, "JPN", "USA", "k2", "JPN", clock)  # the control: k2 went KOR -> USA -> JPN
    _deliver(nodes, transport)
    assert len(_onward(nodes["USA"], "JPN")) == 1
    assert [r.outcome for r in nodes["USA"].store.audit(kind="duty.relayed.destruction-request")] == [
        "allowed"
    ]


def test_a_record_about_a_copy_passes_only_the_hub_its_sources_came_through(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    """KOR sent h1 to JPN through the USA (TISA) and k1 to JPN directly. JPN's incident about its copy
    of h1 (an id the USA never saw) passes the USA to KOR; a record JPN routes through the USA about a
    "copy" of k1, which never went through the USA, is refused there."""
    nodes, transport, clock = net
    kor, usa, jpn = nodes["KOR"], nodes["USA"], nodes["JPN"]
    clock.now = BEFORE_GSOMIA
    _own_item(kor, "h1", clock)
    kor.exchange.release(kor.people.person("officer"), "h1", "JPN", via="USA", authorise_relay=True)
    _deliver(nodes, transport)
    jpn.duties.derive(jpn.people.person("officer"), "copy", ["h1"], item_id="h1-copy")
    jpn.duties.report_incident(jpn.people.person("officer"), "h1-copy", "loss", "the copy was mislaid")
    _deliver(nodes, transport)
    assert [(i["item"], i["sources"]) for i in kor.duties.incidents(kor.people.person("officer"))] == [
        ("h1-copy", ["h1"])
    ]

    clock.now = NOW  # GSOMIA in force: KOR gives JPN k1 directly
    _own_item(kor, "k1", clock)
    kor.exchange.release(kor.people.person("officer"), "k1", "JPN")
    _deliver(nodes, transport)
    investigation = open_investigation(
        uuid.uuid4().hex, "k1-copy", "KOR", "JPN", IncidentNature.LOSS, at=clock.now, by="officer", text="x"
    )
    content = incident_content(investigation, ["k1"])
    jpn.exchange.enqueue([jpn.duties._duty("KOR", "USA", content, "k1-copy", clock.now)])
    _deliver(nodes, transport)
    assert any("USA passed no item 'k1-copy' on between JPN and KOR" in r for r in _refusals(usa))
    assert [e.item_id for e in usa.exchange.outbox(None) if e.kind == "duty"] == ["h1-copy"]  # none onward
    assert [i["item"] for i in kor.duties.incidents(kor.people.person("officer"))] == ["h1-copy"]
