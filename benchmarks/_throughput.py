"""Part (b) of bench_exchange: items per second from KOR to JPN, persisted and receipted.

The JPN node runs as its own process (``gsomia node serve --no-sender``) so the two sides
use the machine's two cores like two real nodes; the KOR node works in this process.
Three figures per store: the release rate (decide, sign, seal, write the outbox), the
delivery rate (send in batches, the receiver opens, decides, stores and signs a receipt,
the sender verifies and keeps it), and end to end (both, one after the other).

The release is an officer's selection (``Exchange.release_many``, up to 1,000 items a request,
one transaction each); its peer in the same run is the same items' worth released one by one
(``Exchange.release``, one transaction per item: what the exchange did before), on a second set
of ``min(count, 1000)`` items that is released, and then delivered, before the timed run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy

from _postgres import POSTGRES_URL, schema_url  # benchmarks/ is on sys.path as a script
from gsomia.demo import network
from gsomia.exchange import MAX_RELEASE_ITEMS, HttpTransport, MemoryTransport
from gsomia.node import NewIngest, Node, load_config

TARGET_PER_S = {"sqlite": 3000.0, "postgresql": 2000.0}  # issue 18, per backend


def _schemas(parties: list[str]) -> dict[str, str] | None:
    try:
        admin = sqlalchemy.create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            urls = {}
            for party in parties:
                schema = f"bench_{party.lower()}_{uuid.uuid4().hex[:8]}"
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
                urls[party] = schema_url(schema)
        admin.dispose()
    except Exception:
        return None
    return urls


def _drop(urls: dict[str, str]) -> None:
    admin = sqlalchemy.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        for url in urls.values():
            conn.exec_driver_sql(f'DROP SCHEMA "{url.rsplit("%3D", 1)[1]}" CASCADE')
    admin.dispose()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used, from ``/proc`` (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def exchange_cpu(count: int) -> dict[str, float]:
    """CPU µs an item costs, KOR and JPN in this one process over ``MemoryTransport`` (SQLite):
    the release of a selection, and the delivery with both sides' work (the wire's JSON round trip
    included, HTTP not). CPU time, so a busy machine does not stretch it as it does (b)'s wall time."""
    workdir = Path(tempfile.mkdtemp(prefix="gsomia-bench-exchange-cpu-"))
    try:
        members = network.build(workdir)
        kor, jpn = Node(load_config(members[0].directory)), Node(load_config(members[1].directory))
        officer = kor.people.person("officer")
        ids = [f"c{n:06d}" for n in range(count)]
        pad = "x" * 600
        for start in range(0, count, 1000):
            kor.items.ingest_many(
                officer,
                [
                    NewIngest(_LABEL, f'{{"pad": "{pad}"}}'.encode(), item_id=i)
                    for i in ids[start : start + 1000]
                ],
            )
        began = time.process_time()
        for start in range(0, count, MAX_RELEASE_ITEMS):
            kor.exchange.release_many(officer, ids[start : start + MAX_RELEASE_ITEMS], "JPN")
        released = time.process_time()
        transport = MemoryTransport({"JPN": jpn})
        while kor.exchange.fed.outbox(state="pending", limit=1):
            kor.exchange.deliver_due(transport, limit=1000)
        delivered = time.process_time()
        if jpn.store.count_items() != count:
            raise RuntimeError("not every item arrived")
        kor.close()
        jpn.close()
        return {
            "items": count,
            "release_cpu_us": (released - began) / count * 1e6,
            "deliver_cpu_us": (delivered - released) / count * 1e6,
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


_LABEL = {
    "originator": "KOR",
    "classification": "군사III급비밀",
    "releasable_to": ["JPN"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-01-01T00:00:00+09:00",
}


def bench_throughput(backend: str, count: int) -> dict[str, Any] | None:
    """Release and deliver ``count`` items KOR -> JPN on ``backend``; None if it is unavailable."""
    urls: dict[str, str] | None = None
    if backend == "postgresql":
        urls = _schemas(["KOR", "JPN", "USA"])
        if urls is None:
            return None
    workdir = Path(tempfile.mkdtemp(prefix="gsomia-bench-exchange-"))
    receiver: subprocess.Popen[bytes] | None = None
    try:
        members = network.build(workdir, database_urls=urls)
        kor_m, jpn_m = members[0], members[1]
        kor = Node(load_config(kor_m.directory))
        officer = kor.people.person("officer")
        label = {
            "originator": "KOR",
            "classification": "군사III급비밀",
            "releasable_to": ["JPN"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": "2024-01-01T00:00:00+09:00",
        }
        pad = "x" * 600
        ids = [f"b{n:06d}" for n in range(count)]
        singles = [f"s{n:06d}" for n in range(min(count, 1000))]
        everything = ids + singles
        for start in range(0, len(everything), 1000):
            batch = [
                NewIngest(label, f'{{"n": {n}, "pad": "{pad}"}}'.encode(), item_id=i)
                for n, i in enumerate(everything[start : start + 1000], start)
            ]
            kor.items.ingest_many(officer, batch)
        receiver = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [
                sys.executable,
                "-m",
                "gsomia",
                "node",
                "serve",
                "--dir",
                str(jpn_m.directory),
                "--port",
                str(jpn_m.port),
                "--no-sender",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(receiver.pid, range(os.cpu_count() or 1))
        network._wait_healthy(jpn_m.endpoint, 180)  # a loaded machine starts a node slowly

        # the peer: item by item, one transaction each (then delivered, so the timed run starts clean)
        started = time.perf_counter()
        for item_id in singles:
            kor.exchange.release(officer, item_id, "JPN")
        single_s = time.perf_counter() - started
        with HttpTransport(timeout=30) as transport:
            while kor.exchange.fed.outbox(state="pending", limit=1):
                kor.exchange.deliver_due(transport, limit=1000)

        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, count, MAX_RELEASE_ITEMS):
            selection = kor.exchange.release_many(officer, ids[start : start + MAX_RELEASE_ITEMS], "JPN")
            if selection.refused:
                raise RuntimeError(f"refused: {selection.refused[0]}")
        released, cpu_released = time.perf_counter(), time.process_time()
        jpn_before = _cpu_s(receiver.pid)
        with HttpTransport(timeout=30) as transport:
            while kor.exchange.fed.outbox(state="pending", limit=1):
                kor.exchange.deliver_due(transport, limit=1000)
        delivered, cpu_delivered = time.perf_counter(), time.process_time()
        jpn_cpu = _cpu_s(receiver.pid) - jpn_before

        total = count + len(singles)
        outbox = kor.exchange.fed.outbox(limit=total + 1)
        ok = len(outbox) == total and all(e.state == "delivered" and e.receipt for e in outbox)
        jpn = Node(load_config(jpn_m.directory))
        held = jpn.store.count_items()
        jpn.close()
        kor.close()
        release_s, deliver_s = released - started, delivered - released
        return {
            "backend": backend,
            "items": count,
            "all_delivered_once": ok and held == total,
            "release_per_s": count / release_s,
            "release_one_by_one_per_s": len(singles) / single_s,
            "one_by_one_items": len(singles),
            "deliver_per_s": count / deliver_s,
            "end_to_end_per_s": count / (release_s + deliver_s),
            # CPU time per item (a loaded machine stretches wall time, not these): KOR's process over
            # the release and over the delivery (its threads included), JPN's over the delivery
            "release_cpu_us": (cpu_released - cpu_started) / count * 1e6,
            "deliver_kor_cpu_us": (cpu_delivered - cpu_released) / count * 1e6,
            "deliver_jpn_cpu_us": jpn_cpu / count * 1e6,
            "target_per_s": TARGET_PER_S[backend],
        }
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
        if urls is not None:
            _drop(urls)
