"""The PostgreSQL the benchmarks measure on: its URL, throw-away schemas, and whether it answers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy

__all__ = ["POSTGRES_URL", "postgres_absent", "postgres_schema", "schema_url"]

POSTGRES_URL = os.environ.get("GSOMIA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def schema_url(schema: str) -> str:
    """The URL that puts ``schema`` first on the search path."""
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def postgres_schema(prefix: str, say: Callable[[str], None]) -> Iterator[str]:
    """A throw-away schema named ``prefix`` + a random suffix; yields its URL, drops it after."""
    schema = f"{prefix}{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            yield schema_url(schema)
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            say(f"dropped PostgreSQL schema {schema}")
    finally:
        admin.dispose()


def postgres_absent() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 5})
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return None
