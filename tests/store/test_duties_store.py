"""The duty tables, on SQLite and PostgreSQL: a label change never races into two labels."""

from __future__ import annotations

from importlib.resources import files

import pytest
from alembic import command
from alembic.config import Config

from gsomia.errors import ConflictError
from gsomia.store import NewItem, Store
from gsomia.store._duties import DutiesStore


def _item(item_id: str) -> NewItem:
    return NewItem(
        id=item_id,
        originator="KOR",
        classification="c",
        label='{"v": 1}',
        topics=frozenset(),
        received_from=None,
        agreement=None,
        created_us=1,
        ingested_us=1,
        ingested_by="x",
        payload_type="json",
        payload_size=3,
        payload=b"abc",
    )


def test_a_stale_relabel_is_a_conflict_and_changes_nothing(store: Store) -> None:
    duties = DutiesStore(store)
    store.insert_items([_item("k1")])
    duties.commit(ops=[duties.relabel("k1", 1, 2, '{"v": 2}', "c2", b"new", None)])
    with pytest.raises(ConflictError, match="changed meanwhile"):  # a second writer that read version 1
        duties.commit(ops=[duties.relabel("k1", 1, 2, '{"v": "other"}', "c3", b"other", None)])
    row = store.get_item("k1")
    assert row is not None
    assert (row.label, row.classification, row.label_version, row.payload) == ('{"v": 2}', "c2", 2, b"new")


def test_a_withdrawn_item_keeps_its_record_and_loses_its_payload(store: Store) -> None:
    duties = DutiesStore(store)
    store.insert_items([_item("k1")])
    duties.commit(ops=[duties.withdraw("k1", "destroyed")])
    row = store.get_item("k1")
    assert row is not None
    assert (row.state, row.payload, row.origin_jws) == ("destroyed", b"", None)
    with pytest.raises(ConflictError, match="no longer held"):
        duties.commit(ops=[duties.withdraw("k1", "recalled")])
    with pytest.raises(ConflictError):  # nor can a destroyed item be relabelled
        duties.commit(ops=[duties.relabel("k1", 1, 2, "{}", "c", b"x", None)])


def test_migration_0004_goes_down_and_up_again_keeping_the_items(store: Store) -> None:
    store.insert_items([_item("k1")])
    config = Config()
    config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0003")
    assert (store.revision(), store.count_items()) == ("0003", 1)
    store.migrate()
    row = store.get_item("k1")
    assert row is not None
    assert (store.revision(), row.label_version, row.state) == (Store.head(), 1, "held")
