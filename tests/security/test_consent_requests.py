"""Issue 22 §5: consents answered only by those entitled, requests checked and bounded.

The attackers: a KOR release officer who may not read the item (under-cleared, or a visitor whose
visit has ended) answering JPN's request for it; and JPN, a hostile holder, sending KOR requests for
items KOR never gave it, for items that do not exist, naming a third party that is no party,
reusing a request id, and flooding. KOR answers only through its read decision, records a request
only if it could be answered, bounds a partner's pending requests, answers each message of a batch
on its own, and lists requests a page at a time, only those about items the caller may read.
Three nodes in one process, exchanging sealed envelopes through the in-memory transport.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gsomia.core.access import Person
from gsomia.crypto.envelope import open_envelope
from gsomia.demo import network
from gsomia.errors import AccessDenied, NotFoundError
from gsomia.exchange import MAX_PENDING_REQUESTS, MemoryTransport
from gsomia.node import Node
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)


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


def _give_jpn(nodes: dict[str, Node], transport: MemoryTransport, clock: FakeClock, item_id: str) -> None:
    kor = nodes["KOR"]
    kor.items.ingest(
        kor.people.person("officer"),
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
    kor.exchange.release(kor.people.person("officer"), item_id, "JPN")
    _deliver(nodes, transport)


def _officer(node: Node, pid: str, clearance: str | None) -> Person:
    return node.people.add_person(
        None,
        {"id": pid, "name": pid.title(), "nationality": node.party, "clearance": clearance,
         "need_to_know": ["dprk-missile"], "roles": ["release_officer"]},
    )  # fmt: skip


def _request(jpn: Node, item_id: str, third: str = "USA", request_id: str | None = None) -> str:
    """A consent-request envelope for KOR, as a hostile JPN node would seal it (any content)."""
    peer = jpn.exchange.peer("KOR")
    assert peer is not None
    body: dict[str, Any] = {"kind": "consent-request", "id": request_id or uuid.uuid4().hex}
    body |= {"item": item_id, "third_party": third, "purpose": "threat-assessment", "reason": "please"}
    return jpn.exchange.queue(peer, body, "consent-request", item_id, jpn.clock()).envelope


def _push(nodes: dict[str, Node], transport: MemoryTransport, envelopes: list[str]) -> list[Any]:
    kor = nodes["JPN"].exchange.peer("KOR")
    assert kor is not None
    return transport.push(kor, envelopes)


def test_only_an_officer_who_may_read_the_item_answers_for_it(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    nodes, transport, clock = net
    kor, jpn = nodes["KOR"], nodes["JPN"]
    _give_jpn(nodes, transport, clock, "c1")
    request_id = jpn.exchange.request_consent(
        jpn.people.person("officer"), "c1", "USA", "threat-assessment", "US cell"
    )
    _deliver(nodes, transport)
    clerk = _officer(kor, "clerk", "군사III급비밀")  # below the item's 군사II급비밀
    visitor = _officer(kor, "visitor", "군사I급비밀")
    kor.duties.authorise_visit(None, "visitor", highest="군사II급비밀", starts=clock.now - timedelta(hours=3),
                               ends=clock.now - timedelta(hours=1), purpose="liaison")  # fmt: skip
    for who in (clerk, visitor):
        with pytest.raises(NotFoundError, match="no item 'c1'"):
            kor.exchange.answer_consent(who, request_id, grant=True, reason="forged approval")
    assert kor.exchange.fed.consent_request(request_id).state == "pending"  # type: ignore[union-attr]
    assert not kor.exchange.consent_requests_seen_by(clerk)  # nor does the request show to them
    assert [r.id for r in kor.exchange.consent_requests_seen_by(kor.people.person("officer"))] == [request_id]
    kor.exchange.answer_consent(kor.people.person("officer"), request_id, grant=True, reason="KOR MND note")
    _deliver(nodes, transport)
    assert jpn.exchange.fed.consent_request(request_id).state == "granted"  # type: ignore[union-attr]


def test_requests_that_could_never_be_answered_are_refused_one_by_one(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    """In one batch: an item KOR kept, an item that does not exist, a third party that is no party,
    an id used twice; each refused with its reason, and the valid request after them recorded."""
    nodes, transport, clock = net
    kor, jpn = nodes["KOR"], nodes["JPN"]
    _give_jpn(nodes, transport, clock, "given")
    kor.items.ingest(
        kor.people.person("officer"),
        label={"originator": "KOR", "classification": "군사II급비밀", "releasable_to": ["JPN"],
               "purpose": "threat-assessment", "topics": ["dprk-missile"],
               "created": (clock.now - timedelta(hours=1)).isoformat()},
        payload=b"{}", item_id="kept",
    )  # fmt: skip
    reused = uuid.uuid4().hex
    results = _push(
        nodes,
        transport,
        [
            _request(jpn, "kept"),
            _request(jpn, "no-such-item"),
            _request(jpn, "given", third="XYZ"),
            _request(jpn, "given", third="JPN"),
            _request(jpn, "given", request_id=reused),
            _request(jpn, "given", request_id=reused),
            _request(jpn, "given"),
        ],
    )
    statuses = [r["status"] for r in results]
    assert statuses == ["refused"] * 4 + ["recorded", "refused", "recorded"], results
    assert "gave JPN no item 'kept'" in results[0]["reason"]
    assert "gave JPN no item 'no-such-item'" in results[1]["reason"]
    assert "no third party" in results[2]["reason"]
    assert "no third party" in results[3]["reason"]
    assert "id is taken" in results[5]["reason"]
    assert len(kor.exchange.fed.consent_requests("pending")) == 2


def test_a_flood_of_requests_is_bounded_per_partner_and_listed_a_page_at_a_time(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    nodes, transport, clock = net
    kor, jpn = nodes["KOR"], nodes["JPN"]
    _give_jpn(nodes, transport, clock, "flooded")
    results = _push(nodes, transport, [_request(jpn, "flooded") for _ in range(MAX_PENDING_REQUESTS + 20)])
    assert [r["status"] for r in results].count("recorded") == MAX_PENDING_REQUESTS
    assert all("awaiting an answer already" in r["reason"] for r in results[MAX_PENDING_REQUESTS:])
    officer = kor.people.person("officer")
    pages, after, seen = [], None, []
    while True:
        page = kor.exchange.consent_requests_seen_by(officer, "pending", after=after, limit=30)
        pages.append(len(page))
        seen.extend(r.id for r in page)
        if len(page) < 30:
            break
        after = page[-1].id
    assert pages == [30, 30, 30, 10]
    assert len(set(seen)) == MAX_PENDING_REQUESTS  # each page resumes after the last: none twice
    with pytest.raises(NotFoundError, match="after: no consent request"):
        kor.exchange.consent_requests_seen_by(officer, "pending", after=uuid.uuid4().hex)
    # a caller who may not list requests learns nothing from the cursor either: refused before it is read
    for cursor in (seen[0], uuid.uuid4().hex):
        with pytest.raises(AccessDenied):
            kor.exchange.consent_requests_seen_by(kor.people.person("analyst"), after=cursor)


def test_a_party_that_learns_a_request_id_cannot_take_it_from_the_holder(
    net: tuple[dict[str, Node], MemoryTransport, FakeClock],
) -> None:
    """The USA (a hub sees what it relays, and is a holder too) sends KOR a request under the id it saw
    on JPN's request, before JPN's arrives: KOR records both, under ids bound to each sender; JPN's
    answer reaches JPN alone, and the USA's request stays its own."""
    nodes, transport, clock = net
    kor, jpn, usa = nodes["KOR"], nodes["JPN"], nodes["USA"]
    _give_jpn(nodes, transport, clock, "seen")
    kor.exchange.release(kor.people.person("officer"), "seen", "USA")
    _deliver(nodes, transport)
    asked = jpn.exchange.request_consent(
        jpn.people.person("officer"), "seen", "USA", "threat-assessment", "x"
    )
    (queued,) = [e for e in jpn.exchange.fed.outbox(state="pending") if e.kind == "consent-request"]
    opened = open_envelope(kor.ring, queued.envelope, kor.exchange._identities, clock.now)
    nonce = opened.body["id"]  # what a party that reads the request sees of it
    assert nonce != asked  # the wire carries the holder's nonce; both sides keep it bound to JPN
    kor_at_usa = usa.exchange.peer("KOR")
    assert kor_at_usa is not None
    body = {"kind": "consent-request", "id": nonce, "item": "seen", "third_party": "JPN",
            "purpose": "threat-assessment", "reason": "squatting"}  # fmt: skip
    squat = usa.exchange.queue(kor_at_usa, body, "consent-request", "seen", usa.clock()).envelope
    (first,) = transport.push(kor_at_usa, [squat])
    assert first["status"] == "recorded", first
    _deliver(nodes, transport)  # JPN's own request arrives after the squatter's
    pending = {r.holder: r.id for r in kor.exchange.fed.consent_requests("pending")}
    assert pending["JPN"] == asked
    assert pending["USA"] != asked
    kor.exchange.answer_consent(kor.people.person("officer"), asked, grant=True, reason="to the US cell")
    _deliver(nodes, transport)
    assert jpn.exchange.fed.consent_request(asked).state == "granted"  # type: ignore[union-attr]
    assert usa.exchange.fed.consent_request(asked) is None
    assert kor.exchange.fed.consent_request(pending["USA"]).state == "pending"  # type: ignore[union-attr]
