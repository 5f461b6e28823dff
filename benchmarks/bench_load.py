"""Load: N concurrent API clients for S seconds against one node served in its own process.

A JPN node (``gsomia node serve --no-sender``, SQLite) holds ``--items`` items; each client
has its own connection and, until the time is up, asks in turn for a page of 20 items
(``GET /items?limit=20``), one item with its payload (``GET /items/{id}``, decided and
audited: a write per read) and ``GET /healthz``, as the release officer (bearer token).
Every answer other than 200, and every transport failure or time-out, is an error.
The figures are the latency p50 and p99 over all requests, the request rate and the errors.

The clients are wrk's connections (Debian's ``wrk``, C with LuaJIT; ``benchmarks/load.lua`` asks
for the paths in turn and counts every non-200 answer by status, wrk the socket errors and the
time-outs), ``--threads 2``: 40-70 µs of CPU a request, where the asyncio + httpx clients this
script ran in its own process before cost more than the server they measured, on the same two
cores (benchmarks/JOURNAL.md). ``--generator httpx`` runs those (the default where wrk is not
installed; the process comparison then says it did not run).

Peer (the floor): the same clients, the same paths, against a FastAPI app on the same
uvicorn that does no work (``benchmarks/_floor_app.py``): what the framework and the server
cost on this machine, driven by the same generator.

Every run of (a), the floor and (d) reports its CPU split (``cpu`` in ``--json``): the CPU
seconds, and µs a request, of each process serving it (read with psutil at its start and end: the
node processes, HAProxy, the PostgreSQL backends of the node's connections, found by their
``application_name`` every half second, and the generator: wrk's own rusage, or this process's
CPU), the cores they used together and the CPU the rest of the machine used meanwhile. CPU per
request hardly depends on the machine's load where requests/s does. Part (a)'s row "API server CPU per
request under load" sets the node process's beside the floor process's, with the cores each used: the
CPU ratio bounds the rate ratio, and a process that used less than a core was waiting, not working.

Target (issue 10): no errors at 200 clients for 60 s; p50 and p99 are printed, not judged.
Target (issue 18): gsomia's requests/s at least 0.6 times the floor's, its p99 at most twice the
floor's p99, judged at 200 clients for 60 s.

Part (b) (alone with ``--cpu-only``): the server's own CPU time per request, in this process,
with the load of the machine mostly out of the figure (CPU seconds, not wall seconds): the same
three requests, one at a time, through ``httpx.ASGITransport`` to gsomia's app (``create_app``
over the same node, its start-up objects frozen out of the collector as ``gsomia node serve``
does) and to the floor's;
the best of several passes of each. What gsomia's app costs beyond the framework's floor, per
path, on a machine too busy for part (a)'s wall-clock figures to compare between runs.

Part (c): ``Node.read`` in-process by one thread and by 40 at once (CPU a read, reads a second):
what writing concurrent reads' audit records together saves.

With ``--database-url postgresql+psycopg://...`` and ``--processes 1,2`` (issue 17), the node is on
PostgreSQL and served by each number of processes in turn behind HAProxy (the distribution's, as
``gsomia net up --replicas`` runs it; one network built and filled for all of them), side by side
with the floor; the ratio of the two-process request rate to the one-process one is printed
(target on a 2-core machine: at least 1.6, with no errors), and the ratio the CPU split allows: a
node process uses at most one core, all the processes together at most every core, so a count's
rate is at most min(count / the node's µs, cores / everyone's µs) a request.
Part (d), ``--and-processes 1,2``: the same comparison after parts (a)-(c), in the same run,
``--process-seconds`` per count, beside part (a)'s floor (on ``--database-url``, or the test
PostgreSQL of benchmarks/_postgres.py); where PostgreSQL, HAProxy or wrk is absent its row says
so, unmeasured. ``python -m benchmarks --full`` runs it.

Run: ``python benchmarks/bench_load.py [--clients 200] [--seconds 60] [--items 500] [--cpu-only]
[--processes 1,2 --database-url URL] [--and-processes 1,2 [--process-seconds 30]]
[--generator wrk|httpx] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy
from sqlalchemy.engine import make_url

from _floor_app import app as floor_app
from _machine import cpu_model, load_average  # benchmarks/ is on sys.path when run as a script
from _postgres import POSTGRES_URL, postgres_absent
from _rows import row
from gsomia.api import create_app
from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config

HERE = Path(__file__).resolve().parent
REQUEST_TIMEOUT_S = 30.0
RATE_TARGET = 0.6  # gsomia's requests/s at least this share of the floor's (issue 18)
P99_TARGET = 2.0  # gsomia's p99 at most this many times the floor's
SCALE_TARGET = 1.6  # two processes' requests/s at least this many times one's, on 2 cores (issue 17)


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


# how long a server may take to answer its first /healthz: on this 2-core machine at a load average
# of 25 a node took 35 s and the --full run of 2026-12-05 failed at 60 s (start-up is not timed)
STARTUP_S = 300.0


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else float("nan")


WRK_SCRIPT = HERE / "load.lua"
WRK_THREADS = 2  # one event loop a core of this 2-core machine; wrk's cost is per request, not thread
GENERATORS = ("wrk", "httpx")
SAMPLE_S = 0.5  # how often the PostgreSQL backends serving the node are looked up during a run


def wrk_version() -> str | None:
    """wrk's version (``debian/4.1.0-3+b2``), or None when it is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    shown = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    words = (shown.stdout + shown.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


async def _client(endpoint: str, token: str, ids: list[str], offset: int, until: float, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    paths = ["/items?limit=20", "", "/healthz"]
    async with httpx.AsyncClient(base_url=endpoint, headers=headers, timeout=REQUEST_TIMEOUT_S) as client:
        n = offset
        while time.monotonic() < until:
            path = paths[n % 3] or f"/items/{ids[n // 3 % len(ids)]}"
            n += 1
            start = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                tally.errors[type(exc).__name__] += 1
                continue
            tally.latencies_ms.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                tally.errors[f"HTTP {response.status_code}"] += 1


async def _gather(endpoint: str, token: str, ids: list[str], clients: int, seconds: float) -> Tally:
    tally = Tally()
    until = time.monotonic() + seconds
    await asyncio.gather(*(_client(endpoint, token, ids, k, until, tally) for k in range(clients)))
    return tally


def _summary(tally: Tally, seconds: float) -> dict[str, Any]:
    ordered = sorted(tally.latencies_ms)
    return {
        "requests": len(ordered),
        "per_s": len(ordered) / seconds,
        "p50_ms": statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": _percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else float("nan"),
        "errors": sum(tally.errors.values()),
        "errors_by_kind": dict(tally.errors),
    }


def _drive_httpx(
    endpoint: str, token: str, ids: list[str], clients: int, seconds: float
) -> tuple[dict[str, Any], float]:
    """The clients as asyncio tasks in this process, one httpx connection each: the figures, and
    this process's CPU seconds over the run (the generator's cost)."""
    cpu = time.process_time()
    tally = asyncio.run(_gather(endpoint, token, ids, clients, seconds))
    return _summary(tally, seconds), time.process_time() - cpu


def _drive_wrk(
    endpoint: str, token: str, ids: list[str], clients: int, seconds: float, workdir: Path
) -> tuple[dict[str, Any], float]:
    """The clients as wrk's connections (``load.lua``: the same paths in turn, every non-200 and every
    socket error or time-out an error): the figures, and wrk's CPU seconds (its own rusage)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    requests = workdir / f"wrk-requests-{uuid.uuid4().hex[:8]}.txt"  # the token: this user's only
    requests.touch(mode=0o600)
    requests.write_text("\n".join([token, *ids]) + "\n", encoding="utf-8")
    command = [
        wrk, "--connections", str(clients), "--threads", str(min(clients, WRK_THREADS)),
        "--duration", f"{max(1, round(seconds))}s", "--timeout", f"{REQUEST_TIMEOUT_S:g}s",
        "--script", str(WRK_SCRIPT), endpoint, "--", str(requests),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
    assert process.stdout is not None
    try:
        out = process.stdout.read().decode()  # to its end: wrk stops itself after --duration
    finally:
        _, status, usage = os.wait4(process.pid, 0)  # its own rusage: the generator's CPU
        process.returncode = os.waitstatus_to_exitcode(status)
        process.stdout.close()
        requests.unlink()
    line = next((x for x in out.splitlines() if x.startswith("bench_load-wrk ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}): {out.strip()[-400:]}")
    got = json.loads(line.split(" ", 1)[1])
    errors: Counter[str] = Counter({f"HTTP {status}": count for status, count in got["statuses"].items()})
    for kind in ("connect", "read", "write", "timeout"):
        if got[kind]:
            errors[kind] = got[kind]
    ran = got["duration_us"] / 1e6
    return {
        "requests": got["requests"],
        "per_s": got["requests"] / ran,
        "p50_ms": got["p50_us"] / 1000,
        "p99_ms": got["p99_us"] / 1000,
        "max_ms": got["max_us"] / 1000,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
    }, usage.ru_utime + usage.ru_stime


class CpuSplit:
    """CPU seconds, over one run, of each group of processes that serve it (``groups``: name to
    pids; their children as they were at the start count with them) and of the PostgreSQL backends
    whose ``application_name`` is ``backends`` (looked up every ``SAMPLE_S``: a backend that ends
    between two looks loses its last half second; one that starts during the run counts from 0).
    The whole machine's busy CPU seconds beside them show what else ran."""

    def __init__(self, groups: dict[str, list[int]], backends: tuple[str, str] | None = None) -> None:
        self._procs = {
            name: [q for pid in pids for p in [psutil.Process(pid)] for q in [p, *p.children(recursive=True)]]
            for name, pids in groups.items()
        }
        self._backends = backends
        self._seen: dict[int, tuple[psutil.Process, float, float]] = {}  # pid: process, first, last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sampler_s = 0.0  # the look-ups' own CPU in this process (not the generator's)

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return float("nan")
        return float(times.user + times.system)

    def __enter__(self) -> CpuSplit:
        self._machine = psutil.cpu_times()
        self._first = {name: sum(self._cpu(p) for p in procs) for name, procs in self._procs.items()}
        self._wall = time.perf_counter()
        if self._backends is not None:
            self._engine = sqlalchemy.create_engine(self._backends[0], poolclass=sqlalchemy.pool.NullPool)
            self._look(at_start=True)
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def _look(self, *, at_start: bool = False) -> None:
        assert self._backends is not None
        with self._engine.connect() as conn:
            pids = conn.execute(
                sqlalchemy.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name"),
                {"name": self._backends[1]},
            ).scalars()
            for pid in pids:
                try:
                    process = self._seen[pid][0] if pid in self._seen else psutil.Process(pid)
                except psutil.NoSuchProcess:
                    continue
                now = self._cpu(process)
                if math.isnan(now):
                    continue
                first = self._seen[pid][1] if pid in self._seen else (now if at_start else 0.0)
                self._seen[pid] = (process, first, now)

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._look()
        self.sampler_s = time.thread_time()

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = {
            name: sum(self._cpu(p) for p in procs) - self._first[name] for name, procs in self._procs.items()
        }
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._look()
            self._engine.dispose()
            self.cpu_s["postgres backends"] = sum(last - first for _, first, last in self._seen.values())
        end = psutil.cpu_times()
        busy = [
            sum(getattr(t, f) for f in ("user", "nice", "system", "irq", "softirq", "steal") if hasattr(t, f))
            for t in (self._machine, end)
        ]
        self.machine_busy_s = busy[1] - busy[0]

    def figures(self, requests: int, generator_s: float) -> dict[str, Any]:
        """CPU seconds and µs a request of each group, the generator's and theirs together."""
        cpu = {**self.cpu_s, "load generator": generator_s}
        ours = sum(cpu.values())
        per = {name: s / requests * 1e6 if requests else float("nan") for name, s in cpu.items()}
        return {
            "wall_s": self.wall_s,
            "cpu_s": cpu,
            "us_per_request": per | {"all of these": ours / requests * 1e6 if requests else float("nan")},
            "cores_used": ours / self.wall_s,
            "machine_busy_s": self.machine_busy_s,
            "machine_cores": psutil.cpu_count() or 1,
            "others_s": self.machine_busy_s - ours,
            "backends_seen": len(self._seen),
        }


def _serve(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _load(
    generator: str,
    name: str,
    endpoint: str,
    token: str,
    ids: list[str],
    clients: int,
    seconds: float,
    split: CpuSplit,
    workdir: Path,
) -> dict[str, Any]:
    """The clients against ``endpoint`` for ``seconds`` by ``generator`` (``wrk`` or ``httpx``),
    ``split`` watching the CPU of the processes that serve them: the figures and the CPU split."""
    with split:
        if generator == "wrk":
            result, generator_s = _drive_wrk(endpoint, token, ids, clients, seconds, workdir)
        else:
            result, generator_s = _drive_httpx(endpoint, token, ids, clients, seconds)
    if generator == "httpx":
        generator_s -= split.sampler_s  # the look-ups' thread ran in this process too
    return {
        "server": name,
        "generator": generator,
        **result,
        "cpu": split.figures(result["requests"], generator_s),
    }


def measure_gsomia(root: Path, clients: int, seconds: float, items: int, generator: str) -> dict[str, Any]:
    """The node (SQLite) served by one process on its own port."""
    jpn, ids, token = _built(root, items, None)
    return _served(jpn, ids, token, clients, seconds, 0, root, generator, None)


def measure_scaling(
    root: Path, clients: int, seconds: float, items: int, counts: list[int], database_url: str, generator: str
) -> list[dict[str, Any]]:
    """The node on ``database_url``'s PostgreSQL (a schema of its own, dropped after), served by each
    of ``counts`` processes in turn behind HAProxy: one network built and filled for all of them.
    Its connections name themselves (``application_name``) so that their backends' CPU is found."""
    urls = network.schema_urls(database_url, root / "net")
    tag = f"gsomia-bench-load-{uuid.uuid4().hex[:8]}"
    urls["JPN"] = (
        make_url(urls["JPN"])
        .update_query_dict({"application_name": tag})
        .render_as_string(hide_password=False)
    )
    try:
        jpn, ids, token = _built(root, items, urls)
        return [
            _served(jpn, ids, token, clients, seconds, count, root, generator, (database_url, tag))
            for count in counts
        ]
    finally:
        _drop_schemas(database_url, root / "net")


def _built(root: Path, items: int, urls: dict[str, str] | None) -> tuple[network.NetNode, list[str], str]:
    """The demo network built in ``root`` (on ``urls``' schemas, else SQLite), ``items`` ingested at
    JPN: JPN, the item ids and its release officer's token."""
    members = network.build(root / "net", database_urls=urls)
    jpn = next(m for m in members if m.party == "JPN")
    node = Node(load_config(jpn.directory))
    ids = _ingest(node, items)
    node.close()
    token = json.loads((jpn.directory / "tokens.json").read_text(encoding="utf-8"))["officer"]
    return jpn, ids, token


def _served(
    jpn: network.NetNode,
    ids: list[str],
    token: str,
    clients: int,
    seconds: float,
    processes: int,
    root: Path,
    generator: str,
    backends: tuple[str, str] | None,
) -> dict[str, Any]:
    """The clients against JPN served by one process on its port (``processes`` 0), or by
    ``processes`` processes behind HAProxy on its port; everything started here is stopped after.
    ``backends``: the PostgreSQL URL and the ``application_name`` of the node's connections."""
    ports = [jpn.port] if processes == 0 else [network.free_port() for _ in range(processes)]
    servers = [
        _serve([sys.executable, "-m", "gsomia", "node", "serve", "--no-sender", "--log-format", "text",
                "--dir", str(jpn.directory), "--port", str(port)])
        for port in ports
    ]  # fmt: skip
    groups = {"node processes": [server.pid for server in servers]}
    try:
        for port in ports:
            network._wait_healthy(f"http://127.0.0.1:{port}", STARTUP_S)
        if processes:
            config = root / "haproxy.cfg"
            config.write_text(network.balancer_config({jpn: ports}), encoding="utf-8")
            haproxy = shutil.which("haproxy")
            if haproxy is None:
                raise SystemExit("--processes needs HAProxy (apt-get install haproxy)")
            servers.append(_serve([haproxy, "-db", "-f", str(config)]))
            groups["haproxy"] = [servers[-1].pid]
            network._wait_healthy(jpn.endpoint, STARTUP_S)
        name = "gsomia node" if processes == 0 else f"gsomia node, {processes} process(es) behind HAProxy"
        split = CpuSplit(groups, backends)
        return _load(generator, name, jpn.endpoint, token, ids, clients, seconds, split, root)
    finally:
        for server in servers:
            _stop(server)


def _drop_schemas(database_url: str, directory: Path) -> None:
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as conn:
        for schema in network.schema_names(directory).values():
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


def measure_floor(clients: int, seconds: float, generator: str, workdir: Path) -> dict[str, Any]:
    port = network.free_port()
    app = ["--app-dir", str(HERE), "_floor_app:app", "--port", str(port), "--log-level", "warning"]
    server = _serve([sys.executable, "-m", "uvicorn", *app])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        network._wait_healthy(endpoint, STARTUP_S)
        split = CpuSplit({"floor process": [server.pid]})
        name = "FastAPI + uvicorn, no work (floor)"
        return _load(generator, name, endpoint, "floor", ["a", "b", "c"], clients, seconds, split, workdir)
    finally:
        _stop(server)


CPU_PASS = 150  # requests per timed pass of part (b), 50 of each path
CPU_PASSES = 7


def _paths(ids: list[str]) -> dict[str, list[str]]:
    return {
        "page of 20": ["/items?limit=20"],
        "one item (decided, audited)": [f"/items/{ids[n % len(ids)]}" for n in range(50)],
        "healthz": ["/healthz"],
    }


def _cpu_per_request(app: Any, token: str, paths: list[str], count: int) -> float:
    """The best pass's CPU seconds per request, ``count`` requests one at a time over ``paths``."""

    async def one_pass() -> float:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://node", headers=headers) as client:
            for n in range(5):  # warm
                (await client.get(paths[n % len(paths)])).raise_for_status()
            start = time.process_time()
            for n in range(count):
                response = await client.get(paths[n % len(paths)])
                if response.status_code != 200:
                    raise RuntimeError(f"{paths[n % len(paths)]} answered {response.status_code}")
            return (time.process_time() - start) / count

    return min(asyncio.run(one_pass()) for _ in range(CPU_PASSES))


def measure_cpu(root: Path, items: int) -> dict[str, dict[str, float]]:
    """Part (b): CPU µs per request of gsomia's app and of the floor's, per path."""
    members = network.build(root / "cpu")
    jpn = next(m for m in members if m.party == "JPN")
    node = Node(load_config(jpn.directory))
    ids = _ingest(node, items)
    token = json.loads((jpn.directory / "tokens.json").read_text(encoding="utf-8"))["officer"]
    app = create_app(node)
    gc.freeze()
    out: dict[str, dict[str, float]] = {}
    try:
        for name, paths in _paths(ids).items():
            count = CPU_PASS // 3
            ours = _cpu_per_request(app, token, paths, count)
            floor_paths = [p if not p.startswith("/items/") else "/items/x" for p in paths]
            theirs = _cpu_per_request(floor_app, "floor", floor_paths, count)
            out[name] = {"gsomia_us": ours * 1e6, "floor_us": theirs * 1e6}
    finally:
        node.close()
        gc.unfreeze()
    return out


def measure_reads(root: Path, items: int, reads: int = 2000) -> dict[str, dict[str, float]]:
    """Part (c): ``Node.read`` (decided, audited) by 1 and by 40 threads at once, in-process: CPU µs
    a read and reads a second, best of 3 runs of ``reads`` reads. Concurrent reads' audit records
    are written together (``GroupedAppend``); one reader at a time is the peer."""
    members = network.build(root / "reads")
    jpn = next(m for m in members if m.party == "JPN")
    node = Node(load_config(jpn.directory))
    ids = _ingest(node, min(items, 50))
    officer = node.people.person("officer")
    out: dict[str, dict[str, float]] = {}
    try:
        for threads in (1, 40):
            with ThreadPoolExecutor(max_workers=threads) as pool:
                list(pool.map(lambda n: node.items.read(officer, ids[n % len(ids)]), range(200)))
                best: tuple[float, float] | None = None
                for _ in range(3):
                    cpu, wall = time.process_time(), time.perf_counter()
                    list(pool.map(lambda n: node.items.read(officer, ids[n % len(ids)]), range(reads)))
                    taken = (time.process_time() - cpu, time.perf_counter() - wall)
                    best = taken if best is None or taken[0] < best[0] else best
            assert best is not None
            out[f"{threads} thread{'s' if threads > 1 else ''}"] = {
                "cpu_us": best[0] / reads * 1e6,
                "per_s": reads / best[1],
            }
    finally:
        node.close()
    return out


def _ingest(node: Node, items: int) -> list[str]:
    officer = node.people.person("officer")
    label = {
        "originator": "JPN",
        "classification": "秘",
        "releasable_to": ["KOR"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": "2024-01-01T00:00:00+09:00",
    }
    ids = [f"load-{n:05d}" for n in range(items)]
    node.items.ingest_many(officer, [NewIngest(label, b'{"track": 1}', item_id=i) for i in ids])
    return ids


def _rows(ours: dict[str, Any], floor: dict[str, Any] | None, clients: int, seconds: float) -> list[Any]:
    peer = floor["server"] if floor else None
    where = f"{clients} clients ({ours['generator']}) for {seconds:g} s"

    def versus(key: str, higher_is_better: bool) -> dict[str, Any]:
        theirs = floor[key] if floor else None
        if theirs is None or not ours[key]:
            return {"peer": peer, "peer_value": theirs, "ratio": None}
        ratio = ours[key] / theirs if higher_is_better else theirs / ours[key]
        return {"peer": peer, "peer_value": theirs, "ratio": ratio}

    judged = clients >= 200 and seconds >= 60
    return [
        row(
            f"API errors, {where}",
            ours["errors"],
            f"of {ours['requests']:,} requests",
            target="0 errors at 200 clients for 60 s",
            met=ours["errors"] == 0 if judged else None,
            **versus("errors", higher_is_better=False) | {"ratio": None},
        ),
        row(
            f"API latency p50, {where}",
            ours["p50_ms"],
            "ms",
            target="(printed)",
            met=None,
            **versus("p50_ms", higher_is_better=False),
        ),
        row(
            f"API latency p99, {where} (ratio: the floor's p99 / gsomia's)",
            ours["p99_ms"],
            "ms",
            target=f"<= {P99_TARGET:g}x the floor's p99 at 200 clients for 60 s",
            met=ours["p99_ms"] <= P99_TARGET * floor["p99_ms"] if judged and floor else None,
            **versus("p99_ms", higher_is_better=False),
        ),
        row(
            f"API requests/s, {where}",
            ours["per_s"],
            "requests/s",
            target=f">= {RATE_TARGET:g}x the floor at 200 clients for 60 s",
            met=ours["per_s"] >= RATE_TARGET * floor["per_s"] if judged and floor else None,
            **versus("per_s", higher_is_better=True),
        ),
        _load_cpu_row(ours, floor, where),
    ]


def _load_cpu_row(ours: dict[str, Any], floor: dict[str, Any] | None, where: str) -> Any:
    """The server process's CPU a request under part (a)'s load beside the floor's, and the cores each
    used. On two cores the rate ratio is at most the CPU ratio while each process keeps its core busy;
    a process that used less than a core was waiting (the interpreter lock's hand-offs between its
    threads, its read threads' queue), not working: which of the two holds the rate back."""

    def figures(result: dict[str, Any]) -> tuple[float, float]:
        cpu = result["cpu"]
        name = next(k for k in cpu["cpu_s"] if k not in ("load generator", "postgres backends"))
        return cpu["us_per_request"][name], cpu["cpu_s"][name] / cpu["wall_s"]

    ours_us, ours_cores = figures(ours)
    theirs = figures(floor) if floor else None
    cores = f"cores used: gsomia {ours_cores:.2f}" + (f", floor {theirs[1]:.2f}" if theirs else "")
    return row(
        f"API server CPU per request under load, {where} (ratio: the floor's / gsomia's; {cores})",
        ours_us,
        "µs CPU",
        peer=floor["server"] if floor else None,
        peer_value=theirs[0] if theirs else None,
        ratio=theirs[0] / ours_us if theirs and ours_us else None,
        target="(information: the CPU ratio bounds the rate ratio; under a core used, the process waited)",
        met=None,
    )


def _cpu_rows(cpu: dict[str, dict[str, float]]) -> list[Any]:
    return [
        row(
            f"API server CPU per request, {name}, in-process (ratio: the floor's / gsomia's)",
            figures["gsomia_us"],
            "µs CPU",
            peer="FastAPI, no work (floor), same transport",
            peer_value=figures["floor_us"],
            ratio=figures["floor_us"] / figures["gsomia_us"],
            target="(information: where the time goes)",
            met=None,
        )
        for name, figures in cpu.items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long they ask (default 60)")
    parser.add_argument("--items", type=int, default=500, help="items the node holds (default 500)")
    parser.add_argument("--no-peer", action="store_true", help="leave the floor out")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--cpu-only", action="store_true", help="only part (b): CPU per request")
    parser.add_argument(
        "--processes",
        default=None,
        help="e.g. 1,2: on PostgreSQL, that many processes behind HAProxy, in turn",
    )
    parser.add_argument("--database-url", default=None, help="PostgreSQL for --processes (a schema per run)")
    parser.add_argument(
        "--and-processes",
        default=None,
        metavar="COUNTS",
        help="e.g. 1,2: after parts (a)-(c), the --processes comparison too (the same clients, "
        "--process-seconds each, beside part (a)'s floor), on --database-url or the test PostgreSQL",
    )
    parser.add_argument(
        "--process-seconds", type=float, default=None, help="seconds per process count (default --seconds)"
    )
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default=None,
        help="what drives the clients: wrk (default where installed; the process comparison needs it) "
        "or httpx (asyncio tasks in this process, what part (a) used before; the default without wrk)",
    )
    args = parser.parse_args(argv)
    generator = args.generator or ("wrk" if shutil.which("wrk") else "httpx")
    if args.clients < 1 or args.seconds <= 0 or args.items < 1:
        parser.error("--clients, --seconds and --items must be positive")
    if args.processes is not None:
        if not args.database_url:
            parser.error("--processes needs --database-url postgresql+psycopg://...")
        return _scaling(args)
    counts = _counts(args.and_processes) if args.and_processes else []
    if counts and args.cpu_only:
        parser.error("--and-processes needs part (a): leave out --cpu-only")
    scaled: list[dict[str, Any]] = []
    loads = [load_average()]
    ours: dict[str, Any] | None = None
    floor = None
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-load-") as tmp:
        if not args.cpu_only:
            ours = measure_gsomia(Path(tmp), args.clients, args.seconds, args.items, generator)
        cpu = measure_cpu(Path(tmp), args.items)
        reads = measure_reads(Path(tmp), args.items)
        if not args.no_peer and not args.cpu_only:
            floor = measure_floor(args.clients, args.seconds, generator, Path(tmp))
    process_seconds = args.process_seconds or args.seconds
    unavailable = _scaling_unavailable(args.database_url, args.generator or "wrk") if counts else None
    if counts and unavailable is None:
        with tempfile.TemporaryDirectory(prefix="gsomia-bench-scale-") as tmp:
            scaled = measure_scaling(
                Path(tmp), args.clients, process_seconds, args.items, counts,
                args.database_url or POSTGRES_URL, args.generator or "wrk",
            )  # fmt: skip
    loads.append(load_average())
    rows = ([] if ours is None else _rows(ours, floor, args.clients, args.seconds)) + _cpu_rows(cpu)
    if scaled:
        rows += _scaling_rows(counts, scaled, floor, args.clients, process_seconds)
        rows += _split_rows(counts, scaled)
    elif counts:  # said in the table, not left out silently
        print(f"the process comparison did not run: {unavailable}", file=sys.stderr)
        rows.append(
            row(
                f"API requests/s, {counts[-1]} process(es) behind HAProxy on PostgreSQL: not measured "
                f"({unavailable})",
                float("nan"), "requests/s",
                target=f"2 processes >= {SCALE_TARGET:g}x 1 process (2 cores)", met=None,
            )
        )  # fmt: skip
    one, many = reads["1 thread"], reads["40 threads"]
    rows.append(
        row(
            "Node.read, 40 threads at once, in-process (ratio: CPU a read, one thread's / 40 threads')",
            many["per_s"],
            "reads/s",
            peer="one thread",
            peer_value=one["per_s"],
            ratio=one["cpu_us"] / many["cpu_us"],
            target="(information)",
            met=None,
        )
    )
    if args.json:
        out = {
            "benchmark": "load",
            "clients": args.clients,
            "seconds": args.seconds,
            "items": args.items,
            "gsomia": ours,
            "floor": floor,
            "cpu_per_request": cpu,
            "concurrent_reads": reads,
            "processes": {
                "counts": counts,
                "seconds": process_seconds,
                "results": scaled,
                "predicted_by_cpu_split": _predicted(counts, scaled),
            }
            if counts
            else None,
            "generator": {"name": generator, "wrk": wrk_version(), "wrk_threads": WRK_THREADS},
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "uvicorn_version": version("uvicorn"),
            "load_average_1min": {"start": loads[0], "end": loads[1]},
            "rows": rows,
        }
        print(json.dumps(out, ensure_ascii=False))
        return 0
    if ours is not None:
        print(f"{args.clients} concurrent API clients for {args.seconds:g} s, one node ({args.items} items)")
    print(f"CPU: {cpu_model()}; uvicorn {version('uvicorn')}; 1-min load average {loads[0]} -> {loads[1]}")
    print(f"clients driven by {generator if generator == 'httpx' else f'wrk {wrk_version()}'}")
    print()
    if ours is not None:
        print(
            f"{'server':<36} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'errors':>7}"
        )
        for result in (ours, floor):
            if result is None:
                continue
            print(
                f"{result['server']:<36} {result['requests']:>9,} {result['per_s']:>8,.0f} "
                f"{result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} {result['max_ms']:>8.1f} "
                f"{result['errors']:>7}"
            )
            if result["errors"]:
                print(f"  errors: {result['errors_by_kind']}")
        verdict = "met" if ours["errors"] == 0 else "NOT met"
        judged = "" if args.clients >= 200 and args.seconds >= 60 else " (judged at 200 clients for 60 s)"
        print(f"target: no errors{judged}: {verdict}")
        if floor is not None:
            print(
                f"requests/s {ours['per_s'] / floor['per_s']:.2f}x the floor's (target >= {RATE_TARGET:g}x); "
                f"p99 {ours['p99_ms'] / floor['p99_ms']:.2f}x the floor's (target <= {P99_TARGET:g}x)"
            )
        _print_split([r for r in (ours, floor) if r is not None])
        print()
    print("(b) server CPU per request, in-process, one at a time (best of passes)")
    print(f"{'path':<30} {'gsomia µs':>10} {'floor µs':>9} {'gsomia/floor':>13}")
    for name, figures in cpu.items():
        print(
            f"{name:<30} {figures['gsomia_us']:>10,.0f} {figures['floor_us']:>9,.0f} "
            f"{figures['gsomia_us'] / figures['floor_us']:>12.2f}x"
        )
    print()
    print("(c) Node.read in-process, decided and audited (best of 3 runs of 2,000 reads)")
    for name, figures in reads.items():
        print(f"{name:<12} {figures['cpu_us']:>6,.0f} µs CPU a read {figures['per_s']:>8,.0f} reads/s")
    if scaled:
        print()
        print(f"(d) {args.clients} clients for {process_seconds:g} s, the node on PostgreSQL behind HAProxy")
        _print_scaling(counts, scaled, floor)
    elif counts:
        print(f"(d) not measured: {unavailable}")
    return 0


def _scaling(args: argparse.Namespace) -> int:
    """One and more processes behind HAProxy on PostgreSQL, side by side with the floor."""
    counts = _counts(args.processes)
    generator = args.generator or "wrk"
    unavailable = _scaling_unavailable(args.database_url, generator)
    if unavailable is not None:
        raise SystemExit(f"--processes: {unavailable}")
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-scale-") as tmp:
        results = measure_scaling(
            Path(tmp), args.clients, args.seconds, args.items, counts, args.database_url, generator
        )
        floor = measure_floor(args.clients, args.seconds, generator, Path(tmp))
    loads.append(load_average())
    rows = _scaling_rows(counts, results, floor, args.clients, args.seconds) + _split_rows(counts, results)
    if args.json:
        load = {"start": loads[0], "end": loads[1]}
        out = {
            "benchmark": "load-scaling",
            "results": results,
            "floor": floor,
            "predicted_by_cpu_split": _predicted(counts, results),
            "generator": {"name": generator, "wrk": wrk_version(), "wrk_threads": WRK_THREADS},
            "load_average_1min": load,
        }
        print(json.dumps(out | {"rows": rows}))
        return 0
    print(f"{args.clients} clients for {args.seconds:g} s; CPU {cpu_model()}; load {loads[0]} -> {loads[1]}")
    print(f"clients driven by {generator if generator == 'httpx' else f'wrk {wrk_version()}'}")
    _print_scaling(counts, results, floor)
    return 0


def _counts(text: str) -> list[int]:
    counts = [int(n) for n in text.split(",")]
    if not counts or min(counts) < 1:
        raise SystemExit("--processes / --and-processes: process counts such as 1,2")
    return counts


def _print_scaling(counts: list[int], results: list[dict[str, Any]], floor: dict[str, Any] | None) -> None:
    for result in [*results, *([floor] if floor else [])]:
        print(
            f"{result['server']:<46} {result['requests']:>9,} {result['per_s']:>8,.0f} req/s "
            f"p50 {result['p50_ms']:>7.1f} ms p99 {result['p99_ms']:>7.1f} ms errors {result['errors']}"
        )
    base = results[0]["per_s"]
    for count, result in zip(counts, results, strict=True):
        print(f"{count} process(es): {result['per_s'] / base:.2f}x the {counts[0]}-process rate")
    _print_split([*results, *([floor] if floor else [])])
    predicted = _predicted(counts, results)
    if predicted is not None:
        print(
            f"the CPU split predicts {predicted['ratio']:.2f}x on {predicted['cores']} cores "
            f"({predicted['per_s'][0]:,.0f} -> {predicted['per_s'][-1]:,.0f} requests/s if nothing else ran)"
        )


def _print_split(results: list[dict[str, Any]]) -> None:
    """Each run's CPU µs a request by process group, and what the rest of the machine used."""
    print("CPU µs a request, by process (over the run; 'others': the rest of the machine, CPU s)")
    for result in results:
        cpu = result["cpu"]
        parts = ", ".join(f"{name} {us:,.0f}" for name, us in cpu["us_per_request"].items())
        print(
            f"  {result['server']}: {parts}; {cpu['cores_used']:.2f} cores used of {cpu['machine_cores']}, "
            f"others {cpu['others_s']:,.1f} s in {cpu['wall_s']:.0f} s"
        )


def _scaling_rows(
    counts: list[int],
    results: list[dict[str, Any]],
    floor: dict[str, Any] | None,
    clients: int,
    seconds: float,
) -> list[Any]:
    """The first count's rate beside the floor's; each further count's beside the first's (the
    target: 2 processes >= 1.6x 1 process on this 2-core machine)."""
    base = results[0]["per_s"]
    judged = clients >= 200 and seconds >= 30  # --full's size; smaller runs only show the path works
    rows = []
    for n, (count, result) in enumerate(zip(counts, results, strict=True)):
        figure = (
            f"API requests/s, {count} process(es) behind HAProxy on PostgreSQL, "
            f"{clients} clients ({result['generator']}) for {seconds:g} s"
        )
        unit = f"requests/s ({result['errors']} errors)"
        if n == 0:
            rows.append(
                row(
                    figure, result["per_s"], unit,
                    peer=floor["server"] if floor else None,
                    peer_value=floor["per_s"] if floor else None,
                    ratio=result["per_s"] / floor["per_s"] if floor and floor["per_s"] else None,
                    target="(printed: beside the floor)", met=None,
                )
            )  # fmt: skip
            continue
        rows.append(
            row(
                figure, result["per_s"], unit,
                peer=f"{counts[0]} process(es)", peer_value=base,
                ratio=result["per_s"] / base if base else None,
                target=f"2 processes >= {SCALE_TARGET:g}x 1 process (2 cores), judged at 200 clients"
                if count == 2 else "(printed)",
                met=(result["per_s"] >= SCALE_TARGET * base and result["errors"] == 0)
                if count == 2 and counts[0] == 1 and judged else None,
            )
        )  # fmt: skip
    return rows


def _predicted(counts: list[int], results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What each count's CPU split predicts on this machine's cores with nothing else running: a
    node process uses at most one core (one interpreter), all the processes together at most every
    core, so a count's rate is at most min(count / node µs, cores / everyone's µs) a request. The
    ratio of the last count's to the first's is what the CPU makes possible, whatever the load."""
    if not results:
        return None
    cores = results[0]["cpu"]["machine_cores"]
    rates = []
    for count, result in zip(counts, results, strict=True):
        per = result["cpu"]["us_per_request"]
        if not per["node processes"] > 0:
            return None
        rates.append(1e6 * min(count / per["node processes"], cores / per["all of these"]))
    return {"cores": cores, "per_s": rates, "ratio": rates[-1] / rates[0]}


def _split_rows(counts: list[int], results: list[dict[str, Any]]) -> list[Any]:
    """Each count's CPU a request: the node processes' beside every measured process's, and the
    ratio of the rates that split predicts (information: it does not depend on the machine's load)."""
    rows = []
    for count, result in zip(counts, results, strict=True):
        per = result["cpu"]["us_per_request"]
        rest = ", ".join(
            f"{k} {v:,.0f}" for k, v in per.items() if k not in ("node processes", "all of these")
        )
        rows.append(
            row(
                f"CPU a request, {count} process(es) behind HAProxy on PostgreSQL: the node processes "
                f"(ratio: their share; the rest: {rest} µs)",
                per["node processes"], "µs CPU",
                peer="every process measured", peer_value=per["all of these"],
                ratio=per["node processes"] / per["all of these"] if per["all of these"] else None,
                target="(information: where the CPU goes)", met=None,
            )
        )  # fmt: skip
    predicted = _predicted(counts, results)
    if predicted is not None and len(counts) > 1:
        rows.append(
            row(
                f"API requests/s, {counts[-1]} process(es) behind HAProxy, as the CPU split predicts on "
                f"{predicted['cores']} cores with nothing else running",
                predicted["per_s"][-1], "requests/s",
                peer=f"{counts[0]} process(es), predicted the same way", peer_value=predicted["per_s"][0],
                ratio=predicted["ratio"],
                target="(information: the ratio the CPU allows)", met=None,
            )
        )  # fmt: skip
    return rows


def _scaling_unavailable(database_url: str | None, generator: str) -> str | None:
    """Why the process comparison cannot run here (no PostgreSQL, no HAProxy, no wrk), or None."""
    if shutil.which("haproxy") is None:
        return "HAProxy is not installed"
    if generator == "wrk" and shutil.which("wrk") is None:
        return "wrk is not installed"
    if database_url is None:
        return postgres_absent()
    return None


if __name__ == "__main__":
    sys.exit(main())
