"""Migration 0029 on PostgreSQL: ciphertext stored without a compression attempt, the exchange's JSON
compressed by LZ4 where the server has it; on both backends every value reads back as written, and
the migration goes down and up again."""

from __future__ import annotations

import os
from importlib.resources import files

import pytest
from alembic import command
from alembic.config import Config

from gsomia.store import NewItem, Store

_CIPHERTEXT = {("items", "payload"), ("items", "origin_jws")}
_JSON = {
    ("audit_records", "detail"),
    ("outbox", "request"),
    ("outbox", "decision"),
    ("outbox", "envelope"),
    ("outbox", "receipt"),
    ("inbox", "receipt"),
    ("receipts", "receipt"),
}


def _columns(store: Store) -> dict[tuple[str, str], tuple[str, str]]:
    """(table, column) -> (attstorage, attcompression) of this store's schema's long columns."""
    query = (
        "SELECT c.relname, a.attname, a.attstorage, a.attcompression FROM pg_attribute AS a "
        "JOIN pg_class AS c ON c.oid = a.attrelid WHERE c.relnamespace = current_schema()::regnamespace "
        "AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped"
    )
    with store.engine.connect() as conn:
        return {(r[0], r[1]): (r[2], r[3]) for r in conn.exec_driver_sql(query)}


def _lz4(store: Store) -> bool:
    """Whether the server compresses with LZ4 (built with it): a session setting tries it."""
    with store.engine.connect() as conn:
        try:
            conn.exec_driver_sql("SET default_toast_compression = 'lz4'")
        except Exception:
            return False
        conn.exec_driver_sql("RESET default_toast_compression")
        return True


def _postgresql(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's storage of long values; SQLite has no such setting")


def test_ciphertext_is_not_compressed_and_the_json_is_compressed_by_lz4(store: Store) -> None:
    _postgresql(store)
    columns = _columns(store)
    assert {columns[c][0] for c in _CIPHERTEXT} == {"e"}  # EXTERNAL: out of line, never compressed
    if not _lz4(store):
        if os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1":
            pytest.fail("the PostgreSQL under test has no LZ4 (built without it)")
        pytest.skip("this PostgreSQL has no LZ4: the migration keeps pglz")
    assert {columns[c][1] for c in _JSON} == {"l"}
    # nothing else changed: every other column keeps the server's defaults
    others = {k: v for k, v in columns.items() if k not in _CIPHERTEXT | _JSON}
    assert all(compression == "" for _, compression in others.values())


def _item(n: int, payload: bytes, jws: bytes) -> NewItem:
    return NewItem(
        id=f"t{n}",
        originator="KOR",
        classification="c",
        label="{}",
        topics=frozenset(),
        received_from=None,
        agreement=None,
        created_us=1,
        ingested_us=1,
        ingested_by="x",
        payload_type="bytes",
        payload_size=len(payload),
        payload=payload,
        origin_jws=jws,
    )


def test_long_values_read_back_as_written_and_the_migration_goes_down_and_up(store: Store) -> None:
    big = os.urandom(300_000)  # out of line (a TOAST table on PostgreSQL)
    small = os.urandom(100)
    jws = os.urandom(2_000)
    store.insert_items([_item(1, big, jws), _item(2, small, b"")])
    config = Config()
    config.set_main_option("script_location", str(files("gsomia.store") / "migrations"))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0028")
    assert store.revision() == "0028"
    if store.engine.dialect.name == "postgresql":
        columns = _columns(store)
        assert {columns[c] for c in _CIPHERTEXT} == {("x", "")}  # EXTENDED again, the default
        assert {columns[c][1] for c in _JSON} == {""}
    store.insert_items([_item(3, big[::-1], jws[::-1])])
    store.migrate()
    assert store.revision() == Store.head()
    rows = store.get_items(["t1", "t2", "t3"])
    assert (rows["t1"].payload, rows["t1"].origin_jws) == (big, jws)
    assert (rows["t2"].payload, rows["t2"].origin_jws) == (small, b"")
    assert (rows["t3"].payload, rows["t3"].origin_jws) == (big[::-1], jws[::-1])
