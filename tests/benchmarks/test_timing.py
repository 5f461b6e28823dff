"""benchmarks/_timing.py: the passes of a ratio's two sides taken in turn."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _timing import best_interleaved, best_pass


def test_passes_alternate_in_rounds_and_each_keeps_its_best() -> None:
    order: list[str] = []
    ticks = itertools.count()
    # each pass of "slow" takes 3 ticks of the fake clock, each of "fast" 1, except one pass of each
    costs = {"slow": iter([3, 3, 2, 3, 3, 3]), "fast": iter([1, 1, 1, 1, 0, 1])}
    clock_now = [0.0]

    def clock() -> float:
        next(ticks)
        return clock_now[0]

    def pass_of(name: str) -> None:
        order.append(name)
        clock_now[0] += next(costs[name])

    timings = best_interleaved(
        {"slow": lambda: pass_of("slow"), "fast": lambda: pass_of("fast")},
        budget_s=0.0,
        min_rounds=6,
        clock=clock,
    )
    # one pass of each a round, the order reversed every other round: neither side always goes first
    assert order == ["slow", "fast", "fast", "slow"] * 3
    assert timings == {"slow": (2.0, 6), "fast": (0.0, 6)}


def test_stops_at_its_budget_after_the_least_rounds() -> None:
    passes: list[int] = []
    timings = best_interleaved({"a": lambda: passes.append(1)}, budget_s=0.0, min_rounds=5)
    assert len(passes) == 5
    assert timings["a"][1] == 5


def test_best_pass_is_one_run_alone() -> None:
    now = [0.0]
    costs = iter([4.0, 2.0, 3.0, 5.0, 2.5, 1.0, 7.0])

    def one() -> None:
        now[0] += next(costs)

    # at least five passes, and no more than the budget allows past them (none here)
    assert best_pass(one, budget_s=0.0, clock=lambda: now[0]) == (2.0, 5)
    assert best_pass(one, budget_s=0.0, min_passes=2, clock=lambda: now[0]) == (1.0, 2)
