"""Where a release decision spends its time: CPU time per decision, checkout against checkout.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a loaded
machine (issue 18). ``ReleaseEngine.decide`` over ``bench_policy.py``'s workload (400 requests,
the shipped catalogue, the engine warmed by one pass), timed by ``time.process_time`` (what the
process spends, whatever else the machine runs), the garbage collector off, best of ``--passes``
passes. With ``--src`` several checkouts' ``src`` directories, each runs in a process of its own
(``PYTHONPATH=<src>``), ``--rounds`` times interleaved, pinned to the CPU ``--cpu`` with
``taskset`` where it exists; the 1-minute load average is printed after each round.

``--parts`` prints instead what a decision is made of, each part timed on its own over the same
workload (µs a decision): the choice of the candidate (``AllOf.choose``), the label rules over the
candidates it asks them of and each later rule over those it asks that rule of (a later candidate
is cut short once it fails as many rules as the refusal held, and the first that passes ends it),
the instant's timestamp, the route's candidates, the marking and the decision value. ``--profile``
prints the cProfile of 50 passes, top entries by own time. ``--memo`` times instead a batch's
shared decision (``decide(..., memo=)``, what the exchange's release and delivery hand it): 1,000
requests at one instant that differ only by the item's id, KOR to JPN with the assurances the
record implies (12), µs of CPU a look-up, the batch's one label object for every item and then a
label per item (``SecurityLabel.copied``), the memo new each pass (its first request decided, the
rest looked up).

Run: ``python benchmarks/profile_policy.py`` (this checkout), or
``git archive <sha> src | tar -x -C /tmp/before`` then
``python benchmarks/profile_policy.py --src /tmp/before/src src``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _best(run: Callable[[], object], passes: int, count: int) -> float:
    """The best pass's CPU microseconds per item."""
    best = float("inf")
    for _ in range(passes):
        start = time.process_time()
        run()
        best = min(best, time.process_time() - start)
    return best / count * 1e6


def measure(passes: int, parts: bool, profile: bool) -> None:
    from bench_policy import build_workload
    from gsomia import load_catalogue
    from gsomia.core.policy import ReleaseEngine

    catalogue = load_catalogue()
    pairs = [(case.request, case.at) for case in build_workload(catalogue)]
    engine = ReleaseEngine(catalogue)
    decide = engine.decide

    def run() -> None:
        for request, at in pairs:
            decide(request, at=at)

    run()
    gc.disable()
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [run() for _ in range(50)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    us = _best(run, passes, len(pairs))
    print(f"{1e6 / us:,.0f} decisions/s, {us:.2f} µs CPU a decision")
    if parts:
        _parts(engine, pairs, passes)


def measure_memo(passes: int) -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    from gsomia import ReleaseRequest, load_catalogue
    from gsomia.core.policy import ReleaseEngine, assumed_assurances

    catalogue = load_catalogue()
    engine = ReleaseEngine(catalogue)
    at = datetime(2024, 3, 1, tzinfo=UTC)
    label = catalogue.label(
        originator="KOR", classification="군사II급비밀", releasable_to=["JPN"], purpose="threat-assessment",
        topics=["prc-navy"], created=datetime(2014, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    base = ReleaseRequest(label, "KOR", "JPN", "threat-assessment", assurances=assumed_assurances(catalogue))
    shared = [replace(base, item=f"item-{n}") for n in range(1000)]
    own = [replace(base, item=f"item-{n}", label=label.copied()) for n in range(1000)]
    said = []
    for what, requests in (("one label object", shared), ("a label per item", own)):

        def run(requests: list[ReleaseRequest] = requests) -> None:
            memo: dict[object, object] = {}
            for request in requests:
                engine.decide(request, at=at, memo=memo)  # type: ignore[arg-type]

        run()
        said.append(f"{what} {_best(run, passes, len(requests)):.2f}")
    print(f"memo look-up, µs CPU: {', '.join(said)}")


def _parts(engine: object, pairs: Sequence[tuple[object, object]], passes: int) -> None:
    rules = engine.rules  # type: ignore[attr-defined]
    head, tail = rules._head, rules._tail
    chosen = []  # (request, candidates, ts) for each decision
    heads = []  # (request, candidate, ts) for each candidate ``choose`` asks the label rules of
    asked: list[list[tuple[object, object, float]]] = [[] for _ in tail]  # and each later rule of
    allowed = []
    for request, at in pairs:
        ts = at.timestamp()  # type: ignore[attr-defined]
        candidates = engine._candidates(request.sender, request.recipient, request.via)[0]  # type: ignore[attr-defined]
        chosen.append((request, candidates, ts))
        fewest = sys.maxsize
        for candidate in candidates:  # as AllOf.choose asks them
            heads.append((request, candidate, ts))
            failed = head(request, candidate, ts)[0]
            if failed >= fewest:
                continue
            for n, step in enumerate(tail):
                asked[n].append((request, candidate, ts))
                if not step(request, candidate, ts)[1]:
                    failed += 1
                    if failed >= fewest:
                        break
            else:
                if not failed:
                    allowed.append((request, candidate, ts))
                    break
                fewest = failed
    n = len(pairs)

    def over(step: Callable[..., object], items: list[tuple[object, object, float]]) -> Callable[[], None]:
        def run() -> None:
            for request, candidate, ts in items:
                step(request, candidate, ts)

        return run

    full = sum(len(a) for a in asked[:1])
    print(
        f"{sum(len(c) for _, c, _ in chosen) / n:.2f} candidates a decision, {len(heads) / n:.2f} asked "
        f"the label rules, {full / n:.2f} asked the rules after them; {len(allowed)} of {n} allowed"
    )
    rows = [("choosing the candidate (AllOf.choose)", _best(over(rules.choose, chosen), passes, n))]
    rows.append((f"  {head.__qualname__}", _best(over(head, heads), passes, n)))
    for step, items in zip(tail, asked, strict=True):
        rows.append((f"  {step.__qualname__}", _best(over(step, items), passes, n)))
    some = pairs[0]
    first = engine.decide(some[0], at=some[1])  # type: ignore[attr-defined]
    from gsomia.core import policy

    make = getattr(policy, "_decision", policy.ReleaseDecision)
    rows += [
        ("instant's timestamp", _best(lambda: [at.timestamp() for _, at in pairs], passes, n)),  # type: ignore[attr-defined]
        (
            "route's candidates",
            _best(lambda: [engine._candidates(r.sender, r.recipient, r.via) for r, _ in pairs], passes, n),  # type: ignore[attr-defined]
        ),
        (
            "marking of the allowed",
            _best(
                over(
                    lambda r, c, ts: c.mapping(r.label.originator, r.label.classification, r.recipient, ts),
                    allowed,
                ),
                passes,
                n,
            ),
        ),
        (
            "decision value",
            _best(
                lambda: [make(True, at, first.route, "x", first.checks, None, ()) for _, at in pairs],
                passes,
                n,
            ),
        ),
    ]
    for what, us in rows:
        print(f"{what:<40} {us:6.2f} µs a decision")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--src", nargs="*", help="checkouts' src directories to compare, interleaved")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--passes", type=int, default=150)
    parser.add_argument("--cpu", type=int, default=1, help="the CPU each measuring process is pinned to")
    parser.add_argument("--parts", action="store_true", help="time each part of a decision")
    parser.add_argument("--profile", action="store_true", help="print the cProfile of 50 passes")
    parser.add_argument("--memo", action="store_true", help="time a batch's shared decision instead")
    args = parser.parse_args(argv)
    if not args.src:
        if args.memo:
            gc.disable()
            measure_memo(args.passes)
        else:
            measure(args.passes, args.parts, args.profile)
        return 0
    pin = ["taskset", "-c", str(args.cpu)] if shutil.which("taskset") else []
    flags = (
        [f"--passes={args.passes}"] + (["--parts"] if args.parts else []) + (["--memo"] if args.memo else [])
    )
    for n in range(1, args.rounds + 1):
        for src in args.src:
            env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
            out = subprocess.run(  # noqa: S603 - this script, fixed arguments
                [*pin, sys.executable, __file__, *flags], env=env, capture_output=True, text=True, check=True
            )
            print(f"round {n} {src}: {out.stdout.strip()}")
        print(f"  load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
