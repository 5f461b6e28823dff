"""Where the API's CPU time per request goes: bench_load's part (b) paths, for a sampling profiler.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a loaded
machine. ``--path NAME`` serves what part (b) serves (the demo network's JPN, ``--items`` items,
``create_app``, its start-up objects frozen out of the collector, the release officer's token) and
asks one of part (b)'s paths ``--requests`` times, one request at a time through
``httpx.ASGITransport``, printing the CPU µs a request: run it under py-spy (``--gil``: only the
thread holding the GIL is sampled, so a thread waiting is not charged). ``--summarise RAW`` reads
py-spy's raw output (collapsed stacks) and prints the share of the request samples (the client's
loop and the worker threads; the node's set-up left out) by package and by function, own and
inclusive.

Run (py-spy installed in the venv: ``pip install py-spy``)::

    py-spy record --gil -r 250 -f raw -o /tmp/page.txt -- \\
        python benchmarks/profile_api.py --path "page of 20" --requests 3000
    python benchmarks/profile_api.py --summarise /tmp/page.txt [--top 15]

Paths: ``page of 20``, ``one item (decided, audited)``, ``healthz``. A baseline from another
checkout: ``PYTHONPATH=/path/to/checkout/src`` before ``python``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import load_average  # benchmarks/ is on sys.path when run as a script
from bench_load import _ingest, _paths

_FRAME = re.compile(r"(?P<function>.*) \((?P<file>.*?):\d+\)$")
# the frames of a request: the client's requests on the loop, or anyio's worker threads
_REQUEST_ROOTS = ("_requests (", "WorkerThread.run (")
# the places issue 18 names, as (label, the functions that hold them), inclusive; places may nest
# (a dependency's hand-off to a worker thread is inside FastAPI's dependency solving)
_PLACES = (
    ("FastAPI's route matching (included routers)", (":_IncludedRouter.matches",)),
    ("hand-offs to worker threads (run_in_threadpool)", ("starlette/concurrency.py:run_in_threadpool",)),
    ("FastAPI's dependency solving", ("fastapi/dependencies/utils.py:solve_dependencies",)),
    (
        "the caller's token (Credentials.authenticate / recognise)",
        (":Credentials.authenticate_row", ":Credentials.recognise"),
    ),
    (
        "the service: ItemService.list_items / .read / .resolve_item / .read_named",
        (
            ":ItemService.list_items",
            ":ItemService.read",
            ":ItemService.resolve_item",
            ":ItemService.read_named",
        ),
    ),
    ("response validation and JSON (serialize_response)", ("fastapi/routing.py:serialize_response",)),
)
_MIDDLEWARE = ("RequestObserver.", "_NoStoreJson.", "_BodyLimit.")


async def _requests(app: Any, token: str, paths: list[str], count: int) -> None:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://node", headers=headers) as client:
        for n in range(count):
            response = await client.get(paths[n % len(paths)])
            if response.status_code != 200:
                raise RuntimeError(f"{paths[n % len(paths)]} answered {response.status_code}")


def serve_and_ask(name: str, requests: int, items: int) -> float:
    """CPU µs a request of ``requests`` requests to part (b)'s path ``name`` (after 20 to warm)."""
    from gsomia.api import create_app
    from gsomia.demo import network
    from gsomia.node import Node, load_config

    with tempfile.TemporaryDirectory(prefix="gsomia-profile-api-") as tmp:
        members = network.build(Path(tmp) / "cpu")
        jpn = next(m for m in members if m.party == "JPN")
        node = Node(load_config(jpn.directory))
        try:
            ids = _ingest(node, items)
            token = json.loads((jpn.directory / "tokens.json").read_text(encoding="utf-8"))["officer"]
            paths = _paths(ids)[name]
            app = create_app(node)
            gc.freeze()
            asyncio.run(_requests(app, token, paths, 20))
            start = time.process_time()
            asyncio.run(_requests(app, token, paths, requests))
            return (time.process_time() - start) / requests * 1e6
        finally:
            node.close()
            gc.unfreeze()


def _where(frame: str) -> tuple[str, str]:
    """(``file:function`` shortened, its package) of one py-spy frame ``function (file:line)``."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, frame
    short = match["file"].split("site-packages/")[-1].split("/src/")[-1]
    short = re.sub(r".*/lib/python3\.\d+/", "", short)
    return f"{short}:{match['function']}", short.split("/")[0].removesuffix(".py")


def summarise(raw: Path, top: int) -> list[str]:
    """The request samples of a py-spy raw file: shares by package (own time), by function (own
    and inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not any(root in stack for root in _REQUEST_ROOTS):
            continue
        n = int(count)
        total += n
        frames = [_where(f) for f in stack.split(";")]
        own[frames[-1][0]] += n
        packages[frames[-1][1]] += n
        for function in {f for f, _ in frames}:
            inclusive[function] += n
    if not total:
        return [f"{raw}: no request samples"]
    lines = [f"{raw}: {total:,} request samples", "own time by package:"]
    lines += [f"  {n / total:6.1%}  {p}" for p, n in packages.most_common(top)]
    lines.append("own time by function:")
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive, where a request's time goes:")
    for label, functions in _PLACES:
        share = sum(n for f, n in inclusive.items() if f.endswith(functions))
        lines.append(f"  {share / total:6.1%}  {label}")
    middleware = sum(n for f, n in own.items() if any(m in f for m in _MIDDLEWARE))
    lines.append(f"  {middleware / total:6.1%}  gsomia's middleware, own time (request id and log, no-store)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--path", choices=list(_paths(["x"])), help="ask this part (b) path")
    what.add_argument("--summarise", type=Path, metavar="RAW", help="summarise py-spy's raw output")
    parser.add_argument("--requests", type=int, default=3000, help="requests asked (default 3000)")
    parser.add_argument("--items", type=int, default=500, help="items the node holds (default 500)")
    parser.add_argument("--top", type=int, default=15, help="lines per ranking (default 15)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.items < 1 or args.top < 1:
        parser.error("--requests, --items and --top must be positive")
    if args.summarise is not None:
        if not args.summarise.is_file():
            parser.error(f"no file {args.summarise}")
        print("\n".join(summarise(args.summarise, args.top)))
        return 0
    before = load_average()
    cpu = serve_and_ask(args.path, args.requests, args.items)
    print(f"{args.path}: {cpu:,.0f} µs CPU a request; load average {before} -> {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
