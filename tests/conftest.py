"""Shared fixtures: the shipped catalogue, an engine over it, and request builders."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy
from tests.reliability.livenet import SUMMARIES

from gsomia import Catalogue, Consent, ReleaseEngine, ReleaseRequest, load_catalogue
from gsomia.core.policy import Assurance, assumed_assurances
from gsomia.demo import network

pytest_plugins = ["tests.node_fixtures"]

KST = ZoneInfo("Asia/Seoul")


# --- the reliability suite's summary tables (hostile envelopes, faults) ---
# Here, not in tests/reliability/conftest.py: under pytest-xdist the controller process collects
# nothing, so only this conftest's hooks run there. Each worker hands its tables over at the end.


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)  # set in an xdist worker only
    if workeroutput is not None:
        workeroutput["gsomia_summaries"] = json.dumps(SUMMARIES)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, in the controller: a worker has finished
def pytest_testnodedown(node: Any) -> None:
    SUMMARIES.extend(
        (title, lines) for title, lines in json.loads(node.workeroutput.get("gsomia_summaries", "[]"))
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the tables whether or not output is captured (in the controller under pytest-xdist)."""
    for title, lines in SUMMARIES:
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)


def kst(*parts: int) -> datetime:
    """An instant in Korea Standard Time: kst(2019, 11, 23, 0, 0, 1)."""
    return datetime(*parts, tzinfo=KST)  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _ports_let_go() -> Iterator[None]:
    """The ports a test's servers were given (``network.free_port``, held until then) are let go
    when it ends: a listening server keeps its own."""
    yield
    network.release_ports()


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="session")
def engine(catalogue: Catalogue) -> ReleaseEngine:
    return ReleaseEngine(catalogue)


def make_request(
    catalogue: Catalogue,
    *,
    sender: str = "KOR",
    recipient: str = "JPN",
    originator: str | None = None,
    classification: str = "군사II급비밀",
    via: tuple[str, ...] = (),
    releasable_to: Iterable[str] | None = None,
    purpose: str = "threat-assessment",
    label_purpose: str | None = None,
    topics: Iterable[str] = ("dprk-missile",),
    caveats: Iterable[str] = (),
    consents: Iterable[Consent] = (),
    item: str | None = None,
    created: datetime | None = None,
    assurances: Iterable[Assurance] | None = None,
) -> ReleaseRequest:
    label = catalogue.label(
        originator=originator or sender,
        classification=classification,
        releasable_to=releasable_to if releasable_to is not None else (*via, recipient),
        purpose=label_purpose or purpose,
        topics=topics,
        caveats=caveats,
        created=created or kst(2014, 1, 1),
    )
    given = assumed_assurances(catalogue) if assurances is None else tuple(assurances)  # Art. 7(5)
    return ReleaseRequest(label, sender, recipient, purpose, via, item, tuple(consents), assurances=given)


# --- stores: the same suites run on SQLite and on PostgreSQL ---

POSTGRES_URL = os.environ.get("GSOMIA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _require_services() -> bool:
    return os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1"


def _postgres_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        engine = sqlalchemy.create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def postgres_status() -> str | None:
    status = _postgres_available()
    if status is None:
        _drop_stale_schemas()
    return status


# Every schema the tests make in the test database carries a comment naming the process that made
# it (made in one transaction with it): what a run killed before its clean-up left behind, any later
# run on this machine drops; a schema of a process still running (another run beside this one) stays.
_OWNED = "gsomia-test"


def _boot() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return "-"


def _owner() -> str:
    return f"{_OWNED} {socket.gethostname()} {_boot()} {os.getpid()}"


def _gone(owner: str) -> bool:
    """Whether the process an owner comment names has ended (on this machine; since its last boot)."""
    parts = owner.split()
    if len(parts) != 4 or parts[0] != _OWNED or parts[1] != socket.gethostname():
        return False  # another machine's: not ours to judge
    if parts[2] != _boot():
        return True
    try:
        os.kill(int(parts[3]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


def make_schemas(conn: sqlalchemy.Connection, schemas: Iterable[str]) -> None:
    """Create ``schemas`` (if absent) in the caller's transaction, owned by this process."""
    for schema in schemas:
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.exec_driver_sql(f"COMMENT ON SCHEMA \"{schema}\" IS '{_owner()}'")


def drop_schemas(schemas: Iterable[str]) -> None:
    """Drop ``schemas`` (those that exist) from the test database."""
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


def _drop_stale_schemas() -> None:
    """Drop the schemas earlier runs made and could not drop (a worker killed, a run interrupted)."""
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.connect() as conn:
            owned = conn.exec_driver_sql(
                "SELECT n.nspname, d.description FROM pg_namespace n JOIN pg_description d "
                "ON d.objoid = n.oid AND d.classoid = 'pg_namespace'::regclass "
                "WHERE d.description LIKE %s",
                (f"{_OWNED} %",),
            ).all()
        for schema, owner in owned:
            if _gone(owner):
                with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError), admin.begin() as conn:
                    conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


def require_postgres(status: str | None) -> None:
    """Skip (or fail, under ``GSOMIA_REQUIRE_SERVICES=1``) when PostgreSQL is absent (``status``: why)."""
    if status is not None:
        if _require_services():
            pytest.fail(f"PostgreSQL is required (GSOMIA_REQUIRE_SERVICES=1) but absent: {status}")
        pytest.skip(f"PostgreSQL absent: {status}")


@contextlib.contextmanager
def postgres_schema(status: str | None) -> Iterator[str]:
    """A throw-away PostgreSQL schema's URL, dropped afterwards; skips (or fails, under
    ``GSOMIA_REQUIRE_SERVICES=1``) when PostgreSQL is absent (``status`` says why)."""
    require_postgres(status)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            make_schemas(conn, [schema])
    finally:
        admin.dispose()
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        drop_schemas([schema])


@contextlib.contextmanager
def network_schemas(directory: Path) -> Iterator[dict[str, str]]:
    """The schemas ``network.schema_urls`` gives the network in ``directory`` in the test database,
    made here (owned by this process) and dropped afterwards, whatever happened in between: each
    party's schema name. PostgreSQL must answer (``postgres_status``)."""
    names = network.schema_names(directory)
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            make_schemas(conn, names.values())
    finally:
        admin.dispose()
    try:
        yield names
    finally:
        drop_schemas(names.values())


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    with postgres_schema(postgres_status) as url:
        yield url
