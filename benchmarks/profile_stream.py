"""Where the stream's saturation time goes: CPU seconds of each node process per track, and py-spy.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a loaded
machine. One direct network (KOR, JPN, USA as processes, ``network.start``), warmed, then
``--tracks`` updates published flat out over KOR's WebSocket feed and received by a consumer at
JPN, ``--runs`` times on the same network. Per run it prints each node's CPU time (user+system,
from ``/proc``) per track received: what the node spends, whatever else the machine runs, and
the load average beside the wall-clock rate. With ``--py-spy DIR`` the KOR and JPN processes
are sampled (``py-spy record --format raw``, collapsed stacks) during the last run.

Run: ``python benchmarks/profile_stream.py [--tracks 20000] [--runs 3] [--py-spy /tmp/prof]``.
A baseline from another checkout: ``PYTHONPATH=/path/to/checkout/src python benchmarks/profile_stream.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gsomia
from benchmarks._machine import load_average
from benchmarks.bench_stream import _arun, _Network, _run, _updates

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--feed-batch", type=int, default=1)
    parser.add_argument("--py-spy", type=Path, default=None, help="directory for py-spy's collapsed stacks")
    args = parser.parse_args()
    print(f"gsomia from {Path(gsomia.__file__).parent}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="gsomia-profile-stream-") as tmp:
        net = _Network(Path(tmp) / "direct", hub=False)
        try:
            _arun(_run(net, _updates(2000), None, 16, "ws", args.feed_batch))  # warm
            for run in range(args.runs):
                spies = []
                if args.py_spy is not None and run == args.runs - 1:
                    args.py_spy.mkdir(parents=True, exist_ok=True)
                    for party in ("KOR", "JPN"):
                        out = args.py_spy / f"{party}.txt"
                        spies.append(subprocess.Popen(  # noqa: S603 - the profiler on our own child
                            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                             str(net.pids[party]), "--format", "raw", "--rate", "200", "--nonblocking",
                             "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        ))  # fmt: skip
                load = load_average()
                before = {p: cpu_seconds(pid) for p, pid in net.pids.items()}
                result = _arun(_run(net, _updates(args.tracks), None, 16, "ws", args.feed_batch))
                after = {p: cpu_seconds(pid) for p, pid in net.pids.items()}
                for spy in spies:
                    spy.send_signal(2)
                    spy.wait(timeout=30)
                received = result["received"] or 1
                per = {p: (after[p] - before[p]) / received * 1e6 for p in net.pids}
                rate = result["received"] / result["elapsed_s"] if result["elapsed_s"] else 0.0
                print(f"run {run + 1}: received {result['received']}/{result['sent']}, {rate:,.0f} tracks/s "
                      f"(load {load} -> {load_average()}); CPU us per track: "
                      + ", ".join(f"{p} {v:.1f}" for p, v in per.items())
                      + f"; KOR+JPN {per['KOR'] + per['JPN']:.1f}")  # fmt: skip
        finally:
            net.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
