"""The duties' cost on the read path and on a reclassification, at one JPN node on SQLite.

What is measured
----------------
A fresh JPN node (``gsomia.testing.make_node``, SQLite in a temporary directory, deleted at
the end) holds ``--items`` KOR items received under kor-jpn-gsomia-2016 (default 2,000),
ingested untimed through ``ItemService.ingest_many``, 1,000 a transaction.

1. Reads. ``Node.read`` of 2,000 items spread evenly over the store (every item at the
   default size), in order, timed one by one with
   ``time.perf_counter`` (median and p95, nearest rank), for two readers in the same run:
   the peer, an ordinary cleared reader (no visit on record: one look-up of the visits
   table finds none), and a visitor with a visit in force up to the item's level (the visit
   rows are read and checked, ``gsomia.core.visits``). Both are allowed every item.
2. A page. ``Node.list_items`` of 1,000 items for the same two readers (one visits look-up
   per page, not per item), median over 10 fetches after a warm-up.
3. Reclassification fan-out. ``Duties.reclassify`` of a JPN-originated item with 0, 10 and
   100 copies at the node (each copy re-labelled and re-sealed in the same transaction),
   median over 5 runs each, against ``Duties.derive`` of one copy (the peer: one
   transaction that writes one item) in the same run.

Run: ``.venv/bin/python benchmarks/bench_duties.py [--items N] [--json]``. Figures are printed,
never asserted; ``--json`` prints one JSON object with the ``rows`` that ``python -m benchmarks``
tabulates (the issue sets no target for these: each row is judged against its peer only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _machine import cpu_model, load_average, pin_one_core  # benchmarks/ is on sys.path as a script
from _rows import row
from gsomia.node import NewIngest
from gsomia.testing import FakeClock, make_node

GSOMIA = "kor-jpn-gsomia-2016"
INGEST_BATCH = 1000
PAYLOAD = b'{"track": [1, 2, 3]}'
READS = 2000  # items read one by one per reader, evenly spread over the store


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    out = sys.stderr if args.json else sys.stdout
    figures: dict[str, float] = {}
    print(f"machine: {cpu_model()}; {pin_one_core()}; load {load_average()}", file=out)
    with tempfile.TemporaryDirectory() as tmp:
        clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
        node = make_node(Path(tmp) / "jpn", "JPN", clock=clock)
        base = {
            "nationality": "JPN",
            "clearance": "極秘",
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst"],
        }
        reader = node.people.add_person(None, {"id": "reader", "name": "Reader", **base})
        visitor = node.people.add_person(
            None,
            {**base, "id": "visitor", "name": "Visitor", "nationality": "KOR", "clearance": "군사II급비밀"},
        )
        officer = node.people.add_person(
            None, {**base, "id": "officer", "name": "Officer", "roles": ["security_officer"]}
        )
        node.duties.authorise_visit(
            None,
            "visitor",
            highest="極秘",
            starts=clock.now,
            ends=clock.now + timedelta(days=1),
            purpose="bench",
        )
        label = {
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": "2024-02-01T09:00:00+09:00",
        }
        every = [f"k{i:06d}" for i in range(args.items)]
        for first in range(0, len(every), INGEST_BATCH):  # untimed: the service's own batch path
            node.items.ingest_many(
                None,
                [
                    NewIngest(label, PAYLOAD, item_id=i, received_from="KOR", agreement=GSOMIA)
                    for i in every[first : first + INGEST_BATCH]
                ],
            )
        ids = every[:: max(1, len(every) // READS)][:READS]  # spread over the whole store
        print(f"1. Node.read of {len(ids)} of the {len(every)} items, one by one (ms)", file=out)
        for name, person in (("reader", reader), ("visitor", visitor)):
            times = [_timed(lambda i=i, p=person: node.items.read(p, i)) * 1000 for i in ids]
            figures[f"read_median_{name}"] = statistics.median(times)
            print(f"   {name:<14} median {statistics.median(times):.3f}  p95 {_p95(times):.3f}", file=out)
        from gsomia.store import ItemFilter

        print("2. Node.list_items, a page of 1,000 (ms, median of 10)", file=out)
        for name, person in (("reader", reader), ("visitor", visitor)):
            node.items.list_items(person, ItemFilter(), None, 1000)
            times = [
                _timed(lambda p=person: node.items.list_items(p, ItemFilter(), None, 1000)) * 1000
                for _ in range(10)
            ]
            figures[f"page_median_{name}"] = statistics.median(times)
            print(f"   {name:<14} median {statistics.median(times):.1f}", file=out)
        print("3. Duties.reclassify with N copies at the node (ms, median of 5)", file=out)
        own = dict(label, originator="JPN", classification="極秘", releasable_to=["KOR"])
        levels = ["秘", "極秘"]
        for copies in (0, 10, 100):
            node.items.ingest(officer, label=own, payload=b"{}", item_id=f"own{copies}")
            for c in range(copies):
                node.duties.derive(officer, "copy", [f"own{copies}"], item_id=f"own{copies}-c{c}")
            times = [
                _timed(
                    lambda n=n, c=copies: node.duties.reclassify(officer, f"own{c}", levels[n % 2], "bench")
                )
                * 1000
                for n in range(5)
            ]
            figures[f"reclassify_{copies}"] = statistics.median(times)
            print(f"   {copies:>3} copies     median {statistics.median(times):.1f}", file=out)
        times = [
            _timed(lambda n=n: node.duties.derive(officer, "copy", ["own0"], item_id=f"peer{n}")) * 1000
            for n in range(5)
        ]
        figures["derive_one"] = statistics.median(times)
        print(f"   peer: derive one copy, median {statistics.median(times):.1f}", file=out)
        node.close()
    if args.json:
        print(json.dumps({"benchmark": "duties", "items": args.items, **figures, "rows": _rows(figures)}))
    return 0


def _rows(f: dict[str, float]) -> list[dict[str, object]]:
    no_target = "none set (compared with its peer)"
    return [
        row("Node.read by a visitor, median", f["read_median_visitor"], "ms", target=no_target, met=None,
            peer="ordinary cleared reader", peer_value=f["read_median_reader"],
            ratio=f["read_median_visitor"] / f["read_median_reader"]),
        row("Node.list_items page of 1,000 by a visitor, median", f["page_median_visitor"], "ms",
            target=no_target, met=None, peer="ordinary cleared reader", peer_value=f["page_median_reader"],
            ratio=f["page_median_visitor"] / f["page_median_reader"]),
        row("Duties.reclassify with 100 copies, median", f["reclassify_100"], "ms", target=no_target,
            met=None, peer="Duties.derive of one copy", peer_value=f["derive_one"],
            ratio=f["reclassify_100"] / f["derive_one"]),
    ]  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
