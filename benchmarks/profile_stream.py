"""Where the stream's saturation time goes: CPU seconds of each node process per track, and py-spy.

Not a ``bench_*`` script (the runner does not pick it up): a tool for before/after on a loaded
machine. One direct network (KOR, JPN, USA as processes, ``network.start``), warmed, then
``--tracks`` updates published flat out over KOR's WebSocket feed and received by a consumer at
JPN, ``--runs`` times on the same network. Per run it prints each node's CPU time (user+system,
from ``/proc``) per track published: what the node spends, whatever else the machine runs, and
the load average beside the wall-clock rate. With ``--py-spy DIR`` the three node processes
are sampled (``py-spy record --format raw --gil``: the samples that hold the interpreter's lock,
collapsed stacks) during the last run.

With ``--publish``: the publishing node's path in one process (KOR's feed, its links' far ends
taking the frames): CPU per track at 1 and 100 updates a feed message.
With ``--memory``: the replay memory's CPU per commit through its hop (the 1,000/s regime).
With ``--contended``: the replay memory's commit beside another writer of the process (wall
time). With ``--receive``: a receiving node's path in one process (CPU per track).

With ``--hub``: the same over the what-if network, KOR -> USA -> JPN (the USA relays every track).
With ``--consumers K``: JPN's CPU per track with K WebSocket consumers, one track a message and
``?batch=1000`` alternating on one network (``--runs`` rounds of ``--tracks`` updates in feed
arrays of 100): what each consumer costs the node. ``--consumer-batch N`` makes the saturation
runs' consumer take arrays (``/stream/tracks/ws?batch=N``); ``--py-spy-all`` samples every running
thread, not only the one holding the interpreter's lock.

With ``--store``, instead: the CPU time of the receiver's replay memory alone
(``Store.remember_signed_tracks``, one call per frame of 127 tracks, the median frame at saturation
being about that, on a SQLite store), per track; and per group commit of 3 groups of 3 updates
(``Store.remember_signed_arrivals``, about a receiver's commit at 1,000 updates/s).

Run: ``python benchmarks/profile_stream.py [--tracks 20000] [--runs 3] [--py-spy /tmp/prof] [--store]``.
A baseline from another checkout: ``PYTHONPATH=/path/to/checkout/src python benchmarks/profile_stream.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gsomia
from benchmarks._machine import load_average
from benchmarks.bench_stream import _arun, _Network, _run, _updates

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of ``pid`` (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def store_cpu(frames: int = 60, per_frame: int = 127) -> float:
    """CPU microseconds per track of ``remember_signed_tracks`` on a fresh SQLite node store."""
    import hashlib

    from gsomia.testing import make_node

    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node", "JPN")
        try:
            began = time.process_time()
            for frame in range(frames):
                batch = hashlib.sha256(b"batch %d" % frame).hexdigest()
                tracks = [hashlib.sha256(b"%d-%d" % (frame, i)).hexdigest() for i in range(per_frame)]
                now = 10**15 + frame
                node.store.remember_signed_tracks(batch, "KOR", range(per_frame), now, now - 10**9, tracks)
            return (time.process_time() - began) / (frames * per_frame) * 1e6
        finally:
            node.close()


def commit_cpu(commits: int = 400, groups: int = 3, per_group: int = 3) -> float:
    """CPU microseconds per group commit of the replay memory (``Store.remember_signed_arrivals``)
    on a fresh SQLite node store: ``groups`` groups of ``per_group`` updates a commit (about what a
    receiver's commit holds at 1,000 updates/s), the window's bound moving 25 ms a commit, after
    1,000 commits to fill the tables."""
    import hashlib

    from gsomia.store import SignedArrival
    from gsomia.testing import make_node

    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node", "JPN")
        made = 0

        def commit(n: int) -> None:
            nonlocal made
            arrivals = []
            for _ in range(groups):
                made += 1
                batch = hashlib.sha256(b"batch %d" % made).hexdigest()
                tracks = tuple(hashlib.sha256(b"%d-%d" % (made, i)).hexdigest() for i in range(per_group))
                arrivals.append(
                    SignedArrival(
                        batch,
                        "KOR",
                        tuple(range(per_group)),
                        tracks,
                        10**15 + n * 25_000,
                        10**15 + n * 25_000,
                    )
                )
            node.store.remember_signed_arrivals(arrivals, 10**15 + n * 25_000 - 10**7)

        try:
            for n in range(1000):
                commit(n)
            began = time.process_time()
            for n in range(1000, 1000 + commits):
                commit(n)
            return (time.process_time() - began) / commits * 1e6
        finally:
            node.close()


def memory_cpu(commits: int = 2000, per_group: int = 2) -> tuple[float, float]:
    """(CPU microseconds per commit through the replay memory, ``ReplayMemory.remember`` awaited one
    group at a time on the event loop: the commit, its hop to the memory's thread and back; the same
    commits made directly, no hop) on a fresh SQLite node store: one group of ``per_group`` updates
    a commit, as a receiver's commit holds at 1,000 updates/s when it keeps up."""
    import hashlib

    from gsomia.store import SignedArrival
    from gsomia.stream._memory import ReplayMemory
    from gsomia.testing import make_node

    def arrival(n: int) -> SignedArrival:
        batch = hashlib.sha256(b"batch %d" % n).hexdigest()
        tracks = tuple(hashlib.sha256(b"%d-%d" % (n, i)).hexdigest() for i in range(per_group))
        return SignedArrival(
            batch, "KOR", tuple(range(per_group)), tracks, 10**15 + n * 1_000, 10**15 + n * 1_000
        )

    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node", "JPN")
        try:
            for n in range(1000):
                node.store.remember_signed_arrivals([arrival(n)], 10**15 + n * 1_000 - 10**8)
            began = time.process_time()
            for n in range(1000, 1000 + commits):
                node.store.remember_signed_arrivals([arrival(n)], 10**15 + n * 1_000 - 10**8)
            direct = (time.process_time() - began) / commits * 1e6

            async def through() -> float:
                memory = ReplayMemory(node.store)
                try:
                    began = time.process_time()
                    for n in range(1000 + commits, 1000 + 2 * commits):
                        await memory.remember(arrival(n), 10**15 + n * 1_000 - 10**8)
                    return (time.process_time() - began) / commits * 1e6
                finally:
                    await memory.close()

            return _arun(through()), direct
        finally:
            node.close()


def contended_commits(commits: int = 4000) -> tuple[float, float, float, int]:
    """The replay memory's commit of one group (``remember_signed_arrivals``, SQLite), one a
    millisecond, while another thread of the process writes 150 audit records every 50 ms (about
    the node's background rounds): wall ms p50, p99, p99.9 of the commits, and how many took over
    2 ms. What a track waits for when its group's commit meets another writer of the process."""
    import hashlib
    import threading

    from gsomia.store import SignedArrival
    from gsomia.testing import make_node

    with tempfile.TemporaryDirectory() as tmp:
        node = make_node(Path(tmp) / "node", "JPN")
        stop = threading.Event()

        def background() -> None:
            rounds = 0
            while not stop.is_set():
                rows = [
                    node.kernel.audit_row("bench.write", None, f"{rounds}-{k}", "allowed") for k in range(150)
                ]
                node.store.append_audit(rows)
                rounds += 1
                time.sleep(0.05)

        writer = threading.Thread(target=background)
        writer.start()
        walls = []
        try:
            for n in range(commits):
                batch = hashlib.sha256(b"batch %d" % n).hexdigest()
                track = hashlib.sha256(b"track %d" % n).hexdigest()
                at = 10**15 + n * 1000
                began = time.perf_counter()
                node.store.remember_signed_arrivals(
                    [SignedArrival(batch, "KOR", (0,), (track,), at, at)], at - 10**8
                )
                walls.append((time.perf_counter() - began) * 1000)
                time.sleep(0.001)
        finally:
            stop.set()
            writer.join()
            node.close()
    walls.sort()

    def q(p: float) -> float:
        return walls[min(len(walls) - 1, int(p * len(walls)))]

    return q(0.5), q(0.99), q(0.999), sum(w > 2 for w in walls)


def receive_cpu(frames: int, per_frame: int) -> float:
    """CPU microseconds per track of a receiving node's path, in one process with no network: JPN's
    ``StreamService.serve_link`` reads ``frames`` link frames of ``per_frame`` KOR tracks each (KOR's
    signature per frame, Noise-sealed), verifies each group, reads each track at the boundary,
    remembers it in the replay memory (SQLite, its worker thread counted), decides, labels and
    emits it to a bus subscriber. Both nodes on one clock (decisions cached as on a live link)."""
    import asyncio
    from datetime import UTC, datetime

    import orjson

    from gsomia._codec import label_to_dict
    from gsomia.demo import network
    from gsomia.stream import StreamService
    from gsomia.stream._link import BATCH, TRACKS, BatchSigner, initiate
    from gsomia.stream._origin import sign_batch
    from gsomia.testing import FakeClock, make_node

    clock = FakeClock(datetime.now(UTC))
    with tempfile.TemporaryDirectory() as tmp:
        kor = make_node(Path(tmp) / "kor", "KOR", clock=clock)
        jpn = make_node(Path(tmp) / "jpn", "JPN", clock=clock)
        try:
            kor.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
            jpn.exchange.register_peer(None, kor.exchange.identity(), ["kor-jpn-gsomia-2016"])
            network.assure({"KOR": kor, "JPN": jpn})
            label = label_to_dict(StreamService(kor).stream_label())
            updates = _updates(frames * per_frame)
            messages = [
                orjson.dumps(
                    {"track": u, "label": label, "originator": "KOR", "recipient": "JPN", "via": None}
                )
                for u in updates
            ]
            bodies = [
                sign_batch(kor.ring, messages[i : i + per_frame], clock())
                for i in range(0, len(messages), per_frame)
            ]

            async def run() -> float:
                inbound: asyncio.Queue[bytes] = asyncio.Queue()
                outbound: asyncio.Queue[bytes] = asyncio.Queue()
                service = StreamService(jpn)
                subscription = await service.bus.subscribe()
                peer = kor.exchange.peer("JPN")
                assert peer is not None
                first, finish = initiate(kor.ring, peer, clock())
                await inbound.put(first)
                task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
                session = finish(await outbound.get())
                signer = BatchSigner(kor.ring, "JPN")
                wires: list[bytes] = []
                for n, body in enumerate(bodies, 1):
                    wires += session.seal(TRACKS, body, 0.0)
                    signer.add(session.sent - 1, body, 0.0)
                    if n % 50 == 0 or n == len(bodies):  # a window root every 50 frames (else it is overdue)
                        root = signer.close(clock())
                        assert root is not None
                        wires += session.seal(BATCH, root.jws.encode(), 0.0)
                received = 0

                async def drain() -> None:
                    nonlocal received
                    async for _ in subscription:
                        received += 1
                        if received >= len(messages):
                            return

                consumer = asyncio.create_task(drain())
                began = time.process_time()
                for wire in wires:
                    await inbound.put(wire)
                    await asyncio.sleep(0)
                await asyncio.wait_for(consumer, 120)
                spent = time.process_time() - began
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                await service.close()
                return spent / len(messages) * 1e6

            return _arun(run())
        finally:
            kor.close()
            jpn.close()


def publish_cpu(messages: int, per_message: int) -> float:
    """CPU microseconds per track of the publishing node's path, in one process with no network:
    KOR's ``StreamService.publish_feed`` (what its WebSocket feed calls) takes ``messages`` feed
    messages of ``per_message`` ``bench_stream`` updates each, reads them at the boundary, plans,
    emits them on its bus and sends each on its links to JPN and the USA (Noise-sealed frames under
    KOR's signed roots, the windows' roots and their audit records as on a live link; the links'
    far ends take the frames and open nothing). The network's three nodes in this process."""
    import asyncio

    import orjson

    from gsomia.demo.network import build, open_nodes
    from gsomia.kernel import system_clock
    from gsomia.store import PEERS
    from gsomia.stream import StreamService
    from gsomia.stream._link import BatchSigner, accept, initiate
    from gsomia.stream._service import _OutLink, _posix

    class Sink:
        """A link's WebSocket whose far end takes every frame."""

        frames = 0

        async def send(self, frame: bytes) -> None:
            self.frames += 1

        async def close(self) -> None:
            return None

    with tempfile.TemporaryDirectory() as tmp:
        nodes = open_nodes(build(Path(tmp) / "net"), system_clock)
        kor = nodes["KOR"]
        try:
            texts = [
                orjson.dumps(chunk if per_message > 1 else chunk[0]).decode()
                for updates in [_updates(messages * per_message)]
                for chunk in (updates[i : i + per_message] for i in range(0, len(updates), per_message))
            ]

            async def run() -> float:
                service = StreamService(kor)
                await service.start()
                now = system_clock()
                for party in ("JPN", "USA"):
                    peer = kor.exchange.peer(party)
                    assert peer is not None
                    first, finish = initiate(kor.kernel.ring, peer, now)
                    answer, _ = accept(nodes[party].kernel.ring, nodes[party].exchange.peer, first, now)
                    kid = peer.encryption_key(now)[0]
                    service._links[party] = _OutLink(
                        Sink(),  # type: ignore[arg-type]
                        finish(answer),
                        BatchSigner(kor.kernel.ring, party),
                        kid,
                        kor.kernel.watch.generation(PEERS),
                        _posix(peer.key_usable_until(kid, now)),
                    )
                feed = getattr(service, "publish_feed", None)
                if feed is None:  # code from before publish_feed: the feed's loop as the API ran it then

                    async def feed(actor: Any, text: str) -> list[Any]:
                        from gsomia.stream import parse_feed_message

                        for data in parse_feed_message(text):
                            await service.publish(actor, data)
                        return []

                began = time.process_time()
                for text in texts:
                    refused = await feed(None, text)
                    assert not refused, refused
                    await asyncio.sleep(0)
                for link in list(service._links.values()):
                    while link.queued or link.drainer is not None:
                        await asyncio.sleep(0)
                spent = time.process_time() - began
                assert service.stats.published == len(texts) * per_message
                await service.close()
                return spent / (len(texts) * per_message) * 1e6

            return _arun(run())
        finally:
            for node in nodes.values():
                node.close()


async def _with_consumers(net: _Network, consumers: int, batch: int | None, updates: list[Any]) -> float:
    """JPN's CPU microseconds per track while ``consumers`` WebSocket consumers (arrays of up to
    ``batch``, or one track a message) take ``updates``, published in feed arrays of 100."""
    import asyncio

    import orjson
    from websockets.asyncio.client import connect

    query = f"?batch={batch}" if batch else ""
    url = net.endpoint["JPN"].replace("http", "ws") + "/stream/tracks/ws" + query
    headers = {"Authorization": f"Bearer {net.tokens['JPN']['analyst']}"}
    followers = [
        await connect(url, additional_headers=headers, max_size=2**22, compression=None)
        for _ in range(consumers)
    ]

    async def drain(ws: Any) -> None:
        got = 0
        async for text in ws:
            got += len(orjson.loads(text)) if batch else 1
            if got >= len(updates):
                return

    await asyncio.sleep(0.5)  # every consumer subscribed before the first track
    tasks = [asyncio.create_task(drain(ws)) for ws in followers]
    before = cpu_seconds(net.pids["JPN"])
    feed = net.endpoint["KOR"].replace("http", "ws") + "/stream/tracks/publish"
    officer = {"Authorization": f"Bearer {net.tokens['KOR']['officer']}"}
    async with connect(feed, additional_headers=officer, compression=None) as pub:
        for i in range(0, len(updates), 100):
            await pub.send(orjson.dumps(updates[i : i + 100]).decode())
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
    spent = cpu_seconds(net.pids["JPN"]) - before
    for ws in followers:
        await ws.close()
    return spent / len(updates) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--feed-batch", type=int, default=1)
    parser.add_argument(
        "--consumer-batch",
        type=int,
        default=None,
        help="the consumer at JPN takes arrays of up to this many tracks (/stream/tracks/ws?batch=N)",
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="publish at this many updates/s (default: flat out)"
    )
    parser.add_argument("--hub", action="store_true", help="the network via the USA hub (KOR -> USA -> JPN)")
    parser.add_argument("--py-spy", type=Path, default=None, help="directory for py-spy's collapsed stacks")
    parser.add_argument(
        "--py-spy-all",
        action="store_true",
        help="sample every running thread (py-spy without --gil: SQLite's and the socket's C time too)",
    )
    parser.add_argument("--store", action="store_true", help="the replay memory's CPU per track only")
    parser.add_argument(
        "--consumers",
        type=int,
        default=0,
        help="JPN's CPU per track with this many WebSocket consumers, one track a message and batched",
    )
    parser.add_argument(
        "--receive",
        action="store_true",
        help="a receiving node's path only, in process: CPU per track at 1 and 127 tracks a frame",
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="the publishing node's path only, in process: CPU per track at 1 and 100 updates a feed message",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="the replay memory's CPU per commit through its hop to its thread, beside the commit alone",
    )
    parser.add_argument(
        "--contended",
        action="store_true",
        help="the replay memory's commit beside another writer of the process: wall ms per commit",
    )
    args = parser.parse_args()
    print(f"gsomia from {Path(gsomia.__file__).parent}", file=sys.stderr)
    if args.memory:
        for _ in range(args.runs):
            hop, direct = memory_cpu()
            print(f"replay memory, one group of 2 a commit: {hop:.0f} us CPU per commit through "
                  f"ReplayMemory, {direct:.0f} made directly (load {load_average()})")  # fmt: skip
        return 0
    if args.contended:
        for _ in range(args.runs):
            p50, p99, p999, slow = contended_commits()
            print(f"commit beside a background writer: p50 {p50:.2f}, p99 {p99:.2f}, p99.9 {p999:.2f} ms, "
                  f"{slow} of 4000 over 2 ms (load {load_average()})")  # fmt: skip
        return 0
    if args.receive:
        for _ in range(args.runs):
            one = receive_cpu(2000, 1)
            many = receive_cpu(40, 127)
            print(f"receiving node (JPN) CPU us per track: {one:.1f} at 1 track a frame, {many:.1f} at 127 "
                  f"(load {load_average()})")  # fmt: skip
        return 0
    if args.publish:
        for _ in range(args.runs):
            one = publish_cpu(args.tracks, 1)
            many = publish_cpu(args.tracks // 100, 100)
            print(f"publishing node (KOR) CPU us per track: {one:.1f} at 1 update a feed message, "
                  f"{many:.1f} at 100 (load {load_average()})")  # fmt: skip
        return 0
    if args.store:
        print(f"remember_signed_tracks, SQLite, 127 tracks a call: {store_cpu():.1f} us CPU per track "
              f"(load {load_average()})")  # fmt: skip
        print(f"remember_signed_arrivals, SQLite, 3 groups of 3 updates a commit: {commit_cpu():.0f} us CPU "
              f"per commit (load {load_average()})")  # fmt: skip
        return 0
    with tempfile.TemporaryDirectory(prefix="gsomia-profile-stream-") as tmp:
        net = _Network(Path(tmp) / ("hub" if args.hub else "direct"), hub=args.hub)
        try:
            if args.consumers:
                _arun(_with_consumers(net, args.consumers, None, _updates(1000)))  # warm
                for run in range(args.runs):
                    for batch in (None, 1000):
                        load = load_average()
                        jpn = _arun(_with_consumers(net, args.consumers, batch, _updates(args.tracks)))
                        how = f"?batch={batch}" if batch else "one track a message"
                        print(f"round {run + 1}, {args.consumers} consumers, {how}: JPN {jpn:.1f} us CPU "
                              f"per track (load {load} -> {load_average()})")  # fmt: skip
                return 0
            batch = args.consumer_batch
            _arun(_run(net, _updates(2000), None, 16, "ws", args.feed_batch, None, batch))  # warm
            for run in range(args.runs):
                spies = []
                if args.py_spy is not None and run == args.runs - 1:
                    args.py_spy.mkdir(parents=True, exist_ok=True)
                    for party in ("KOR", "JPN", "USA"):
                        out = args.py_spy / f"{party}.txt"
                        spies.append(subprocess.Popen(  # noqa: S603 - the profiler on our own child
                            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                             str(net.pids[party]), "--format", "raw", "--rate", "200", "--nonblocking",
                             *([] if args.py_spy_all else ["--gil"]), "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        ))  # fmt: skip
                load = load_average()
                updates = _updates(args.tracks)  # made before the client's clock: not the run's work
                before = {p: cpu_seconds(pid) for p, pid in net.pids.items()}
                client = time.process_time()
                result = _arun(_run(net, updates, args.rate, 16, "ws", args.feed_batch, None, batch))
                after = {p: cpu_seconds(pid) for p, pid in net.pids.items()}
                client = time.process_time() - client
                for spy in spies:
                    spy.send_signal(2)
                    spy.wait(timeout=30)
                published = result["sent"] or 1  # every node handles each one, whatever the consumer drops
                per = {p: (after[p] - before[p]) / published * 1e6 for p in net.pids}
                rate = result["received"] / result["elapsed_s"] if result["elapsed_s"] else 0.0
                print(f"run {run + 1}: received {result['received']}/{result['sent']}, {rate:,.0f} tracks/s "
                      f"(load {load} -> {load_average()}); CPU us per track: "
                      + ", ".join(f"{p} {v:.1f}" for p, v in per.items())
                      + f"; KOR+JPN {per['KOR'] + per['JPN']:.1f}"
                      + f"; client {client / published * 1e6:.1f}"
                      + f"; consumer messages {result['consumer_messages']}")  # fmt: skip
        finally:
            net.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
