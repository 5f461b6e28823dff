"""Where the served exchange's time goes: bench_exchange part (b)'s "nodes serving" run, profiled.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a shared
machine. The same run as part (b)'s end to end (``_throughput._served``): KOR and JPN each
``gsomia node serve`` in its own process (JPN ``--no-sender``), ``--items`` items released through
KOR's ``POST /releases`` in selections of 1,000, KOR's own delivery worker carrying them over HTTP;
the clock stops when KOR's store holds every entry delivered on JPN's receipt. Printed: the rate,
the load average before and after, and each process's CPU µs an item (``/proc``); on PostgreSQL
also each node's backends' (its connections name themselves by ``application_name``; bench_load's
``CpuSplit`` finds them every half second). With ``--py-spy
DIR`` both processes are sampled over the timed run (``py-spy record --threads --format raw``) and
each profile is summarised: the share of the samples by thread (KOR: the API's, the delivery
worker's), by function (own time) and inclusive. With ``--idle`` py-spy samples the waiting
threads too: where KOR's delivery worker waits for an answer and JPN's inbox thread for work.

Run::

    python benchmarks/profile_exchange.py --items 5000 [--backend postgresql] [--py-spy /tmp/ex [--idle]]
    python benchmarks/profile_exchange.py --summarise /tmp/ex/KOR.txt [--top 25]

A baseline from another checkout: ``PYTHONPATH=/path/to/checkout/src`` before ``python`` (the
serving processes inherit it).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import sqlalchemy
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gsomia
from _machine import load_average  # benchmarks/ is on sys.path when run as a script
from _postgres import POSTGRES_URL
from _throughput import _LABEL, _WARM, _cpu_s, _drop, _released_through_the_api, _schemas, _serve
from bench_load import CpuSplit
from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config

_FRAME = re.compile(r"(?P<function>.*) \((?P<file>.*?):\d+\)$")
# which thread a stack is, by a frame it holds (py-spy's --threads root names only an id)
_THREADS = (
    ("audit writer (NodeRuntime)", "NodeRuntime._run_audit"),
    ("delivery worker (NodeRuntime)", "NodeRuntime._run"),
    ("the wire thread (a batch on its way)", "Deliveries._send"),
    ("API worker threads (anyio)", "WorkerThread.run"),
    ("the event loop (uvicorn)", "uvicorn"),
)


def _where(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    short = match["file"].split("site-packages/")[-1].split("/src/")[-1]
    short = re.sub(r".*/lib/python3\.\d+/", "", short)
    return f"{short}:{match['function']}"


def summarise(raw: Path, top: int) -> list[str]:
    """A py-spy raw file's samples: by thread, by function (own time) and inclusive."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        threads[next((name for name, mark in _THREADS if mark in stack), "other")] += n
        frames = [_where(f) for f in stack.split(";") if not f.startswith(("thread ", "process "))]
        if frames:
            own[frames[-1]] += n
        for function in set(frames):
            inclusive[function] += n
    if not total:
        return [f"{raw}: no samples"]
    lines = [f"{raw}: {total:,} samples", "by thread:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    lines.append("own time by function:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive (gsomia's functions):")
    ours = Counter({f: n for f, n in inclusive.items() if f.startswith("gsomia/")})
    lines += [f"  {n / total:6.1%}  {f}" for f, n in ours.most_common(top)]
    return lines


def run(count: int, backend: str, spy_dir: Path | None, idle: bool = False) -> dict[str, float]:
    """The served run of ``count`` items on ``backend``: its rate and each process's CPU an item."""
    urls = named = None
    tag = f"gsomia-profile-exchange-{uuid.uuid4().hex[:8]}"
    if backend == "postgresql":
        urls = _schemas(["KOR", "JPN", "USA"])
        if urls is None:
            raise SystemExit("PostgreSQL is not available")
        # each node's connections name themselves, so that their backends' CPU is found (bench_load's way)
        named = {
            party: make_url(url)
            .update_query_dict({"application_name": f"{tag}-{party}"})
            .render_as_string(hide_password=False)
            for party, url in urls.items()
        }
    workdir = Path(tempfile.mkdtemp(prefix="gsomia-profile-exchange-"))
    children: list[subprocess.Popen[bytes]] = []
    try:
        members = network.build(workdir, database_urls=named)
        kor_m, jpn_m = members[0], members[1]
        kor = Node(load_config(kor_m.directory))
        officer = kor.people.person("officer")
        pad = "x" * 600
        ids = [f"v{n:06d}" for n in range(count)]
        warm = [f"w{n:06d}" for n in range(_WARM)]
        everything = ids + warm
        for start in range(0, len(everything), 1000):
            kor.items.ingest_many(
                officer,
                [
                    NewIngest(_LABEL, f'{{"n": {n}, "pad": "{pad}"}}'.encode(), item_id=i)
                    for n, i in enumerate(everything[start : start + 1000], start)
                ],
            )
        kor.close()
        receiver = _serve(jpn_m, True)
        children.append(receiver)
        sender = _serve(kor_m, False)
        children.append(sender)
        token = json.loads((kor_m.directory / "tokens.json").read_text())["officer"]
        reader = Node(load_config(kor_m.directory))
        waiting = sqlalchemy.text("SELECT 1 FROM outbox WHERE state = 'pending' AND kind = 'item' LIMIT 1")

        def pending() -> bool:
            with reader.store.engine.connect() as conn:
                return conn.execute(waiting).first() is not None

        spies: list[subprocess.Popen[bytes]] = []
        try:
            with httpx.Client(timeout=120) as client:
                _released_through_the_api(client, kor_m.endpoint, token, warm)
                while pending():
                    time.sleep(0.02)
                if spy_dir is not None:
                    spy_dir.mkdir(parents=True, exist_ok=True)
                    for party, child in (("KOR", sender), ("JPN", receiver)):
                        spies.append(subprocess.Popen(  # noqa: S603 - the profiler on our own child
                            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(child.pid),
                             "--format", "raw", "--rate", "200", "--nonblocking", "--threads",
                             *(["--idle"] if idle else []), "--output", str(spy_dir / f"{party}.txt")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        ))  # fmt: skip
                    time.sleep(1.0)  # py-spy attached
                with ExitStack() as stack:
                    splits = {
                        party: stack.enter_context(CpuSplit({}, (POSTGRES_URL, f"{tag}-{party}")))
                        for party in ("KOR", "JPN")
                        if named is not None
                    }
                    cpu = {"KOR": _cpu_s(sender.pid), "JPN": _cpu_s(receiver.pid)}
                    started = time.perf_counter()
                    _released_through_the_api(client, kor_m.endpoint, token, ids)
                    released = time.perf_counter()
                    while pending():
                        time.sleep(0.02)
                    ended = time.perf_counter()
                    cpu = {"KOR": _cpu_s(sender.pid) - cpu["KOR"], "JPN": _cpu_s(receiver.pid) - cpu["JPN"]}
        finally:
            for spy in spies:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            reader.close()
        jpn = Node(load_config(jpn_m.directory))
        held = jpn.store.count_items()
        jpn.close()
        if held != count + len(warm):
            raise RuntimeError(f"JPN holds {held} items, not {count + len(warm)}")
        return {
            "end_to_end_per_s": count / (ended - started),
            "release_s": released - started,
            "total_s": ended - started,
            "kor_cpu_us": cpu["KOR"] / count * 1e6,
            "jpn_cpu_us": cpu["JPN"] / count * 1e6,
            **{
                f"{party.lower()}_backends_cpu_us": split.cpu_s["postgres backends"] / count * 1e6
                for party, split in splits.items()
            },
        }
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
        if urls is not None:
            _drop(urls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=5000, help="items released and delivered (default 5000)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--py-spy", type=Path, default=None, help="directory for py-spy's raw stacks")
    parser.add_argument(
        "--idle", action="store_true", help="py-spy samples idle threads too (where a thread waits)"
    )
    parser.add_argument("--summarise", type=Path, metavar="RAW", help="summarise a py-spy raw file")
    parser.add_argument("--top", type=int, default=20, help="lines per ranking (default 20)")
    args = parser.parse_args(argv)
    if args.summarise is not None:
        print("\n".join(summarise(args.summarise, args.top)))
        return 0
    if args.items < 1:
        parser.error("--items must be positive")
    before = load_average()
    result = run(args.items, args.backend, args.py_spy, args.idle)
    print(
        f"{args.backend}, {args.items} items, gsomia at {Path(gsomia.__file__).parent}: "
        f"{result['end_to_end_per_s']:,.0f} items/s end to end (released in {result['release_s']:.2f} s, "
        f"all delivered in {result['total_s']:.2f} s); CPU µs an item KOR {result['kor_cpu_us']:.0f}, "
        f"JPN {result['jpn_cpu_us']:.0f}"
        + (
            f" (their PostgreSQL backends KOR {result['kor_backends_cpu_us']:.0f}, "
            f"JPN {result['jpn_backends_cpu_us']:.0f})"
            if "kor_backends_cpu_us" in result
            else ""
        )
        + f"; load average {before} -> {load_average()}"
    )
    if args.py_spy is not None:
        for party in ("KOR", "JPN"):
            print("\n".join(summarise(args.py_spy / f"{party}.txt", args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
