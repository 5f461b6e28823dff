"""Adversarial review of the audit append on SQLite's own cursor (issue 18): a read whose audit record
cannot be written is not served (fail closed), and nothing of a refused batch is kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy
from tests.node_fixtures import analyst, received_from_kor

from gsomia.errors import GsomiaError
from gsomia.testing import FakeClock, make_node


def test_a_read_whose_audit_record_cannot_be_written_is_not_served(tmp_path: Path) -> None:
    node = make_node(tmp_path / "jpn", "JPN", clock=FakeClock())
    try:
        if node.store.engine.dialect.name != "sqlite":
            pytest.skip("the driver's own cursor is SQLite's")
        reader = analyst(node)
        received_from_kor(node, "aud-1")
        assert node.items.read(reader, "aud-1")[1] == b'{"track": 1}'
        before = len(node.store.audit(kind="item.read"))
        with node.store.engine.begin() as conn:  # the audit log refuses every record from now on
            conn.exec_driver_sql(
                "CREATE TRIGGER no_audit BEFORE INSERT ON audit_records "
                "BEGIN SELECT RAISE(ABORT, 'full'); END"
            )
        with pytest.raises((GsomiaError, sqlalchemy.exc.SQLAlchemyError)):
            node.items.read(reader, "aud-1")
        with node.store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER no_audit")
        assert len(node.store.audit(kind="item.read")) == before  # nothing half-written
        assert node.items.read(reader, "aud-1")[1] == b'{"track": 1}'  # and the store goes on
        assert len(node.store.audit(kind="item.read")) == before + 1
    finally:
        node.close()
