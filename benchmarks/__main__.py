"""Run every benchmark and write ``benchmarks/RESULTS.md``: ``python -m benchmarks [--full]``.

Every ``benchmarks/bench_*.py`` is found (a new script is picked up without touching this
file) and run in its own process with ``--json``. The protocol: a script prints ONE JSON
object on stdout with a key ``"rows"``, a list of rows shaped like ``_rows.row`` makes them
(figure, value, unit, peer, peer_value, ratio, target, met); progress goes to stderr, which
is passed through. Each script runs at a modest size by default (the whole run takes a few
minutes) or at the issue-sized runs with ``--full``; sizes for the scripts known here are in
``SIZES``, and any other script runs at its own defaults.

The table then says, per figure, gsomia's value, the peer measured in the same run, the
ratio, the target and whether it was met, under a description of the machine, the command,
the date and the load average before and after (other work on the machine skews timings).
A row may also say what the machine did while that figure was measured (``machine``: the host's
steal, the CPUs' other work, the load; ``_machine.machine_during``): those are listed in a
second table under the first.
A script that fails, times out or prints no rows is listed as such: nothing is made up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._machine import cpu_model, load_average

HERE = Path(__file__).resolve().parent
# (modest default, --full): arguments besides --json. Scripts not named here run at their defaults.
SIZES: dict[str, tuple[list[str], list[str]]] = {
    "bench_policy": ([], []),
    "bench_exchange": (["--items", "1000"], ["--items", "5000"]),
    "bench_store": (["--items", "20000"], ["--items", "1000000"]),
    # the append rate names no size: 200,000 records; the proof's target is judged on the 10M tree,
    # built on PostgreSQL only (its COPY; both stores' builds do not fit in the 30 minutes)
    "bench_audit": (
        ["--entries", "20000"],
        ["--entries", "200000", "--big", "--big-backend", "postgresql", "--no-big-peer"],
    ),
    # medallion at 340 items only (~1,000 objects, ~2.5 s a page): its pages at 3,000 objects take
    # ~22 s each and do not fit the budget; the 1,000-item size stays in the modest run
    "bench_taxii": (["--items", "3000"], ["--shared", "340"]),
    # --full: part (d) too, 1 and 2 node processes behind HAProxy on PostgreSQL (issue 17), 30 s each
    # (not part (a)'s 60: what fits the 30 minutes), beside part (a)'s floor
    "bench_load": (
        ["--clients", "50", "--seconds", "10"],
        ["--clients", "200", "--seconds", "60", "--and-processes", "1,2", "--process-seconds", "30"],
    ),
    "bench_stream": (
        ["--rate", "1000", "--seconds", "5"],
        # 10 s at 1,000/s: 10,000 latencies per route, so p99 is the 100th slowest (its rank's
        # binomial spread is about 10, i.e. the 98.8th to 99.2th percentile); the script prints the
        # p99 of each half of the run beside it. The link path's figures are per core and settle
        # within 10,000 tracks: best of 2 passes
        ["--rate", "1000", "--seconds", "10", "--link-tracks", "10000", "--passes", "2"],
    ),
    "bench_duties": (["--items", "2000"], ["--items", "20000"]),
}
# --full: seconds each script may take before it is stopped. Their sum is the 30 minutes the whole
# issue-sized run may take on the 2-core reference machine, quiet; each is an estimate of the
# script's quiet time at its --full size with some room (2026-12-06, from the scripts' costs
# measured on the loaded machine and the quiet runs before: see benchmarks/JOURNAL.md).
FULL_BUDGET_S: dict[str, float] = {
    "bench_audit": 430.0,  # 200,000 appended on both stores; the 10M tree COPYd into PostgreSQL (bulk recipe)
    "bench_duties": 30.0,  # 13 s in the run of 2026-12-06 (load 1.8-5.4)
    "bench_exchange": 150.0,
    # 60 s of gsomia and 60 s of the floor, two node starts (153 s on 2026-12-06, load 1.8-5.4), then
    # 30 s on 1 and 30 s on 2 processes on PostgreSQL, one more network built (~80 s quiet)
    "bench_load": 260.0,
    "bench_policy": 20.0,  # 12 s on 2026-12-06
    "bench_store": 450.0,  # 1M items on both stores
    "bench_stream": 150.0,  # 2 x 10 s at 1,000 tracks/s, 20,000 flat out, two 3-node networks started
    "bench_taxii": 280.0,  # 1M items; medallion at ~1,000 objects only (340 items), ~2.7 s a page
    "bench_tls": 30.0,  # 15 s on 2026-12-06
}
OTHER_BUDGET_S = 1800.0  # a script not named above, and every script at the modest sizes
ROW_KEYS = ("figure", "value", "unit", "peer", "peer_value", "ratio", "target", "met")


@dataclass
class Outcome:
    """What one script did: its rows, or why there are none."""

    name: str
    command: list[str]
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def discover(directory: Path, only: list[str]) -> list[Path]:
    scripts = sorted(directory.glob("bench_*.py"))
    if only:
        wanted = {name.removesuffix(".py") for name in only}
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            raise SystemExit(f"no such benchmark in {directory}: {', '.join(sorted(unknown))}")
        scripts = [s for s in scripts if s.stem in wanted]
    return scripts


def _json_object(stdout: str) -> dict[str, Any]:
    """The script's one JSON object (the whole of stdout, or failing that its last JSON line)."""
    text = stdout.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
        for line in reversed(text.splitlines()):
            try:
                data = json.loads(line)
                break
            except ValueError:
                continue
    if not isinstance(data, dict):
        raise ValueError("stdout holds no JSON object")
    return data


def _checked_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError('the JSON object has no "rows" list (see benchmarks/_rows.py for the protocol)')
    for index, entry in enumerate(rows):
        if not isinstance(entry, dict) or not set(ROW_KEYS) <= entry.keys():
            raise ValueError(f"row {index} lacks some of {', '.join(ROW_KEYS)}")
        if not isinstance(entry["figure"], str) or not isinstance(entry["value"], int | float):
            raise ValueError(f"row {index}: figure must be text and value a number")
    return rows


def run_one(script: Path, full: bool, timeout: float) -> Outcome:
    quick, issue_sized = SIZES.get(script.stem, ([], []))
    command = [sys.executable, str(script), *(issue_sized if full else quick), "--json"]
    print(f"== {script.stem}: {shlex.join(command[1:])}", file=sys.stderr, flush=True)
    began = time.perf_counter()
    # a session of its own, so that a script stopped at its time takes the nodes it started with it
    # (left running, they would load the machine under every script after it)
    with subprocess.Popen(  # noqa: S603 - our own scripts, fixed arguments
        command, stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(process)
            return Outcome(
                script.stem, command, time.perf_counter() - began, error=f"timed out after {timeout:g} s"
            )
        finally:
            _stop_group(process, signal.SIGTERM)  # what the script left running when it ended
    seconds = time.perf_counter() - began
    outcome = Outcome(script.stem, command, seconds)
    try:
        data = _json_object(stdout)
        outcome.rows = _checked_rows(data)
    except ValueError as exc:
        outcome.error = f"exit status {process.returncode}; {exc}"
        return outcome
    if process.returncode != 0:
        outcome.error = f"exit status {process.returncode}"
    return outcome


def _stop_group(process: subprocess.Popen[str], first: int = signal.SIGINT) -> None:
    """Stop the script's process group: ``first`` to every process in it (SIGINT: the script's own
    clean-up runs, ``finally`` and ``with`` blocks that stop the nodes it started in sessions of their
    own), then, whatever is left after 20 s, SIGKILL."""
    if os.name != "posix":
        if process.poll() is None:
            process.kill()
            process.communicate()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, first)
    deadline = time.monotonic() + 20
    if process.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.communicate(timeout=20)
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.kill()
        process.communicate()


def budget(script: Path, full: bool, timeout: float | None) -> float:
    """Seconds ``script`` may take: ``--timeout`` if given, else its ``--full`` budget, else 30 min."""
    if timeout is not None:
        return timeout
    return FULL_BUDGET_S.get(script.stem, OTHER_BUDGET_S) if full else OTHER_BUDGET_S


def _number(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value != value:  # NaN
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def _met(value: Any) -> str:
    return {True: "met", False: "**NOT met**"}.get(value, "–")


def _cell(text: Any) -> str:
    return str(text if text is not None else "–").replace("|", "\\|")


def render(
    outcomes: list[Outcome], command: str, started: datetime, loads: tuple[str, str], full: bool
) -> str:
    rows = [(o.name, r) for o in outcomes for r in o.rows]
    judged = [r for _, r in rows if r["met"] is not None]
    met = sum(1 for r in judged if r["met"])
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC, "
        f"{sum(o.seconds for o in outcomes) / 60:.1f} minutes in all.",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, {_memory()}; "
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} "
        f"{platform.release()}. 1-minute load average {loads[0]} at the start and {loads[1]} at the end "
        "(anything above ~0.5 means other work shared the machine and the figures are low).",
        "",
        (
            "Issue-sized runs (`--full`)."
            if full
            else "Modest sizes, not the issue's (`--full` runs those): a target judged only at the issue's "
            "size shows – here, and figures at small sizes do not stand for the large ones."
        ),
        "",
        f"Targets: {met} of {len(judged)} judged figures met. Ratios are as each target states them; "
        "a figure without a peer has no ratio. Each script's own `--json` object holds more detail, "
        "and benchmarks/README.md explains each figure and its peer.",
        "",
        "| script | figure | gsomia | unit | peer | peer value | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    _cell(r["figure"]),
                    _number(r["value"]),
                    _cell(r["unit"]),
                    _cell(r["peer"]),
                    _number(r["peer_value"]),
                    "–" if r["ratio"] is None else f"{float(r['ratio']):,.2f}x",
                    _cell(r["target"]),
                    _met(r["met"]),
                ]
            )
            + " |"
        )
    during = [(name, r) for name, r in rows if isinstance(r.get("machine"), str)]
    if during:  # the optional "machine" of a row: what the machine did while it was measured
        lines += [
            "",
            "What the machine did while each figure below was measured (the host's steal, the CPUs' "
            "other work, the load): a target missed beside much of either says why.",
            "",
            "| script | figure | the machine meanwhile |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {_cell(r['figure'])} | {_cell(r['machine'])} |" for name, r in during]
    lines += ["", "| script | command | seconds | status |", "|---|---|---|---|"]
    for o in outcomes:
        shown = shlex.join(["python", _relative(o.command[1]), *o.command[2:]])
        status = f"**failed**: {_cell(o.error)}" if o.error else f"{len(o.rows)} rows"
        lines.append(f"| {o.name} | `{shown}` | {o.seconds:,.1f} | {status} |")
    return "\n".join(lines) + "\n"


def _relative(path: str) -> str:
    resolved, here = Path(path).resolve(), Path.cwd().resolve()
    return str(resolved.relative_to(here)) if resolved.is_relative_to(here) else path


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            kib = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        return "memory unknown"
    return f"{kib / 1024 / 1024:.0f} GiB of memory"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--full", action="store_true", help="the issue-sized runs (30 minutes)")
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME", help="run these scripts only")
    parser.add_argument("--dir", type=Path, default=HERE, help="where the bench_*.py scripts are")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md", help="the Markdown file to write")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per script (default: 1800; with --full each script's budget in FULL_BUDGET_S, "
        "30 minutes in all)",
    )
    args = parser.parse_args(argv)
    scripts = discover(args.dir, args.only)
    if not scripts:
        print(f"no bench_*.py in {args.dir}", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    first_load = load_average()
    outcomes = [run_one(script, args.full, budget(script, args.full, args.timeout)) for script in scripts]
    command = shlex.join(["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])])
    text = render(outcomes, command, started, (first_load, load_average()), args.full)
    args.output.write_text(text, encoding="utf-8")
    failed = [o for o in outcomes if o.error]
    print(f"wrote {args.output}: {sum(len(o.rows) for o in outcomes)} rows", file=sys.stderr)
    for o in failed:
        print(f"{o.name} failed: {o.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
