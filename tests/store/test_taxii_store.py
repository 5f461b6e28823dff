"""Migration 0005 and the TAXII store, on SQLite and PostgreSQL: date-added is unique and increasing
(also for items stored before the migration), a relabel is a new date-added, statuses are kept."""

from __future__ import annotations

from importlib.resources import files

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from tests.store.test_duties_store import _item

from gsomia.store import ItemFilter, Store
from gsomia.store._duties import DutiesStore
from gsomia.store._taxii import StatusRow, TaxiiStore


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
    return config


def test_migration_0005_gives_items_stored_before_it_unique_increasing_dates(store: Store) -> None:
    config = _config()
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    insert = sa.text(
        "INSERT INTO items (id, originator, classification, label, created_us, ingested_us, ingested_by, "
        "payload_type, payload_size, payload) VALUES (:id, 'KOR', 'c', '{}', 1, 5000000, 'x', 'json', 1, :p)"
    )
    with store.engine.begin() as conn:  # three items of one instant, as a received batch is stored
        conn.execute(insert, [{"id": f"old-{n}", "p": b"\x00"} for n in range(3)])
    store.migrate()
    store.insert_items([_item("new")])  # an ingest instant long before: still after every date given
    added = [(r.id, r.added_us) for r in store.list_items(ItemFilter(by_added=True), 0, 10)]
    assert added == [("old-0", 5000000), ("old-1", 5000001), ("old-2", 5000002), ("new", 5000003)]


def test_a_relabel_is_a_new_date_added_after_every_other(store: Store) -> None:
    store.insert_items([_item("a"), _item("b")])
    duties = DutiesStore(store)
    duties.commit(ops=[duties.relabel("a", 1, 2, '{"v": 2}', "c2", b"x", None, at_us=7)])
    order = [r.id for r in store.list_items(ItemFilter(by_added=True), 0, 10)]
    assert order == ["b", "a"]  # a's new version was added last


def test_statuses_are_kept_per_person_within_a_bound(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gsomia.store._taxii.KEPT_PER_PERSON", 5)
    statuses = TaxiiStore(store)
    row = StatusRow("s-1", "tanaka", "c", 1, (("indicator--1", "v1"),), (("indicator--2", "v2", "why"),))
    statuses.put_status(row)
    assert statuses.status("s-1") == row
    assert statuses.status("missing") is None
    for n in range(6):
        statuses.put_status(StatusRow(f"t-{n}", "sato", "c", 10 + n, (), ()))
    assert statuses.status("t-0") is None  # sato's oldest went
    assert statuses.status("t-5") is not None
    assert statuses.status("s-1") == row  # tanaka's are untouched
