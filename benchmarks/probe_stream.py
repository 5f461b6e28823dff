"""Where a track's latency goes: one track's path through the three nodes, stage by stage.

Not a ``bench_*`` script (the runner does not pick it up): a tool for finding the waits. It starts
``bench_stream.py``'s network (KOR, JPN, USA as processes, ``--hub``: the what-if where KOR reaches
JPN only through the USA) with ``benchmarks/_stage_probe`` on the nodes' ``PYTHONPATH``: each node
then writes a timestamp at each stage of each track (its ``sitecustomize.py`` says which; nothing in
the nodes' behaviour changes but the probe's own cost, a few microseconds a stage). The client
publishes ``--rate`` updates a second over KOR's WebSocket feed for ``--seconds`` and receives them
with a WebSocket consumer at JPN, as ``bench_stream.py`` does, and keeps each update's send and
receipt instants. All instants are ``time.perf_counter()``, one monotonic clock for every process.

It prints, for each step of the path (client send, KOR's publish, queued for the link, the frame's
body signed, sealed, opened at the receiver, verified and handed to the replay memory, reached by
the link's taker, the memory's commit answered, put on the bus, given to the consumer, received by
the client), the milliseconds from the step before: p50, p90, p99, the mean, and the mean over the
slowest 1 % of tracks (what the tail is made of). Then, per node: the replay memory's commits (wall
and CPU), those over 10 ms, the checkpoint passes over 5 ms (``Store.checkpoint_aside``), the event
loop's lateness, garbage collections, frames and tracks per frame (CPU per track is
``profile_stream.py``'s: the probe's own cost would be in it here).

``--realtime`` runs the client and the nodes under ``SCHED_FIFO`` (priority 5, root only): on a
machine shared with other work the nodes' own waits show, not the scheduler's queue. The kernel
gives real-time tasks at most 95 % of each second (``sched_rt_runtime_us``): a pause of up to 50 ms
seen at the same instant in every node is that, not the nodes.

Run: ``python benchmarks/probe_stream.py [--hub] [--rate 1000] [--seconds 10] [--realtime]``.
A baseline from another checkout: ``PYTHONPATH=/path/to/checkout/src python benchmarks/probe_stream.py``
(the probe's directory is put before it for the nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import load_average
from benchmarks.bench_stream import _arun, _Network, _quantile, _updates

_PROBE = Path(__file__).resolve().parent / "_stage_probe"
_DIRECT = [
    "KOR.pub",
    "KOR.queued>JPN",
    "KOR.body>JPN",
    "KOR.sealed>JPN",
    "JPN.opened<KOR",
    "JPN.verified<KOR",
]
_HUB = [
    "KOR.pub", "KOR.queued>USA", "KOR.body>USA", "KOR.sealed>USA", "USA.opened<KOR", "USA.verified<KOR",
    "USA.take", "USA.remembered", "USA.queued>JPN", "USA.body>JPN", "USA.sealed>JPN", "JPN.opened<USA",
    "JPN.verified<USA",
]  # fmt: skip
_RECEIVED = ["JPN.take", "JPN.remembered", "JPN.emit", "JPN.yield"]


async def _publish(
    net: _Network, updates: list[dict[str, Any]], rate: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Publish ``updates`` at KOR at ``rate`` a second, receive them at JPN: (sent, received) instants."""
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    follow = net.endpoint["JPN"].replace("http", "ws") + "/stream/tracks/ws"
    feed = net.endpoint["KOR"].replace("http", "ws") + "/stream/tracks/publish"
    reader = {"Authorization": f"Bearer {net.tokens['JPN']['analyst']}"}
    officer = {"Authorization": f"Bearer {net.tokens['KOR']['officer']}"}
    async with (
        connect(follow, additional_headers=reader, max_size=2**20, compression=None) as ws,
        httpx.AsyncClient(timeout=30) as client,
    ):
        warm = dict(updates[0], update_ts=(datetime.now(UTC) - timedelta(days=1)).isoformat())
        (
            await client.post(f"{net.endpoint['KOR']}/stream/tracks", json=warm, headers=officer)
        ).raise_for_status()
        await asyncio.wait_for(ws.recv(), timeout=10)

        async def consume() -> None:
            async for text in ws:
                received[orjson.loads(text)["update_ts"]] = time.perf_counter()
                if len(received) >= len(updates):
                    return

        consumer = asyncio.create_task(consume())
        async with connect(feed, additional_headers=officer, max_size=2**20, compression=None) as pub:
            texts = [orjson.dumps(u).decode() for u in updates]
            began = time.perf_counter()
            for i, (update, text) in enumerate(zip(updates, texts, strict=True)):
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent[update["update_ts"]] = time.perf_counter()
                await pub.send(text)
            try:
                await asyncio.wait_for(consumer, timeout=15)
            except TimeoutError:
                consumer.cancel()
    return sent, received


def _events(directory: Path) -> dict[str, list[list[Any]]]:
    events: dict[str, list[list[Any]]] = collections.defaultdict(list)
    for path in directory.glob("*.jsonl"):
        events[path.name.split("-")[0]] += [json.loads(line) for line in path.read_text().splitlines()]
    return events


def _stages(events: dict[str, list[list[Any]]]) -> dict[str, dict[str, float]]:
    """Each track's first instant at each stage, by its ``update_ts``."""
    at: dict[str, dict[str, float]] = collections.defaultdict(dict)
    opened = {(e[3], node, e[4]): e[1] for node, es in events.items() for e in es if e[0] == "opened"}
    for node, es in events.items():
        for e in es:
            kind = e[0]
            if kind == "pub":
                at[e[2]].setdefault(f"{node}.pub", e[1])
            elif kind == "queued":
                at[e[3]].setdefault(f"{node}.queued>{e[2]}", e[1])
            elif kind == "sealed":
                for ts in e[6]:
                    at[ts].setdefault(f"{node}.body>{e[2]}", e[4])
                    at[ts].setdefault(f"{node}.sealed>{e[2]}", e[1])
            elif kind == "verified":
                began = opened.get((e[2], node, e[3]))
                for ts in e[4]:
                    if began is not None:
                        at[ts].setdefault(f"{node}.opened<{e[2]}", began)
                    at[ts].setdefault(f"{node}.verified<{e[2]}", e[1])
            elif kind in ("remembered", "take"):
                for ts in e[2]:
                    at[ts].setdefault(f"{node}.{kind}", e[1])
            elif kind in ("emit", "yield"):
                at[e[2]].setdefault(f"{node}.{kind}", e[1])
    return at


def _report(
    events: dict[str, list[list[Any]]], sent: dict[str, float], received: dict[str, float], hub: bool
) -> None:
    at = _stages(events)
    latency = {ts: (received[ts] - sent[ts]) * 1000 for ts in received if ts in sent}
    values = sorted(latency.values())
    print(f"tracks sent {len(sent)}, received {len(received)}: latency p50 {_quantile(values, 0.5):.2f}, "
          f"p99 {_quantile(values, 0.99):.2f}, p99.9 {_quantile(values, 0.999):.2f} ms")  # fmt: skip
    order = [*(_HUB if hub else _DIRECT), *_RECEIVED]
    steps: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    slowest = set(sorted(latency, key=latency.__getitem__)[-max(1, len(latency) // 100) :])
    tail: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for ts in latency:
        path = [("client.sent", sent[ts]), *((k, at[ts][k]) for k in order if k in at[ts])]
        path.append(("client.received", received[ts]))
        for (a, ta), (b, tb) in itertools.pairwise(path):
            steps[(a, b)].append((tb - ta) * 1000)
            if ts in slowest:
                tail[(a, b)].append((tb - ta) * 1000)
    heads = f"{'tracks':>6} {'p50':>7} {'p90':>7} {'p99':>7} {'mean':>7} {'slowest 1% mean':>16}"
    print(f"  {'step (ms from the one before)':<44} {heads}")
    for (a, b), spans in steps.items():
        if len(spans) < len(latency) // 2:
            continue
        ordered, worst = sorted(spans), tail.get((a, b), [])
        mean, worst_mean = sum(spans) / len(spans), sum(worst) / len(worst) if worst else float("nan")
        spread = " ".join(f"{_quantile(ordered, q):>7.2f}" for q in (0.5, 0.9, 0.99))
        print(f"  {a + ' -> ' + b:<44} {len(spans):>6} {spread} {mean:>7.2f} {worst_mean:>16.2f}")
    # each receiver's replay memory whole: a group verified -> its tracks passed on (the memory's
    # commit, the waits for it and its answer; steps within it shift with who makes the commit)
    memory = (
        [("USA.verified<KOR", "USA.queued>JPN"), ("JPN.verified<USA", "JPN.emit")]
        if hub
        else [("JPN.verified<KOR", "JPN.emit")]
    )
    for a, b in memory:
        spans = sorted((at[ts][b] - at[ts][a]) * 1000 for ts in latency if a in at[ts] and b in at[ts])
        if spans:
            spread = " ".join(f"{_quantile(spans, q):>7.2f}" for q in (0.5, 0.9, 0.99))
            mean = sum(spans) / len(spans)
            print(f"  {a + ' => ' + b + ' (memory)':<44} {len(spans):>6} {spread} {mean:>7.2f}")
    low, high = min(sent.values()), max(received.values(), default=max(sent.values()))
    for node in sorted(events):
        es = [e for e in events[node] if low <= e[1] <= high]
        commits = [e for e in es if e[0] == "commit"]
        line = [f"{node}:"]
        if commits:
            wall = sorted((e[2] - e[1]) * 1000 for e in commits)
            spent = sorted(e[3] * 1000 for e in commits)
            groups = sum(e[4] for e in commits) / len(commits)
            line.append(f"{len(commits)} commits (wall p50 {_quantile(wall, 0.5):.2f}, p99 "
                        f"{_quantile(wall, 0.99):.2f}, max {wall[-1]:.1f} ms; CPU p50 "
                        f"{_quantile(spent, 0.5):.2f} ms; {groups:.2f} groups a commit)")  # fmt: skip
        lags = sorted(e[2] * 1000 for e in es if e[0] == "lag")
        if lags:
            line.append(f"loop late > 2 ms {len(lags)} times (max {lags[-1]:.1f}, {sum(lags):.0f} ms in all)")
        pauses = [e[3] * 1000 for e in es if e[0] == "gc"]
        if pauses:
            line.append(f"{len(pauses)} collections > 0.5 ms (max {max(pauses):.1f} ms)")
        full = [e for e in es if e[0] == "gc" and e[2] == 2]  # the oldest generation's: what they walked
        if full:
            walked = ", ".join(f"{e[4] * 1000:.1f} ms CPU over {e[6]:,} objects" for e in full)
            line.append(f"oldest generation collected {len(full)} times ({walked})")
        frames = [e for e in es if e[0] == "sealed"]
        if frames:
            per_frame = sum(len(e[6]) for e in frames) / len(frames)
            line.append(f"{len(frames)} frames sent, {per_frame:.2f} tracks a frame")
        print("  " + line[0] + " " + "; ".join(line[1:]))
        slow = [f"{e[1] - low:.2f} s {(e[2] - e[1]) * 1000:.0f} ms" for e in commits if e[2] - e[1] > 0.01]
        if slow:
            print(f"    commits over 10 ms: {', '.join(slow[:12])}{' ...' if len(slow) > 12 else ''}")
        passes = [f"{e[1] - low:.2f} s {(e[2] - e[1]) * 1000:.0f} ms ({e[3]} pages)"
                  for e in es if e[0] == "ckpt" and e[2] - e[1] > 0.005]  # fmt: skip
        if passes:
            more = " ..." if len(passes) > 12 else ""
            print(f"    checkpoint passes over 5 ms: {', '.join(passes[:12])}{more}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hub", action="store_true", help="the what-if network: KOR -> USA -> JPN")
    parser.add_argument("--rate", type=float, default=1000.0, help="updates published a second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--realtime", action="store_true", help="SCHED_FIFO for the client and the nodes")
    parser.add_argument("--keep", type=Path, default=None, help="keep the probe's event files here")
    args = parser.parse_args(argv)
    if args.realtime:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))  # inherited by the nodes
    with tempfile.TemporaryDirectory(prefix="gsomia-probe-stream-") as tmp:
        events_dir = args.keep or Path(tmp) / "events"
        events_dir.mkdir(parents=True, exist_ok=True)
        os.environ["GSOMIA_STAGE_PROBE"] = str(events_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROBE), os.environ.get("PYTHONPATH")]))
        load = load_average()
        net = _Network(Path(tmp) / "net", args.hub)
        try:
            sent, received = _arun(_publish(net, _updates(int(args.rate * args.seconds)), args.rate))
            (events_dir / "flush").touch()  # the nodes write their events now, after the run
            time.sleep(1.5)
        finally:
            net.close()
        print(f"stage probe, {'via USA' if args.hub else 'direct'}, {args.rate:g}/s for {args.seconds:g} s"
              f"{', SCHED_FIFO' if args.realtime else ''}; load {load} -> {load_average()}")  # fmt: skip
        _report(_events(events_dir), sent, received, args.hub)
    return 0


if __name__ == "__main__":
    sys.exit(main())
