"""The three-party network the tests of one node's two delivering processes start from, on SQLite
files or on one PostgreSQL schema per party (a fixture's body: ``yield from``; ruff would remove a
fixture imported from another test module)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from tests.conftest import POSTGRES_URL, network_schemas, require_postgres
from tests.exchange.test_exchange import KST_2024, Net

from gsomia.demo import network
from gsomia.demo.network import NetNode
from gsomia.exchange import MemoryTransport
from gsomia.testing import FakeClock

_T = TypeVar("_T")


@contextlib.contextmanager
def _built(
    store: str, directory: Path, postgres_status: str | None
) -> Iterator[tuple[list[NetNode], FakeClock]]:
    """The network built on ``store`` (``sqlite`` or ``postgresql``), its clock at KST_2024; the
    schemas dropped after."""
    postgres = store == "postgresql"
    if postgres:
        require_postgres(postgres_status)
    with network_schemas(directory) if postgres else contextlib.nullcontext():
        clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
        urls = network.schema_urls(POSTGRES_URL, directory) if postgres else None
        members = network.build(directory, clock=clock, database_urls=urls)
        clock.now = KST_2024
        yield members, clock


@contextlib.contextmanager
def _opened(members: list[NetNode], clock: FakeClock) -> Iterator[Net]:
    nodes = network.open_nodes(members, clock)
    try:
        yield Net(nodes, members, clock, MemoryTransport(nodes))
    finally:
        for node in nodes.values():
            node.close()


def three_parties(store: str, directory: Path, postgres_status: str | None) -> Iterator[Net]:
    """The network, its nodes open for the test and closed after."""
    with _built(store, directory, postgres_status) as (members, clock), _opened(members, clock) as net:
        yield net


def three_parties_prepared(
    store: str, directory: Path, postgres_status: str | None, prepare: Callable[[Net], _T]
) -> Iterator[tuple[Net, _T]]:
    """The network and what ``prepare`` made of it, its nodes closed before the test (which opens
    its own, in processes of its own), its stores kept until after."""
    with _built(store, directory, postgres_status) as (members, clock):
        with _opened(members, clock) as net:
            made = prepare(net)
        yield net, made
