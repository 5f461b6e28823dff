"""TAXII 2.1: one page of 1,000 objects from gsomia's server, against the OASIS medallion server.

What is measured
----------------
One request, the same for both servers: ``GET .../collections/{id}/objects/?limit=1000``
(the first page of a collection, the ``Accept: application/taxii+json;version=2.1`` header,
the reader's credentials), the full response body read and decoded (by orjson for both: the
standard library's decoder took half of the client's time on gsomia's page). Each fetch is timed with
``time.perf_counter``; median and p95 (nearest rank) over repeated fetches (one untimed
warm-up, then at least 10 and up to 50 fetches, stopping after about 2 s; medallion at least 3,
as one of its pages of 3,000 takes tens of seconds, its warm-up the comparison of first pages).

* gsomia: a fresh JPN node (``gsomia.testing.make_node``, SQLite in a temporary directory,
  deleted at the end) holding N items KOR originated and JPN received under
  kor-jpn-gsomia-2016 (a fixed-seed mix of 군사II급비밀 and 군사III급비밀, one to three
  topics, a few hundred bytes of JSON each), served from the ``party:KOR`` collection (N
  objects). The store is BULK-LOADED as ``bench_store.py`` does: rows built by the service's
  own row builder (``Node._prepare``: label check, JPN alternative label, AES-GCM sealing),
  run by one worker process a core on a handle of its own on the node, and written with
  ``_bulk.bulk_write`` (the rows ``Store.insert_items`` writes, one ``executemany`` a batch) in
  batches of 10,000, items and topics only (no inventory or audit rows). The app is
  ``gsomia.api.create_app`` called in-process through
  ``httpx.ASGITransport`` with a bearer token of a JPN reader cleared for every item; so each
  page is the real path: token check, keyset scan, each payload opened (AES-GCM), each object
  decided by ``decide_read``, mapped to STIX, and 1,001 audit records written.
* medallion (the OASIS TAXII 2.1 reference server, ``medallion.backends.memory_backend``):
  called in-process through Flask's test client with HTTP Basic credentials, its memory
  backend loaded with the very objects gsomia served for the same collection, in the order
  served (a manifest entry per object, its date-added in that order), each object once,
  ``max_page_size`` 1,000, but WITHOUT gsomia's one ``extension-definition`` object:
  medallion's memory backend reads an object's ``version`` property as its version
  timestamp, and a STIX extension definition's ``version`` is a semantic version
  ("1.0.0"), so medallion answers 500 to any page holding it. Its page therefore holds the
  same objects as gsomia's but for that one, and then as many more as fill 1,000 (gsomia's
  page ends before an item whose object and definitions would not all fit: 999 objects).

Sizes: both at about 1,000 and 3,000 objects (340 and 1,000 items: an item is served as its
object and the marking definitions and identities it names, about 3 objects an item, and a page
of medallion's costs it time in the square of its collection's size), or at the sizes
``--shared`` names (the issue-sized run gives 340 only: medallion's pages at 3,000 objects, about
22 s each, do not fit its budget; "every shared size" is then the sizes both ran); gsomia also at N items
(``--items``, default 1,000,000). Before timing, both servers' first pages must hold the same object ids
in the same order (but for the extension definition); otherwise the script exits with
status 1. The garbage collector is left on.

Memory: after the timings, the largest node's directory is served by ``gsomia node serve`` in a
process of its own (no sender loop; a token of the same reader issued at the real clock), and
walked through 20 TAXII pages and 20 ``GET /items`` pages of 1,000; its resident set (VmRSS) at
start and after, and its peak (VmHWM), are read from ``/proc``. Target: peak under 300 MB at
1,000,000 items.

Targets, printed as met or NOT met (nothing about timing is asserted): gsomia's p50 under
50 ms at N = 1,000,000 (judged at whatever N ran, and said so); at every size both serve,
gsomia at least 50 times faster than medallion (medallion's p50 over gsomia's p50).

Run: ``python benchmarks/bench_taxii.py [--items N] [--shared SIZE ...] [--json]``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import logging
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import orjson

from _bulk import bulk_write, rows_in_workers
from _rows import row as protocol_row  # benchmarks/ is on sys.path when run as a script
from gsomia.api import create_app
from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config
from gsomia.store import NewItem
from gsomia.testing import FakeClock, make_node

SEED = 20161123
DEFAULT_ITEMS = 1_000_000
PAGE = 1000
# the sizes both servers serve, as collections of about 1,000 and 3,000 objects: an item is served
# as its object and the marking definitions and identities it names (about 3 objects an item)
SHARED_ITEMS = (340, 1000)
BULK_BATCH = 10_000
MIN_FETCHES = 10
SLOW_MIN_FETCHES = 3  # medallion: a page of 3,000 takes tens of seconds, so fewer fetches
MAX_FETCHES = 50
BUDGET_S = 2.0
P50_TARGET_MS = 50.0
RATIO_TARGET = 50.0
TAXII = "application/taxii+json;version=2.1"
AGREEMENT = "kor-jpn-gsomia-2016"
TOPICS = ("dprk-missile", "dprk-nuclear", "prc-navy")  # the topics the shipped data declares
START = datetime(2017, 1, 1, tzinfo=UTC)
CLOCK_START = datetime(2024, 3, 1, tzinfo=UTC)


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_ingest(rng: random.Random, n: int) -> NewIngest:
    """One KOR item as JPN received it under GSOMIA (boundary-form label, JSON payload)."""
    created = START + timedelta(seconds=rng.randrange(8 * 365 * 86_400))
    topics = sorted(set(rng.choices(TOPICS, k=rng.choice((1, 2, 3)))))
    label = {
        "originator": "KOR",
        "classification": rng.choice(("군사II급비밀", "군사III급비밀")),
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": topics,
        "created": created.isoformat(),
    }
    payload = {
        "report": f"KOR-{created:%Y%m%d}-{n:07d}",
        "summary": f"{topics[0]} activity observed",
        "track": [
            {"lat": round(rng.uniform(33, 43), 4), "lon": round(rng.uniform(124, 142), 4)}
            for _ in range(rng.randint(2, 5))
        ],
    }
    return NewIngest(
        label=label,
        payload=json.dumps(payload, separators=(",", ":")).encode(),
        item_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        received_from="KOR",
        agreement=AGREEMENT,
    )


def _bulk_rows(node: Node, batch: int, size: int) -> list[NewItem]:
    """Batch ``batch`` of the bulk load (its own fixed seed), by the service's row builder."""
    rng = random.Random(SEED * 1_000_003 + batch)
    now = CLOCK_START + timedelta(seconds=batch)
    first = batch * BULK_BATCH
    return [node.items._prepare(None, "operator", make_ingest(rng, first + k), now)[0] for k in range(size)]


def bulk_load(node: Node, directory: Path, clock: FakeClock, count: int) -> float:
    """Bulk-load ``count`` items (items and topics only), the rows built by the service's row builder
    in worker processes (one a core, each on a handle of its own on the node); items/s."""
    start = time.perf_counter()
    sizes = [min(BULK_BATCH, count - done) for done in range(0, count, BULK_BATCH)]
    done = 0
    for rows in rows_in_workers(directory, CLOCK_START, sizes, _bulk_rows):
        bulk_write(node.store, rows)
        done += len(rows)
        if done % 100_000 < BULK_BATCH and count >= 100_000:
            progress(f"  bulk-loaded {done:,} of {count:,}")
    clock.advance(seconds=len(sizes))
    return count / (time.perf_counter() - start)


def reader(node: Node) -> str:
    node.people.add_person(
        None,
        {
            "id": "reader",
            "name": "JPN analyst cleared for every item",
            "nationality": "JPN",
            "clearance": "特定秘密",
            "need_to_know": list(TOPICS),
            "roles": ["analyst"],
        },
    )
    return node.credentials.issue(None, "reader", days=30)[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def time_fetches(
    fetch: Callable[[], object], least: int = MIN_FETCHES, warm: bool = True
) -> dict[str, float]:
    if warm:
        fetch()  # warm-up
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < MAX_FETCHES and (len(times) < least or time.perf_counter() - began < BUDGET_S):
        start = time.perf_counter()
        fetch()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(percentile(times, 0.95), 2),
        "fetches": len(times),
    }


class Gsomia:
    """A JPN node with ``count`` KOR items, its TAXII server called in-process."""

    def __init__(self, directory: Path, count: int) -> None:
        self.clock = FakeClock(CLOCK_START)
        self.node = make_node(directory, "JPN", clock=self.clock)
        self.load_rate = bulk_load(self.node, directory, self.clock, count)
        self.token = reader(self.node)
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.node)), base_url="http://node"
        )
        collections = self.get("/taxii2/api/collections/")["collections"]
        self.collection = next(c["id"] for c in collections if c["title"] == "party:KOR")
        self.url = f"/taxii2/api/collections/{self.collection}/objects/"

    def _run(self, call: Awaitable[httpx.Response]) -> httpx.Response:
        response = self.loop.run_until_complete(call)
        response.raise_for_status()
        return response

    def get(self, url: str, **params: Any) -> Any:
        headers = {"Accept": TAXII, "Authorization": f"Bearer {self.token}"}
        return orjson.loads(self._run(self.client.get(url, params=params, headers=headers)).content)

    def page(self) -> dict[str, Any]:
        return dict(self.get(self.url, limit=PAGE))

    def everything(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            body = self.get(self.url, **params)
            objects += body["objects"]
            if not body.get("more"):
                return objects
            params["next"] = body["next"]

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.node.close()


RSS_TARGET_MB = 300.0  # the node serving 1,000,000 items
RSS_PAGES = 20  # TAXII pages and API pages of 1,000 walked through the served node


def _memory_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process in MB, from /proc/<pid>/status (VmRSS, VmHWM)."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def measure_rss(directory: Path) -> dict[str, Any]:
    """The node's memory serving its store: ``gsomia node serve`` on the loaded node's directory, in
    a process of its own (no sender loop), walked through ``RSS_PAGES`` TAXII pages and as many
    ``GET /items?limit=1000`` pages as a cleared reader; its resident set before and after, and its
    peak (VmHWM) over the whole run."""
    if not Path("/proc/self/status").exists():
        return {"skipped": "no /proc on this system"}
    node = Node(load_config(directory))  # the real clock: the served process checks the token by it
    try:
        token = node.credentials.issue(None, "reader", days=1)[1]
    finally:
        node.close()
    port = network.free_port()
    command = [sys.executable, "-m", "gsomia", "node", "serve", "--no-sender", "--log-format", "text",
               "--dir", str(directory), "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    base = f"http://127.0.0.1:{port}"
    try:
        network._wait_healthy(base, 300)
        started = _memory_mb(server.pid)[0]
        headers = {"Accept": TAXII, "Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            collections = client.get("/taxii2/api/collections/").raise_for_status().json()["collections"]
            collection = next(c["id"] for c in collections if c["title"] == "party:KOR")
            params: dict[str, Any] = {"limit": PAGE}
            for _ in range(RSS_PAGES):
                body = client.get(f"/taxii2/api/collections/{collection}/objects/", params=params)
                body = body.raise_for_status().json()
                if not body.get("more"):
                    break
                params["next"] = body["next"]
            params = {"limit": PAGE}
            for _ in range(RSS_PAGES):
                page = client.get("/items", params=params).raise_for_status().json()
                if not page.get("next_cursor"):
                    break
                params["cursor"] = page["next_cursor"]
        now, peak = _memory_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return {"started_mb": round(started, 1), "after_mb": round(now, 1), "peak_mb": round(peak, 1)}


def peer_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What medallion is loaded with: gsomia's objects in the order served, each (id, version) once
    (an object gsomia serves on several pages is one object of the collection), and without the STIX
    ``extension-definition`` objects, which medallion's memory backend cannot serve: it reads an
    object's ``version`` property as its version timestamp, and an extension definition's ``version``
    is its semantic version ("1.0.0"), so every page holding one fails (HTTP 500)."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for o in objects:
        key = (o["id"], o.get("modified") or o.get("created") or "")
        if o["type"] != "extension-definition" and key not in seen:
            seen.add(key)
            kept.append(o)
    return kept


class Medallion:
    """medallion's Flask app over its memory backend, one collection per size, the same objects."""

    def __init__(self, directory: Path, collections: dict[int, list[dict[str, Any]]]) -> None:
        logging.getLogger("medallion").setLevel(logging.ERROR)
        collections = {size: peer_objects(objects) for size, objects in collections.items()}
        # date-added in the order gsomia served the objects, so that the same request is the same page
        stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
        added = {
            size: [(START + timedelta(microseconds=k)).strftime(stamp) for k in range(len(o))]
            for size, o in collections.items()
        }
        data = {
            "/discovery": {
                "title": "medallion",
                "default": "http://localhost/api1/",
                "api_roots": ["http://localhost/api1/"],
            },
            "api1": {
                "information": {
                    "title": "bench",
                    "versions": [TAXII],
                    "max_content_length": 100_000_000,
                },
                "status": [],
                "collections": [
                    {
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-{size}")),
                        "title": f"{size} objects",
                        "can_read": True,
                        "can_write": False,
                        "media_types": ["application/stix+json;version=2.1"],
                        "objects": objects,
                        "manifest": [
                            {
                                "id": o["id"],
                                "date_added": date_added,
                                "version": o.get("modified") or o.get("created"),
                                "media_type": "application/stix+json;version=2.1",
                            }
                            for o, date_added in zip(objects, added[size], strict=True)
                        ],
                    }
                    for size, objects in collections.items()
                ],
            },
        }
        path = directory / "medallion-data.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        config = directory / "medallion.json"
        config.write_text(
            json.dumps(
                {
                    "backend": {
                        "module": "medallion.backends.memory_backend",
                        "module_class": "MemoryBackend",
                        "filename": str(path),
                    },
                    "users": {"bench": "bench"},
                    "taxii": {"max_page_size": PAGE},
                }
            ),
            encoding="utf-8",
        )
        from medallion import load_app  # imported here: it builds its Flask app at import

        self.app = load_app(str(config))
        self.client = self.app.test_client()
        auth = base64.b64encode(b"bench:bench").decode()
        self.headers = {"Accept": TAXII, "Authorization": f"Basic {auth}"}
        self.urls = {
            size: f"/api1/collections/{uuid.uuid5(uuid.NAMESPACE_URL, f'bench-{size}')}/objects/"
            for size in collections
        }

    def page(self, size: int) -> dict[str, Any]:
        response = self.client.get(self.urls[size], query_string={"limit": PAGE}, headers=self.headers)
        if response.status_code != 200:
            raise RuntimeError(
                f"medallion answered {response.status_code}: {response.get_data(as_text=True)}"
            )
        return dict(orjson.loads(response.get_data()))


def measure(items: int, shared: tuple[int, ...] = SHARED_ITEMS) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-taxii-") as tmp:
        root = Path(tmp)
        served: dict[int, list[dict[str, Any]]] = {}
        gsomia_pages: dict[int, Callable[[], dict[str, Any]]] = {}
        servers: list[Gsomia] = []
        for size in sorted({*shared, items}):
            progress(f"gsomia: a JPN node with {size:,} KOR items (bulk-loaded)")
            server = Gsomia(root / f"jpn-{size}", size)
            servers.append(server)
            progress(f"  loaded at {server.load_rate:,.0f} items/s")
            if size in shared:
                served[size] = server.everything()
                # an item is mapped to more than one STIX object (its object, and the markings and
                # identities it names, once each): every item at least once, the whole collection
                # as gsomia serves it goes to medallion
                if len(served[size]) < size:
                    sys.exit(f"gsomia served {len(served[size])} objects for {size} items")
                progress(f"  {len(served[size]):,} STIX objects for {size:,} items")
            gsomia_pages[size] = server.page
        progress("medallion: memory backend loaded with the same objects")
        med = Medallion(root, served)
        for size in shared:
            # the same page, but for the extension definitions medallion is not given (peer_objects):
            # medallion's page holds gsomia's other objects in the same order, then a few more (gsomia
            # ends a page before an item whose object and definitions would not all fit in the limit)
            ours = [o["id"] for o in gsomia_pages[size]()["objects"]]
            kept = [i for i in ours if not i.startswith("extension-definition--")]
            theirs = [o["id"] for o in med.page(size)["objects"]]
            full = min(PAGE, len(peer_objects(served[size])))
            if not PAGE - 10 <= len(ours) <= PAGE or len(theirs) != full or theirs[: len(kept)] != kept:
                sys.exit(f"the two servers' first pages at {size} differ: not the same request")
        for size in sorted({*shared, items}):
            objects = len(served[size]) if size in served else None
            progress(f"timing pages of {PAGE:,} at {size:,} items ({objects or 'not counted'} objects)")
            row: dict[str, Any] = {
                "items": size,
                "objects": objects,
                "gsomia": time_fetches(gsomia_pages[size]),
            }
            if size in shared:
                # warmed by the comparison of first pages above (a page of 3,000 takes tens of seconds)
                row["medallion"] = time_fetches(lambda size=size: med.page(size), SLOW_MIN_FETCHES, False)
                row["ratio"] = round(row["medallion"]["p50_ms"] / row["gsomia"]["p50_ms"], 2)
            rows.append(row)
        load_rate = servers[-1].load_rate
        for server in servers:
            server.close()
        progress(f"node memory: gsomia node serve over the {items:,}-item store")
        rss = measure_rss(root / f"jpn-{items}")
    largest = next(r for r in rows if r["items"] == items)
    return {
        "items": items,
        "page": PAGE,
        "bulk_load_per_s": round(load_rate, 1),
        "sizes": rows,
        "rss": rss,
        "rows": _protocol_rows(rows, items, rss),
        "targets": {
            "gsomia_p50_under_50ms_at_largest": largest["gsomia"]["p50_ms"] < P50_TARGET_MS,
            "at_least_50x_medallion_at_every_shared_size": all(
                r["ratio"] >= RATIO_TARGET for r in rows if "ratio" in r
            ),
        },
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cores": os.cpu_count(),
        "medallion": version("medallion"),
        "load_average": f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown",
    }


def _protocol_rows(sizes: list[dict[str, Any]], items: int, rss: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures as rows of ``python -m benchmarks``' table: one per size, p50 of a page; the RSS."""
    out = []
    if "peak_mb" in rss:
        out.append(
            protocol_row(
                f"node RSS serving {items:,} items (peak, gsomia node serve, {RSS_PAGES} TAXII and "
                f"{RSS_PAGES} API pages of {PAGE:,})",
                rss["peak_mb"],
                "MB",
                target=f"< {RSS_TARGET_MB:.0f} MB at {DEFAULT_ITEMS:,}",
                met=rss["peak_mb"] < RSS_TARGET_MB if items >= DEFAULT_ITEMS else None,
            )
        )
    for size in sizes:
        objects, count = size["objects"], size["items"]
        ours = size["gsomia"]["p50_ms"]
        if "medallion" in size:
            out.append(
                protocol_row(
                    f"TAXII page of {PAGE:,} at {objects:,} objects, {count:,} items "
                    "(ratio: medallion / gsomia)",
                    ours,
                    "ms (p50)",
                    peer=f"OASIS medallion {version('medallion')}, memory backend",
                    peer_value=size["medallion"]["p50_ms"],
                    ratio=size["ratio"],
                    target=f">= {RATIO_TARGET:.0f}x medallion",
                    met=size["ratio"] >= RATIO_TARGET,
                )
            )
        if count == items:
            out.append(
                protocol_row(
                    f"TAXII page of {PAGE:,} at {count:,} items (each served as one object or more)",
                    ours,
                    "ms (p50)",
                    target=f"p50 < {P50_TARGET_MS:.0f} ms at {DEFAULT_ITEMS:,}",
                    met=ours < P50_TARGET_MS if count >= DEFAULT_ITEMS else None,
                )
            )
    return out


def print_report(result: dict[str, Any]) -> None:
    print("TAXII 2.1: GET objects, limit=1000, first page; gsomia against OASIS medallion (memory backend)")
    print(
        f"Python {result['python']}, {result['cores']} cores, medallion {result['medallion']}, "
        f"1-min load average {result['load_average']} at the end; in-process calls (ASGI / Flask test client)"
    )
    print(
        f"gsomia's store bulk-loaded (items and topics only, rows from the service's row builder) at "
        f"{result['bulk_load_per_s']:,.0f} items/s for the largest size, {result['items']:,} items"
    )
    print()
    print(f"{'items':>10}  {'gsomia p50':>11}  {'p95':>8}  {'medallion p50':>14}  {'p95':>8}  {'ratio':>7}")
    for row in result["sizes"]:
        ours = row["gsomia"]
        line = f"{row['items']:>10,}  {ours['p50_ms']:>8.2f} ms  {ours['p95_ms']:>5.2f} ms"
        if "medallion" in row:
            theirs = row["medallion"]
            line += f"  {theirs['p50_ms']:>11.2f} ms  {theirs['p95_ms']:>5.2f} ms  {row['ratio']:>6.2f}x"
        else:
            line += f"  {'(not served)':>14}"
        print(line)
    print()
    rss = result["rss"]
    if "peak_mb" in rss:
        print(
            f"node memory, gsomia node serve over {result['items']:,} items: {rss['started_mb']:,.0f} MB "
            f"at start, {rss['after_mb']:,.0f} MB after {RSS_PAGES} TAXII and {RSS_PAGES} API pages, peak "
            f"{rss['peak_mb']:,.0f} MB (target < {RSS_TARGET_MB:.0f} MB at 1,000,000)"
        )
    targets = result["targets"]
    at = "1,000,000" if result["items"] == DEFAULT_ITEMS else f"{result['items']:,} (not 1,000,000)"
    met = "met" if targets["gsomia_p50_under_50ms_at_largest"] else "NOT met"
    print(f"target: gsomia p50 under {P50_TARGET_MS:.0f} ms at {at} items: {met}")
    met = "met" if targets["at_least_50x_medallion_at_every_shared_size"] else "NOT met"
    shared = ", ".join(f"{r['objects']:,}" for r in result["sizes"] if "ratio" in r)
    print(f"target: at least {RATIO_TARGET:.0f}x medallion at every shared size ({shared} objects): {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="gsomia's largest collection")
    parser.add_argument(
        "--shared",
        type=int,
        nargs="+",
        default=list(SHARED_ITEMS),
        help="the collection sizes (in items) both servers serve (medallion's page costs it time in "
        "the square of its collection: about 2.5 s at 340 items, 22 s at 1,000)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    shared = tuple(sorted(set(args.shared)))
    if min(shared) < 1:
        parser.error("--shared sizes must be positive")
    if args.items < max(shared):
        parser.error(f"--items must be at least {max(shared):,} (the largest --shared size)")
    gc.collect()
    result = measure(args.items, shared)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
