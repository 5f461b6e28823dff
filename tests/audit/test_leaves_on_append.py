"""A batch given to ``Store.append_audit`` becomes leaves as it is written (issue 18): in the same
transaction, under the tree's lock, after the records still pending, the same tree ``integrate`` would
have made. Tampering with such leaves is still caught, and two processes appending batches and small
records, writing batches in transactions of other writes (``FederationStore.accept``: leaves there
too on PostgreSQL) and integrating at once never fork the tree."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from tests.audit._proofs import check_proof

from gsomia.audit import leaf_data
from gsomia.core.merkle import Frontier, leaf_hash
from gsomia.errors import ProofError
from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.testing import make_node


@pytest.fixture
def node(tmp_path: Path, store_url: str) -> Iterator[Node]:
    n = make_node(tmp_path / "kor", "KOR", database_url=store_url)
    yield n
    n.close()


def rows(start: int, count: int) -> list[AuditRow]:
    return [
        AuditRow(n, "test.event", "tester", f"s{n}", "allowed", json.dumps({"n": n}))
        for n in range(start, start + count)
    ]


def sql(node: Node, statement: str) -> None:
    with node.store.engine.begin() as conn:
        conn.execute(sqlalchemy.text(statement))


def test_a_batch_is_leaves_when_written_after_the_pending_records_as_integrate_would_make_them(
    node: Node,
) -> None:
    node.audit.integrate()  # the node's own records so far
    before = node.audit.size()
    node.store.append_audit(rows(0, 5))  # a request's few records: pending
    node.store.append_audit(rows(5, 31))  # below a batch: pending too
    assert node.audit.pending() == 36
    node.store.append_audit(rows(36, 40))  # a batch: the pending first, then these, all leaves now
    assert node.audit.pending() == 0
    assert node.audit.size() == before + 76
    records = node.store.audit(limit=1000)  # oldest first
    assert [r.leaf_index for r in records] == list(range(before + 76))  # the records' order
    reference = Frontier()
    for r in records:
        assert r.leaf == leaf_hash(leaf_data(r))
        reference.append(leaf_hash(leaf_data(r)))
    head = node.audit.sign_head()
    assert head.root == reference.root()
    assert node.audit.verify().ok
    for r in records[before:]:
        check_proof(node.audit.inclusion(r.entry_id or ""), head.root)
    # and the log goes on from there through integrate
    node.store.append_audit(rows(76, 3))
    assert node.audit.sign_head().size == before + 79
    assert node.audit.verify().ok


def test_a_batch_with_an_entry_id_already_stored_writes_nothing(node: Node) -> None:
    batch = [AuditRow(n, "test.event", "tester", None, "allowed", "{}", entry_id=f"e{n}") for n in range(40)]
    node.store.append_audit(batch)
    size = node.audit.size()
    again = [AuditRow(99, "test.event", "tester", None, "allowed", "{}", entry_id=f"x{n}") for n in range(39)]
    with pytest.raises(Exception, match="already exists"):
        node.store.append_audit([*again, batch[0]])
    assert node.audit.size() == size  # neither the records nor the tree moved
    assert node.audit.pending() == 0
    assert node.audit.verify().ok


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_records SET detail = '{\"n\": 999}' WHERE leaf_index = {i}",  # altered
        "UPDATE audit_records SET at_us = at_us + 1 WHERE leaf_index = {i}",  # altered instant
        "DELETE FROM audit_records WHERE leaf_index = {i}",  # dropped
        # reordered: two records' contents swapped, their leaf hashes left where they were
        "UPDATE audit_records SET detail = CASE WHEN leaf_index = {i} THEN "
        "(SELECT detail FROM audit_records WHERE leaf_index = {j}) ELSE "
        "(SELECT detail FROM audit_records WHERE leaf_index = {i}) END WHERE leaf_index IN ({i}, {j})",
    ],
    ids=["altered", "altered-instant", "dropped", "reordered"],
)
def test_a_batch_written_as_leaves_is_tamper_evident(node: Node, tamper: str) -> None:
    node.store.append_audit(rows(0, 64))
    head = node.audit.sign_head()
    first = head.size - 64
    i, j = first + 20, first + 21
    victim = node.audit.store.by_leaf(i)
    assert victim is not None
    assert victim.entry_id is not None
    sql(node, tamper.replace("{i}", str(i)).replace("{j}", str(j)))
    report = node.audit.verify()
    assert not report.ok
    assert report.entries <= i  # found at the record touched, not later
    if "DELETE" not in tamper:  # its proof, recomputed from what is stored now, no longer reaches the root
        with pytest.raises(ProofError):
            check_proof(node.audit.inclusion(victim.entry_id), head.root)


_WRITER = textwrap.dedent(
    """
    import json, random, sys
    from pathlib import Path
    from gsomia.node import Node
    from gsomia.store import AuditRow
    from gsomia.store._federation import FederationStore

    node = Node.open(Path(sys.argv[1]), migrate=False)
    tag, rounds = sys.argv[2], int(sys.argv[3])
    fed = FederationStore(node.store)
    print("ready", flush=True)
    sys.stdin.readline()
    written = 0
    try:
        for k in range(rounds):
            count = random.choice((random.randint(1, 6), random.randint(32, 80)))
            batch = [
                AuditRow(k, "test.event", tag, f"{tag}{written + n}", "allowed", json.dumps({"n": n}))
                for n in range(count)
            ]
            if k % 3 == 1:
                # in a transaction of other writes (PostgreSQL: leaves as its last writes, if a batch)
                fed.accept(audit=batch)
            else:
                node.store.append_audit(batch)
            written += count
            if k % 5 == 4:
                node.audit.integrate()
    finally:
        node.close()
    print(json.dumps({"written": written}))
    """
)


def test_two_processes_appending_batches_and_integrating_at_once_do_not_fork_the_tree(
    tmp_path: Path, store_url: str
) -> None:
    directory = tmp_path / "kor"
    made = make_node(directory, "KOR", database_url=store_url)
    made.audit.sign_head()
    start = made.audit.size()
    made.close()
    procs = [
        subprocess.Popen(  # noqa: S603 - this interpreter and this file's own script
            [sys.executable, "-c", _WRITER, str(directory), tag, "60"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for p in procs:  # both imported and open: start them at once
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    written = 0
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
        written += json.loads(out.strip().splitlines()[-1])["written"]
    node = Node.open(directory, migrate=False)
    try:
        head = node.audit.sign_head()
        assert head.size == start + written  # every record once, none lost, none twice
        report = node.audit.verify()
        assert report.ok, report
        records = node.store.audit(limit=100_000)
        assert sorted(r.leaf_index for r in records if r.leaf_index is not None) == list(range(head.size))
        for r in records[-5:]:
            check_proof(node.audit.inclusion(r.entry_id or ""), head.root)
    finally:
        node.close()


def test_a_batch_with_awkward_text_and_given_ids_is_leaves_that_verify_and_prove(node: Node) -> None:
    batch = rows(0, 40)
    batch[1] = AuditRow(1, "test\x00kind", "act\x00or", "sub\x00", "allowed\x00", '{"x":"日本語 \\" \\\\"}')
    batch[2] = AuditRow(2, "test.event", None, None, "allowed", "{}", entry_id="a-given-id")
    node.store.append_audit(batch)
    assert node.audit.pending() == 0
    stored = {r.at_us: r for r in node.store.audit(limit=1000) if r.kind.startswith("test")}
    assert (stored[1].kind, stored[1].actor, stored[1].subject, stored[1].outcome) == (
        "test\\x00kind",
        "act\\x00or",
        "sub\\x00",
        "allowed\\x00",
    )
    assert stored[2].entry_id == "a-given-id"
    for r in stored.values():
        assert r.leaf == leaf_hash(leaf_data(r))  # each leaf commits to the record as stored
    head = node.audit.sign_head()
    assert node.audit.verify().ok
    for r in (stored[1], stored[2], stored[39]):
        check_proof(node.audit.inclusion(r.entry_id or ""), head.root, head.size)
    # and the made ids are still unguessable one from another
    made = [r.entry_id or "" for r in stored.values() if r.at_us != 2]
    assert len(set(made)) == 39


def test_the_stored_tree_is_the_reference_tree_byte_for_byte_on_every_write_path(node: Node) -> None:
    """The writer binds its hashes as bytearrays on SQLite (issue 18): every leaf and subtree is still
    a BLOB of the same 32 bytes, every interior node of the reference tree is stored and nothing else,
    and the stored frontier is the reference's, whichever path wrote them (a batch as leaves, pending
    records integrated, both in one transaction)."""
    node.audit.integrate()
    node.store.append_audit(rows(0, 40))  # a batch: leaves as written
    node.store.append_audit(rows(40, 7))  # pending
    with node.store._begin() as conn:
        node.store._audit(conn, rows(47, 300))  # pending, as a transaction with other changes writes them
    node.audit.integrate(100)  # integrate alone, in calls of 100
    node.store.append_audit(rows(347, 500))  # the rest pending first, then this batch
    assert node.audit.pending() == 0
    records = node.store.audit(limit=10_000)
    reference = Frontier()
    interior: dict[tuple[int, int], bytes] = {}
    for r in records:
        assert type(r.leaf) is bytes
        assert r.leaf == leaf_hash(leaf_data(r))
        for level, idx, h in reference.append(leaf_hash(leaf_data(r))):
            if level:
                interior[(level, idx)] = h
    with node.store.engine.connect() as conn:
        stored = {
            (int(lv), int(ix)): h
            for lv, ix, h in conn.exec_driver_sql("SELECT level, idx, hash FROM merkle_nodes")
        }
        if node.store.engine.dialect.name == "sqlite":
            kinds = conn.exec_driver_sql(
                "SELECT typeof(hash), length(hash), count(*) FROM merkle_nodes GROUP BY 1, 2 "
                "UNION ALL SELECT typeof(leaf), length(leaf), count(*) FROM audit_records GROUP BY 1, 2"
            ).all()
            assert {(k, n) for k, n, _ in kinds} == {("blob", 32)}
    assert all(type(h) is bytes for h in stored.values())
    assert stored == interior
    frontier = json.loads(node.audit.store.frontier() or "")
    assert frontier == {"size": reference.size, "hashes": [h.hex() for h in reference.hashes]}
    assert node.audit.sign_head().root == reference.root()
    assert node.audit.verify().ok
