"""What every benchmark says about the machine it ran on, and how it pins itself to one core; what
the machine did during one timed run (:func:`machine_sample` before and after, :func:`machine_during`)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "MachineSample",
    "cpu_model",
    "describe_during",
    "load_average",
    "machine_during",
    "machine_sample",
    "pin_one_core",
]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def pin_one_core() -> str:
    """Pin this process to one CPU it may run on; say which (or why not)."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpu = min(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        return f"not pinned ({exc})"
    return f"pinned to CPU {cpu}"


def load_average() -> str:
    """The 1-minute load average (other work on the machine competes with the timings)."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True, slots=True)
class MachineSample:
    """The machine's CPU counters at one instant (``/proc/stat``, summed over every CPU, in clock
    ticks), the CPU ticks of the processes named (``/proc/PID/stat``), and the 1-minute load."""

    at: float  # time.monotonic()
    busy: int  # user + nice + system + irq + softirq (guest time is inside user)
    idle: int  # idle + iowait
    steal: int  # what the host gave another guest while this one had work to run
    own: int  # the named processes' user + system
    load: float | None


def _process_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile (or no /proc): its time is not counted
        return 0
    return int(fields[11]) + int(fields[12])


def machine_sample(pids: Iterable[int] = ()) -> MachineSample:
    """The counters now, for :func:`machine_during`; ``pids``: this run's own processes (the nodes,
    the client), whose CPU is told apart from the rest of the machine's."""
    busy = idle = steal = 0
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            values = [int(v) for v in stat.readline().split()[1:9]]
        user, nice, system, idle_, iowait, irq, softirq, steal = values
        busy, idle = user + nice + system + irq + softirq, idle_ + iowait
    except (OSError, ValueError):  # no /proc (not Linux): the figures say unknown
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return MachineSample(time.monotonic(), busy, idle, steal, sum(_process_ticks(p) for p in pids), load)


def machine_during(before: MachineSample, after: MachineSample) -> dict[str, Any]:
    """What the machine did between two samples: seconds; the CPU time the host stole from this
    guest (ms, and its share of every CPU's time); how busy every CPU was, and how much of that was
    the run's own processes and how much other work; the 1-minute load at each end. A tail that
    misses its target beside a high steal or much other work says why with a measurement."""
    total = (after.busy - before.busy) + (after.idle - before.idle) + (after.steal - before.steal)
    own = after.own - before.own
    busy = after.busy - before.busy

    def share(ticks: int) -> float | None:
        return round(100 * ticks / total, 1) if total > 0 else None

    return {
        "seconds": round(after.at - before.at, 2),
        "steal_ms": round((after.steal - before.steal) * _TICK_S * 1000),
        "steal_pct": share(after.steal - before.steal),
        "busy_pct": share(busy),
        "own_pct": share(own),
        "others_pct": share(max(0, busy - own)),
        "load_1min": [before.load, after.load],
    }


def describe_during(during: dict[str, Any]) -> str:
    """``machine_during``'s figures as one line of a results table."""

    def pct(key: str) -> str:
        value = during.get(key)
        return "?" if value is None else f"{value:g} %"

    loads = "→".join("?" if v is None else f"{v:.2f}" for v in during.get("load_1min", [None, None]))
    return (
        f"{during['seconds']:g} s: steal {during['steal_ms']:,} ms ({pct('steal_pct')} of the CPUs' time); "
        f"CPUs busy {pct('busy_pct')}, this run's processes {pct('own_pct')}, other work "
        f"{pct('others_pct')}; load {loads}"
    )
