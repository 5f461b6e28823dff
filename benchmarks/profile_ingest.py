"""Where ``Node.ingest_many`` spends its time at a large SQLite store: checkout against checkout.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a shared
machine (issue 18). ``build`` bulk-loads ``bench_store.py``'s JPN node into ``--dir`` once (the
same row builder, mix and ``bulk_write``). ``compare`` then runs, for each ``--src`` checkout in
turn (``PYTHONPATH=<src>``, a process of its own), ``--rounds`` times interleaved, on a fresh copy
of that store each time (a checkout's migrations, if any, run on its copy): ``--batches`` batches
of 1,000 through ``Node.items.ingest_many``, then as many through ``Store.insert_items`` of rows
built beforehand by the service's row builder, as ``bench_store.py`` times them. It prints each
checkout's median CPU microseconds per item (``time.process_time``: what the process spends,
whatever else the machine runs) and wall-clock beside them, with the 1-minute load average.
``--profile`` prints cProfile's top entries of the ``ingest_many`` batches instead (the garbage
collector paused while profiling).

Run: ``python benchmarks/profile_ingest.py build --dir /tmp/ingest --items 200000``, then
``python benchmarks/profile_ingest.py compare --dir /tmp/ingest --src /path/a/src /path/b/src``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_store
from _bulk import load_store, run_checkouts
from _machine import load_average
from gsomia.node import Node, load_config
from gsomia.testing import FakeClock

BATCH = bench_store.INGEST_BATCH


def build(directory: Path, items: int) -> None:
    """The store, bulk-loaded and checkpointed; its clock kept beside it."""
    clock_s = load_store(directory / "store", items)
    (directory / "clock.json").write_text(json.dumps({"store": clock_s, "items": items}))


def measure(directory: Path, batches: int, profile: bool, top: int) -> None:
    """One checkout's figures (this process's ``gsomia``) on a copy of the store, as one JSON line."""
    meta = json.loads((directory / "clock.json").read_text())
    with tempfile.TemporaryDirectory(prefix="gsomia-ingest-", dir=directory) as tmp:
        home = Path(tmp) / "jpn-sqlite"
        shutil.copytree(directory / "store" / "jpn-sqlite", home)
        clock = FakeClock(bench_store.CLOCK_START + timedelta(seconds=meta["store"]))
        node = Node(load_config(home), clock=clock)
        rng = random.Random(bench_store.SEED)
        n = meta["items"]
        service_cpu: list[float] = []
        service_wall: list[float] = []
        store_cpu: list[float] = []
        store_wall: list[float] = []
        profiler = cProfile.Profile() if profile else None
        try:
            node.items.ingest_many(None, [bench_store.make_ingest(rng, n + k) for k in range(BATCH)])  # warm
            n += BATCH
            clock.advance(seconds=1)
            for _ in range(batches):
                batch = [bench_store.make_ingest(rng, n + k) for k in range(BATCH)]
                n += BATCH
                if profiler is not None:
                    gc.collect()
                    gc.disable()
                    profiler.enable()
                c, w = time.process_time(), time.perf_counter()
                node.items.ingest_many(None, batch)
                service_cpu.append((time.process_time() - c) * 1e6 / BATCH)
                service_wall.append((time.perf_counter() - w) * 1e6 / BATCH)
                if profiler is not None:
                    profiler.disable()
                    gc.enable()
                clock.advance(seconds=1)
            for _ in range(batches):
                rows = bench_store.prebuilt(node, [bench_store.make_ingest(rng, n + k) for k in range(BATCH)])
                n += BATCH
                c, w = time.process_time(), time.perf_counter()
                node.store.insert_items(*rows)  # type: ignore[arg-type]
                store_cpu.append((time.process_time() - c) * 1e6 / BATCH)
                store_wall.append((time.perf_counter() - w) * 1e6 / BATCH)
                clock.advance(seconds=1)
        finally:
            node.close()
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
        print(f"=== Node.items.ingest_many, {batches} batches of {BATCH:,} at {meta['items']:,} items")
        print(out.getvalue())
        return
    import gsomia

    figures = {
        "ingest_many": [statistics.median(service_cpu), statistics.median(service_wall)],
        "insert_items": [statistics.median(store_cpu), statistics.median(store_wall)],
    }
    print(json.dumps({"gsomia": gsomia.__file__, "figures": figures}))


def compare(directory: Path, sources: list[str], rounds: int, batches: int, profile: bool, top: int) -> None:
    loads = [load_average()]
    args = ["--dir", str(directory), "--batches", str(batches), "--top", str(top)]
    runs = run_checkouts(Path(__file__).resolve(), sources, rounds, args, profile)
    if profile:
        return
    loads.append(load_average())
    items = json.loads((directory / "clock.json").read_text())["items"]
    print(
        f"CPU µs per item (wall-clock in brackets), median of {rounds} rounds x {batches} batches of "
        f"{BATCH:,} at {items:,} items; 1-minute load average {loads[0]} at the start, {loads[1]} at the end"
    )
    print(f"{'measurement':<20}" + "".join(f"{Path(s).resolve().parent.name:>24}" for s in sources))
    for name in runs[sources[0]][0]["figures"]:
        cells = []
        for src in sources:
            cpu = statistics.median(run["figures"][name][0] for run in runs[src])
            wall = statistics.median(run["figures"][name][1] for run in runs[src])
            cells.append(f"{cpu:>10.1f} ({wall:>8.1f})")
        print(f"{name:<20}" + "".join(f"{c:>24}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="bulk-load the store into --dir (which must not exist)")
    b.add_argument("--dir", type=Path, required=True)
    b.add_argument("--items", type=int, default=200_000)
    for name in ("compare", "measure"):
        c = sub.add_parser(name)
        c.add_argument("--dir", type=Path, required=True)
        c.add_argument("--batches", type=int, default=5)
        c.add_argument("--profile", action="store_true", help="print cProfile's top entries instead")
        c.add_argument("--top", type=int, default=30)
        if name == "compare":
            c.add_argument("--src", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "src")])
            c.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "build":
        build(args.dir, args.items)
    elif args.command == "compare":
        compare(args.dir, args.src, args.rounds, args.batches, args.profile, args.top)
    else:
        measure(args.dir, args.batches, args.profile, args.top)


if __name__ == "__main__":
    main()
