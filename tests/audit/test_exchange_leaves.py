"""On PostgreSQL an exchange batch's audit records are leaves as they are written (issue 18): a
selection's ``item.release`` records (``FederationStore.enqueue``), a settled batch's
``envelope.delivered`` (``settle_many``) and a received batch's ``envelope.received`` (``accept``) are
inserted with their leaf index and hash by the batch's own transaction, as its last writes, under the
tree's lock, so that the audit writer's ``UPDATE`` never rewrites each ~2 KB record. On SQLite they
wait for ``integrate`` as before. Either way the tree verifies, proves and catches tampering, and a
batch the store refuses leaves neither its records nor the tree moved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from tests.audit._proofs import check_proof
from tests.exchange.test_exchange import Net, released_to_jpn
from tests.security._nets import three_parties

from gsomia.audit import leaf_data
from gsomia.core.merkle import leaf_hash
from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.store._federation import FederationStore

_KINDS = {"KOR": ("item.release", "envelope.delivered"), "JPN": ("envelope.received",)}


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """The three-party network, on SQLite files or on one PostgreSQL schema per party."""
    yield from three_parties(request.param, tmp_path / "net", postgres_status)


def _postgres(node: Node) -> bool:
    return node.store.engine.dialect.name == "postgresql"


def _records(node: Node, kinds: tuple[str, ...], subjects: set[str]) -> list[AuditRow]:
    return [r for kind in kinds for r in node.store.audit(kind=kind, limit=1000) if r.subject in subjects]


def test_a_batch_released_delivered_and_received_is_leaves_at_each_commit(both: Net) -> None:
    for party in _KINDS:
        both.nodes[party].audit.integrate()  # what the nodes wrote before: in the tree
    ids = [f"leaf{n}" for n in range(40)]
    released_to_jpn(both, ids)
    assert sorted(r.state for r in both.deliver()) == ["delivered"] * 40
    for party, kinds in _KINDS.items():
        node = both.nodes[party]
        records = _records(node, kinds, set(ids))
        assert len(records) == 40 * len(kinds)
        if _postgres(node):
            # leaves at the commit, no integrate since (on main each waited, leaf_index NULL, for its UPDATE)
            assert node.audit.pending() == 0
            assert all(r.leaf_index is not None and r.leaf == leaf_hash(leaf_data(r)) for r in records)
        else:
            assert all(r.leaf_index is None for r in records)  # SQLite: integrate's, as before
        head = node.audit.sign_head()
        assert node.audit.verify().ok
        for r in records:
            check_proof(node.audit.inclusion(r.entry_id or ""), head.root)


def test_a_received_record_altered_after_its_leaf_was_written_is_caught(both: Net) -> None:
    jpn = both.nodes["JPN"]
    ids = [f"alt{n}" for n in range(40)]
    released_to_jpn(both, ids)
    both.deliver()
    head = jpn.audit.sign_head()
    victim = _records(jpn, ("envelope.received",), {"alt17"})[0]
    assert victim.leaf_index is not None
    check_proof(jpn.audit.inclusion(victim.entry_id or ""), head.root)
    forged = json.dumps({**json.loads(victim.detail), "msg_id": "another"})
    with jpn.store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE audit_records SET detail = :d WHERE leaf_index = :i"),
            {"d": forged, "i": victim.leaf_index},
        )
    report = jpn.audit.verify()
    assert not report.ok
    assert report.entries <= victim.leaf_index  # found at the record touched


def test_a_batch_the_store_refuses_moves_neither_its_records_nor_the_tree(both: Net) -> None:
    jpn = both.nodes["JPN"]
    fed = FederationStore(jpn.store)
    first = [
        AuditRow(n, "envelope.received", "KOR", f"s{n}", "allowed", "{}", entry_id=f"e{n}") for n in range(40)
    ]
    fed.accept(audit=first)
    jpn.audit.integrate()
    size, records = jpn.audit.size(), len(jpn.store.audit(limit=100_000))
    # a batch one of whose records repeats an entry id already stored: refused whole, in its transaction
    again = [
        AuditRow(99, "envelope.received", "KOR", f"t{n}", "allowed", "{}", entry_id=f"x{n}")
        for n in range(39)
    ]
    with pytest.raises(Exception, match="already exists"):
        fed.accept(audit=[*again, first[0]])
    assert jpn.audit.size() == size
    assert len(jpn.store.audit(limit=100_000)) == records
    assert jpn.audit.pending() == 0
    # and the tree goes on from where it was
    fed.accept(audit=again)
    head = jpn.audit.sign_head()
    assert head.size == size + 39
    assert jpn.audit.verify().ok
