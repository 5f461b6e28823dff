"""Partners gossip the signed heads they hold of each other (issue 14 §4), three nodes in one process.

KOR shows JPN one log and the USA another. Each partner alone sees a log that only grows; only
the two heads side by side show the split. Here the nodes' rounds run by hand over the in-memory
transport; ``tests/security/test_split_views.py`` mounts the same attack on node processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.audit.test_audit_log import record

from gsomia.audit._log import FORK_EVIDENCE_OPEN, GOSSIP_MAX_HEADS, GOSSIP_PENDING, head_content
from gsomia.crypto.envelope import sign_origin
from gsomia.crypto.keys import KeyRing
from gsomia.demo import network
from gsomia.errors import AccessDenied, InvalidInputError, NotFoundError
from gsomia.exchange import MemoryTransport
from gsomia.node import Node
from gsomia.store import AuditRow, AuditStore, ForkEvidenceRow, GossipHeadRow, PartnerHeadRow
from gsomia.testing import FakeClock, make_node

Net = tuple[dict[str, Node], MemoryTransport, FakeClock]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    nodes = network.open_nodes(members, clock)
    for n in nodes.values():
        n.people.add_person(None, {"id": "guard", "name": "security officer", "nationality": n.party,
                            "roles": ["security_officer"]})  # fmt: skip
    yield nodes, MemoryTransport(nodes), clock
    for n in nodes.values():
        n.close()


def _deliver(nodes: dict[str, Node], client: MemoryTransport) -> None:
    for _ in range(2):
        for n in nodes.values():
            n.exchange.deliver_due(client)


def _gossip_round(nodes: dict[str, Node], client: MemoryTransport, *, share: bool = True) -> None:
    """What each node's ``gossip`` work does once a head interval (``NodeRuntime.round``)."""
    for party, n in nodes.items():
        if share or party != "KOR":
            n.heads.share_head()
    _deliver(nodes, client)
    for n in nodes.values():
        n.audit.check_partners(client)
        n.audit.check_gossip(client)
        n.heads.gossip()
    _deliver(nodes, client)
    for n in nodes.values():
        n.audit.check_gossip(client)


def _status(node: Node, party: str = "KOR") -> str:
    return next(str(p["status"]) for p in node.audit.partners() if p["party"] == party)


def _show(kor: Node, to: Node, size: int, root: bytes, clock: FakeClock) -> str:
    """KOR's head of ``size`` and ``root``, signed with KOR's key, handed to one partner only."""
    jws = sign_origin(kor.ring, head_content("KOR", size, root, clock.now), clock.now)
    assert to.audit.receive_head("KOR", jws, to.exchange._identities) == "pending"
    return jws


def _split_view(nodes: dict[str, Node], client: MemoryTransport, clock: FakeClock) -> None:
    """KOR stops sharing its head with everyone; it shows JPN its genuine head and the USA a head of
    the same size over another log. Each partner checks what it was shown: consistent."""
    kor = nodes["KOR"]
    record(kor, 12)
    genuine = kor.audit.sign_head()
    _show(kor, nodes["JPN"], genuine.size, genuine.root, clock)
    _show(kor, nodes["USA"], genuine.size, b"\x5a" * 32, clock)
    for party in ("JPN", "USA"):
        nodes[party].audit.check_partners(client)
        assert _status(nodes[party]) == "consistent"  # each alone sees nothing wrong


def test_a_split_view_at_one_size_is_found_by_both_partners_in_one_round(net: Net) -> None:
    nodes, client, clock = net
    _split_view(nodes, client, clock)
    _gossip_round(nodes, client, share=False)
    for party in ("JPN", "USA"):
        node = nodes[party]
        assert _status(node) == "forked"
        forks = node.audit.forks(None, "KOR")
        assert len(forks) == 1
        fork = forks[0]
        assert fork["verified"] is True
        assert fork["shown_by"] == ({"JPN": "USA", "USA": "JPN"}[party])
        sizes = {h["size"] for h in fork["heads"]}
        roots = {h["root"] for h in fork["heads"]}
        assert len(sizes) == 1
        assert len(roots) == 2
        assert node.store.audit(kind="audit.fork")[-1].outcome == "alert"
        # the evidence is both heads as KOR signed them, checkable later by anyone with KOR's key
        row = AuditStore(node.store).fork_evidence("KOR")[0]
        assert node.audit.verify_fork(row) is None
    # the split persists: more rounds find the same pair again, not new evidence
    for _ in range(2):
        _gossip_round(nodes, client, share=False)
    assert [len(nodes[p].audit.forks(None, "KOR")) for p in ("JPN", "USA")] == [1, 1]


def test_a_split_view_at_different_sizes_fails_the_proof_and_is_found(net: Net) -> None:
    """JPN holds KOR's genuine head of size n; the USA a head of size m > n over another log.
    Each, given the other's, asks KOR for the proof from n to m: KOR's log cannot give one."""
    nodes, client, clock = net
    kor = nodes["KOR"]
    record(kor, 5)
    small = kor.audit.sign_head()
    _show(kor, nodes["JPN"], small.size, small.root, clock)
    record(kor, 9)
    large = kor.audit.sign_head()
    _show(kor, nodes["USA"], large.size, b"\x33" * 32, clock)
    for party in ("JPN", "USA"):
        nodes[party].audit.check_partners(client)
        assert _status(nodes[party]) == "consistent"
    _gossip_round(nodes, client, share=False)
    for party in ("JPN", "USA"):
        assert _status(nodes[party]) == "forked", nodes[party].audit.partners()
        (fork,) = nodes[party].audit.forks(None, "KOR")
        assert sorted(h["size"] for h in fork["heads"]) == [small.size, large.size]
        assert fork["verified"] is True


def test_an_honest_log_gossiped_stays_consistent_and_settles_what_waits(net: Net) -> None:
    """KOR's newer head reaches JPN before the USA (the USA was unreachable): JPN's gossip brings it
    to the USA first, where it waits for KOR's proof from the head the USA holds, and is settled."""
    nodes, client, clock = net
    for _ in range(2):
        for n in nodes.values():
            record(n, 7)
        clock.advance(seconds=5)
        _gossip_round(nodes, client)
    usa = nodes["USA"]
    record(nodes["KOR"], 9)
    client.unreachable.add("USA")
    nodes["KOR"].heads.share_head()
    _deliver(nodes, client)
    client.unreachable.clear()
    nodes["JPN"].audit.check_partners(client)
    assert nodes["JPN"].heads.gossip() == 1  # KOR's newer head, to the USA only (KOR had the rest)
    _deliver(nodes, client)  # KOR's own message to the USA waits for its retry
    assert [g.party for g in AuditStore(usa.store).gossip_heads()] == ["KOR"]
    assert next(p for p in usa.audit.partners() if p["party"] == "KOR")["gossip_pending"] == 1
    (result,) = usa.audit.check_gossip(client)
    assert result["status"] == "consistent", result
    assert AuditStore(usa.store).gossip_heads() == []
    assert usa.store.audit(kind="audit.gossip-consistent")
    assert nodes["JPN"].heads.gossip() == 0  # nothing new to say: nothing sent again
    for _ in range(2):
        clock.advance(seconds=60)
        _gossip_round(nodes, client)
    for n in nodes.values():
        partners = n.audit.partners()
        assert {p["status"] for p in partners} == {"consistent"}, partners
        assert all(p["forks"] == 0 and p["gossip_pending"] == 0 for p in partners)
        assert not n.store.audit(kind="audit.fork")


def test_a_partner_cannot_frame_kor_with_a_head_kor_did_not_sign(net: Net) -> None:
    """A hostile JPN gossips to the USA heads "of KOR" it made itself: one it signed with its own
    key, one carrying KOR's name and key id over JPN's signature, one genuine head with its root
    changed. Each message is refused whole, audited, and the USA's view of KOR is untouched."""
    nodes, client, clock = net
    _gossip_round(nodes, client)
    usa, jpn, kor = nodes["USA"], nodes["JPN"], nodes["KOR"]
    held = AuditStore(usa.store).latest_partner_heads()
    size = next(h.size for h in held if h.party == "KOR")
    own = sign_origin(jpn.ring, head_content("KOR", size, b"\x01" * 32, clock.now), clock.now)
    genuine = sign_origin(kor.ring, head_content("KOR", size, b"\x02" * 32, clock.now), clock.now)
    header, _payload, signature = genuine.split(".")
    _h, payload, jpn_signature = own.split(".")
    spliced = f"{header}.{payload}.{jpn_signature}"
    altered = f"{header}.{payload}.{signature}"
    for forged in (own, spliced, altered):
        with pytest.raises(InvalidInputError):
            usa.audit.receive_gossip("JPN", [forged], usa.exchange._identities)
    # over the exchange too: the inbox refuses the message and audits it
    (peer,) = [p for p, _ in jpn.exchange.peers() if p.party == "USA"]
    body = {"kind": "head-gossip", "heads": [spliced]}
    row = jpn.exchange.queue(peer, body, "head-gossip", None, clock.now)
    jpn.exchange.enqueue([row])
    _deliver(nodes, client)
    refused = [r for r in usa.store.audit(kind="envelope.refused") if r.actor == "JPN"]
    assert refused
    assert "does not verify" in (refused[-1].detail or "")
    assert _status(usa) == "consistent"
    assert usa.audit.forks(None) == []


def test_a_head_under_a_key_not_known_here_is_set_aside_not_refused(net: Net, tmp_path: Path) -> None:
    """JPN registered KOR's rotated key before the USA did: JPN's honest gossip of a head KOR signed
    with it is not a refusal at the USA, and the head is not used (nothing kept, no fork)."""
    nodes, client, clock = net
    _gossip_round(nodes, client)
    usa = nodes["USA"]
    rotated = KeyRing.generate(tmp_path / "kor-next", "KOR", "kor-node", clock.now)
    head = sign_origin(rotated, head_content("KOR", 77, b"\x09" * 32, clock.now), clock.now)
    counts = usa.audit.receive_gossip("JPN", [head], usa.exchange._identities)
    assert counts["unverifiable"] == 1
    assert counts["kept"] == counts["forks"] == 0
    assert AuditStore(usa.store).gossip_heads() == []
    assert usa.store.audit(kind="audit.gossip")  # set aside, and said so
    assert _status(usa) == "consistent"


def test_gossip_is_bounded_and_duplicates_are_ignored(net: Net) -> None:
    nodes, client, clock = net
    _gossip_round(nodes, client)
    usa, kor = nodes["USA"], nodes["KOR"]
    ids = usa.exchange._identities
    too_many = [
        sign_origin(kor.ring, head_content("KOR", 1000 + i, bytes([i]) * 32, clock.now), clock.now)
        for i in range(GOSSIP_MAX_HEADS + 1)
    ]
    with pytest.raises(InvalidInputError):
        usa.audit.receive_gossip("JPN", too_many, ids)
    with pytest.raises(InvalidInputError):
        usa.audit.receive_gossip("JPN", [], ids)
    # KOR signed many heads (a colluding KOR and JPN): at most GOSSIP_PENDING wait, per gossiper
    heads = [
        sign_origin(kor.ring, head_content("KOR", 2000 + i, bytes([i % 256]) * 32, clock.now), clock.now)
        for i in range(GOSSIP_PENDING + 20)
    ]
    kept = full = 0
    for start in range(0, len(heads), GOSSIP_MAX_HEADS):
        counts = usa.audit.receive_gossip("JPN", heads[start : start + GOSSIP_MAX_HEADS], ids)
        kept, full = kept + counts["kept"], full + counts["full"]
    assert (kept, full) == (GOSSIP_PENDING, 20)
    assert len(AuditStore(usa.store).gossip_heads()) == GOSSIP_PENDING
    # the same heads again: nothing new kept, nothing recorded
    records = len(usa.store.audit(kind="audit.gossip"))
    again = usa.audit.receive_gossip("JPN", heads[:GOSSIP_MAX_HEADS], ids)
    assert again["duplicate"] == GOSSIP_MAX_HEADS
    assert again["kept"] == 0
    assert len(usa.store.audit(kind="audit.gossip")) == records
    # conflicting heads beyond the cap of open forks are not kept (KOR is forked already)
    held = {h.size: h.root for h in AuditStore(usa.store).gossip_heads()}
    conflicting = [
        sign_origin(kor.ring, head_content("KOR", size, b"\xee" * 32, clock.now), clock.now)
        for size in sorted(held)[: FORK_EVIDENCE_OPEN + 3]
    ]
    for start in range(0, len(conflicting), GOSSIP_MAX_HEADS):
        usa.audit.receive_gossip("JPN", conflicting[start : start + GOSSIP_MAX_HEADS], ids)
    assert len(usa.audit.forks(None, "KOR")) == FORK_EVIDENCE_OPEN
    assert _status(usa) == "forked"


def test_forked_stays_until_a_security_officer_acknowledges_it(net: Net) -> None:
    nodes, client, clock = net
    _split_view(nodes, client, clock)
    _gossip_round(nodes, client, share=False)
    jpn = nodes["JPN"]
    for who in ("admin", "officer", "analyst"):
        with pytest.raises(AccessDenied):
            jpn.audit.acknowledge_fork(jpn.people.person(who), "KOR", "seen")
    assert [r.actor for r in jpn.store.audit(kind="authz.audit.acknowledge-fork")] == [
        "admin",
        "officer",
        "analyst",
    ]
    with pytest.raises(InvalidInputError):
        jpn.audit.acknowledge_fork(jpn.people.person("guard"), "KOR", "   ")
    clock.advance(seconds=60)
    _gossip_round(nodes, client, share=False)
    assert _status(jpn) == "forked"  # time and rounds do not clear it
    (fork,) = jpn.audit.forks(None, "KOR")
    answer = jpn.audit.acknowledge_fork(
        jpn.people.person("guard"), "KOR", "raised with KOR through the embassy"
    )
    assert answer["acknowledged"] == [fork["id"]]
    assert answer["status"] == "consistent"
    (fork,) = jpn.audit.forks(None, "KOR")
    assert fork["acknowledged_by"] == "guard"
    assert fork["note"] == "raised with KOR through the embassy"
    (ack,) = jpn.store.audit(kind="audit.fork-acknowledged")
    assert ack.actor == "guard"
    assert ack.subject == "KOR"
    with pytest.raises(NotFoundError):  # nothing open: nothing to acknowledge
        jpn.audit.acknowledge_fork(jpn.people.person("guard"), "KOR", "again")


def test_the_stores_side_on_sqlite_and_postgresql(tmp_path: Path, store_url: str) -> None:
    """What the gossip keeps, on both stores: one head per party and size, bounded waiting heads,
    evidence once per pair and bounded, acknowledgement by compare-and-set with its record."""
    node = make_node(tmp_path / "usa", "USA", database_url=store_url)
    try:
        store = AuditStore(node.store)
        for party, size in (("KOR", 5), ("KOR", 9), ("JPN", 3)):
            store.put_partner_head(
                PartnerHeadRow(party, size, bytes([size]) * 32, 1, f"jws-{party}-{size}", 1, "consistent")
            )
        assert [(h.party, h.size) for h in store.latest_partner_heads()] == [("JPN", 3), ("KOR", 9)]
        assert store.held_root("KOR", 5) == (b"\x05" * 32, "jws-KOR-5")
        assert store.held_root("KOR", 6) is None

        def gossiped(size: int, via: str = "JPN") -> GossipHeadRow:
            return GossipHeadRow("KOR", size, b"\x07" * 32, f"g-{size}", via, 2)

        assert store.put_gossip_head(gossiped(5), cap=2) == "held"
        assert store.put_gossip_head(gossiped(12), cap=2) == "kept"
        assert store.put_gossip_head(gossiped(12), cap=2) == "held"
        assert store.held_root("KOR", 12) == (b"\x07" * 32, "g-12")
        assert store.put_gossip_head(gossiped(13), cap=2) == "kept"
        assert store.put_gossip_head(gossiped(14), cap=2) == "full"
        assert store.put_gossip_head(gossiped(14, via="CAN"), cap=2) == "kept"  # per gossiper
        store.settle_gossip_head(gossiped(12))
        assert [g.size for g in store.gossip_heads()] == [13, 14]

        def evidence(n: int) -> ForkEvidenceRow:
            return ForkEvidenceRow(
                "KOR", f"pair-{n}", 5, b"\x05" * 32, "a", 5, bytes([n]) * 32, "b", "JPN", "two roots", n
            )

        record = AuditRow(1, "audit.fork", "KOR", "5", "alert", "{}")
        assert store.put_fork_evidence(evidence(1), 2, [record])
        assert not store.put_fork_evidence(evidence(1), 2, [record])  # the same pair: once
        assert store.put_fork_evidence(evidence(2), 2, [record])
        assert not store.put_fork_evidence(evidence(3), 2, [record])  # two open: enough
        assert len(node.store.audit(kind="audit.fork")) == 2
        first, second = store.fork_evidence("KOR")
        ack = AuditRow(2, "audit.fork-acknowledged", "guard", "KOR", "allowed", "{}")
        assert store.acknowledge_forks("KOR", first.seq, "guard", "seen", 5, [ack]) == [first.seq]
        assert [f.seq for f in store.fork_evidence("KOR", open_only=True)] == [second.seq]
        assert store.acknowledge_forks("KOR", None, "guard", "seen", 6, [ack]) == [second.seq]
        assert store.acknowledge_forks("KOR", None, "guard", "again", 7, [ack]) == []
        assert len(node.store.audit(kind="audit.fork-acknowledged")) == 2
        assert store.put_fork_evidence(evidence(3), 2, [record])  # none open: a new fork is kept
    finally:
        node.close()
