"""``python -m benchmarks``: finds every bench_*.py, runs it with --json, tabulates its rows."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
import json, sys
assert sys.argv[1:] == ["--json"], sys.argv
print("progress goes to stderr", file=sys.stderr)
print(json.dumps({"benchmark": "good", "other": 1, "rows": [
    {"figure": "widgets/s", "value": 1234.5, "unit": "widgets/s", "peer": "Acme | 2",
     "peer_value": 617.25, "ratio": 2.0, "target": ">= 2x Acme", "met": True},
    {"figure": "latency p99", "value": 0.5, "unit": "ms", "peer": None,
     "peer_value": None, "ratio": None, "target": "< 0.1 ms", "met": False},
]}))
"""


def run(directory: Path, *args: str) -> tuple[int, str]:
    output = directory / "RESULTS.md"
    output.unlink(missing_ok=True)
    done = subprocess.run(  # noqa: S603 - the runner under test, fixed arguments
        [sys.executable, "-m", "benchmarks", "--dir", str(directory), "--output", str(output), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, output.read_text(encoding="utf-8") if output.exists() else done.stderr


def script(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(textwrap.dedent(body), encoding="utf-8")


def test_every_script_is_discovered_and_its_rows_tabulated_with_the_machine(tmp_path: Path) -> None:
    script(tmp_path, "bench_good.py", GOOD)
    script(tmp_path, "bench_also.py", GOOD.replace("widgets", "gadgets"))
    script(tmp_path, "not_a_bench.py", "raise SystemExit(3)")
    status, text = run(tmp_path)
    assert status == 0, text
    assert (
        "| bench_good | widgets/s | 1,234 | widgets/s | Acme \\| 2 | 617 | 2.00x | >= 2x Acme | met |" in text
    )
    assert "| bench_good | latency p99 | 0.5 | ms | – | – | – | < 0.1 ms | **NOT met** |" in text
    assert "| bench_also | gadgets/s |" in text
    assert "not_a_bench" not in text
    assert "Targets: 2 of 4 judged figures met" in text
    assert "Machine:" in text
    assert "Modest sizes, not the issue's" in text
    assert "load average" in text
    assert "python -m benchmarks --dir" in text  # the command that wrote it


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("print('no json here')", "no JSON object"),
        ("import json; print(json.dumps({'figures': 1}))", 'no "rows" list'),
        ("import json; print(json.dumps({'rows': [{'figure': 'x'}]}))", "row 0 lacks"),
        ("import sys; sys.exit(4)", "exit status 4"),
    ],
)
def test_a_script_without_proper_rows_is_reported_failed_not_made_up(
    tmp_path: Path, body: str, why: str
) -> None:
    script(tmp_path, "bench_good.py", GOOD)
    script(tmp_path, "bench_broken.py", body)
    status, text = run(tmp_path)
    assert status == 1
    assert "| bench_broken |" in text
    assert "**failed**" in text
    assert why in text
    assert "| bench_good | widgets/s |" in text  # the others still count


def test_only_runs_the_named_scripts_and_refuses_unknown_names(tmp_path: Path) -> None:
    script(tmp_path, "bench_good.py", GOOD)
    script(tmp_path, "bench_broken.py", "raise SystemExit(1)")
    status, text = run(tmp_path, "--only", "bench_good")
    assert status == 0
    assert "bench_broken" not in text
    status, text = run(tmp_path, "--only", "bench_nothing")
    assert status != 0
    assert "no such benchmark" in text


def test_a_script_that_overruns_its_time_is_stopped_and_reported(tmp_path: Path) -> None:
    script(tmp_path, "bench_slow.py", "import time; time.sleep(30)")
    status, text = run(tmp_path, "--timeout", "1")
    assert status == 1
    assert "timed out after 1 s" in text


@pytest.mark.slow
def test_the_policy_benchmark_speaks_the_protocol(tmp_path: Path) -> None:
    pytest.importorskip("casbin", reason="the peer comes with the bench extra")
    done = subprocess.run(  # noqa: S603 - our own runner
        [sys.executable, "-m", "benchmarks", "--only", "bench_policy", "--output", str(tmp_path / "R.md")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "R.md").read_text(encoding="utf-8")
    assert "| bench_policy | release decisions/s" in text
    assert "PyCasbin" in text


def test_a_script_stopped_at_its_time_takes_what_it_started_with_it(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script(
        tmp_path,
        "bench_spawner.py",
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(marker)!r}, "w").write(str(child.pid))
        time.sleep(120)
        """,
    )
    status, text = run(tmp_path, "--timeout", "3")
    assert status == 1
    assert "timed out after 3 s" in text
    status_file = Path(f"/proc/{int(marker.read_text())}/status")
    assert not status_file.exists() or "zombie" in status_file.read_text().lower()


def test_full_budgets_keep_the_issue_sized_run_within_30_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    # the repository's root on the path whichever way pytest was started (`python -m pytest` puts the
    # working directory there; the venv's `pytest` script under `-n 0` does not)
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.__main__ import FULL_BUDGET_S, SIZES

    assert sum(FULL_BUDGET_S.values()) <= 30 * 60
    assert set(SIZES) <= set(FULL_BUDGET_S)


def test_what_the_machine_did_during_a_figure_is_listed_under_the_table(tmp_path: Path) -> None:
    body = GOOD.replace(
        '"target": "< 0.1 ms", "met": False}',
        '"target": "< 0.1 ms", "met": False, "machine": "10 s: steal 1,200 ms (6 % of the CPUs\' time)"}',
    )
    script(tmp_path, "bench_good.py", body)
    status, text = run(tmp_path)
    assert status == 0, text
    # the main table unchanged; the row's machine in the second table, beside its figure
    assert "| bench_good | latency p99 | 0.5 | ms | – | – | – | < 0.1 ms | **NOT met** |" in text
    assert "| script | figure | the machine meanwhile |" in text
    assert "| bench_good | latency p99 | 10 s: steal 1,200 ms (6 % of the CPUs' time) |" in text
    assert "| bench_good | widgets/s | " not in text.split("the machine meanwhile")[1]  # it said none


def test_rows_without_the_machine_add_no_second_table(tmp_path: Path) -> None:
    script(tmp_path, "bench_good.py", GOOD)
    status, text = run(tmp_path)
    assert status == 0, text
    assert "the machine meanwhile" not in text


def test_the_machine_during_a_run_tells_steal_and_other_work_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks._machine import MachineSample, describe_during, machine_during, machine_sample

    # 400 ticks of the CPUs' time, of which 40 stolen, 300 busy (120 of them the run's own), 60 idle
    before = MachineSample(at=100.0, busy=1000, idle=500, steal=10, own=50, load=1.5)
    after = MachineSample(at=102.0, busy=1300, idle=560, steal=50, own=170, load=2.25)
    during = machine_during(before, after)
    assert during["seconds"] == 2.0
    assert during["steal_pct"] == 10.0
    assert during["busy_pct"] == 75.0
    assert during["own_pct"] == 30.0
    assert during["others_pct"] == 45.0
    assert during["load_1min"] == [1.5, 2.25]
    text = describe_during(during)
    stolen_ms = round(40 * 1000 / os.sysconf("SC_CLK_TCK"))  # 400 at Linux's usual 100 ticks a second
    assert during["steal_ms"] == stolen_ms
    assert f"steal {stolen_ms:,} ms (10 % of the CPUs' time)" in text
    assert "other work 45 %" in text
    assert "1.50→2.25" in text
    # the live counters: this process's own CPU is counted, and never goes backwards
    first = machine_sample([os.getpid()])
    sum(i * i for i in range(200_000))
    second = machine_sample([os.getpid()])
    assert second.own >= first.own
    assert second.busy >= first.busy
    assert second.steal >= first.steal
    nothing = machine_during(first, first)
    assert nothing["steal_ms"] == 0
    assert nothing["busy_pct"] is None  # no time passed: no share made up
