"""The node store at scale: ingest rate, and keyset pages against naive OFFSET pages (SQLite, PostgreSQL).

What is measured
----------------
One fresh JPN node (a fake clock, a fresh node key and key ring, the same on both
backends: one node's store kept on each) is made on each backend with ``init_node_dir``:
SQLite in a temporary directory (deleted at the end), and
PostgreSQL at 127.0.0.1:5432, database ``test``, in a throw-away schema made for the
run and dropped at the end (``?options=-csearch_path%3D<schema>``, as the test suite
does). If PostgreSQL does not answer, that is printed and the run goes on with SQLite.

The items are a fixed-seed, realistic mix at a JPN node: about 40% KOR items received
from KOR under kor-jpn-gsomia-2016 (군사II급비밀 and 군사III급비밀, the KOR levels with a
JPN equivalent; the node adds the JPN alternative label), and about 60% JPN-originated
items at every JPN level, some NOFORN or G2G-ONLY; one to three topics each out of
the three the shipped data declares, weighted; purposes the agreement permits; creation
instants from 2017 to 2024;
payloads of a few hundred bytes of JSON (a report with a track of positions).

1. Ingest. The store holds N items at the end (``--items``, default 1,000,000). To keep
   a full run on both backends within about 8 minutes on a 2-core machine, the bulk of
   it (N minus two samples) is bulk-loaded in batches of 10,000, items and topics only (no
   inventory or audit rows), by ``_bulk.bulk_write``: the rows ``Store.insert_items`` writes,
   one transaction a batch, but with ``COPY`` on PostgreSQL and a plain ``executemany`` on
   SQLite (no ``RETURNING`` read back), which is 3 to 6 times faster; from rows built by the
   service's own row builder (``Node._prepare``: label validation, the JPN alternative
   label, the origin signature on JPN items, AES-GCM sealing), so those rows are what
   ingest stores. The rows are built once, by worker processes (one a core, each on a
   handle of its own on the node, as a second process of the node has), and the same rows
   go into both stores (which is why the two hold one node's keys). Then, with
   the store nearly full, two samples (20,000 items each at N = 1,000,000; N/10 for
   smaller runs) are timed in batches of 1,000, one transaction per batch:

   * service: ``Node.items.ingest_many(None, batch)`` (the operator's feed): label validation
     against the catalogue, the alternative label, for items this node originates the
     originator's Ed25519 signature over label and payload (sealed too), AES-GCM sealing,
     inventory and audit rows, one store transaction. Building the ``NewIngest`` objects (what a client sends)
     is not timed.
   * store alone: ``Store.insert_items`` with the same kind of rows already built (items,
     topics, one inventory entry and one audit row per item), so the difference is the
     service layer's cost.

   The bulk-load rate is printed for information; the target (at least 5,000 items/s
   through the service on SQLite) is judged on the service sample.

2. Pages of 1,000 from the full store, each fetch timed with ``time.perf_counter``,
   median and p95 (nearest rank) over repeated fetches (one untimed warm-up, then at
   least 10 and up to 50 fetches, stopping after about 2 s):

   a. ``Store.items.list_items(ItemFilter(...), after_seq, 1000)`` (keyset: ``seq > after``)
      with no filter, with ``originator="KOR"`` and with ``topic="prc-navy"``, at the
      start, the middle and the end of the matching items (the last full page);
   b. ``Node.items.list_items(reader, ItemFilter(), cursor, 1000)``: the full access-checked
      page (a cursor, the keyset fetch, each label parsed and checked with
      ``decide_read``, one audit row written) for a cleared reader (JPN, 特定秘密,
      need-to-know for every topic: reads every item), at the same three positions; and,
      for information, for a partially cleared reader (JPN, 極秘, need-to-know
      dprk-missile only), whose page takes several fetches (withheld items) within the
      service's scan budget; its "end" page starts 5,000 items before the last so that
      it can fill.

3. The peer, in the same run on the same data: naive OFFSET pagination, ``SELECT <the
   same columns> ... ORDER BY seq LIMIT 1000 OFFSET k`` with the same filters, through
   the same engine and building the same ``ItemRow`` objects, at the same positions;
   and, for the cleared reader, the same access-checked page built on the OFFSET fetch
   (each row parsed and checked, one audit row). Before timing, every keyset page and its
   OFFSET twin must hold the same items; if not, the script exits with status 1. The
   ratio is the peer's median over gsomia's median.

The garbage collector is left on, as in a running node: a fetch that triggers a full
(generation-2) collection pays for it, and the full collections that fall inside timed
fetches are counted and reported beside the figures. Before the pages, the objects the process
holds then (the node, the load's leftovers) are frozen out of the collector's view
(``gc.freeze()``), as ``gsomia node serve`` freezes its start-up objects: a full collection then
walks what the pages made since, not everything the process ever made (issue 18: at 1M those
pauses, not the pages' work, were the p95 of ``Node.list_items``).

Targets, printed as met or NOT met (nothing about timing is asserted): ingest through
the service at least 5,000 items/s on SQLite; each gsomia page of 1,000 under 50 ms at
the 95th percentile. PostgreSQL is measured after ``VACUUM ANALYZE`` of the item tables
(the steady state autovacuum reaches on its own); SQLite as the store leaves it (the
store never runs ``ANALYZE``). After the bulk load, and again before the pages, the
database is checkpointed (SQLite ``PRAGMA wal_checkpoint(TRUNCATE)``, PostgreSQL
``CHECKPOINT``) and ``os.sync()`` flushes the kernel's dirty pages, untimed, so that
write-back of the gigabyte just loaded cannot land in the timed samples (the time it
takes is printed; on the reference machine it was under a second). Other work on the
machine competes with the timings: the 1-minute load average at the start and the end
is printed. The process is not pinned: on PostgreSQL the server runs beside it.
Progress goes to stderr.

Run: ``python benchmarks/bench_store.py [--items N] [--backend sqlite|postgresql|both] [--json]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from _bulk import bulk_write, rows_in_workers, workers
from _machine import cpu_model, load_average  # benchmarks/ is on sys.path when run as a script
from _postgres import POSTGRES_URL, postgres_absent, postgres_schema
from _rows import row as protocol_row
from gsomia._codec import canonical
from gsomia.core.access import Person, decide_read
from gsomia.crypto.keys import KeyRing
from gsomia.node import Item, NewIngest, Node, init_node_dir
from gsomia.node._config import KEY_FILE, KEYRING_FILE
from gsomia.store import AuditRow, ItemFilter, ItemRow, NewItem
from gsomia.store import _tables as t
from gsomia.testing import FakeClock

SEED = 20161123
DEFAULT_ITEMS = 1_000_000
PAGE = 1000
INGEST_BATCH = 1000
BULK_BATCH = 10_000
MAX_SAMPLE = 20_000
MIN_ITEMS = 20_000
MIN_FETCHES = 10
MAX_FETCHES = 50
BUDGET_S = 2.0  # per measured cell, after MIN_FETCHES
INGEST_TARGET = 5_000.0  # items/s through the service, SQLite
PAGE_TARGET_MS = 50.0  # p95 of a page of 1,000
PARTIAL_TAIL = 5 * PAGE  # the partial reader reads under half the items: start its last page earlier

AGREEMENT = "kor-jpn-gsomia-2016"
PURPOSES = ("threat-assessment", "missile-warning", "defence-cooperation")
# the topics the shipped data declares (a label naming any other is refused at ingest)
TOPICS = ("dprk-missile", "dprk-nuclear", "prc-navy")
TOPIC_WEIGHTS = (50, 30, 20)
FILTERS: dict[str, ItemFilter] = {
    "no filter": ItemFilter(),
    "originator=KOR": ItemFilter(originator="KOR"),
    "topic=prc-navy": ItemFilter(topic="prc-navy"),
}
POSITIONS = ("start", "middle", "end")
START = datetime(2017, 1, 1, tzinfo=UTC)
SPAN_S = 8 * 365 * 86_400
CLOCK_START = datetime(2024, 6, 1, tzinfo=UTC)

Inventory = tuple[str, int, str, str | None, str | None, str]
# The columns Store.list_items reads for a page (no payload, no signed original).
PAGE_COLUMNS = [c for c in t.items.c if c.name not in ("payload", "origin_jws")]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the items


def make_ingest(rng: random.Random, n: int) -> NewIngest:
    """One realistic item as a client sends it: a boundary-form label and a JSON payload."""
    created = START + timedelta(seconds=rng.randrange(SPAN_S))
    topics = sorted(set(rng.choices(TOPICS, weights=TOPIC_WEIGHTS, k=rng.choice((1, 1, 2, 2, 3)))))
    purpose = rng.choices(PURPOSES, weights=(6, 3, 1))[0]
    kor = rng.random() < 0.4
    if kor:
        label: dict[str, Any] = {
            "originator": "KOR",
            "classification": rng.choices(("군사II급비밀", "군사III급비밀"), weights=(2, 3))[0],
            "releasable_to": ["JPN"] if rng.random() < 0.7 else ["JPN", "USA"],
            "caveats": ["G2G-ONLY"] if rng.random() < 0.1 else [],
        }
    else:
        caveat = rng.random()
        label = {
            "originator": "JPN",
            "classification": rng.choices(("特定秘密", "極秘", "秘", "取扱厳重注意"), weights=(1, 3, 4, 2))[
                0
            ],
            "releasable_to": rng.choice((["KOR"], ["USA"], ["KOR", "USA"], [])),
            "caveats": ["NOFORN"] if caveat < 0.1 else ["G2G-ONLY"] if caveat < 0.2 else [],
        }
    label.update(purpose=purpose, topics=topics, created=created.isoformat())
    track = [
        {
            "t": (created + timedelta(seconds=30 * k)).strftime("%H:%M:%SZ"),
            "lat": round(rng.uniform(33.0, 43.0), 4),
            "lon": round(rng.uniform(124.0, 142.0), 4),
            "alt_m": rng.randrange(0, 600_000, 100),
        }
        for k in range(rng.randint(2, 5))
    ]
    payload = {
        "report": f"{label['originator']}-{created:%Y%m%d}-{n:07d}",
        "summary": f"{topics[0]} activity observed; assessment {rng.choice(('low', 'moderate', 'high'))}",
        "source": rng.choice(("radar", "satellite", "sigint", "maritime-patrol", "liaison")),
        "confidence": round(rng.random(), 2),
        "track": track,
    }
    return NewIngest(
        label=label,
        payload=json.dumps(payload, separators=(",", ":")).encode(),
        item_id=f"KOR-{uuid.UUID(int=rng.getrandbits(128))}" if kor else None,
        received_from="KOR" if kor else None,
        agreement=AGREEMENT if kor else None,
    )


def prebuilt(node: Node, batch: Sequence[NewIngest]) -> tuple[list[NewItem], list[Inventory], list[AuditRow]]:
    """The rows ``ingest_many`` would write for ``batch``, built by the service's own row builder."""
    now_us = int(node.clock().timestamp() * 1_000_000)
    items: list[NewItem] = []
    inventory: list[Inventory] = []
    audit: list[AuditRow] = []
    for entry in batch:
        new, _ = node.items._prepare(None, "operator", entry, node.clock())
        items.append(new)
        kind = "received" if entry.received_from else "ingested"
        detail = canonical({"agreement": entry.agreement})
        inventory.append((new.id, now_us, kind, entry.received_from or node.party, "operator", detail))
        label = canonical({"label": json.loads(new.label)})
        audit.append(AuditRow(now_us, "item.ingest", "operator", new.id, "allowed", label))
    return items, inventory, audit


# --------------------------------------------------------------------------- the peer: OFFSET


def offset_page(node: Node, where: ItemFilter, offset: int, limit: int) -> list[ItemRow]:
    """The naive page: the store's query with ``OFFSET offset`` instead of ``seq > after``."""
    query = select(*PAGE_COLUMNS)
    if where.originator is not None:
        query = query.where(t.items.c.originator == where.originator)
    if where.topic is not None:
        topic_seqs = select(t.item_topics.c.item_seq).where(t.item_topics.c.topic == where.topic)
        query = query.where(t.items.c.seq.in_(topic_seqs))
    query = query.order_by(t.items.c.seq).limit(limit).offset(offset)
    with node.store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [ItemRow(**r._mapping, payload=b"") for r in rows]


def offset_checked_page(node: Node, reader: Person, offset: int, limit: int) -> tuple[list[Item], int]:
    """The access-checked page built on the OFFSET fetch: each row parsed and checked, one audit row."""
    found: list[Item] = []
    withheld = 0
    for row in offset_page(node, ItemFilter(), offset, limit):
        item = node.kernel.items.item(row)
        if decide_read(reader, item.label, node.catalogue).allowed:
            found.append(item)
        else:
            withheld += 1
    detail = canonical({"filter": {}, "returned": len(found), "withheld": withheld})
    at_us = int(node.clock().timestamp() * 1_000_000)
    node.store.append_audit([AuditRow(at_us, "item.list", reader.id, None, "allowed", detail)])
    return found, withheld


# --------------------------------------------------------------------------- timing


class FullCollections:
    """Counts CPython's full (generation-2) garbage collections and their pauses while active."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0
        self.active = False

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if not self.active or info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)


FULL_GC = FullCollections()
gc.callbacks.append(FULL_GC)


@dataclass(frozen=True, slots=True)
class Timing:
    median_ms: float
    p95_ms: float
    fetches: int
    full_gcs: int  # full garbage collections that fell inside the timed fetches
    full_gc_ms: float  # their total pause

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_ms": round(self.median_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "fetches": self.fetches,
            "full_gcs": self.full_gcs,
            "full_gc_ms": round(self.full_gc_ms, 1),
        }


def time_fetches(fetch: Callable[[], object]) -> Timing:
    fetch()  # warm-up, not counted
    samples: list[float] = []
    FULL_GC.pauses_ms.clear()
    began = time.perf_counter()
    while len(samples) < MIN_FETCHES or (
        len(samples) < MAX_FETCHES and time.perf_counter() - began < BUDGET_S
    ):
        start = time.perf_counter()
        FULL_GC.active = True
        fetch()
        FULL_GC.active = False
        samples.append((time.perf_counter() - start) * 1000)
    ordered = sorted(samples)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    pauses = FULL_GC.pauses_ms
    return Timing(statistics.median(ordered), p95, len(ordered), len(pauses), sum(pauses))


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table."""

    measurement: str
    gsomia: Timing | float
    peer: Timing | float | None
    target: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        def value(v: Timing | float | None) -> Any:
            return v.as_dict() if isinstance(v, Timing) else None if v is None else round(v, 1)

        ratio = self.ratio()
        return {
            "measurement": self.measurement,
            "gsomia": value(self.gsomia),
            "peer": value(self.peer),
            "ratio": None if ratio is None else round(ratio, 2),
            "target": self.target or None,
            "target_met": self.met,
        }

    def as_row(self, backend: str, items: int) -> dict[str, Any]:
        """This line as a row of ``python -m benchmarks``' table: p95 for pages, rates as they are."""
        figure = f"{self.measurement}, {backend}, {items:,} items"
        if isinstance(self.gsomia, Timing):
            theirs = self.peer.p95_ms if isinstance(self.peer, Timing) else None
            return protocol_row(
                figure,
                self.gsomia.p95_ms,
                "ms (p95)",
                peer="LIMIT/OFFSET pagination" if theirs is not None else None,
                peer_value=theirs,
                ratio=theirs / self.gsomia.p95_ms if theirs is not None and self.gsomia.p95_ms > 0 else None,
                target=self.target or "(information)",
                met=self.met,
            )
        return protocol_row(
            figure, self.gsomia, "items/s", target=self.target or "(information)", met=self.met
        )

    def ratio(self) -> float | None:
        if isinstance(self.gsomia, Timing) and isinstance(self.peer, Timing):
            return self.peer.median_ms / self.gsomia.median_ms
        return None


# --------------------------------------------------------------------------- one backend


def server_version(node: Node) -> str:
    with node.store.engine.connect() as conn:
        if node.store.engine.dialect.name == "sqlite":
            return f"SQLite {conn.exec_driver_sql('SELECT sqlite_version()').scalar()}"
        return f"PostgreSQL {conn.exec_driver_sql('SHOW server_version').scalar()}"


def add_reader(node: Node, pid: str, clearance: str, topics: Sequence[str]) -> Person:
    return node.people.add_person(
        None,
        {
            "id": pid,
            "name": pid.title(),
            "nationality": "JPN",
            "clearance": clearance,
            "need_to_know": list(topics),
            "roles": ["analyst"],
        },
    )


def settle(node: Node) -> float:
    """Checkpoint the database and flush the OS's dirty pages: the bulk load's write-back is not timed."""
    start = time.perf_counter()
    with node.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if node.store.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.exec_driver_sql("CHECKPOINT")
    os.sync()
    elapsed = time.perf_counter() - start
    progress(f"  settled (checkpoint and sync) in {elapsed:,.1f} s")
    return elapsed


def _bulk_rows(node: Node, batch: int, size: int) -> list[NewItem]:
    """Batch ``batch`` of the bulk load: ``size`` items (their own fixed seed), built by the service's
    row builder at the instant the batch is stored."""
    rng = random.Random(SEED * 1_000_003 + batch)
    now = CLOCK_START + timedelta(seconds=batch)
    first = batch * BULK_BATCH
    return [node.items._prepare(None, "operator", make_ingest(rng, first + k), now)[0] for k in range(size)]


def load(nodes: dict[str, Node], directory: Path, count: int) -> dict[str, dict[str, float]]:
    """Bulk-load ``count`` items into every node (items and topics only, ``bulk_write`` in
    batches of ``BULK_BATCH``, one transaction each): the rows are built once, by worker processes
    (one a core) on a handle of their own on the first node, and the same rows go to every store."""
    batches = [min(BULK_BATCH, count - done) for done in range(0, count, BULK_BATCH)]
    insert_s = dict.fromkeys(nodes, 0.0)
    began = time.perf_counter()
    done = 0
    for rows in rows_in_workers(directory, CLOCK_START, batches, _bulk_rows):
        for name, node in nodes.items():
            start = time.perf_counter()
            bulk_write(node.store, rows)
            insert_s[name] += time.perf_counter() - start
        done += len(rows)
        if done % 100_000 < BULK_BATCH:
            progress(f"  bulk-loaded {done:,} of {count:,}")
    wall_s = time.perf_counter() - began
    for node in nodes.values():
        node.clock.advance(seconds=len(batches))  # type: ignore[attr-defined]
    return {
        name: {
            "items": count,
            "batch": BULK_BATCH,
            "wall_s": round(wall_s, 2),
            "insert_s": round(insert_s[name], 2),
            "insert_per_s": round(count / insert_s[name], 1) if insert_s[name] else 0.0,
            "workers": workers(),
        }
        for name in nodes
    }


def ingest_store(node: Node, clock: FakeClock, rng: random.Random, first: int, count: int) -> float:
    """Items/s of ``Store.insert_items`` with the ingest rows already built."""
    elapsed = 0.0
    for done in range(0, count, INGEST_BATCH):
        size = min(INGEST_BATCH, count - done)
        rows, inventory, audit = prebuilt(node, [make_ingest(rng, first + done + k) for k in range(size)])
        start = time.perf_counter()
        node.store.insert_items(rows, inventory, audit)
        elapsed += time.perf_counter() - start
        clock.advance(seconds=1)
    return count / elapsed


def ingest_service(node: Node, clock: FakeClock, rng: random.Random, first: int, count: int) -> float:
    """Items/s of ``Node.ingest_many`` (one transaction per batch)."""
    elapsed = 0.0
    for done in range(0, count, INGEST_BATCH):
        batch = [make_ingest(rng, first + done + k) for k in range(min(INGEST_BATCH, count - done))]
        start = time.perf_counter()
        node.items.ingest_many(None, batch)
        elapsed += time.perf_counter() - start
        clock.advance(seconds=1)
    return count / elapsed


def matching(node: Node, where: ItemFilter) -> int:
    query = select(func.count()).select_from(t.items)
    if where.originator is not None:
        query = query.where(t.items.c.originator == where.originator)
    if where.topic is not None:
        query = query.where(
            t.items.c.seq.in_(select(t.item_topics.c.item_seq).where(t.item_topics.c.topic == where.topic))
        )
    with node.store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def positions(node: Node, where: ItemFilter, tail: int = PAGE) -> dict[str, tuple[int, int]]:
    """For each position, (after_seq for the keyset page, k for the OFFSET page): the same page.

    The end is ``tail`` matching items before the last one (the last full page by default).
    """
    total = matching(node, where)
    found: dict[str, tuple[int, int]] = {}
    for name, offset in (("start", 0), ("middle", total // 2), ("end", total - tail)):
        after = 0 if offset == 0 else offset_page(node, where, offset - 1, 1)[0].seq
        found[name] = (after, offset)
    return found


class Mismatch(Exception):
    pass


def open_nodes(backends: dict[str, str | None], directory: Path) -> dict[str, Node]:
    """The same JPN node (one signing and encryption key ring, one payload key) on each backend, so
    that a row built once is what ingest would have stored in each."""
    ring = directory / "jpn-keys.json"
    KeyRing.create(ring, "JPN", "jpn-node", CLOCK_START - timedelta(days=1))
    nodes: dict[str, Node] = {}
    key: bytes | None = None
    try:
        for name, url in backends.items():
            home = directory / f"jpn-{name}"
            config = init_node_dir(home, "JPN", url)
            if key is None:
                key = (home / KEY_FILE).read_bytes()
            else:
                (home / KEY_FILE).write_bytes(key)
            shutil.copyfile(ring, home / KEYRING_FILE)  # imported into the store on first open
            (home / KEYRING_FILE).chmod(0o600)
            nodes[name] = Node(config, clock=FakeClock(CLOCK_START))
    except BaseException:
        for node in nodes.values():
            node.close()
        raise
    return nodes


def measure(nodes: dict[str, Node], directory: Path, items: int) -> list[dict[str, Any]]:
    sample = min(MAX_SAMPLE, items // 10 // INGEST_BATCH * INGEST_BATCH)
    bulk = items - 2 * sample
    for name, node in nodes.items():
        progress(f"{name}: {server_version(node)}")
    progress(f"bulk-loading {bulk:,} items into {', '.join(nodes)} in batches of {BULK_BATCH:,}")
    loaded = load(nodes, directory / f"jpn-{next(iter(nodes))}", bulk)
    return [_measure(name, node, node.clock, items, sample, loaded[name]) for name, node in nodes.items()]  # type: ignore[arg-type]


def _measure(
    name: str, node: Node, clock: FakeClock, items: int, sample: int, bulk_figures: dict[str, float]
) -> dict[str, Any]:
    rng = random.Random(SEED)
    bulk = items - 2 * sample
    settled_s = {"after bulk load": settle(node)}
    progress(f"{name}: store alone, {sample:,} items in batches of {INGEST_BATCH:,}")
    store_rate = ingest_store(node, clock, rng, bulk, sample)
    progress(f"{name}: service (Node.ingest_many), {sample:,} items in batches of {INGEST_BATCH:,}")
    service_rate = ingest_service(node, clock, rng, bulk + sample, sample)
    stored = node.store.count_items()
    if stored != items:
        raise Mismatch(f"{name}: the store holds {stored:,} items, expected {items:,}")

    if node.store.engine.dialect.name == "postgresql":
        progress(f"{name}: VACUUM ANALYZE items, item_topics")
        with node.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE items")
            conn.exec_driver_sql("VACUUM ANALYZE item_topics")
    settled_s["before pages"] = settle(node)

    gc.collect()
    gc.freeze()  # as ``gsomia node serve`` does after start-up (see the module's docstring)
    cleared = add_reader(node, "reader-cleared", "特定秘密", TOPICS)
    partial = add_reader(node, "reader-partial", "極秘", ["dprk-missile"])
    rows: list[Row] = []
    ingest_met = service_rate >= INGEST_TARGET if name == "sqlite" else None
    ingest_target = f">= {INGEST_TARGET:,.0f}/s" if name == "sqlite" else "(SQLite only)"
    rows.append(
        Row(
            f"ingest, Node.ingest_many, batches of {INGEST_BATCH:,} (items/s)",
            service_rate,
            None,
            ingest_target,
            ingest_met,
        )
    )
    rows.append(
        Row(
            f"ingest, Store.insert_items alone, batches of {INGEST_BATCH:,} (items/s)",
            store_rate,
            None,
            "",
            None,
        )
    )

    where_counts: dict[str, int] = {}
    for label, where in FILTERS.items():
        progress(f"{name}: pages, {label}")
        where_counts[label] = matching(node, where)
        for position, (after, offset) in positions(node, where).items():
            keyset = [r.seq for r in node.store.list_items(where, after, PAGE)]
            naive = [r.seq for r in offset_page(node, where, offset, PAGE)]
            if keyset != naive or len(keyset) != PAGE:
                raise Mismatch(f"{name} {label} {position}: keyset and OFFSET pages differ")
            ours = time_fetches(lambda w=where, a=after: node.store.list_items(w, a, PAGE))
            peer = time_fetches(lambda w=where, o=offset: offset_page(node, w, o, PAGE))
            met = ours.p95_ms < PAGE_TARGET_MS
            rows.append(
                Row(
                    f"Store.list_items, {label}, {position} (ms)",
                    ours,
                    peer,
                    f"p95 < {PAGE_TARGET_MS:.0f} ms",
                    met,
                )
            )

    progress(f"{name}: access-checked pages")
    for position, (after, offset) in positions(node, ItemFilter()).items():
        cursor = f"s{node.kernel.cipher.seal_cursor(cleared.id, after)}" if after else None
        page = node.items.list_items(cleared, ItemFilter(), cursor, PAGE)
        found, withheld = offset_checked_page(node, cleared, offset, PAGE)
        if len(page.items) != PAGE or page.withheld or (len(found), withheld) != (PAGE, 0):
            raise Mismatch(f"{name} {position}: the cleared reader does not read a whole page")
        ours = time_fetches(lambda c=cursor: node.items.list_items(cleared, ItemFilter(), c, PAGE))
        peer = time_fetches(lambda o=offset: offset_checked_page(node, cleared, o, PAGE))
        met = ours.p95_ms < PAGE_TARGET_MS
        rows.append(
            Row(
                f"Node.list_items, cleared reader, {position} (ms)",
                ours,
                peer,
                f"p95 < {PAGE_TARGET_MS:.0f} ms",
                met,
            )
        )
    partial_pages: dict[str, dict[str, int]] = {}
    for position, (after, _) in positions(node, ItemFilter(), PARTIAL_TAIL).items():
        cursor = f"s{node.kernel.cipher.seal_cursor(partial.id, after)}" if after else None
        page = node.items.list_items(partial, ItemFilter(), cursor, PAGE)
        partial_pages[position] = {"returned": len(page.items), "withheld": page.withheld}
        ours = time_fetches(lambda c=cursor: node.items.list_items(partial, ItemFilter(), c, PAGE))
        note = f"{len(page.items)} read, {page.withheld} withheld"
        rows.append(Row(f"Node.list_items, partial reader, {position} (ms)", ours, None, note, None))

    return {
        "backend": name,
        "server": server_version(node),
        "items": items,
        "bulk_load": bulk_figures,
        "settle_s": {k: round(v, 2) for k, v in settled_s.items()},
        "sample": sample,
        "service_ingest_per_s": round(service_rate, 1),
        "store_ingest_per_s": round(store_rate, 1),
        "service_us_per_item": round(1e6 / service_rate, 1),
        "store_us_per_item": round(1e6 / store_rate, 1),
        "matching": where_counts,
        "partial_reader_pages": partial_pages,
        "rows": [r.as_dict() for r in rows],
        "_rows": rows,
    }


# --------------------------------------------------------------------------- report


def fmt(value: Timing | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, Timing):
        return f"{value.median_ms:,.2f} / {value.p95_ms:,.2f}"
    return f"{value:,.0f}"


def print_report(
    results: Sequence[dict[str, Any]], absent: str | None, items: int, total_s: float, loads: Sequence[str]
) -> None:
    print("gsomia node store: ingest rate, and keyset pages against naive OFFSET pages")
    print(
        f"Python: {platform.python_implementation()} {platform.python_version()}; CPU: {cpu_model()} "
        f"({os.cpu_count()} cores, not pinned); SQLAlchemy {version('sqlalchemy')}, "
        f"psycopg {version('psycopg')}; 1-min load average {loads[0]} at the start, {loads[1]} at the end"
    )
    print(f"store: {items:,} items per backend, a fixed-seed mix (seed {SEED}) at a JPN node")
    if absent is not None:
        measured = "measured SQLite only" if results else "nothing measured"
        print(f"PostgreSQL: ABSENT at {POSTGRES_URL} ({absent}); {measured}")
    for result in results:
        bulk = result["bulk_load"]
        counts = ", ".join(f"{k} {v:,}" for k, v in result["matching"].items())
        print()
        print(
            f"{result['backend']} ({result['server']}): {bulk['items']:,} items bulk-loaded with "
            f"COPY / executemany (_bulk.bulk_write) in batches of {bulk['batch']:,} (items and topics "
            "only, rows built once "
            f"for every backend by the service's row builder in {bulk['workers']} worker processes) at "
            f"{bulk['insert_per_s']:,.0f} items/s of insert time ({bulk['wall_s']:,.0f} s the whole load); "
            f"then {result['sample']:,} timed through the store alone and {result['sample']:,} through "
            "Node.ingest_many"
        )
        settled = ", ".join(f"{k} {v:,.1f} s" for k, v in result["settle_s"].items())
        print(f"  checkpoint and sync (untimed): {settled}")
        print(
            f"  service layer: {result['service_us_per_item']:,.1f} µs/item through Node.ingest_many against "
            f"{result['store_us_per_item']:,.1f} µs/item for the store alone; matching items: {counts}"
        )
    print()
    print("pages of 1,000: median / p95 in ms; ratio = peer median / gsomia median; peer = OFFSET pagination")
    header = f"{'backend':<11} {'measurement':<64} {'gsomia':>17} {'peer (OFFSET)':>19} {'ratio':>8}  target"
    print(header)
    print("-" * len(header))
    for result in results:
        for row in result["_rows"]:
            ratio = row.ratio()
            verdict = "" if row.met is None else (": met" if row.met else ": NOT met")
            print(
                f"{result['backend']:<11} {row.measurement:<64} {fmt(row.gsomia):>17} {fmt(row.peer):>19} "
                f"{'-' if ratio is None else f'{ratio:,.1f}x':>8}  {row.target}{verdict}"
            )
    print()
    for result in results:
        timed = [row.gsomia for row in result["_rows"] if isinstance(row.gsomia, Timing)]
        count = sum(x.full_gcs for x in timed)
        pause = sum(x.full_gc_ms for x in timed)
        each = f", {pause / count:,.1f} ms each on average" if count else ""
        print(
            f"{result['backend']}: {count} full (generation-2) garbage collections fell inside "
            f"{sum(x.fetches for x in timed):,} timed gsomia page fetches ({pause:,.0f} ms in all{each})"
        )
    for result in results:
        judged = [r for r in result["_rows"] if r.met is not None]
        missed = [r.measurement for r in judged if not r.met]
        summary = "all met" if not missed else f"NOT met: {'; '.join(missed)}"
        print(f"targets on {result['backend']}: {len(judged) - len(missed)} of {len(judged)} met ({summary})")
    print(f"total run time: {total_s / 60:,.1f} min")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="items in the store per backend")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.items < MIN_ITEMS:
        parser.error(f"--items must be at least {MIN_ITEMS:,}")

    began = time.perf_counter()
    loads = [load_average()]
    absent: str | None = None
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="gsomia-bench-store-") as tmp, ExitStack() as stack:
            backends: dict[str, str | None] = {}
            if args.backend in ("sqlite", "both"):
                backends["sqlite"] = None
            if args.backend in ("postgresql", "both"):
                absent = postgres_absent()
                if absent is not None:
                    print(
                        f"PostgreSQL is ABSENT at {POSTGRES_URL}: {absent}; continuing without it",
                        file=sys.stderr,
                    )
                else:
                    backends["postgresql"] = stack.enter_context(postgres_schema("bench_", progress))
            if backends:
                nodes = open_nodes(backends, Path(tmp))
                for node in nodes.values():
                    stack.callback(node.close)
                results = measure(nodes, Path(tmp), args.items)
    except Mismatch as exc:
        print(f"keyset and OFFSET disagree: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"benchmark": "store", "pages_agree": False, "error": str(exc)}))
        return 1
    total_s = time.perf_counter() - began
    loads.append(load_average())

    if args.json:
        figures: dict[str, Any] = {
            "benchmark": "store",
            "items": args.items,
            "page": PAGE,
            "ingest_batch": INGEST_BATCH,
            "ingest_target_per_s": INGEST_TARGET,
            "page_target_p95_ms": PAGE_TARGET_MS,
            "pages_agree": True,
            "postgresql_absent": absent,
            "backends": [{k: v for k, v in r.items() if k != "_rows"} for r in results],
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "sqlalchemy_version": version("sqlalchemy"),
            "psycopg_version": version("psycopg"),
            "seed": SEED,
            "total_s": round(total_s, 1),
            "load_average_1min": {"start": loads[0], "end": loads[1]},
            "rows": [x.as_row(r["backend"], args.items) for r in results for x in r["_rows"]],
        }
        print(json.dumps(figures, ensure_ascii=False))
        return 0
    print_report(results, absent, args.items, total_s, loads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
