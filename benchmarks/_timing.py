"""How the micro-benchmarks time a pass: the best of several, with the collector held off."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["best_interleaved", "best_pass"]


def best_pass(
    run: Callable[[], object],
    *,
    budget_s: float,
    min_passes: int = 5,
    max_passes: int = 200,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, int]:
    """Best time of one pass by ``clock`` (wall time by default; ``time.process_time`` for the
    CPU time of a single-threaded pass, which other work on a busy machine does not stretch),
    over at least ``min_passes`` and up to ``budget_s`` (wall seconds) of passes."""
    return best_interleaved(
        {"run": run}, budget_s=budget_s, min_rounds=min_passes, max_rounds=max_passes, clock=clock
    )["run"]


def best_interleaved(
    runs: dict[str, Callable[[], object]],
    *,
    budget_s: float,
    min_rounds: int = 5,
    max_rounds: int = 200,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, tuple[float, int]]:
    """:func:`best_pass` of each of ``runs``, their passes taken in turn in the same rounds (one pass
    of each a round, the order reversed every other round), over at least ``min_rounds`` and up to
    ``budget_s`` (wall seconds) in all. For a figure judged as a ratio of two runs (gsomia's and its
    peer's): each run's best pass is taken under the same conditions, where passes timed one run
    after the other met whatever the machine was doing in each run's own seconds (issue 18: one
    quiet run put a batch at 1.80x its floor, the same code at 1.37-1.40x back to back)."""
    best = dict.fromkeys(runs, float("inf"))
    order = list(runs.items())
    rounds = 0
    began = time.perf_counter()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while rounds < min_rounds or (rounds < max_rounds and time.perf_counter() - began < budget_s):
            for name, run in order if rounds % 2 == 0 else reversed(order):
                start = clock()
                run()
                best[name] = min(best[name], clock() - start)
            rounds += 1
    finally:
        if enabled:
            gc.enable()
    return {name: (value, rounds) for name, value in best.items()}
