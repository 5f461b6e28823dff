"""A portion's change that overtakes its item, between real node processes (issue 20 §2): KOR's
release of a report to the USA is in flight when KOR raises the tearline and then recalls the body.
The two changes reach one USA process first, in reverse order; the report lands at another process
of the same node. That process finds the changes in the store (not in the first one's memory),
applies them in version order before the report is written, and its answers reach KOR.

KOR is the node under test in this process (serving its API on its port, so the USA's answers reach
it); the USA runs as two ``gsomia node serve`` processes over one store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from tests.reliability.processes import at, serve, stop
from tests.security._live import audit, deliver, tokens

from gsomia.demo import network
from gsomia.demo.network import free_port
from gsomia.exchange import HttpTransport
from gsomia.node import Node, PortionIngest


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, network.NetNode]]:
    members = {m.party: m for m in network.build(tmp_path_factory.mktemp("early") / "net")}
    kor = Node.open(members["KOR"].directory)
    try:
        with network.serve_in_threads({"KOR": kor}, [members["KOR"]]):
            yield kor, members["USA"]
    finally:
        kor.close()


def _label(kor: Node, classification: str, releasable_to: list[str]) -> dict[str, object]:
    return {
        "originator": "KOR",
        "classification": classification,
        "releasable_to": releasable_to,
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (kor.clock() - timedelta(minutes=5)).isoformat(),
    }


def _marks(usa: network.NetNode, item_id: str) -> tuple[str, list[tuple[str, str]]] | None:
    headers = {"Authorization": f"Bearer {tokens(usa)['officer']}"}
    answer = httpx.get(f"{usa.endpoint}/items/{item_id}", headers=headers, timeout=10)
    if answer.status_code != 200:
        return None
    item = answer.json()
    assert "USA-only body" not in answer.text
    return item["label"]["classification"], [
        (p["id"], p["label"]["classification"]) for p in item["portions"]
    ]


def test_portion_changes_kept_by_one_process_apply_when_the_item_lands_at_another(
    net: tuple[Node, network.NetNode],
) -> None:
    kor, usa = net
    officer = kor.people.person("officer")
    kor.items.ingest(
        officer,
        label=None,
        payload=b"",
        item_id="early-r1",
        portions=[
            PortionIngest("body", _label(kor, "군사II급비밀", ["USA"]), b'{"text": "USA-only body"}'),
            PortionIngest("tearline", _label(kor, "군사III급비밀", ["JPN", "USA"]), b'{"text": "tearline"}'),
        ],
    )
    in_flight = kor.exchange.release(officer, "early-r1", "USA").envelope  # on the wire, delayed
    kor.duties.reclassify(officer, "early-r1", "군사II급비밀", "a new source", portion="tearline")
    kor.duties.recall(officer, "early-r1", "the source is burned", portion="body")
    v2, v3 = [
        e.envelope for e in kor.exchange.fed.outbox() if e.kind == "duty" and e.final_recipient == "USA"
    ]
    first = serve(usa, sender=True)
    second_at = at(usa, free_port())
    second = serve(second_at, sender=True)  # another process of the USA's node, over the same store
    try:
        assert [deliver(usa, v)["status"] for v in (v3, v2)] == ["recorded", "recorded"]
        assert _marks(usa, "early-r1") is None  # not held yet: the changes wait in the store
        assert deliver(second_at, in_flight)["status"] == "stored"
        assert _marks(second_at, "early-r1") == ("군사II급비밀", [("tearline", "군사II급비밀")])
        applied = [a["detail"] for a in audit(usa, "duty.label-change.applied-on-arrival")]
        assert [(a["version"], a["change"], a["portion"], a["result"]) for a in applied] == [
            (2, "reclassify", "tearline", "applied"),
            (3, "recall", "body", "applied"),
        ]
        # KOR's own sending: its queued release (the same message) is a duplicate at the USA; the
        # USA's processes send their answers back, and KOR sees both changes applied
        deadline = time.monotonic() + 60
        with HttpTransport(timeout=10) as http:
            while time.monotonic() < deadline:
                kor.exchange.deliver_due(http)
                changes = kor.duties.label_status(officer, "early-r1")["changes"]
                if [c["applied"] for c in changes] == [["USA"], ["USA"]]:
                    break
                time.sleep(0.3)
        assert [(c["version"], c["applied"]) for c in changes] == [(2, ["USA"]), (3, ["USA"])]
        assert _marks(usa, "early-r1") == ("군사II급비밀", [("tearline", "군사II급비밀")])
    finally:
        stop(second)
        stop(first)
