"""A leaf's hash is stored once, with its record (migration 0027): ``merkle_nodes`` keeps levels 1 and
up, proofs read a leaf by ``leaf_index``, and verify still catches every stored hash that lies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.config import Config
from tests.audit._proofs import check_proof

from gsomia.core.merkle import verify_consistency
from gsomia.errors import ProofError
from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.testing import make_node


@pytest.fixture
def node(tmp_path: Path, store_url: str) -> Iterator[Node]:
    n = make_node(tmp_path / "kor", "KOR", database_url=store_url)
    yield n
    n.close()


def record(node: Node, count: int, start: int = 0) -> None:
    node.store.append_audit(
        [
            AuditRow(n, "test.event", "tester", f"s{n}", "allowed", json.dumps({"n": n}))
            for n in range(start, start + count)
        ]
    )


def level_rows(node: Node, level: int) -> dict[int, bytes]:
    with node.store.engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text("SELECT idx, hash FROM merkle_nodes WHERE level = :l"), {"l": level}
        ).all()
    return {int(i): bytes(h) for i, h in rows}


def leaves(node: Node) -> dict[int, bytes]:
    with node.store.engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text("SELECT leaf_index, leaf FROM audit_records WHERE leaf_index IS NOT NULL")
        ).all()
    return {int(i): bytes(h) for i, h in rows}


def proofs(node: Node) -> dict[str, list[str]]:
    return {
        r.entry_id or "": node.audit.inclusion(r.entry_id or "")["proof"]
        for r in node.store.audit(limit=1000)
    }


def check_proofs(node: Node, root: bytes) -> None:
    for row in node.store.audit(limit=1000):
        proof = node.audit.inclusion(row.entry_id or "")
        check_proof(proof, root)


def migrate_to(node: Node, revision: str, *, down: bool) -> None:
    config = Config()
    config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
    with node.store.engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def test_the_writer_keeps_leaves_with_their_records_and_proofs_read_them_there(node: Node) -> None:
    record(node, 21)
    head = node.audit.sign_head()
    assert level_rows(node, 0) == {}
    assert len(leaves(node)) == 21
    assert len(level_rows(node, 1)) == 10  # the interior nodes are stored as before
    check_proofs(node, head.root)  # every leaf's proof needs a sibling leaf or two
    record(node, 11, 21)
    bigger = node.audit.sign_head()
    verify_consistency(
        21, 32, head.root, bigger.root, [bytes.fromhex(h) for h in node.audit.consistency(21, 32)]
    )
    assert node.audit.verify().ok


def test_an_altered_leaf_hash_is_caught_by_verify_and_fails_its_neighbours_proofs(node: Node) -> None:
    record(node, 8)
    head = node.audit.sign_head()
    victim = node.store.audit(limit=100)[4]
    neighbour = node.store.audit(limit=100)[5]  # leaf 5's proof carries leaf 4's hash
    with node.store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE audit_records SET leaf = :h WHERE seq = :s"),
            {"h": b"\x01" * 32, "s": victim.seq},
        )
    report = node.audit.verify()
    assert not report.ok
    assert report.entry_id == victim.entry_id
    proof = node.audit.inclusion(neighbour.entry_id or "")
    with pytest.raises(ProofError):
        check_proof(proof, head.root)


@pytest.mark.parametrize("level", [0, 4])
def test_a_node_row_the_writer_never_writes_is_reported(node: Node, level: int) -> None:
    record(node, 8)  # levels 1 to 3
    node.audit.sign_head()
    with node.store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("INSERT INTO merkle_nodes (level, idx, hash) VALUES (:l, 0, :h)"),
            {"l": level, "h": leaves(node).get(0) if level == 0 else b"\x02" * 32},
        )
    report = node.audit.verify()
    assert not report.ok
    assert f"({level}, 0)" in (report.problem or "")


def test_the_migration_carries_a_log_with_leaf_rows_over_and_its_proofs_stay_the_same(node: Node) -> None:
    record(node, 13)
    head = node.audit.sign_head()
    before = proofs(node)
    # the log as 0026 kept it: every leaf hash also a level-0 row (downgrade writes them back)
    migrate_to(node, "0026", down=True)
    assert level_rows(node, 0) == leaves(node)
    assert len(level_rows(node, 0)) == 13
    migrate_to(node, "head", down=False)
    assert level_rows(node, 0) == {}
    assert proofs(node) == before
    check_proofs(node, head.root)
    report = node.audit.verify()
    assert (report.ok, report.entries, report.heads_checked) == (True, 13, 1)
    record(node, 3, 13)  # and the writer continues from it
    bigger = node.audit.sign_head()
    verify_consistency(
        13, 16, head.root, bigger.root, [bytes.fromhex(h) for h in node.audit.consistency(13, 16)]
    )
    assert node.audit.verify().ok


def test_the_migration_leaves_a_leaf_row_that_differs_from_its_record_for_verify_to_report(
    node: Node,
) -> None:
    record(node, 6)
    node.audit.sign_head()
    migrate_to(node, "0026", down=True)
    with node.store.engine.begin() as conn:  # tampered under 0026: the row no longer its record's hash
        conn.execute(
            sqlalchemy.text("UPDATE merkle_nodes SET hash = :h WHERE level = 0 AND idx = 2"),
            {"h": b"\x03" * 32},
        )
    migrate_to(node, "head", down=False)
    assert level_rows(node, 0) == {2: b"\x03" * 32}
    report = node.audit.verify()
    assert not report.ok
    assert "(0, 2)" in (report.problem or "")


def test_the_store_refuses_leaf_rows_from_a_writer(node: Node) -> None:
    with node.audit.store.writer() as w, pytest.raises(ValueError, match="stored with their records"):
        w.integrate(0, [], [], [(0, 0, b"\x00" * 32)], "{}")
