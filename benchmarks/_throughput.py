"""Part (b) of bench_exchange: items per second from KOR to JPN, persisted and receipted.

End to end (the target's figure) is measured as deployed nodes run it: KOR and JPN each serving
in its own process (``gsomia node serve``; JPN with ``--no-sender``), the officer's selections of
up to 1,000 items POSTed to KOR's API (``/releases``) one after another, and KOR's own delivery
worker (woken by each selection's commit) carrying them in batches over HTTP while the next one
is being released; the clock stops when KOR's store holds every entry delivered on JPN's receipt.

Beside it, in the same run: the release rate of a selection (``Exchange.release_many``, in this
process) against the same items' worth released one by one (``Exchange.release``, one
transaction per item: what the exchange did before, on a second set of ``min(count, 1000)`` items
released and delivered before the timed run); the delivery rate (``deliver_due`` in this process
over HTTP to the serving JPN); and the two one after the other (``sequential``: the end-to-end
figure before the nodes served, which a serving node's overlap should beat on two free cores).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
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


_WARM = 200  # items released and delivered through the served nodes before the timed run
_POLL_S = 0.02  # how often the served run looks whether every entry is delivered (a read of KOR's store)


def _serve(member: network.NetNode, receive_only: bool) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` of ``member`` in its own process, as a deployed node runs: its API and
    its background loops (with ``--no-sender``, the audit log's writer only), started and healthy."""
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        network.serve_command(member, *(["--no-sender"] if receive_only else [])),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(process.pid, range(os.cpu_count() or 1))
    network._wait_healthy(member.endpoint, 180)  # a loaded machine starts a node slowly
    return process


def _released_through_the_api(client: httpx.Client, endpoint: str, token: str, ids: list[str]) -> None:
    """An officer's selections of up to 1,000 items, one ``POST /releases`` each, one after another."""
    for start in range(0, len(ids), MAX_RELEASE_ITEMS):
        answer = client.post(
            f"{endpoint}/releases",
            json={"items": ids[start : start + MAX_RELEASE_ITEMS], "recipient": "JPN"},
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        if answer.json()["refused"]:
            raise RuntimeError(f"refused: {answer.json()['refused'][0]}")


def _served(
    kor_m: network.NetNode,
    sender: subprocess.Popen[bytes],
    receiver: subprocess.Popen[bytes],
    warm: list[str],
    ids: list[str],
) -> dict[str, float]:
    """End to end as deployed nodes run it: KOR serving (``node serve``: its API and its own
    delivery worker, woken by the outbox's commits), JPN serving in a third process; the officer's
    selections go to KOR's API over HTTP one after another, and the clock stops when KOR's store
    holds every entry delivered on JPN's receipt. The release of a selection and the delivery of
    the ones before it overlap, as they do in a running node."""
    token = json.loads((kor_m.directory / "tokens.json").read_text())["officer"]
    reader = Node(load_config(kor_m.directory))  # only reads KOR's outbox (no loops of its own)
    try:
        # the items' entries only: a serving KOR also queues its signed audit head for each partner
        # (USA's never leave here: USA is not running)
        waiting = sqlalchemy.text("SELECT 1 FROM outbox WHERE state = 'pending' AND kind = 'item' LIMIT 1")

        def pending() -> bool:
            with reader.store.engine.connect() as conn:
                return conn.execute(waiting).first() is not None

        with httpx.Client(timeout=120) as client:
            _released_through_the_api(client, kor_m.endpoint, token, warm)
            while pending():
                time.sleep(_POLL_S)
            cpu_kor, cpu_jpn = _cpu_s(sender.pid), _cpu_s(receiver.pid)
            started = time.perf_counter()
            _released_through_the_api(client, kor_m.endpoint, token, ids)
            released = time.perf_counter()
            while pending():
                time.sleep(_POLL_S)
            ended = time.perf_counter()
        cpu_kor, cpu_jpn = _cpu_s(sender.pid) - cpu_kor, _cpu_s(receiver.pid) - cpu_jpn
    finally:
        reader.close()
    return {
        "end_to_end_per_s": len(ids) / (ended - started),
        "served_release_s": released - started,
        "served_s": ended - started,
        # each serving process's CPU over the timed run (its API, worker and background loops)
        "served_kor_cpu_us": cpu_kor / len(ids) * 1e6,
        "served_jpn_cpu_us": cpu_jpn / len(ids) * 1e6,
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
    sender: subprocess.Popen[bytes] | None = None
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
        served = [f"v{n:06d}" for n in range(count)]  # the served run's selections
        warm = [f"w{n:06d}" for n in range(_WARM)]  # the served nodes' first requests, untimed
        everything = ids + singles + served + warm
        for start in range(0, len(everything), 1000):
            batch = [
                NewIngest(label, f'{{"n": {n}, "pad": "{pad}"}}'.encode(), item_id=i)
                for n, i in enumerate(everything[start : start + 1000], start)
            ]
            kor.items.ingest_many(officer, batch)
        receiver = _serve(jpn_m, True)
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

        kor.close()
        sender = _serve(kor_m, False)  # KOR now serves: its API and its own delivery worker
        served_run = _served(kor_m, sender, receiver, warm, served)
        sender.terminate()
        sender.wait(timeout=30)
        sender = None

        total = 2 * count + len(singles) + len(warm)
        kor = Node(load_config(kor_m.directory))
        outbox = [e for e in kor.exchange.fed.outbox(limit=total + 100) if e.kind == "item"]
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
            # the release, then the delivery, one after the other in this process (the figure before
            # the nodes served: a lower bound on what a serving node does, whose two overlap)
            "sequential_per_s": count / (release_s + deliver_s),
            **served_run,
            # CPU time per item (a loaded machine stretches wall time, not these): KOR's process over
            # the release and over the delivery (its threads included), JPN's over the delivery
            "release_cpu_us": (cpu_released - cpu_started) / count * 1e6,
            "deliver_kor_cpu_us": (cpu_delivered - cpu_released) / count * 1e6,
            "deliver_jpn_cpu_us": jpn_cpu / count * 1e6,
            "target_per_s": TARGET_PER_S[backend],
        }
    finally:
        for child in (sender, receiver):
            if child is not None:
                child.terminate()
                child.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
        if urls is not None:
            _drop(urls)
