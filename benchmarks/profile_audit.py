"""CPU per record of the audit log's append and integrate, in this process and in PostgreSQL's backends.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a loaded
machine, where bench_audit's wall rates say little. It makes a fresh node (SQLite in a temporary
directory, or PostgreSQL in a throw-away schema), appends and integrates ``--warm`` records untimed,
then appends ``--entries`` records with ``Store.append_audit`` in batches of 10,000 (bench_audit's
records; since issue 18's sixth pass a batch becomes leaves as it is written) and integrates them
with ``AuditLog.integrate()`` until nothing is pending, and prints for each phase and for both
together (record to leaf) the CPU µs a record of this process (``time.process_time``, user and system) and,
on PostgreSQL, of the server backends this process's connections use (``/proc/<pid>/stat`` of
each, the pids asked at connect: the engine's pool is emptied after the warm-up so every
connection is a known one), with the wall rate beside them. ``--profile`` adds a cProfile of both
phases (CPU clock; profiled calls weigh more than they do unprofiled).

Run::

    python benchmarks/profile_audit.py --backend sqlite --entries 100000

A baseline from another checkout: ``PYTHONPATH=/path/to/checkout/src`` before ``python``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_audit as b


def _backend_cpu(pids: set[int]) -> float:
    """CPU seconds (user + system) of the PostgreSQL backends ``pids`` so far."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--entries", type=int, default=100_000, help="records timed (a multiple of 10,000)")
    parser.add_argument("--warm", type=int, default=20_000, help="records appended and integrated first")
    parser.add_argument("--profile", action="store_true", help="cProfile the integrate phase")
    args = parser.parse_args(argv)
    batch = b.APPEND_BATCH
    pids: set[int] = set()

    def backend_pid(dbapi: Any, _record: Any) -> None:
        cursor = dbapi.cursor()
        cursor.execute("SELECT pg_backend_pid()")
        pids.add(int(cursor.fetchone()[0]))
        cursor.close()

    with tempfile.TemporaryDirectory() as tmp, b.backend_node(args.backend, Path(tmp)) as node:
        records = b.Records(b.SEED)
        for first in range(0, args.warm, batch):
            node.store.append_audit(records.batch(first, batch))
        while node.audit.integrate():
            pass
        if args.backend == "postgresql":
            node.store.engine.dispose()
            event.listen(node.store.engine, "connect", backend_pid)
        batches = [records.batch(args.warm + k, batch) for k in range(0, args.entries, batch)]
        n = sum(len(x) for x in batches)
        profile = cProfile.Profile(time.process_time) if args.profile else None
        cpu0, wall0, srv0 = time.process_time(), time.perf_counter(), _backend_cpu(pids)
        if profile is not None:
            profile.enable()
        for rows in batches:
            node.store.append_audit(rows)
        cpu1, wall1, srv1 = time.process_time(), time.perf_counter(), _backend_cpu(pids)
        while node.audit.integrate():
            pass
        if profile is not None:
            profile.disable()
        cpu2, wall2, srv2 = time.process_time(), time.perf_counter(), _backend_cpu(pids)
        if node.audit.size() != args.warm + n:
            raise SystemExit(f"the tree holds {node.audit.size():,} leaves, not {args.warm + n:,}")
        server = args.backend == "postgresql"

        def phase(name: str, cpu: float, srv: float, wall: float) -> str:
            text = f"{name} CPU {1e6 * cpu / n:.1f} us/record"
            if server:
                text += f" (+ server {1e6 * srv / n:.1f})"
            return text + f", wall {n / wall:,.0f}/s"

        print(
            f"{args.backend}, {n:,} records after {args.warm:,}, load {os.getloadavg()[0]:.1f}: "
            f"{phase('append', cpu1 - cpu0, srv1 - srv0, wall1 - wall0)} | "
            f"{phase('integrate', cpu2 - cpu1, srv2 - srv1, wall2 - wall1)} | "
            f"{phase('record to leaf', cpu2 - cpu0, srv2 - srv0, wall2 - wall0)}"
        )
        if profile is not None:
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
