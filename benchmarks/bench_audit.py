"""The node's audit log at scale: append rate, inclusion proofs at 1M and 10M entries, full verification.

What is measured
----------------
For each backend a fresh JPN node is made with ``gsomia.testing.make_node`` (a fake
clock, a fresh node key): SQLite in a temporary directory (deleted at the end), and
PostgreSQL at 127.0.0.1:5432, database ``test``, in a throw-away schema made for the
run and dropped at the end (``?options=-csearch_path%3D<schema>``, as the test suite
does). If PostgreSQL does not answer, that is printed and the run goes on with SQLite.

The records are a fixed-seed mix of what a JPN node writes: item reads (with the five
access checks), ingests (with the label), list pages, releases (with the decision),
envelopes delivered and received, and refusals; 40 to 600 bytes of canonical JSON
detail each. Details are drawn from a pool of a few hundred variants per kind made at
the start (actors, subjects and entry ids differ per record). Making them is not timed.

1. Append rate, through the service path, on N entries (``--entries``, default
   1,000,000), in two parts. First a fifth of them (at least 10,000) are written as the
   transactions that change other state write theirs (``Store._audit`` inside a
   transaction, 10,000 a transaction), left pending, and ``AuditLog.integrate()`` (its
   default limit, 10,000 a call) is timed alone on them: it reads the pending records,
   computes each leaf hash (``leaf_data``: canonical JSON of every field, SHA-256 with the
   0x00 prefix), advances the ``Frontier``, and in one transaction sets ``leaf_index`` and
   ``leaf`` on every record, inserts every completed subtree above the leaves into
   ``merkle_nodes`` (a leaf's hash is stored once, with its record: migration 0027) and
   stores the new frontier. Then the rest are written with ``Store.append_audit`` in
   batches of 10,000 (one transaction each), with ``AuditLog.integrate()`` after every
   50,000: a batch of 32 or more becomes leaves in its own transaction, under the tree's
   lock, as it is written (``Store.leaves_on_append``; before issue 18's sixth pass it was
   left pending for ``integrate``). Three rates are printed: ``append_audit`` alone,
   ``integrate()`` alone (the Merkle log's own cost, with its phases: reading the pending
   records, hashing in Python, writing), and append+integrate (a record from nothing to a
   leaf of the tree). The target (at least 50,000 appends/s on SQLite, 30,000 on
   PostgreSQL) is judged on both of the last two, each printed as met or NOT met.

2. Inclusion proofs at N and, with ``--big``, at 10,000,000 entries (``--big-entries``).
   1,000 leaves are drawn at random (fixed seed); for each kind of call, one untimed
   warm-up on another leaf (its time is printed as "first"), then calls timed with
   ``time.perf_counter``, at least 20 and up to 1,000, stopping after about 2 s; median
   and p95 (nearest rank) in ms:

   a. ``AuditLog.inclusion(entry_id)`` end to end: the record by its entry id, the latest
      signed head, the needed subtree hashes in one query, the proof, hex-encoded;
   b. the proof itself: ``inclusion_subtrees`` and the needed subtree hashes fetched from
      the store in one query (``AuditLog._source``, i.e. ``AuditStore.nodes``) and
      assembled with ``range_hash``: exactly what (a) does for the proof. The target (a
      proof under 1 ms at 10M entries) is judged on this one, at the big size;
   c. the assembly alone: the same code with the subtree hashes already in memory (the
      store query left out);
   d. before, in the same run: the same subtree hashes fetched by ``AuditStore.nodes_by_or``,
      ``(level = ? AND idx = ?) OR ...`` (PostgreSQL's query before issue 18 changed it to one
      fixed statement joining two arrays to the primary key, which the driver prepares once;
      SQLite's query still), then assembled as in (b). The query plans of both are printed.

   Every proof produced, timed or not, is verified with ``gsomia.core.merkle.
   verify_inclusion`` against the root of the signed head (the leaf hash recomputed from
   the record with ``leaf_data``); a proof that does not verify stops the run (status 1).

   The 10M-entry tree is NOT built through ``append_audit`` + ``integrate`` (that would
   take too long): records are generated as in 1 (entry ids made here), by one worker
   process a core, in chunks of 2**17 (each from a seed of its own). A worker writes each
   record's leaf data in ``leaf_data``'s layout (one record in 1,024 is compared with
   ``leaf_data`` itself there; a difference stops the run), hashes leaves and the chunk's
   subtrees level by level with hashlib (0x00 / 0x01 prefixes, as ``leaf_hash`` and
   ``node_hash``) and makes the chunk's rows; a chunk of 2**17 aligned on 2**17 holds whole
   subtrees of the tree, so the main process only joins the chunks' roots (the few nodes
   above them). The records (with ``leaf_index`` and ``leaf`` set) and every subtree above
   the leaves go
   straight into ``audit_records`` and ``merkle_nodes``: SQLite ``executemany`` on its own
   connection, a transaction a chunk; PostgreSQL by its own bulk-load recipe in one
   transaction (the empty tables truncated, their indexes and key constraints dropped,
   ``COPY ... FREEZE``, the same indexes and constraints made again from the catalogue's
   definitions, which checks every key). The frontier is stored as ``integrate`` stores it
   and the head signed with ``AuditLog.sign_head()``. The tables hold what ``integrate``
   would have written, and proofs are then made by gsomia's own code against that store:
   every timed proof is verified against the signed root, and the stored leaf of each of the
   1,000 sampled leaves is recomputed from its stored record with ``leaf_data``. Its build
   rate is printed for information only.

3. Full verification of the N-entry log: ``AuditLog.verify()`` (reads every record in
   leaf order, recomputes its leaf hash, rebuilds the tree, checks every signed head).

4. The peer, in the same run: pymerkle (PyPI), an RFC 9162 Merkle-tree library. Its
   ``SqliteTree`` (a file of its own, set to WAL and ``synchronous=NORMAL`` like gsomia's
   store) is fed the same leaf data (``leaf_data`` of the SQLite node's records, in leaf
   order, read back untimed, after gsomia's proofs were timed) with ``append_entries`` in
   batches of 10,000; its append rate (beside append+integrate), its ``prove_inclusion``
   on the same leaves (beside (b); its proofs are computed from the stored leaves, with
   an in-memory cache of subtree roots that fills as proofs are made: "first" is the cold
   cost) and the time of its first ``get_root``. At N its ``InmemoryTree`` (every node
   held in memory; its documentation calls it memory-inefficient, for testing) is
   measured too: its append rate beside ``integrate()`` alone, its proofs beside the
   assembly alone (c); it is left out at 10M, where the SqliteTree is fed during the
   build, chunk by chunk, with the same leaf data. pymerkle's ``sha256`` with default
   settings prefixes leaves with 0x00 and nodes with 0x01 like RFC 9162: the run checks
   that its roots equal gsomia's and that its proofs verify with gsomia's verifier
   against gsomia's root, and says so; if the roots differed, it would say why and claim
   no equivalence. The peer's append rate takes the leaf data ready-made; gsomia's
   includes writing the records and making the leaf data. If pymerkle is not installed,
   a clearly labelled naive peer stands in: leaf hashes in a Python list, each proof
   recomputed from all of them.

Ratios: how many times faster gsomia is (peer time / gsomia time, or gsomia rate / peer
rate). Targets are printed as met or NOT met; nothing about timing is asserted.
PostgreSQL is measured after ``VACUUM ANALYZE`` of the audit tables (the steady state
autovacuum reaches on its own); SQLite as the store leaves it. Before the proofs, the
database is checkpointed and ``os.sync()`` run, untimed. The garbage collector is left
on. The 1-minute load average at the start and the end is printed (other work on the
machine competes with the timings); the process is not pinned. Progress goes to stderr.

Run: ``python benchmarks/bench_audit.py [--entries N] [--big] [--backend sqlite|postgresql|both]
[--big-backend sqlite|postgresql|both] [--json]``. ``python -m benchmarks --full`` builds the 10M
tree on PostgreSQL only (``--big-backend postgresql``): the build of 10M records into both stores
does not fit the run's 30 minutes on a 2-core machine; SQLite's is ``--big --big-backend sqlite``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select

from _machine import cpu_model, load_average  # benchmarks/ is on sys.path when run as a script
from _postgres import POSTGRES_URL, postgres_absent, postgres_schema
from _rows import row as protocol_row
from gsomia._codec import canonical
from gsomia.audit import AuditLog, leaf_data
from gsomia.core.merkle import (
    Frontier,
    inclusion_subtrees,
    leaf_hash,
    node_hash,
    range_hash,
    subtrees_needed,
    verify_inclusion,
)
from gsomia.errors import ProofError
from gsomia.node import Node
from gsomia.store import AuditRow, AuditStore
from gsomia.store import _tables as t
from gsomia.store._audit import _PG_NODES_BY_KEY
from gsomia.testing import FakeClock, make_node

try:
    from pymerkle import InmemoryTree, SqliteTree
except ImportError:  # the naive peer stands in
    InmemoryTree = SqliteTree = None

SEED = 20191122
DEFAULT_ENTRIES = 1_000_000
BIG_ENTRIES = 10_000_000
MIN_ENTRIES = 10_000
APPEND_BATCH = 10_000
INTEGRATE_EVERY = 50_000  # records appended between integrations (each integrate() takes 10,000 at most)
NULL = "\\N"  # COPY's text format
CHECK_EVERY = 1024  # bulk-built records whose leaf data is compared with leaf_data's
BUILD_CHUNK = 131_072  # 2**17: a chunk's subtrees are the tree's
POOL = 256  # detail variants per kind
SAMPLE = 1000  # random leaves drawn for the proofs
MIN_PROOFS = 20
BUDGET_S = 2.0  # per timed cell, after MIN_PROOFS
APPEND_TARGETS = {"sqlite": 50_000.0, "postgresql": 30_000.0}  # appends/s, record to leaf (issue 18)
PROOF_TARGET_MS = 1.0  # at 10M entries

START_US = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1_000_000)
INSERT_RECORD = (
    "INSERT INTO audit_records"
    " (seq, entry_id, leaf_index, leaf, at_us, kind, actor, subject, outcome, detail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_NODE = "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)"
COPY_RECORDS = (
    "COPY audit_records"
    " (seq, entry_id, leaf_index, leaf, at_us, kind, actor, subject, outcome, detail) FROM STDIN"
)
COPY_NODES = "COPY merkle_nodes (level, idx, hash) FROM STDIN"


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Mismatch(Exception):
    """A proof that does not verify, or a tree that is not what was built."""


# --------------------------------------------------------------------------- the records

CHECK_REASONS = (
    ("active", "the account is active"),
    ("role", "holds a role that handles items"),
    ("nationality", "the item is releasable to JPN"),
    ("clearance", "cleared 極秘, at or above the item's 秘"),
    ("need_to_know", "need-to-know covers dprk-missile"),
)
TOPICS = ("dprk-missile", "dprk-nuclear", "prc-navy", "rus-air", "cyber-defence", "maritime-security")
# kind, outcome, weight
KINDS = (
    ("item.read", "allowed", 38),
    ("item.read", "refused", 4),
    ("item.ingest", "allowed", 20),
    ("item.list", "allowed", 12),
    ("item.release", "allowed", 9),
    ("item.release", "refused", 2),
    ("envelope.delivered", "allowed", 8),
    ("envelope.received", "allowed", 7),
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def _checks(rng: random.Random, fail: bool) -> list[dict[str, Any]]:
    failing = rng.randrange(len(CHECK_REASONS)) if fail else -1
    return [
        {"rule": rule, "passed": k != failing, "reason": reason if k != failing else f"not: {reason}"}
        for k, (rule, reason) in enumerate(CHECK_REASONS)
    ]


def _label(rng: random.Random) -> dict[str, Any]:
    kor = rng.random() < 0.4
    return {
        "alternatives": (
            [{"agreement": "kor-jpn-gsomia-2016", "classification": "極秘", "party": "JPN"}] if kor else []
        ),
        "caveats": ["G2G-ONLY"] if rng.random() < 0.1 else [],
        "classification": ("군사II급비밀" if kor else rng.choice(("特定秘密", "極秘", "秘", "取扱厳重注意"))),
        "created": f"2024-0{rng.randint(1, 5)}-{rng.randint(10, 28)}T09:00:00+09:00",
        "originator": "KOR" if kor else "JPN",
        "policy": "gsomia",
        "purpose": rng.choice(("threat-assessment", "missile-warning", "defence-cooperation")),
        "releasable_to": ["JPN"] if kor else rng.choice((["KOR"], ["KOR", "USA"], [])),
        "review": None,
        "topics": sorted(set(rng.choices(TOPICS, k=rng.choice((1, 1, 2, 3))))),
    }


def _detail(rng: random.Random, kind: str, outcome: str) -> str:
    refused = outcome == "refused"
    if kind == "item.read":
        if refused:
            return canonical({"error": "AccessDenied", "reason": "clearance", "checks": _checks(rng, True)})
        return canonical({"checks": _checks(rng, False)})
    if kind == "item.ingest":
        return canonical({"label": _label(rng)})
    if kind == "item.list":
        topic = {"topic": rng.choice(TOPICS)} if rng.random() < 0.3 else {}
        return canonical({"filter": topic, "returned": rng.randint(0, 1000), "withheld": rng.randint(0, 50)})
    if kind == "item.release":
        decision = {
            "allowed": not refused,
            "agreement": "kor-jpn-gsomia-2016",
            "recipient": "KOR",
            "checks": [{"rule": r, "passed": True, "reason": why} for r, why in CHECK_REASONS[2:]],
        }
        return canonical({"msg_id": _uuid(rng), "decision": decision})
    if kind == "envelope.delivered":
        return canonical({"msg_id": _uuid(rng), "peer": rng.choice(("KOR", "USA"))})
    return canonical({"entry_id": uuid.UUID(int=rng.getrandbits(128)).hex, "msg_id": _uuid(rng)})


class Records:
    """Fixed-seed audit records, as ``Node`` writes them (entry ids made here only for the big build)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.kinds = [(kind, outcome) for kind, outcome, _ in KINDS]
        self.weights = [w for _, _, w in KINDS]
        self.pool = {ko: [_detail(self.rng, *ko) for _ in range(POOL)] for ko in self.kinds}
        self.readers = [f"reader-{k:03d}" for k in range(256)]

    def batch(self, first: int, count: int, *, with_ids: bool = False) -> list[AuditRow]:
        rng, bits, pool, readers = self.rng, self.rng.getrandbits, self.pool, self.readers
        out = []
        for n, (kind, outcome) in enumerate(rng.choices(self.kinds, self.weights, k=count), first):
            actor: str | None = "operator" if kind in ("item.ingest", "item.release") else None
            if kind in ("item.read", "item.list") or (kind == "item.release" and rng.random() < 0.5):
                actor = readers[bits(8)]
            elif kind == "envelope.received":
                actor = "KOR"
            subject = None
            if kind != "item.list":  # an item id, a UUID as the node makes them
                h = f"{bits(128):032x}"
                subject = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            entry_id = f"{bits(128):032x}" if with_ids else ""
            detail = pool[(kind, outcome)][bits(8)]  # POOL == 256
            out.append(
                AuditRow(START_US + n * 1000, kind, actor, subject, outcome, detail, entry_id=entry_id)
            )
        return out


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True, slots=True)
class Timing:
    median_ms: float
    p95_ms: float
    calls: int
    first_ms: float  # the untimed warm-up call

    def as_dict(self) -> dict[str, float | int]:
        return {
            "median_ms": round(self.median_ms, 4),
            "p95_ms": round(self.p95_ms, 4),
            "calls": self.calls,
            "first_ms": round(self.first_ms, 3),
        }


def time_calls(call: Callable[[int], Any], warm: int, leaves: Sequence[int]) -> tuple[Timing, list[Any]]:
    """Warm up on ``warm``, then time ``call(leaf)`` over ``leaves`` (within the budget); the outputs too."""
    start = time.perf_counter()
    call(warm)
    first_ms = (time.perf_counter() - start) * 1000
    samples: list[float] = []
    outputs: list[tuple[int, Any]] = []
    began = time.perf_counter()
    for leaf in leaves:
        if len(samples) >= MIN_PROOFS and time.perf_counter() - began > BUDGET_S:
            break
        start = time.perf_counter()
        out = call(leaf)
        samples.append((time.perf_counter() - start) * 1000)
        outputs.append((leaf, out))
    ordered = sorted(samples)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1]
    return Timing(statistics.median(ordered), p95, len(ordered), first_ms), outputs


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table. Figures are a rate (per s) or a Timing (ms)."""

    backend: str
    entries: int
    measurement: str
    gsomia: Timing | float | None
    peer_name: str = ""
    peer: Timing | float | None = None
    target: str = ""
    met: bool | None = None

    def ratio(self) -> float | None:
        """How many times faster gsomia is."""
        if isinstance(self.gsomia, Timing) and isinstance(self.peer, Timing):
            return self.peer.median_ms / self.gsomia.median_ms
        if isinstance(self.gsomia, float) and isinstance(self.peer, float):
            return self.gsomia / self.peer
        return None

    def as_row(self) -> dict[str, Any]:
        """This line as a row of ``python -m benchmarks``' table (p95 where the target judges p95)."""
        where = f"{self.measurement}, {self.backend}, {self.entries:,} entries"
        peer_name = self.peer_name or None
        if isinstance(self.gsomia, Timing):
            stat = "p95" if "p95" in self.target else "median"
            mine = self.gsomia.p95_ms if stat == "p95" else self.gsomia.median_ms
            theirs = None
            if isinstance(self.peer, Timing):
                theirs = self.peer.p95_ms if stat == "p95" else self.peer.median_ms
            ratio = theirs / mine if theirs is not None and mine > 0 else None
            return protocol_row(
                where,
                mine,
                f"ms ({stat})",
                peer=peer_name,
                peer_value=theirs,
                ratio=ratio,
                target=self.target,
                met=self.met,
            )
        unit = self.measurement.rsplit("(", 1)[-1].rstrip(")") if self.measurement.endswith(")") else ""
        return protocol_row(
            where,
            self.gsomia if self.gsomia is not None else float("nan"),
            unit,
            peer=peer_name,
            peer_value=self.peer if isinstance(self.peer, float) else None,
            ratio=self.ratio(),
            target=self.target,
            met=self.met,
        )

    def as_dict(self) -> dict[str, Any]:
        def value(v: Timing | float | None) -> Any:
            return v.as_dict() if isinstance(v, Timing) else None if v is None else round(v, 1)

        ratio = self.ratio()
        return {
            "backend": self.backend,
            "entries": self.entries,
            "measurement": self.measurement,
            "gsomia": value(self.gsomia),
            "peer": self.peer_name or None,
            "peer_value": value(self.peer),
            "ratio": None if ratio is None else round(ratio, 2),
            "target": self.target or None,
            "target_met": self.met,
        }


# --------------------------------------------------------------------------- peers


class PymerkleSqlite:
    name = "pymerkle SqliteTree"

    def __init__(self, path: Path) -> None:
        self.tree = SqliteTree(str(path))  # sha256, RFC 9162 prefixes (its default "security")
        self.tree.con.execute("PRAGMA journal_mode=WAL")
        self.tree.con.execute("PRAGMA synchronous=NORMAL")

    def append(self, datas: Sequence[bytes]) -> None:
        self.tree.append_entries(datas)

    def root(self) -> bytes:
        return bytes(self.tree.get_root())

    def prove(self, index: int) -> Any:
        return self.tree.prove_inclusion(index + 1)

    @staticmethod
    def path(proof: Any) -> tuple[bytes, list[bytes]]:
        """(the leaf hash it starts from, the RFC 9162 audit path)."""
        return proof.path[0], list(proof.path[1:])

    def close(self) -> None:
        self.tree.close()


class PymerkleMemory(PymerkleSqlite):
    name = "pymerkle InmemoryTree"

    def __init__(self) -> None:
        self.tree = InmemoryTree()

    def close(self) -> None:
        self.tree = None


class NaivePeer:
    """NOT pymerkle: leaf hashes in a list; each proof recomputed from all of them (RFC 9162 MTH)."""

    name = "naive (recompute from all leaves)"

    def __init__(self) -> None:
        self.leaves: list[bytes] = []

    def append(self, datas: Sequence[bytes]) -> None:
        self.leaves += [leaf_hash(d) for d in datas]

    def _mth(self, start: int, end: int) -> bytes:
        if end - start == 1:
            return self.leaves[start]
        k = 1 << ((end - start - 1).bit_length() - 1)
        return node_hash(self._mth(start, start + k), self._mth(start + k, end))

    def root(self) -> bytes:
        return self._mth(0, len(self.leaves))

    def prove(self, index: int) -> Any:
        return self.leaves[index], [self._mth(a, b) for a, b in inclusion_subtrees(index, len(self.leaves))]

    @staticmethod
    def path(proof: Any) -> tuple[bytes, list[bytes]]:
        return proof[0], proof[1]

    def close(self) -> None:
        self.leaves = []


def peer_version() -> str:
    try:
        return f"pymerkle {version('pymerkle')}"
    except PackageNotFoundError:
        return "pymerkle NOT installed: naive peer"


# --------------------------------------------------------------------------- stores


@contextmanager
def backend_node(name: str, directory: Path) -> Iterator[Node]:
    """A fresh JPN node on ``name``: SQLite in ``directory``, PostgreSQL in a throw-away schema."""
    clock = FakeClock(datetime(2024, 6, 1, tzinfo=UTC))
    if name == "sqlite":
        node = make_node(directory, "JPN", clock=clock)
        try:
            yield node
        finally:
            node.close()
        return
    with postgres_schema("bench_audit_", progress) as url:
        node = make_node(directory, "JPN", database_url=url, clock=clock)
        try:
            yield node
        finally:
            node.close()


def server_version(node: Node) -> str:
    with node.store.engine.connect() as conn:
        if node.store.engine.dialect.name == "sqlite":
            return f"SQLite {conn.exec_driver_sql('SELECT sqlite_version()').scalar()}"
        return f"PostgreSQL {conn.exec_driver_sql('SHOW server_version').scalar()}"


def settle(node: Node) -> None:
    """VACUUM ANALYZE (PostgreSQL), checkpoint, and flush the OS's dirty pages: none of it timed."""
    start = time.perf_counter()
    with node.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if node.store.engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn.exec_driver_sql("VACUUM ANALYZE audit_records")
            conn.exec_driver_sql("VACUUM ANALYZE merkle_nodes")
            conn.exec_driver_sql("CHECKPOINT")
    os.sync()
    progress(f"  settled (vacuum/checkpoint and sync) in {time.perf_counter() - start:,.1f} s")


def count_nodes(node: Node) -> int:
    with node.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.merkle_nodes)).scalar_one())


def gsomia_query(node: Node, keys: Sequence[tuple[int, int]]) -> str:
    """The query ``AuditStore.nodes`` issues, with the keys written in: on PostgreSQL its array
    join (the same text, the keys' texts as literals), on SQLite the OR of ``AuditStore.nodes_by_or``."""
    if node.store.engine.dialect.name != "postgresql":
        return indexed_query(node, keys)
    levels = ",".join(str(lv) for lv, _ in keys if lv > 0)
    idxs = ",".join(str(ix) for lv, ix in keys if lv > 0)
    leaves = ",".join(str(ix) for lv, ix in keys if lv == 0)  # a leaf from its record (migration 0027)
    return _PG_NODES_BY_KEY % (f"'{levels}'", f"'{idxs}'", f"'{leaves}'")


def indexed_query(node: Node, keys: Sequence[tuple[int, int]]) -> str:
    """The query of ``AuditStore.nodes_by_or``: ``(level = ? AND idx = ?) OR ...`` (PostgreSQL's
    before issue 18's array join; still SQLite's)."""
    mn = t.merkle_nodes  # the subtrees above the leaves (a leaf is read from its record)
    query = select(mn).where(or_(*(and_(mn.c.level == lv, mn.c.idx == ix) for lv, ix in keys if lv > 0)))
    return str(query.compile(node.store.engine, compile_kwargs={"literal_binds": True}))


def query_plan(node: Node, sql: str) -> str:
    """The plan, condensed: conditions and costs left out, repeated steps counted."""
    engine = node.store.engine
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            lines = [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        else:
            lines = [str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + sql)]
    steps: list[list[Any]] = []
    for line in lines:
        step = line.replace("->", "").split("  (cost=")[0].strip()
        if step.startswith(("Index Cond", "Recheck Cond", "Filter", "INDEX ")):
            continue
        if steps and steps[-1][0] == step:
            steps[-1][1] += 1
        else:
            steps.append([step, 1])
    return "; ".join(step if n == 1 else f"{n} x {step}" for step, n in steps)


# --------------------------------------------------------------------------- proofs


@dataclass
class Tree:
    """A built log on one backend: what the proof measurements need."""

    backend: str
    node: Node
    size: int
    root: bytes
    build: dict[str, Any] = field(default_factory=dict)


def sample_leaves(size: int, seed: int) -> tuple[int, list[int]]:
    rng = random.Random(seed)
    drawn = rng.sample(range(size), min(SAMPLE + 1, size))
    return drawn[0], drawn[1:]


def proof_from_store(log: AuditLog, index: int, size: int) -> list[bytes]:
    """(b): the needed subtree hashes in one store query (``AuditLog._source``), then the proof."""
    ranges = inclusion_subtrees(index, size)
    node = log._source(ranges)
    return [range_hash(a, b, node) for a, b in ranges]


def proof_indexed(log: AuditLog, index: int, size: int) -> list[bytes]:
    """(d) before: as (b), with ``AuditStore.nodes_by_or`` (PostgreSQL's query until issue 18)."""
    ranges = inclusion_subtrees(index, size)
    found = log.store.nodes_by_or(sorted(subtrees_needed(ranges)))

    def node(level: int, idx: int) -> bytes:
        value = found.get((level, idx))
        if value is None:
            raise ProofError(f"the log is missing subtree ({level}, {idx})")
        return value

    return [range_hash(a, b, node) for a, b in ranges]


def proof_in_memory(index: int, size: int, found: dict[tuple[int, int], bytes]) -> list[bytes]:
    """(c): what (b) does once the query has answered: ranges, needed keys, lookup, assembly."""
    ranges = inclusion_subtrees(index, size)
    sorted(subtrees_needed(ranges))

    def node(level: int, idx: int) -> bytes:
        value = found.get((level, idx))
        if value is None:
            raise ProofError(f"the log is missing subtree ({level}, {idx})")
        return value

    return [range_hash(a, b, node) for a, b in ranges]


def check(what: str, leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError as exc:
        raise Mismatch(f"{what}: the proof of leaf {index} of {size:,} does not verify: {exc}") from exc


@dataclass
class PeerRun:
    """Peers fed with the tree's leaf data: their append times and first roots."""

    peers: list[Any]
    entries: int = 0
    append_s: dict[str, float] = field(default_factory=dict)
    roots: dict[str, bytes] = field(default_factory=dict)
    root_ms: dict[str, float] = field(default_factory=dict)

    def take_roots(self) -> None:
        for peer in self.peers:
            start = time.perf_counter()
            self.roots[peer.name] = peer.root()
            self.root_ms[peer.name] = (time.perf_counter() - start) * 1000

    def close(self) -> None:
        for peer in self.peers:
            peer.close()


def measure_proofs(
    tree: Tree, seed: int, judge: bool, peers: PeerRun | Callable[[], PeerRun] | None
) -> tuple[list[Row], dict[str, Any], PeerRun | None]:
    """(a)-(d) on ``tree``, then (peers made only now) each peer's prove_inclusion on the same leaves."""
    node, size, root, name = tree.node, tree.size, tree.root, tree.backend
    log = node.audit
    warm, leaves = sample_leaves(size, seed)
    rows_by_leaf: dict[int, AuditRow] = {}
    for index in [warm, *leaves]:
        row = log.store.by_leaf(index)
        if row is None or row.leaf is None:
            raise Mismatch(f"{name}: no record at leaf {index}")
        rows_by_leaf[index] = row
    leaf_of = {i: leaf_hash(leaf_data(r)) for i, r in rows_by_leaf.items()}
    altered = [i for i, r in rows_by_leaf.items() if r.leaf != leaf_of[i]]
    if altered:
        raise Mismatch(f"{name}: stored leaf hash differs from leaf_data for leaves {altered[:5]}")
    found = {}  # untimed, by the index-friendly query (gsomia's own scans the table on SQLite)
    for i in [warm, *leaves]:
        found[i] = log.store.nodes_by_or(sorted(subtrees_needed(inclusion_subtrees(i, size))))
    verified = 0
    firsts: dict[str, float] = {}

    progress(f"{name} at {size:,}: AuditLog.inclusion end to end")
    e2e, outs = time_calls(lambda i: log.inclusion(rows_by_leaf[i].entry_id), warm, leaves)
    for index, out in outs:
        if out["size"] != size or out["leaf_index"] != index:
            raise Mismatch(f"{name}: inclusion of leaf {index} answered for leaf {out['leaf_index']}")
        proof = [bytes.fromhex(h) for h in out["proof"]]
        check("AuditLog.inclusion", leaf_hash(out["leaf_data"].encode()), index, size, proof, root)
        verified += 1

    progress(f"{name} at {size:,}: proof, one store query + assembly")
    fetched, outs = time_calls(lambda i: proof_from_store(log, i, size), warm, leaves)
    for index, proof in outs:
        check("store query + assembly", leaf_of[index], index, size, proof, root)
        verified += 1

    progress(f"{name} at {size:,}: assembly alone")
    pure, outs = time_calls(lambda i: proof_in_memory(i, size, found[i]), warm, leaves)
    for index, proof in outs:
        check("assembly", leaf_of[index], index, size, proof, root)
        verified += 1

    progress(f"{name} at {size:,}: before, the OR of key look-ups + assembly")
    diag, outs = time_calls(lambda i: proof_indexed(log, i, size), warm, leaves)
    for index, proof in outs:
        check("index-friendly query", leaf_of[index], index, size, proof, root)
        verified += 1
    firsts.update(
        {
            "AuditLog.inclusion": e2e.first_ms,
            "query + assembly": fetched.first_ms,
            "assembly": pure.first_ms,
            "before (OR)": diag.first_ms,
        }
    )

    run = peers() if callable(peers) else peers
    peer_timings: dict[str, Timing] = {}
    peer_checks: dict[str, str] = {}
    for peer in run.peers if run is not None else []:
        progress(f"{name} at {size:,}: {peer.name} prove_inclusion")
        timing, outs = time_calls(peer.prove, warm, leaves)
        peer_timings[peer.name] = timing
        firsts[peer.name] = timing.first_ms
        same_root = run.roots.get(peer.name) == root
        agree = 0
        for index, proof in outs:
            base, path = peer.path(proof)
            if base != leaf_of[index]:
                raise Mismatch(f"{peer.name}: leaf {index} hash differs from gsomia's")
            if same_root:  # the same root: its proof must verify with gsomia's verifier and equal gsomia's
                check(peer.name, base, index, size, path, root)
                agree += path == proof_in_memory(index, size, found[index])
        peer_checks[peer.name] = (
            f"{agree} of {len(outs)} of its proofs verified by gsomia's verify_inclusion against gsomia's "
            "root and are byte-for-byte gsomia's"
            if same_root
            else "roots differ: proofs not compared"
        )

    if judge:
        judged = f"p95 < {PROOF_TARGET_MS:g} ms"
    else:
        judged = f"(p95 < {PROOF_TARGET_MS:g} ms: judged on the big tree)"
    names = [p.name for p in run.peers] if run is not None else []
    stored_peer = next((n for n in names if "Inmemory" not in n), "")
    memory_peer = next((n for n in names if "Inmemory" in n), "")
    info_only = "(information)"
    rows = [
        Row(name, size, "AuditLog.inclusion(entry_id), end to end (ms)", e2e, target=info_only),
        Row(
            name,
            size,
            "proof: one store query (AuditStore.nodes) + assembly (ms)",
            fetched,
            stored_peer,
            peer_timings.get(stored_peer),
            judged,
            fetched.p95_ms < PROOF_TARGET_MS if judge else None,
        ),
        Row(
            name,
            size,
            "proof assembly alone, subtree hashes in memory (ms)",
            pure,
            memory_peer,
            peer_timings.get(memory_peer),
            info_only,
        ),
        Row(
            name,
            size,
            "before: nodes_by_or, (level=? AND idx=?) OR ... + assembly (ms)",
            diag,
            target=info_only,
        ),
    ]
    keys = sorted(found[leaves[0]])
    info = {
        "proofs_verified": verified,
        "peer_checks": peer_checks,
        "proof_length": len(inclusion_subtrees(leaves[0], size)),
        "subtrees_per_proof": len(keys),
        "plan_gsomia": query_plan(node, gsomia_query(node, keys)),
        "plan_indexed": query_plan(node, indexed_query(node, keys)),
        "first_ms": {k: round(v, 2) for k, v in firsts.items()},
    }
    return rows, info, run


# --------------------------------------------------------------------------- 1. append, 3. verify


def append_and_integrate(node: Node, entries: int) -> dict[str, Any]:
    """Write ``entries`` records: the first fifth as other transactions write theirs (with their own
    changes, left pending), then ``integrate()`` timed alone on them; the rest with
    Store.append_audit in batches (record to leaf), integrating every INTEGRATE_EVERY."""
    records = Records(SEED)
    phases = {"read": 0.0, "write": 0.0}
    # the writer works on a view of the store bound to its locked transaction (AuditStore.writer()):
    # the timers go around the class's methods, for this run only
    real_unintegrated, real_integrate = AuditStore.pending_fields, AuditStore.integrate

    def unintegrated(self: AuditStore, limit: int) -> list[tuple[Any, ...]]:
        start = time.perf_counter()
        try:
            return real_unintegrated(self, limit)
        finally:
            phases["read"] += time.perf_counter() - start

    def integrate(self: AuditStore, *args: Any) -> None:
        start = time.perf_counter()
        try:
            real_integrate(self, *args)
        finally:
            phases["write"] += time.perf_counter() - start

    pending_only = max(APPEND_BATCH, entries // 5 // APPEND_BATCH * APPEND_BATCH)
    written_s = integrate_s = 0.0
    integrated = 0
    for done in range(0, pending_only, APPEND_BATCH):
        # what a transaction that changes other state writes with it (Store._audit): pending records
        batch = records.batch(done, APPEND_BATCH)
        start = time.perf_counter()
        with node.store._begin() as conn:
            node.store._audit(conn, batch)
        written_s += time.perf_counter() - start
    AuditStore.pending_fields, AuditStore.integrate = unintegrated, integrate  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        while count := node.audit.integrate():
            integrated += count
        integrate_s = time.perf_counter() - start
    finally:
        AuditStore.pending_fields, AuditStore.integrate = real_unintegrated, real_integrate  # type: ignore[method-assign]
    progress(f"  {pending_only:,} records written pending and integrated")
    append_s = leaf_s = 0.0
    pending = 0
    for done in range(pending_only, entries, APPEND_BATCH):
        batch = records.batch(done, min(APPEND_BATCH, entries - done))
        start = time.perf_counter()
        node.store.append_audit(batch)
        append_s += time.perf_counter() - start
        pending += len(batch)
        if pending >= INTEGRATE_EVERY or done + len(batch) == entries:
            start = time.perf_counter()
            while count := node.audit.integrate():
                integrated += count
            leaf_s += time.perf_counter() - start
            pending = 0
        if (done + len(batch)) % 100_000 == 0:
            progress(f"  appended and integrated {done + len(batch):,} of {entries:,}")
    start = time.perf_counter()
    head = node.audit.sign_head()
    sign_s = time.perf_counter() - start
    return {
        "entries": entries,
        "integrated": integrated,
        "pending_only": pending_only,
        "written_s": written_s,
        "integrate_s": integrate_s,
        "read_s": phases["read"],
        "write_s": phases["write"],
        "hash_s": integrate_s - phases["read"] - phases["write"],
        "appended": entries - pending_only,
        "append_s": append_s,
        "leaf_integrate_s": leaf_s,
        "sign_head_ms": sign_s * 1000,
        "head": head,
    }


def feed_peers(node: Node, directory: Path) -> PeerRun:
    """The node's leaf data in leaf order (read untimed), appended to each peer in batches of APPEND_BATCH."""
    if SqliteTree is not None:
        run = PeerRun([PymerkleSqlite(directory / "pymerkle.db"), PymerkleMemory()])
    else:
        run = PeerRun([NaivePeer()])
    progress(f"feeding {', '.join(p.name for p in run.peers)}")
    run.append_s = {p.name: 0.0 for p in run.peers}
    batch: list[bytes] = []

    def flush() -> None:
        for peer in run.peers:
            start = time.perf_counter()
            peer.append(batch)
            run.append_s[peer.name] += time.perf_counter() - start
        run.entries += len(batch)
        batch.clear()

    for row in node.audit.store.leaves():
        batch.append(leaf_data(row))
        if len(batch) == APPEND_BATCH:
            flush()
    if batch:
        flush()
    run.take_roots()
    return run


def equivalence(root: bytes, run: PeerRun | None) -> dict[str, str]:
    out = {}
    for name, peer_root in (run.roots if run is not None else {}).items():
        if peer_root == root:
            out[name] = "same root as gsomia (SHA-256, 0x00 leaf / 0x01 node prefixes: RFC 9162)"
        else:
            out[name] = (
                f"root DIFFERS ({peer_root.hex()[:16]}… against gsomia's {root.hex()[:16]}…): its hashing "
                "or tree shape is not RFC 9162 as configured; no equivalence is claimed"
            )
    return out


def peer_figures(run: PeerRun | None) -> dict[str, Any]:
    if run is None:
        return {}
    return {
        name: {
            "entries": run.entries,
            "append_s": round(run.append_s.get(name, 0.0), 2),
            "first_root_ms": round(run.root_ms[name], 1),
        }
        for name in run.root_ms
    }


def measure_base(name: str, entries: int, directory: Path, with_peer: bool) -> dict[str, Any]:
    with backend_node(name, directory / f"jpn-{name}") as node:
        server = server_version(node)
        progress(f"{name} ({server}): {entries:,} records, append_audit x {APPEND_BATCH:,}, integrate")
        appended = append_and_integrate(node, entries)
        head = appended.pop("head")
        size = node.audit.size()
        if size != entries or head.size != size:
            raise Mismatch(
                f"{name}: the tree holds {size:,} leaves, the head {head.size:,}; expected {entries:,}"
            )
        root = node.audit._frontier().root()
        if root != head.root:
            raise Mismatch(f"{name}: the signed head's root is not the frontier's")
        nodes = count_nodes(node)
        settle(node)
        tree = Tree(name, node, size, root)
        peers = (lambda: feed_peers(node, directory)) if with_peer else None
        rows, info, run = measure_proofs(tree, SEED + 1, False, peers)
        if run is not None:
            run.close()

        progress(f"{name}: AuditLog.verify() over {size:,} entries")
        start = time.perf_counter()
        report = node.audit.verify()
        verify_s = time.perf_counter() - start
        if not report.ok or report.entries != size:
            raise Mismatch(f"{name}: verify() says {report}")

    integrate_rate = appended["pending_only"] / appended["integrate_s"]
    both_rate = appended["appended"] / (appended["append_s"] + appended["leaf_integrate_s"])
    wanted = APPEND_TARGETS[name]
    target = f">= {wanted:,.0f}/s"
    peer_rates = {n: entries / s for n, s in run.append_s.items()} if run is not None else {}
    stored_peer = next((n for n in peer_rates if "Inmemory" not in n), "")
    memory_peer = next((n for n in peer_rates if "Inmemory" in n), "")
    head_rows = [
        Row(
            name,
            entries,
            f"Store.append_audit alone, batches of {APPEND_BATCH:,} (appends/s)",
            appended["appended"] / appended["append_s"],
        ),
        Row(
            name,
            entries,
            "AuditLog.integrate() alone, records left pending, calls of 10,000 (appends/s)",
            integrate_rate,
            memory_peer,
            peer_rates.get(memory_peer),
            target,
            integrate_rate >= wanted,
        ),
        Row(
            name,
            entries,
            "append_audit + integrate: record to leaf (appends/s)",
            both_rate,
            stored_peer,
            peer_rates.get(stored_peer),
            target,
            both_rate >= wanted,
        ),
    ]
    tail = [
        Row(
            name,
            entries,
            "AuditLog.verify(): full rebuild (entries/s)",
            size / verify_s,
            target="(information)",
        )
    ]
    return {
        "backend": name,
        "server": server,
        "entries": entries,
        "append": {k: round(v, 3) if isinstance(v, float) else v for k, v in appended.items()},
        "merkle_nodes": nodes,
        "verify_s": round(verify_s, 2),
        "heads_checked": report.heads_checked,
        "peers": peer_figures(run),
        "equivalence": equivalence(root, run),
        "root": root.hex(),
        **info,
        "_rows": head_rows + rows + tail,
    }


# --------------------------------------------------------------------------- 2. the big tree, built directly


class SqliteSink:
    """Bulk inserts on a connection of its own (not the store's pool), one transaction a chunk."""

    def __init__(self, node: Node) -> None:
        self.con = sqlite3.connect(node.store.engine.url.database)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute("PRAGMA cache_size=-524288")  # 512 MiB, for this loading connection only
        self.spent = 0.0
        self.indexes_s = 0.0

    def write(self, chunk: BigChunk) -> None:
        start = time.perf_counter()
        with self.con:
            self.con.executemany(INSERT_RECORD, chunk.rows)
            self.con.executemany(INSERT_NODE, chunk.nodes)
        self.spent += time.perf_counter() - start

    def write_nodes(self, nodes: list[tuple[int, int, bytes]]) -> None:
        with self.con:
            self.con.executemany(INSERT_NODE, nodes)

    def finish(self, node: Node, size: int) -> None:
        self.con.close()


class PostgresSink:
    """PostgreSQL's bulk-load recipe ("Populating a Database" in its manual), in ONE transaction:
    the two empty tables truncated (so that ``COPY ... FREEZE`` may write the rows frozen, and
    VACUUM has nothing to do afterwards), their indexes and key constraints dropped, every chunk
    ``COPY``'d, then the same indexes and constraints made again from the definitions read from the
    catalogue before they were dropped (a sort each, instead of 10M random B-tree inserts: the
    unique index on the random entry ids is what made the row-by-row build slow). A duplicate key
    would fail the commit: the rebuilt constraints check every row."""

    TABLES = ("audit_records", "merkle_nodes")

    def __init__(self, node: Node) -> None:
        self.raw = node.store.engine.raw_connection()
        self.conn = self.raw.driver_connection
        self.spent = 0.0
        self.indexes_s = 0.0
        start = time.perf_counter()
        with self.conn.cursor() as cur:
            for table in self.TABLES:
                cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
                if cur.fetchone()[0]:
                    raise Mismatch(f"{table} is not empty: the big tree is built into fresh tables only")
            cur.execute(f"TRUNCATE {', '.join(self.TABLES)}")
            cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
            cur.execute(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
                "FROM pg_constraint c WHERE c.conrelid = ANY(%s::regclass[]) AND c.contype IN ('p', 'u')",
                (list(self.TABLES),),
            )
            self.constraints = cur.fetchall()
            cur.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "WHERE i.indrelid = ANY(%s::regclass[]) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                (list(self.TABLES),),
            )
            self.indexes = cur.fetchall()
            for table, name, _ in self.constraints:
                cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
            for name, _ in self.indexes:
                cur.execute(f"DROP INDEX {name}")
        self.indexes_s += time.perf_counter() - start

    def _copy(self, statement: str, text: bytes) -> None:
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            copy.write(text)

    def write(self, chunk: BigChunk) -> None:
        """The records and the chunk's subtrees, as COPY text made by the workers."""
        start = time.perf_counter()
        self._copy(COPY_RECORDS + " WITH (FREEZE)", chunk.text)
        self._copy(COPY_NODES + " WITH (FREEZE)", chunk.nodes_text)
        self.spent += time.perf_counter() - start

    def write_nodes(self, nodes: list[tuple[int, int, bytes]]) -> None:
        self._copy(COPY_NODES + " WITH (FREEZE)", "".join(_node_line(*n) for n in nodes).encode())

    def finish(self, node: Node, size: int) -> None:
        start = time.perf_counter()
        with self.conn.cursor() as cur:
            for _, definition in self.indexes:
                cur.execute(definition)
            for table, name, definition in self.constraints:
                cur.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            cur.execute("SELECT setval(pg_get_serial_sequence('audit_records', 'seq'), %s)", (size,))
        self.conn.commit()
        self.indexes_s += time.perf_counter() - start
        self.raw.close()


_BIG_RECORDS: Records | None = None
_ESCAPED: dict[str, str] = {}  # the detail pool's strings in COPY's text format (a worker's own)


@dataclass
class BigChunk:
    """Records ``start`` to ``start + count`` of the big tree, as a worker made them."""

    start: int
    count: int
    rows: list[tuple[Any, ...]]  # for SQLite's executemany
    text: bytes  # the same rows in COPY's text format, for PostgreSQL
    nodes: list[tuple[int, int, bytes]]  # every subtree complete inside the chunk, leaves included
    nodes_text: bytes
    pieces: list[tuple[int, bytes]]  # the chunk's own frontier: (level, hash), largest first
    datas: list[bytes]  # leaf data, for the peer


def _copy_text(value: str) -> str:
    """Text in COPY's text format: backslash, tab and line ends escaped."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


def _copy_detail(value: str) -> str:
    escaped = _ESCAPED.get(value)
    if escaped is None:
        escaped = _ESCAPED[value] = _copy_text(value)
    return escaped


def _opt(value: str | None) -> str:
    return "\\N" if value is None else _copy_text(value)


def _node_line(level: int, idx: int, digest: bytes) -> str:
    return f"{level}\t{idx}\t\\\\x{digest.hex()}\n"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _big_chunk(start: int, count: int, rows_wanted: bool, copy_wanted: bool, with_datas: bool) -> BigChunk:
    """Records ``start`` to ``start + count`` (their own fixed seed, drawn as ``Records.batch`` draws
    them) with their leaf index and leaf hash, and every subtree complete inside the chunk (``start``
    is a multiple of BUILD_CHUNK, a power of two, so a subtree of the chunk is a subtree of the tree,
    at index ``(start >> level) + its index``). Run in a worker process: the main process only joins
    the chunks' frontiers.

    Streaming, allocation-light: the leaf data is written from the record's fields with the detail's
    JSON and COPY text made once per pool entry (``leaf_data``'s exact layout: one in every
    CHECK_EVERY records is compared with gsomia's ``leaf_data`` here, and the proofs later recompute
    ``leaf_data`` from the stored records of 1,000 random leaves); leaves and nodes are hashed with
    hashlib with RFC 9162's 0x00 / 0x01 prefixes, level by level, as ``leaf_hash`` / ``node_hash``."""
    global _BIG_RECORDS
    if _BIG_RECORDS is None:
        _BIG_RECORDS = Records(SEED + 2)
    recs = _BIG_RECORDS
    rng = random.Random(SEED * 1_000_003 + start)
    bits, rand = rng.getrandbits, rng.random
    json = encode_basestring
    pool = {ko: [(json(d), _copy_detail(d), d) for d in details] for ko, details in recs.pool.items()}
    readers = [(json(r), r) for r in recs.readers]
    sha = hashlib.sha256
    rows: list[tuple[Any, ...]] = []
    lines: list[str] = []
    datas: list[bytes] = []
    digests: list[bytes] = []
    for n, (kind, outcome) in enumerate(rng.choices(recs.kinds, recs.weights, k=count), start):
        actor: str | None = "operator" if kind in ("item.ingest", "item.release") else None
        if kind in ("item.read", "item.list") or (kind == "item.release" and rand() < 0.5):
            actor_json, actor = readers[bits(8)]
        elif kind == "envelope.received":
            actor_json, actor = '"KOR"', "KOR"
        else:
            actor_json = "null" if actor is None else '"operator"'
        subject = None
        subject_json = "null"
        if kind != "item.list":
            h = f"{bits(128):032x}"
            subject = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
            subject_json, subject_copy = f'"{subject}"', subject
        else:
            subject_copy = NULL
        actor_copy = NULL if actor is None else actor  # names, UUIDs, kinds: nothing to escape
        entry_id = f"{bits(128):032x}"
        detail_json, detail_copy, detail = pool[(kind, outcome)][bits(8)]
        at_us = START_US + n * 1000
        data = (
            f'{{"actor":{actor_json},"at_us":{at_us},"detail":{detail_json},"entry":"{entry_id}",'
            f'"kind":"{kind}","outcome":"{outcome}","subject":{subject_json}}}'
        ).encode()
        digest = sha(b"\x00" + data).digest()
        digests.append(digest)
        if n % CHECK_EVERY == 0:
            row = AuditRow(at_us, kind, actor, subject, outcome, detail, entry_id=entry_id)
            if leaf_data(row) != data:
                raise Mismatch(f"record {n}: the bulk leaf data is not gsomia's leaf_data")
        if with_datas:
            datas.append(data)
        if rows_wanted:
            rows.append((n + 1, entry_id, n, digest, at_us, kind, actor, subject, outcome, detail))
        if copy_wanted:
            lines.append(
                f"{n + 1}\t{entry_id}\t{n}\t\\\\x{digest.hex()}\t{at_us}\t{kind}\t"
                f"{actor_copy}\t{subject_copy}\t"
                f"{outcome}\t{detail_copy}\n"
            )
    levels = [digests]
    while len(levels[-1]) >= 2:
        below = levels[-1]
        levels.append([sha(b"\x01" + below[k] + below[k + 1]).digest() for k in range(0, len(below) - 1, 2)])
    nodes: list[tuple[int, int, bytes]] = []
    node_text: list[str] = []
    for level, hashes in enumerate(levels):
        if level == 0:
            continue  # a leaf's hash is stored with its record (migration 0027), as integrate stores it
        base = start >> level
        if rows_wanted:
            nodes += [(level, base + k, h) for k, h in enumerate(hashes)]
        if copy_wanted:
            node_text += [f"{level}\t{base + k}\t\\\\x{h.hex()}\n" for k, h in enumerate(hashes)]
    pieces = []
    offset = 0
    for level in range(count.bit_length() - 1, -1, -1):
        if count >> level & 1:
            pieces.append((level, levels[level][offset >> level]))
            offset += 1 << level
    return BigChunk(
        start, count, rows, "".join(lines).encode(), nodes, "".join(node_text).encode(), pieces, datas
    )


def _big_chunks(entries: int, rows_wanted: bool, copy_wanted: bool, with_datas: bool) -> Iterator[BigChunk]:
    """The big tree's chunks in order, made by one worker process a core, two a worker ahead."""
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(workers, context) as pool:
        pending: deque[Future[BigChunk]] = deque()
        for done in range(0, entries, BUILD_CHUNK):
            count = min(BUILD_CHUNK, entries - done)
            pending.append(pool.submit(_big_chunk, done, count, rows_wanted, copy_wanted, with_datas))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _join(
    stack: list[tuple[int, bytes]], size: int, piece: tuple[int, bytes]
) -> list[tuple[int, int, bytes]]:
    """Push a chunk's perfect subtree (level, hash) onto the tree's right edge at leaf ``size``; the
    subtrees above the chunks it completes, (level, index, hash), as ``Frontier.append`` makes them."""
    level = piece[0]
    completed = []
    end = size + (1 << level)
    stack.append(piece)
    while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
        (_, right), (lv, left) = stack.pop(), stack.pop()
        merged = (lv + 1, node_hash(left, right))
        stack.append(merged)
        completed.append((lv + 1, (end >> (lv + 1)) - 1, merged[1]))
    return completed


def build_big(nodes: dict[str, Node], entries: int, run: PeerRun | None) -> dict[str, Any]:
    """The same records and tree into every node's tables (and the peer), a chunk at a time: the
    records, leaf hashes and the chunk's subtrees made in worker processes, the chunks joined here."""
    sinks = {name: (SqliteSink if name == "sqlite" else PostgresSink)(node) for name, node in nodes.items()}
    stack: list[tuple[int, bytes]] = []
    above: list[tuple[int, int, bytes]] = []
    size = 0
    if run is not None:
        run.append_s = {p.name: 0.0 for p in run.peers}
    began = time.perf_counter()
    chunks = _big_chunks(entries, "sqlite" in sinks, "postgresql" in sinks, run is not None)
    for chunk in chunks:
        if chunk.start != size:
            raise Mismatch(f"chunk at {chunk.start:,} joined at {size:,}")
        for sink in sinks.values():
            sink.write(chunk)
        for piece in chunk.pieces:
            above += _join(stack, size, piece)
            size += 1 << piece[0]
        for peer in run.peers if run is not None else []:
            start = time.perf_counter()
            for k in range(0, len(chunk.datas), APPEND_BATCH):
                peer.append(chunk.datas[k : k + APPEND_BATCH])
            run.append_s[peer.name] += time.perf_counter() - start
        if run is not None:
            run.entries += len(chunk.datas)
        if size % 1_048_576 < BUILD_CHUNK:
            progress(f"  built {size:,} of {entries:,}")
    frontier = Frontier(size, [h for _, h in stack])
    for sink in sinks.values():
        sink.write_nodes(above)
    # what the build took besides the inserts (and the peer): making the records in the workers,
    # waiting for them, and joining the chunks
    make_s = time.perf_counter() - began - sum(sink.spent + sink.indexes_s for sink in sinks.values())
    if run is not None:
        make_s -= sum(run.append_s.values())
    state = canonical({"size": frontier.size, "hashes": [h.hex() for h in frontier.hashes]})
    out: dict[str, Any] = {
        "entries": entries,
        "make_s": round(make_s, 1),
        "root": frontier.root(),
        "insert_s": {},
        "indexes_s": {},
    }
    for name, sink in sinks.items():
        sink.finish(nodes[name], frontier.size)
        nodes[name].store.put_meta("audit.frontier", state)  # as integrate stores it
        out["insert_s"][name] = round(sink.spent, 1)
        out["indexes_s"][name] = round(sink.indexes_s, 1)
    return out


def measure_big(names: Sequence[str], entries: int, directory: Path, with_peer: bool) -> list[dict[str, Any]]:
    with contextmanager_stack(names, directory) as nodes:
        run = None
        if with_peer and "sqlite" in nodes:
            run = PeerRun(
                [PymerkleSqlite(directory / "pymerkle-big.db") if SqliteTree is not None else NaivePeer()]
            )
        progress(f"big tree: {entries:,} records built directly into {', '.join(nodes)}")
        try:
            built = build_big(nodes, entries, run)
            root = built.pop("root")
            if run is not None:
                progress(f"  {run.peers[0].name}: first get_root over {entries:,} leaves")
                run.take_roots()
            results = []
            for name, node in nodes.items():
                start = time.perf_counter()
                head = node.audit.sign_head()  # integrate finds nothing pending; signs (size, root)
                sign_ms = (time.perf_counter() - start) * 1000
                if head.size != entries or head.root != root or node.audit.size() != entries:
                    raise Mismatch(f"{name}: the built tree's head is {head.size:,} / {head.root.hex()[:16]}")
                nodes_count = count_nodes(node)
                settle(node)
                mine = run if name == "sqlite" else None
                rows, info, _ = measure_proofs(Tree(name, node, entries, root), SEED + 3, True, mine)
                build_rate = entries / (built["make_s"] + built["insert_s"][name] + built["indexes_s"][name])
                peer_name = mine.peers[0].name if mine is not None else ""
                peer_rate = entries / mine.append_s[peer_name] if mine is not None else None
                rows.insert(
                    0,
                    Row(
                        name,
                        entries,
                        "bulk build, direct inserts (not integrate; entries/s)",
                        build_rate,
                        peer_name,
                        peer_rate,
                        "(information)",
                    ),
                )
                results.append(
                    {
                        "backend": name,
                        "server": server_version(node),
                        "entries": entries,
                        "big": True,
                        "build": {
                            "make_s": built["make_s"],
                            "insert_s": built["insert_s"][name],
                            "indexes_s": built["indexes_s"][name],
                            "sign_head_ms": round(sign_ms, 1),
                        },
                        "merkle_nodes": nodes_count,
                        "peers": peer_figures(mine),
                        "equivalence": equivalence(root, mine),
                        "root": root.hex(),
                        **info,
                        "_rows": rows,
                    }
                )
        finally:
            if run is not None:
                run.close()
    return results


@contextmanager
def contextmanager_stack(names: Sequence[str], directory: Path) -> Iterator[dict[str, Node]]:
    """Fresh nodes for each backend in ``names`` (each in its own directory or schema)."""
    with ExitStack() as stack:
        nodes = {name: stack.enter_context(backend_node(name, directory / f"big-{name}")) for name in names}
        yield nodes


# --------------------------------------------------------------------------- report


def fmt(value: Timing | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, Timing):
        return f"{value.median_ms:,.3f} / {value.p95_ms:,.3f}"
    return f"{value:,.0f}"


def print_report(
    results: Sequence[dict[str, Any]], absent: str | None, total_s: float, loads: Sequence[str]
) -> None:
    print("gsomia audit log: append rate, inclusion proofs, full verification; peer: " + peer_version())
    print(
        f"Python: {platform.python_implementation()} {platform.python_version()}; CPU: {cpu_model()} "
        f"({os.cpu_count()} cores, not pinned); SQLAlchemy {version('sqlalchemy')}, "
        f"psycopg {version('psycopg')}, sqlite3 module on SQLite {sqlite3.sqlite_version}; "
        f"1-min load average {loads[0]} at the start, "
        f"{loads[1]} at the end"
    )
    if absent is not None:
        print(f"PostgreSQL: ABSENT at {POSTGRES_URL} ({absent}); measured SQLite only")
    for r in results:
        print()
        if r.get("big"):
            b = r["build"]
            print(
                f"{r['backend']} ({r['server']}), {r['entries']:,} entries BUILT DIRECTLY (not through "
                "integrate): records and leaf hashes made with gsomia's leaf_data/leaf_hash/Frontier in "
                f"{b['make_s']:,.1f} s, bulk-inserted in {b['insert_s']:,.1f} s (indexes and key constraints "
                f"dropped and made again: {b['indexes_s']:,.1f} s); "
                f"{r['merkle_nodes']:,} merkle_nodes rows; "
                f"head signed by AuditLog.sign_head in {b['sign_head_ms']:,.1f} ms"
            )
        else:
            a = r["append"]
            print(
                f"{r['backend']} ({r['server']}), {r['entries']:,} entries: {a['pending_only']:,} written "
                f"pending in transactions of {APPEND_BATCH:,} ({a['written_s']:,.1f} s) and integrated by "
                f"AuditLog.integrate ({a['integrate_s']:,.1f} s: reading pending records "
                f"{a['read_s']:,.1f} s, leaf_data + hashing + Frontier in Python {a['hash_s']:,.1f} s, "
                f"writing leaves, nodes and frontier {a['write_s']:,.1f} s); {a['appended']:,} through "
                f"Store.append_audit ({a['append_s']:,.1f} s) and integrate() every "
                f"{INTEGRATE_EVERY:,} ({a['leaf_integrate_s']:,.1f} s); "
                f"{r['merkle_nodes']:,} merkle_nodes rows "
                f"({r['merkle_nodes'] / r['entries']:.2f} per entry); "
                f"sign_head {a['sign_head_ms']:,.1f} ms"
            )
            print(
                f"  AuditLog.verify(): ok, {r['entries']:,} entries, {r['heads_checked']} signed head(s) "
                f"checked, in {r['verify_s']:,.1f} s"
            )
        print(
            f"  {r['proofs_verified']:,} gsomia proofs made and verified with verify_inclusion against the "
            f"signed root {r['root'][:16]}…; a proof has {r['proof_length']} hashes from "
            f"{r['subtrees_per_proof']} stored subtrees (one query)"
        )
        print(f"  plan of AuditStore.nodes' query: {r['plan_gsomia']}")
        print(f"  plan of the OR of level/idx pairs (nodes_by_or, before): {r['plan_indexed']}")
        for name, said in r["equivalence"].items():
            peer = r["peers"][name]
            print(
                f"  {name}: {said}; {peer['entries']:,} entries appended in {peer['append_s']:,.1f} s; its "
                f"first get_root took {peer['first_root_ms']:,.0f} ms"
            )
            print(f"    {r['peer_checks'].get(name, '')}")
    print()
    print(
        "appends/s or entries/s (higher is better), or median / p95 in ms (lower is better); "
        "ratio = how many times faster gsomia is than the peer"
    )
    header = (
        f"{'backend':<10} {'entries':>10}  {'measurement':<67} {'gsomia':>19}  {'peer':<22} "
        f"{'peer figure':>19} {'ratio':>8}  target"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        for row in r["_rows"]:
            gsomia_value = row.gsomia
            ratio = row.ratio()
            verdict = "" if row.met is None else (": met" if row.met else ": NOT met")
            print(
                f"{row.backend:<10} {row.entries:>10,}  {row.measurement:<67} {fmt(gsomia_value):>19}  "
                f"{row.peer_name or '-':<22} {fmt(row.peer):>19} "
                f"{'-' if ratio is None else f'{ratio:,.1f}x':>8}  {row.target}{verdict}"
            )
    print()
    print(
        "peers: append_audit + integrate against pymerkle SqliteTree append_entries (leaf data ready-made, "
        "its own SQLite file); integrate alone against pymerkle InmemoryTree append_entries (nodes in "
        "memory); the proof from the store against SqliteTree prove_inclusion; assembly alone against "
        "InmemoryTree prove_inclusion"
    )
    for r in results:
        firsts = "; ".join(f"{k} {v:,.1f}" for k, v in r["first_ms"].items())
        print(f"first (warm-up, untimed) calls in ms, {r['backend']} at {r['entries']:,}: {firsts}")
    judged = [row for r in results for row in r["_rows"] if row.met is not None]
    missed = [f"{row.backend} {row.entries:,} {row.measurement}" for row in judged if not row.met]
    summary = "all met" if not missed else "NOT met: " + "; ".join(missed)
    print(f"targets: {len(judged) - len(missed)} of {len(judged)} met ({summary})")
    if not any(r.get("big") for r in results):
        print(f"the proof target is judged at {BIG_ENTRIES:,} entries: run with --big")
    print(f"total run time: {total_s / 60:,.1f} min")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--entries", type=int, default=DEFAULT_ENTRIES, help="entries for append, proofs, verify"
    )
    parser.add_argument("--big", action="store_true", help="also build the big tree and time proofs on it")
    parser.add_argument("--big-entries", type=int, default=BIG_ENTRIES, help="entries in the big tree")
    parser.add_argument(
        "--big-backend",
        choices=("sqlite", "postgresql", "both"),
        default=None,
        help="where the big tree is built (default: --backend)",
    )
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--no-peer", action="store_true", help="leave the peer out")
    parser.add_argument("--no-big-peer", action="store_true", help="leave the peer out of the big tree only")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.entries < MIN_ENTRIES or args.big_entries < MIN_ENTRIES:
        parser.error(f"--entries and --big-entries must be at least {MIN_ENTRIES:,}")

    began = time.perf_counter()
    loads = [load_average()]
    absent: str | None = None
    names = ["sqlite"] if args.backend != "postgresql" else []
    if args.backend in ("postgresql", "both"):
        absent = postgres_absent()
        if absent is None:
            names.append("postgresql")
        else:
            print(f"PostgreSQL is ABSENT at {POSTGRES_URL}: {absent}; continuing without it", file=sys.stderr)
    results: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="gsomia-bench-audit-") as tmp:
            for name in names:
                results.append(
                    measure_base(name, args.entries, Path(tmp), not args.no_peer and name == names[0])
                )
            big = [n for n in names if args.big_backend in (None, "both", n)]
            if args.big and big:
                peer = not (args.no_peer or args.no_big_peer)
                results += measure_big(big, args.big_entries, Path(tmp), peer)
    except Mismatch as exc:
        print(f"the audit log is not what was built: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"benchmark": "audit", "proofs_verify": False, "error": str(exc)}))
        return 1
    total_s = time.perf_counter() - began
    loads.append(load_average())

    if args.json:
        figures = {
            "benchmark": "audit",
            "entries": args.entries,
            "big_entries": args.big_entries if args.big else None,
            "append_batch": APPEND_BATCH,
            "integrate_every": INTEGRATE_EVERY,
            "append_target_per_s": APPEND_TARGETS,
            "proof_target_ms": PROOF_TARGET_MS,
            "proofs_verify": True,
            "postgresql_absent": absent,
            "peer": peer_version(),
            "results": [
                {k: v for k, v in r.items() if not k.startswith("_")}
                | {"rows": [x.as_dict() for x in r["_rows"]]}
                for r in results
            ],
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "sqlalchemy_version": version("sqlalchemy"),
            "psycopg_version": version("psycopg"),
            "seed": SEED,
            "total_s": round(total_s, 1),
            "load_average_1min": {"start": loads[0], "end": loads[1]},
            "rows": [x.as_row() for r in results for x in r["_rows"] if x.gsomia is not None],
        }
        print(json.dumps(figures, ensure_ascii=False, default=str))
        return 0
    print_report(results, absent, total_s, loads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
