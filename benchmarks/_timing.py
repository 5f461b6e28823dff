"""How the micro-benchmarks time a pass: the best of several, with the collector held off."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

__all__ = ["best_pass"]


def best_pass(
    run: Callable[[], object], *, budget_s: float, min_passes: int = 5, max_passes: int = 200
) -> tuple[float, int]:
    """Best wall time of one pass, over at least ``min_passes`` and up to ``budget_s`` of passes."""
    best = float("inf")
    passes = 0
    began = time.perf_counter()
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        while passes < min_passes or (passes < max_passes and time.perf_counter() - began < budget_s):
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
            passes += 1
    finally:
        if enabled:
            gc.enable()
    return best, passes
