"""The audit tree's one-writer lock on PostgreSQL is the node's, not the database's: two nodes in two
schemas of one database never wait for each other, while two writers of one node still do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from tests.conftest import postgres_schema

from gsomia.errors import StoreError
from gsomia.node import Node
from gsomia.store import AuditRow, AuditStore, Store
from gsomia.testing import make_node


def _impatient(url: str) -> str:
    """``url`` (a schema's, with ``options=-csearch_path=...``) whose lock waits give up after 2 s."""
    return url + "%20-clock_timeout%3D2000"


@contextlib.contextmanager
def _node(directory: Path, party: str, url: str) -> Iterator[Node]:
    node = make_node(directory, party, database_url=url)
    try:
        yield node
    finally:
        node.close()


def test_two_nodes_in_two_schemas_of_one_database_do_not_share_the_tree_lock(
    tmp_path: Path, postgres_status: str | None
) -> None:
    with (
        postgres_schema(postgres_status) as kor_url,
        postgres_schema(postgres_status) as jpn_url,
        _node(tmp_path / "kor", "KOR", kor_url) as kor,
        _node(tmp_path / "jpn", "JPN", jpn_url) as jpn,
    ):
        jpn_impatient = Store(_impatient(jpn_url))
        kor_impatient = Store(_impatient(kor_url))
        try:
            with AuditStore(kor.store).writer() as held:
                assert held.frontier() is None  # KOR's writer holds its tree's lock ...
                with AuditStore(jpn_impatient).writer() as other:  # ... and JPN's writer does not wait
                    assert other.pending() == 0
                # the control: a second writer of KOR itself waits, and gives up at its lock timeout
                with pytest.raises(StoreError) as waited, AuditStore(kor_impatient).writer():
                    pass  # pragma: no cover - the lock is held above
                assert isinstance(waited.value.__cause__, sqlalchemy.exc.OperationalError)
                assert "lock timeout" in str(waited.value.__cause__)
        finally:
            jpn_impatient.close()
            kor_impatient.close()
        # both logs still work on their own, each over its own records
        kor.store.append_audit([AuditRow(1, "test.event", "tester", "k", "allowed", "{}")])
        assert kor.audit.sign_head().size == jpn.audit.sign_head().size + 1
        assert kor.audit.verify().ok
        assert jpn.audit.verify().ok
