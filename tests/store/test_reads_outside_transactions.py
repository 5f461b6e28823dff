"""The store's reads outside a transaction on PostgreSQL (issue 18): ``Store._read`` hands out its
connection in autocommit, so a read is its statements' round trips alone, not also the driver's
``BEGIN`` and the pool's ``ROLLBACK`` around them. Each statement was already its own snapshot (the
store's level is READ COMMITTED), so what a read sees is unchanged. A hostile review asks: does a
read leave the pooled connection in autocommit, so that the next writer on it commits each statement
alone and a failed transaction leaves half of itself; and does a read of several statements now see
anything another process's transaction has not committed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import insert, select

from gsomia.errors import StoreError
from gsomia.store import Store
from gsomia.store import _tables as t


def _status(conn: Any) -> str:
    """The driver's transaction status on ``conn`` (psycopg): IDLE outside a transaction, INTRANS in one."""
    return str(conn.connection.dbapi_connection.info.transaction_status.name)


def test_a_read_opens_no_transaction_on_postgresql(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.migrate()
        store.put_meta("k", "v")
        with store._read() as conn:
            assert conn.execute(select(t.node_meta.c.value).where(t.node_meta.c.key == "k")).scalar() == "v"
            if conn.dialect.name == "postgresql":
                # the statement ran in autocommit: no BEGIN was sent, none is open to roll back
                assert _status(conn) == "IDLE"
        assert store.meta("k") == "v"
    finally:
        store.close()


def test_a_read_leaves_the_pooled_connection_writing_in_one_transaction(store_url: str) -> None:
    store = Store(store_url, pool_size=1, max_overflow=0)  # the read and the writer share one connection
    try:
        store.migrate()
        store.put_meta("kept", "1")
        assert store.meta("kept") == "1"  # a read (autocommit on PostgreSQL) on the one connection
        assert store.count_items() == 0
        statuses: list[str] = []

        def half_then_fail() -> None:
            with store._begin() as conn:
                conn.execute(insert(t.node_meta), {"key": "half", "value": "written"})
                if conn.dialect.name == "postgresql":
                    statuses.append(_status(conn))
                raise RuntimeError("the transaction fails after its first write")

        with pytest.raises(RuntimeError):
            half_then_fail()
        if store.engine.dialect.name == "postgresql":
            assert statuses == ["INTRANS"]  # the writer is in a transaction again
        assert store.meta("half") is None  # nothing of the failed transaction stayed
        assert store.meta("kept") == "1"
    finally:
        store.close()


def test_a_read_of_several_statements_sees_only_committed_rows(store_url: str) -> None:
    """A writer holds an uncommitted row while a read of two statements runs: neither statement sees
    it; the read after the commit does."""
    store = Store(store_url)
    try:
        store.migrate()
        if store.engine.dialect.name != "postgresql":
            pytest.skip("SQLite has one writer and no concurrent uncommitted rows to see")
        written, release = threading.Event(), threading.Event()
        failures: list[BaseException] = []

        def writer() -> None:
            try:
                with store._begin() as conn:
                    conn.execute(insert(t.node_meta), {"key": "pending", "value": "x"})
                    written.set()
                    if not release.wait(30):
                        raise TimeoutError("the reader never finished")
            except BaseException as exc:  # reported by the test below
                failures.append(exc)
                written.set()

        thread = threading.Thread(target=writer)
        thread.start()
        assert written.wait(30)
        query = select(t.node_meta.c.value).where(t.node_meta.c.key == "pending")
        with store._read() as conn:
            first = conn.execute(query).scalar()
            second = conn.execute(query).scalar()
        release.set()
        thread.join(30)
        assert failures == []
        assert (first, second) == (None, None)
        assert store.meta("pending") == "x"
    finally:
        store.close()


def test_a_read_that_fails_is_the_stores_failure_and_the_connection_serves_on(store_url: str) -> None:
    store = Store(store_url, pool_size=1, max_overflow=0)
    try:
        store.migrate()
        with pytest.raises(StoreError), store._read() as conn:
            conn.exec_driver_sql("SELECT * FROM no_such_table")
        store.put_meta("after", "1")  # the one connection still writes, in a transaction
        assert store.meta("after") == "1"
    finally:
        store.close()
