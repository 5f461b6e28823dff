"""A received batch's audit records are leaves as they are written (issue 18): the inbox's one
transaction inserts each record with its leaf index and hash under the tree's lock, so no ``UPDATE``
rewrites the ~2 KB record later to store its leaf. The tree stays as verifiable as before: verify,
inclusion proofs and the signed head hold, tampering with such a record is caught, and two processes
writing batches in their own transactions, small records and integrations at once never fork it."""

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
from tests.exchange.test_exchange import Net, net, released_to_jpn

from gsomia.audit import leaf_data
from gsomia.core.merkle import Frontier, leaf_hash
from gsomia.errors import ProofError
from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.store._federation import FederationStore
from gsomia.testing import make_node

__all__ = ["net"]


@pytest.fixture
def node(tmp_path: Path, store_url: str) -> Iterator[Node]:
    n = make_node(tmp_path / "jpn", "JPN", database_url=store_url)
    yield n
    n.close()


def rows(start: int, count: int) -> list[AuditRow]:
    return [
        AuditRow(n, "envelope.received", "KOR", f"i{n}", "allowed", json.dumps({"n": n, "pad": "x" * 1500}))
        for n in range(start, start + count)
    ]


def test_a_received_batch_is_leaves_at_its_commit_with_no_integration(net: Net) -> None:
    jpn = net.nodes["JPN"]
    jpn.audit.integrate()
    before = jpn.audit.size()
    ids = [f"r{n}" for n in range(40)]
    msg_ids = released_to_jpn(net, ids)
    assert sorted(r.state for r in net.deliver()) == ["delivered"] * 40
    received = [r for r in jpn.store.audit(kind="envelope.received", limit=1000) if r.subject in ids]
    assert len(received) == 40
    # each record is a leaf as written (on main they waited, leaf_index NULL, for integrate's UPDATE)
    assert all(r.leaf_index is not None and r.leaf_index >= before for r in received)
    assert all(r.leaf == leaf_hash(leaf_data(r)) for r in received)
    head = jpn.audit.sign_head()
    assert jpn.audit.verify().ok
    for r in received:
        check_proof(jpn.audit.inclusion(r.entry_id or ""), head.root)
    assert {json.loads(r.detail)["msg_id"] for r in received} == set(msg_ids)


@pytest.mark.parametrize(
    "tamper",
    [
        "UPDATE audit_records SET detail = '{\"n\": 999}' WHERE leaf_index = {i}",
        "UPDATE audit_records SET subject = 'another' WHERE leaf_index = {i}",
        "DELETE FROM audit_records WHERE leaf_index = {i}",
        "UPDATE audit_records SET leaf = (SELECT leaf FROM audit_records WHERE leaf_index = {j}) "
        "WHERE leaf_index = {i}",
    ],
    ids=["altered", "altered-subject", "dropped", "leaf-replaced"],
)
def test_a_batch_written_as_leaves_in_a_transaction_is_tamper_evident(node: Node, tamper: str) -> None:
    FederationStore(node.store).accept(audit=rows(0, 40))
    assert node.audit.pending() == 0  # leaves as written: nothing for integrate
    head = node.audit.sign_head()
    i, j = head.size - 20, head.size - 19
    victim = node.audit.store.by_leaf(i)
    assert victim is not None
    assert victim.entry_id is not None
    check_proof(node.audit.inclusion(victim.entry_id), head.root)
    with node.store.engine.begin() as conn:
        conn.execute(sqlalchemy.text(tamper.replace("{i}", str(i)).replace("{j}", str(j))))
    report = node.audit.verify()
    assert not report.ok
    assert report.entries <= i  # found at the record touched, not later
    if "DELETE" not in tamper:
        # its proof (its data changed) or its neighbour's (its stored hash, the neighbour's sibling,
        # changed), recomputed from what is stored now, no longer reaches the signed root
        neighbour = node.audit.store.by_leaf(i ^ 1)
        assert neighbour is not None
        proved = 0
        for entry in (victim.entry_id, neighbour.entry_id or ""):
            try:
                check_proof(node.audit.inclusion(entry), head.root)
                proved += 1
            except ProofError:
                pass
        assert proved < 2


def test_the_pending_records_go_first_then_the_batch_in_the_same_tree_integrate_makes(node: Node) -> None:
    node.audit.integrate()
    before = node.audit.size()
    node.store.append_audit(rows(0, 3))  # a request's records: pending
    FederationStore(node.store).accept(audit=rows(3, 5))  # below a batch: pending too
    assert node.audit.pending() == 8
    FederationStore(node.store).accept(audit=rows(8, 36))
    assert node.audit.pending() == 0
    records = node.store.audit(limit=1000)
    assert [r.leaf_index for r in records] == list(range(before + 44))
    reference = Frontier()
    for r in records:
        reference.append(leaf_hash(leaf_data(r)))
    assert node.audit.sign_head().root == reference.root()
    assert node.audit.verify().ok


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
            count = random.choice((random.randint(1, 6), random.randint(32, 60)))
            batch = [
                AuditRow(k, "envelope.received", tag, f"{tag}{written + n}", "allowed", json.dumps({"n": n}))
                for n in range(count)
            ]
            if tag == "receiver" or k % 3:
                fed.accept(audit=batch)  # in a transaction of its own writes: leaves if a batch
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


def test_two_processes_writing_batches_in_transactions_and_integrating_do_not_fork_the_tree(
    tmp_path: Path, store_url: str
) -> None:
    directory = tmp_path / "jpn"
    made = make_node(directory, "JPN", database_url=store_url)
    made.audit.sign_head()
    start = made.audit.size()
    made.close()
    procs = [
        subprocess.Popen(  # noqa: S603 - this interpreter and this file's own script
            [sys.executable, "-c", _WRITER, str(directory), tag, "50"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("receiver", "other")
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
