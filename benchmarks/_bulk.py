"""Bulk loading for the large stores: the service's own row builder, run by one worker process a core.

``rows_in_workers`` yields the rows of each batch, in order, built by ``build(node, batch, size)``
in worker processes, each on a handle of its own on the node at ``directory`` (its store and its
keys, as a second process of the node has); the caller writes them to the store while the workers
build the next ones. ``build`` must be a module-level function (it is sent to the workers by name).

``bulk_write`` writes such rows (items and topics only) the fastest way each store takes them, in
one transaction a batch: the rows ``Store.insert_items`` writes (the same columns, the store's own
date-added allocation under its ``item_clock`` lock), but the sequence numbers given in the
statement (no ``RETURNING`` read back) and, on PostgreSQL, sent with ``COPY`` instead of ``INSERT``
(on SQLite with a 256 MB page cache for the load, the store's own put back after).
It is for loading the large states only; what the benchmarks time goes through the store and the
node as they are.

The profiling tools (``profile_ingest.py``, ``profile_list.py``) share two more steps:
``load_store`` loads ``bench_store.py``'s JPN node once, and ``run_checkouts`` measures each
checkout in a process of its own on it, interleaved.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from _machine import load_average
from gsomia.node import Node, load_config
from gsomia.store import NewItem, Store
from gsomia.store import _tables as t
from gsomia.store._store import allocate_added
from gsomia.testing import FakeClock

__all__ = ["bulk_write", "load_store", "rows_in_workers", "run_checkouts", "workers"]

# the columns Store.insert_items writes, in this order, then seq and added_us
_LOAD_CACHE_KIB = -262_144  # SQLite's page cache while loading: 256 MB (negative: KiB)
_COLUMNS = [c.name for c in t.items.c if c.name not in ("seq", "added_us", "origin_id")]

Build = Callable[[Node, int, int], list[NewItem]]
_NODE: Node | None = None
_BUILD: Build | None = None


def workers() -> int:
    """One worker a core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _open(directory: str, at: datetime, build: Build) -> None:
    global _NODE, _BUILD
    _NODE = Node(load_config(Path(directory)), clock=FakeClock(at))
    _BUILD = build


def _run(batch: int, size: int) -> list[NewItem]:
    assert _NODE is not None
    assert _BUILD is not None
    return _BUILD(_NODE, batch, size)


def rows_in_workers(
    directory: Path, at: datetime, sizes: Sequence[int], build: Build
) -> Iterator[list[NewItem]]:
    """The rows of batch 0, 1, ... (``sizes[k]`` items in batch ``k``), each built by ``build``."""
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    setup = (str(directory), at, build)
    ahead = 2 * workers()  # batches built and not yet taken: bounded, so memory stays flat
    with ProcessPoolExecutor(workers(), context, initializer=_open, initargs=setup) as pool:
        pending: deque[Future[list[NewItem]]] = deque()
        for batch, size in enumerate(sizes):
            pending.append(pool.submit(_run, batch, size))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _values(item: NewItem, seq: int, added_us: int) -> tuple[object, ...]:
    return (
        *(getattr(item, name) for name in _COLUMNS),
        item.origin_id or item.id,
        seq,
        added_us,
    )


def bulk_write(store: Store, rows: Sequence[NewItem]) -> None:
    """Write ``rows`` (items and their topics) in one transaction: ``executemany`` on SQLite,
    ``COPY`` on PostgreSQL, each item's ``seq`` following the largest stored."""
    if not rows:
        return
    names = [*_COLUMNS, "origin_id", "seq", "added_us"]
    with store.engine.begin() as conn:
        first_added = allocate_added(conn, len(rows), max(item.ingested_us for item in rows))
        last = conn.execute(select(func.coalesce(func.max(t.items.c.seq), 0))).scalar_one()
        items = [_values(item, last + 1 + n, first_added + n) for n, item in enumerate(rows)]
        topics = [(tp, last + 1 + n) for n, item in enumerate(rows) for tp in sorted(item.topics)]
        raw = conn.connection.driver_connection
        if conn.dialect.name == "postgresql":
            with raw.cursor() as cur:  # type: ignore[union-attr]
                with cur.copy(f"COPY items ({', '.join(names)}) FROM STDIN") as copy:
                    for values in items:
                        copy.write_row(values)
                with cur.copy("COPY item_topics (topic, item_seq) FROM STDIN") as copy:
                    for values in topics:
                        copy.write_row(values)
            top = last + len(rows)
            conn.execute(text("SELECT setval(pg_get_serial_sequence('items', 'seq'), :top)"), {"top": top})
        else:
            marks = ", ".join("?" for _ in names)
            statement = f"INSERT INTO items ({', '.join(names)}) VALUES ({marks})"  # noqa: S608 - our names
            cur = raw.cursor()  # type: ignore[union-attr]
            # the random ids' index pages outgrow SQLite's 2 MB page cache past ~100,000 items; a
            # larger cache for the load only (put back after, so the timed pages see the store's own)
            kept = cur.execute("PRAGMA cache_size").fetchone()[0]
            cur.execute(f"PRAGMA cache_size={_LOAD_CACHE_KIB}")
            try:
                cur.executemany(statement, items)
                cur.executemany("INSERT INTO item_topics (topic, item_seq) VALUES (?, ?)", topics)
            finally:
                cur.execute(f"PRAGMA cache_size={int(kept)}")
                cur.close()


def load_store(directory: Path, items: int, readers: Sequence[tuple[str, str, Sequence[str]]] = ()) -> float:
    """``bench_store.py``'s mixed JPN node on SQLite bulk-loaded into ``directory`` (which must not
    exist; the node's own directory is ``jpn-sqlite`` in it) with ``items`` items, the readers
    ``(id, clearance, topics)`` registered and the store settled: the seconds its clock moved past
    ``bench_store.CLOCK_START``, where a measurement on it resumes."""
    import bench_store  # it imports this module: read when a tool asks, not with this module

    directory.mkdir(parents=True, exist_ok=False)
    nodes = bench_store.open_nodes({"sqlite": None}, directory)
    node = nodes["sqlite"]
    try:
        bench_store.load(nodes, directory / "jpn-sqlite", items)
        for pid, clearance, topics in readers:
            bench_store.add_reader(node, pid, clearance, topics)
        bench_store.settle(node)
        return (node.clock() - bench_store.CLOCK_START).total_seconds()
    finally:
        node.close()


def run_checkouts(
    script: Path, sources: Sequence[str], rounds: int, args: Sequence[str], profile: bool
) -> dict[str, list[dict[str, Any]]]:
    """``script measure ARGS`` for each checkout of ``sources`` in turn (``PYTHONPATH=<src>``, a
    process of its own), ``rounds`` times interleaved: each run's figures (the last line it prints,
    JSON) by checkout, the load average logged after each. With ``profile`` (``--profile`` passed on)
    what each run prints is shown as it runs and nothing is kept. Exits naming a checkout whose
    run failed."""
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in sources}
    for r in range(rounds):
        for src in sources:
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            command = [sys.executable, str(script), "measure", *args, *(["--profile"] if profile else [])]
            done = subprocess.run(  # noqa: S603 - a benchmark script, fixed arguments
                command, env=env, capture_output=not profile, text=True, check=False
            )
            if done.returncode:
                sys.exit(f"{src}: measure failed\n{done.stderr}")
            if profile:
                continue
            runs[src].append(json.loads(done.stdout.strip().splitlines()[-1]))
            now = time.strftime("%H:%M:%S")
            print(f"[{now}] round {r + 1}, {src}: load {load_average()}", file=sys.stderr)
    return runs
