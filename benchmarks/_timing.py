"""How the micro-benchmarks time a pass: the best of several, with the collector held off."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["best_pass"]


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
    best = float("inf")
    passes = 0
    began = time.perf_counter()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while passes < min_passes or (passes < max_passes and time.perf_counter() - began < budget_s):
            start = clock()
            run()
            best = min(best, clock() - start)
            passes += 1
    finally:
        if enabled:
            gc.enable()
    return best, passes
