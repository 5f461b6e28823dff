"""Where a page of 1,000 spends its time above the store: CPU time per page, checkout against checkout.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a loaded
machine (issue 18). ``build`` makes two SQLite nodes in ``--dir`` once, bulk-loaded the way
``bench_store.py`` and ``bench_taxii.py`` load theirs (the same row builder and mixes): ``store``,
the mixed JPN node of ``bench_store.py`` with its two readers (cleared: reads every item; partial:
極秘, need-to-know dprk-missile only, so that about half of each page scanned is withheld), and
``taxii``, the JPN node with KOR's items of ``bench_taxii.py``. ``compare`` then runs, for each
``--src`` checkout in turn (``PYTHONPATH=<src>``, a process of its own on the same stores), ``--rounds``
times interleaved, the measurements below, and prints each checkout's median CPU milliseconds
(``time.process_time``: what the process spends, whatever else the machine runs) and wall-clock
median beside them, with the 1-minute load average:

* ``Node.items.list_items`` by the cleared and by the partial reader, a page of 1,000 from the
  start, the middle and the end (the partial reader's end starts 5,000 items before the last);
* a TAXII page of 1,000 objects of the ``party:KOR`` collection through the real app
  (``create_app`` over ``httpx.ASGITransport``: token, scan, payloads opened, STIX, audit);
* ``Node.items.ingest_many`` of batches of 1,000 into a fresh node, against ``Store.insert_items``
  of the same rows built beforehand (CPU microseconds per item).

With ``--profile``, each checkout's cProfile of 10 pages of each listing (and of the TAXII page, its
endpoint run in the event loop's thread so that the profiler sees it) is printed instead, the top
entries by own time, with the garbage collector paused while profiling.

Run: ``python benchmarks/profile_list.py build --dir /tmp/lists --items 100000``, then
``python benchmarks/profile_list.py compare --dir /tmp/lists --src /path/a/src /path/b/src``
(or ``... compare --dir /tmp/lists --profile``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson

import bench_store
import bench_taxii
from _bulk import load_store, run_checkouts
from _machine import load_average
from gsomia.node import Node, load_config
from gsomia.store import ItemFilter
from gsomia.testing import FakeClock, make_node

PAGE = 1000
PAGES = 15  # timed pages per measurement and round
INGEST_BATCHES = 4
WALK = 10  # pages walked through once each


def build(directory: Path, items: int) -> None:
    """Both stores, bulk-loaded; the readers registered."""
    readers = [
        ("reader-cleared", "特定秘密", bench_store.TOPICS),
        ("reader-partial", "極秘", ["dprk-missile"]),
    ]
    clock_s = load_store(directory / "store", items, readers)
    taxii = bench_taxii.Gsomia(directory / "taxii", items)
    taxii_clock_s = (taxii.clock() - bench_taxii.CLOCK_START).total_seconds()
    taxii.close()
    (directory / "clocks.json").write_text(json.dumps({"store": clock_s, "taxii": taxii_clock_s}))


def _cpu_and_wall(call: Callable[[], object], times: int) -> tuple[list[float], list[float]]:
    call()  # warm-up
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(times):
        c, w = time.process_time(), time.perf_counter()
        call()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return cpu, wall


def _listings(node: Node) -> dict[str, Callable[[], object]]:
    """Each listing measured: (reader, position) -> a call fetching that page."""
    cleared = node.kernel.person("reader-cleared")
    partial = node.kernel.person("reader-partial")
    calls: dict[str, Callable[[], object]] = {}
    for reader, tail in ((cleared, PAGE), (partial, bench_store.PARTIAL_TAIL)):
        for position, (after, _) in bench_store.positions(node, ItemFilter(), tail).items():
            cursor = f"s{node.kernel.cipher.seal_cursor(reader.id, after)}" if after else None
            name = f"Node.list_items, {reader.id.removeprefix('reader-')}, {position}"
            calls[name] = lambda r=reader, c=cursor: node.items.list_items(r, ItemFilter(), c, PAGE)
    return calls


class _Taxii:
    """The TAXII node's app in-process, a token of its cleared reader."""

    def __init__(self, directory: Path, clock_s: float) -> None:
        from datetime import timedelta

        import httpx

        from gsomia.api import create_app

        self.node = Node(
            load_config(directory), clock=FakeClock(bench_taxii.CLOCK_START + timedelta(seconds=clock_s))
        )
        self.token = self.node.credentials.issue(None, "reader", days=30)[1]
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(self.node)), base_url="http://node"
        )
        listed = self.get("/taxii2/api/collections/")["collections"]
        collection = next(c["id"] for c in listed if c["title"] == "party:KOR")
        self.url = f"/taxii2/api/collections/{collection}/objects/"

    def get(self, url: str, **params: Any) -> Any:
        headers = {"Accept": bench_taxii.TAXII, "Authorization": f"Bearer {self.token}"}
        response = self.loop.run_until_complete(self.client.get(url, params=params, headers=headers))
        response.raise_for_status()
        return orjson.loads(response.content)

    def page(self, after: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = self.get(self.url, limit=PAGE, **({"next": after} if after else {}))
        if len(body["objects"]) < PAGE - 10:
            raise SystemExit(f"a TAXII page of {len(body['objects'])} objects")
        return body

    def walk(self) -> list[float]:
        """CPU ms of each of WALK pages after the first, each fetched once (nothing cached of them)."""
        cursor = self.page()["next"]
        cpu = []
        for _ in range(WALK):
            began = time.process_time()
            cursor = self.page(cursor)["next"]
            cpu.append((time.process_time() - began) * 1000)
        return cpu

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.node.close()


def _walk(node: Node, reader: str, fraction: float) -> list[float]:
    """CPU ms of each of WALK consecutive pages from ``fraction`` of the way in, each fetched once: what
    a reader paging through pays, with nothing of those items parsed or decided before."""
    person = node.kernel.person(reader)
    after = bench_store.offset_page(node, ItemFilter(), int(node.store.count_items() * fraction), 1)[0].seq
    cursor: str | None = f"s{node.kernel.cipher.seal_cursor(person.id, after)}"
    cpu = []
    for _ in range(WALK):
        began = time.process_time()
        cursor = node.items.list_items(person, ItemFilter(), cursor, PAGE).next_cursor
        cpu.append((time.process_time() - began) * 1000)
    return cpu


def _ingest(rounds: int) -> dict[str, float]:
    """CPU µs per item: ingest_many against insert_items of the same kind of rows built beforehand."""
    rng = random.Random(bench_store.SEED)
    service: list[float] = []
    store: list[float] = []
    with tempfile.TemporaryDirectory(prefix="gsomia-profile-ingest-") as tmp:
        clock = FakeClock(bench_store.CLOCK_START)
        node = make_node(Path(tmp) / "jpn", "JPN", clock=clock)
        try:
            n = 0
            node.items.ingest_many(None, [bench_store.make_ingest(rng, n + k) for k in range(200)])  # warm
            n += 200
            for _ in range(rounds):
                batch = [bench_store.make_ingest(rng, n + k) for k in range(PAGE)]
                n += PAGE
                c = time.process_time()
                node.items.ingest_many(None, batch)
                service.append((time.process_time() - c) * 1e6 / PAGE)
                clock.advance(seconds=1)
                rows = bench_store.prebuilt(node, [bench_store.make_ingest(rng, n + k) for k in range(PAGE)])
                n += PAGE
                c = time.process_time()
                node.store.insert_items(*rows)  # type: ignore[arg-type]
                store.append((time.process_time() - c) * 1e6 / PAGE)
                clock.advance(seconds=1)
        finally:
            node.close()
    return {"ingest_many": statistics.median(service), "insert_items": statistics.median(store)}


def _in_this_thread() -> None:
    """FastAPI runs sync endpoints and dependencies in worker threads, where cProfile (enabled in this
    one) does not see them: for the profile, run them in the event loop's thread instead."""
    import fastapi.dependencies.utils
    import fastapi.routing

    async def direct(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    fastapi.routing.run_in_threadpool = direct  # type: ignore[assignment]
    fastapi.dependencies.utils.run_in_threadpool = direct  # type: ignore[assignment]


def _profile(calls: dict[str, Callable[[], object]], top: int) -> None:
    _in_this_thread()
    for name, call in calls.items():
        call()
        gc.collect()
        gc.disable()  # its pauses would be charged to whatever function was running
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(10):
            call()
        profiler.disable()
        gc.enable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        print(f"=== {name}: 10 pages, by own time")
        text = out.getvalue()
        print(text[text.index("ncalls") - 3 :] if "ncalls" in text else text)


def measure(directory: Path, profile: bool, top: int) -> None:
    """One checkout's figures (this process's ``gsomia``), as one JSON line on stdout."""
    from datetime import timedelta

    clocks = json.loads((directory / "clocks.json").read_text())
    node = Node(
        load_config(directory / "store" / "jpn-sqlite"),
        clock=FakeClock(bench_store.CLOCK_START + timedelta(seconds=clocks["store"])),
    )
    taxii = _Taxii(directory / "taxii", clocks["taxii"])
    try:
        calls = _listings(node)
        calls["TAXII page of 1,000 objects"] = taxii.page
        if profile:
            _profile(calls, top)
            return
        figures: dict[str, Any] = {}
        # first, while nothing of these pages is in any cache
        for name, cpu in (
            ("walk: Node.list_items, cleared", _walk(node, "reader-cleared", 0.25)),
            ("walk: Node.list_items, partial", _walk(node, "reader-partial", 0.6)),
            ("walk: TAXII pages", taxii.walk()),
        ):
            figures[name] = {"cpu_ms": statistics.median(cpu), "wall_ms": float("nan")}
        for name, call in calls.items():
            cpu, wall = _cpu_and_wall(call, PAGES)
            figures[name] = {"cpu_ms": statistics.median(cpu), "wall_ms": statistics.median(wall)}
        figures.update(_ingest(INGEST_BATCHES))
    finally:
        taxii.close()
        node.close()
    import gsomia

    print(json.dumps({"gsomia": gsomia.__file__, "figures": figures}))


def compare(directory: Path, sources: list[str], rounds: int, profile: bool, top: int) -> None:
    loads = [load_average()]
    args = ["--dir", str(directory), "--top", str(top)]
    # a profile is printed once a checkout (one round)
    runs = run_checkouts(Path(__file__).resolve(), sources, 1 if profile else rounds, args, profile)
    if profile:
        return
    loads.append(load_average())
    names = list(runs[sources[0]][0]["figures"])
    print(f"CPU ms per page (ingest: CPU µs per item), median of {rounds} rounds x {PAGES} pages;")
    print(
        f"wall-clock median in brackets; 1-minute load average {loads[0]} at the start, {loads[1]} at the end"
    )
    header = f"{'measurement':<40}" + "".join(f"{Path(s).resolve().parent.name:>26}" for s in sources)
    print(header)
    for name in names:
        cells = []
        for src in sources:
            values = [run["figures"][name] for run in runs[src]]
            if isinstance(values[0], dict):
                cpu = statistics.median(v["cpu_ms"] for v in values)
                wall = statistics.median(v["wall_ms"] for v in values)
                cells.append(f"{cpu:>12.1f} ({wall:>8.1f})")
            else:
                cells.append(f"{statistics.median(values):>12.1f} µs/item")
        print(f"{name:<40}" + "".join(f"{c:>26}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="bulk-load the two stores into --dir (which must not exist)")
    b.add_argument("--dir", type=Path, required=True)
    b.add_argument("--items", type=int, default=100_000)
    c = sub.add_parser("compare", help="measure each --src checkout in turn, --rounds times")
    c.add_argument("--dir", type=Path, required=True)
    c.add_argument("--src", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "src")])
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--profile", action="store_true", help="print cProfile's top entries instead")
    c.add_argument("--top", type=int, default=25)
    m = sub.add_parser("measure", help="(internal) one checkout's figures")
    m.add_argument("--dir", type=Path, required=True)
    m.add_argument("--profile", action="store_true")
    m.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    if args.command == "build":
        build(args.dir, args.items)
    elif args.command == "compare":
        compare(args.dir, args.src, args.rounds, args.profile, args.top)
    else:
        measure(args.dir, args.profile, args.top)


if __name__ == "__main__":
    main()
