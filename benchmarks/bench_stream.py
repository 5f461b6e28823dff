"""Stream costs: latency from publish at KOR to a consumer at JPN, and the saturation rate.

What is measured
----------------
(a) Latency at a fixed rate. Three nodes run as processes on loopback (``network.start``).
A client publishes synthetic track updates (a 2019 launch's flight, one sample each, a
unique ``update_ts`` each) to KOR at ``--rate`` updates per second (open loop: each send is
scheduled at ``start + i / rate`` whatever came before), over KOR's WebSocket feed
``/stream/tracks/publish`` (``--publish ws``, the default: one authentication per connection)
or one ``POST /stream/tracks`` each over ``--connections`` keep-alive connections
(``--publish post``), while a WebSocket consumer at JPN
(``/stream/tracks/ws``, an analyst's token) receives them. The latency of one update is the
consumer's receive instant minus the instant its POST was sent (one clock, one process).
Twice: *direct* (the shipped agreements: KOR reaches JPN directly) and *via USA* (a what-if:
GSOMIA ended in 2019 and no 2023 arrangement, KOR's standing authorisation lets the hub
relay), each on its own fresh network. The figures include the client's own HTTP cost.

(b) Saturation of the link path, one core: what each forwarded track costs on a link, in
process with no network: the originator signs the Merkle root of the frame's tracks (one
Ed25519 JWS per frame, ``_origin.sign_batch``), the sender seals the frame (Noise
ChaCha20-Poly1305, sequence-number nonce) and hashes it into the window's Merkle tree, the
receiver opens it, hashes it into its tree, reads the groups and verifies the originator's
signature and the root over the tracks (``verify_group``), and every 50 ms of frames one
Ed25519 signature over the window's root is made and verified. Twice: one track per frame (the
1,000/s regime: nothing to coalesce, one originator signature per track) and
``--frame-tracks`` per frame (a burst, as at saturation). The peer does the same tracks with
per-message Ed25519: sign each at the sender, verify it at the receiver (no session). Tracks
per second, best of ``--passes``.

(c) Saturation end to end: the same client publishing twice as many updates as fast as it
can, direct; tracks per second received at JPN (from the first send to the last receipt).
With ``--feed-batch N`` the client sends N updates per feed message (a JSON array) in this
run; the latency runs always send one update per message. Then again on the same network with
batches at both WebSocket ends (``--batched-feed`` updates per feed message, 100; the consumer's
``/stream/tracks/ws?batch=N``, ``--consumer-batch``, 1000: each message an array of the tracks
ready then): the same checks per track (each parsed at every node, decided, signed per frame,
remembered, read-decided for the consumer), fewer WebSocket messages. ``--consumer-batch 0``
leaves that run out.

What the machine did during each run is measured beside its figures (``_machine.machine_during``,
from ``/proc``): the CPU time the host stole from this guest (``steal``, ms and share of the CPUs'
time), how busy the CPUs were and how much of that was the run's own processes (the three nodes
and this client) and how much other work, and the 1-minute load at each end. Each row carries it
(``machine``, which ``python -m benchmarks`` lists under its table), ``--json``'s ``runs`` each
its figures: a latency tail that misses its target says beside it whether the host or other work
took the CPUs meanwhile.

Targets (the issue): p99 < 5 ms direct and < 10 ms via the hub at 1,000 tracks/s;
at least 20,000 tracks/s at saturation. Printed as met or NOT met; nothing is asserted.

Run: ``python benchmarks/bench_stream.py [--rate 1000] [--seconds 5] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import cpu_model, describe_during, load_average, machine_during, machine_sample
from gsomia.core.ballistics import track_updates
from gsomia.core.tracks import TrackUpdate, track_update_to_json
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.demo.network import build, start, stop
from gsomia.stream import launches
from gsomia.stream._link import TRACKS, BatchSigner, BatchVerifier, accept, initiate
from gsomia.stream._origin import decode_groups, sign_batch, verify_group

TARGET_P99_DIRECT_MS = 5.0
TARGET_P99_HUB_MS = 10.0
TARGET_SATURATION = 20_000.0
# after the last send, wait until every update arrived, or this long at most: a loaded machine holds
# a node for seconds at a time, and a wait that ended after a short pause counted tracks still on
# their way as missing (2,748 of 3,000 at load 27)
_SETTLE_S = 60.0
_PROGRESS_S = 5.0  # while waiting, how many arrived is said on stderr this often
# the node's counters read before and after each run (/metrics, the administrator's token): where
# a missing track was last seen
_STAGES = (
    ("KOR", "gsomia_stream_published_total", "KOR published"),
    ("KOR", 'gsomia_stream_sent_total{peer="JPN"}', "KOR sent to JPN"),
    ("KOR", 'gsomia_stream_sent_total{peer="USA"}', "KOR sent to USA"),
    ("USA", "gsomia_stream_relayed_total", "USA relayed"),
    ("JPN", "gsomia_stream_received_total", "JPN received and verified"),
    ("JPN", "gsomia_stream_emitted_total", "JPN delivered to its consumers"),
    ("KOR", "gsomia_stream_link_errors_total", "KOR link errors"),
    ("JPN", "gsomia_stream_link_errors_total", "JPN link errors"),
    ("JPN", "gsomia_stream_refused_total", "JPN refused"),
    ("KOR", 'gsomia_stream_frames_total{peer="JPN"}', "KOR frames to JPN"),
    ("KOR", 'gsomia_stream_frames_total{peer="USA"}', "KOR frames to USA"),
    ("USA", 'gsomia_stream_sent_total{peer="JPN"}', "USA sent to JPN"),
    ("USA", 'gsomia_stream_frames_total{peer="JPN"}', "USA frames to JPN"),
)
# each sending link's messages a frame in a run, from the stages above: (name, messages, frames)
_LINKS = (
    ("KOR->JPN", "KOR sent to JPN", "KOR frames to JPN"),
    ("KOR->USA", "KOR sent to USA", "KOR frames to USA"),
    ("USA->JPN", "USA sent to JPN", "USA frames to JPN"),
)


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    value: float
    unit: str
    target: str
    met: bool | None
    peer: str | None = None
    peer_value: float | None = None
    machine: str | None = None  # what the machine did during the run (``describe_during``)

    def as_dict(self) -> dict[str, Any]:
        ratio = None
        if self.peer_value:
            ratio = round(self.value / self.peer_value, 3)
        during = {} if self.machine is None else {"machine": self.machine}
        return during | {
            "figure": self.figure,
            "value": round(self.value, 3),
            "unit": self.unit,
            "peer": self.peer,
            "peer_value": None if self.peer_value is None else round(self.peer_value, 3),
            "ratio": ratio,
            "target": self.target,
            "met": self.met,
        }


def _updates(count: int) -> list[dict[str, Any]]:
    """``count`` single-sample updates with unique ``update_ts`` (the correlation key)."""
    launch = launches(2019)[4]
    base = datetime.now(UTC) - timedelta(hours=1)
    flight = track_updates(
        launch.fly(), track_id="bench", originator="KOR", launched=base, missile_class=launch.missile_class
    )
    samples: list[TrackUpdate] = [u for u in flight if u.points]
    out = []
    for i in range(count):
        u = samples[i % len(samples)]
        body = track_update_to_json(u)
        body["update_ts"] = (base + timedelta(microseconds=i)).isoformat()
        body["final"] = False
        out.append(body)
    return out


def _what_if(directory: Path) -> Path:
    from importlib.resources import files

    def without(name: str, drop: set[str]) -> str:
        text = (files("gsomia") / "data" / "agreements" / name).read_text(encoding="utf-8")
        head, *blocks = text.split("[[agreement.events]]")
        return head + "".join(
            "[[agreement.events]]" + b for b in blocks if not any(f'id = "{e}"' in b for e in drop)
        )

    extra = directory / "what-if"
    extra.mkdir()
    (extra / "kor-jpn-gsomia-2016.toml").write_text(
        without("kor-jpn-gsomia-2016.toml", {"2019-11-22-notice-suspended", "2023-03-21-notes-withdrawn"})
    )
    (extra / "trilateral-missile-warning-2023.toml").write_text(
        without("trilateral-missile-warning-2023.toml", {"2023-12-19-operational"})
    )
    return extra


class _Network:
    def __init__(self, directory: Path, hub: bool) -> None:
        self.directory = directory
        members = build(directory)
        if hub:
            extra = _what_if(directory)
            for m in members:
                config = m.directory / "node.toml"
                config.write_text(
                    config.read_text().replace("data_dirs = []", f"data_dirs = [{json.dumps(str(extra))}]")
                )
        running = start(directory)
        self.endpoint = {n["party"]: n["endpoint"] for n in running}
        self.pids: dict[str, int] = {n["party"]: n["pid"] for n in running}
        self.tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
        if hub:
            httpx.post(
                f"{self.endpoint['KOR']}/stream/authorisations",
                json={"recipient": "JPN", "hub": "USA"},
                headers={"Authorization": f"Bearer {self.tokens['KOR']['officer']}"},
            ).raise_for_status()

    def close(self) -> None:
        stop(self.directory)


async def _run(
    net: _Network,
    updates: list[dict[str, Any]],
    rate: float | None,
    connections: int,
    publish: str,
    feed_batch: int = 1,
    compression: str | None = None,
    consumer_batch: int | None = None,
) -> dict[str, Any]:
    """Publish ``updates`` at KOR (paced at ``rate``, or flat out), receive them at JPN (one track a
    message, or with ``consumer_batch`` arrays of up to that many: ``/stream/tracks/ws?batch=N``)."""
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    routes: set[str] = set()
    ws_url = net.endpoint["JPN"].replace("http", "ws") + "/stream/tracks/ws"
    if consumer_batch is not None:
        ws_url += f"?batch={consumer_batch}"
    headers = {"Authorization": f"Bearer {net.tokens['JPN']['analyst']}"}
    done = asyncio.Event()

    messages = 0

    async def consume(ws: Any) -> None:
        nonlocal messages
        async for text in ws:
            now = time.perf_counter()
            messages += 1
            data = orjson.loads(text)
            for track in data if consumer_batch is not None else (data,):
                received[track["update_ts"]] = now
                routes.add(track["route"])
            if len(received) >= len(updates):
                done.set()
                return

    async def settle() -> None:
        """Wait until every update arrived, or ``_SETTLE_S`` after the last send at most, saying how
        many arrived every ``_PROGRESS_S`` meanwhile. No pause ends the wait: what has not arrived
        by the deadline is reported as lost (``lost``, and the run's figures are invalid)."""
        deadline = time.perf_counter() + _SETTLE_S
        while not done.is_set():
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=min(left, _PROGRESS_S))
            if not done.is_set():
                print(f"  waiting: {len(received)} of {len(updates)} received, "
                      f"{max(0.0, deadline - time.perf_counter()):.0f} s left", file=sys.stderr)  # fmt: skip

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    publish_headers = {"Authorization": f"Bearer {net.tokens['KOR']['officer']}"}
    async with (
        connect(ws_url, additional_headers=headers, max_size=2**20, compression=compression) as ws,
        httpx.AsyncClient(limits=limits, timeout=30) as client,
    ):
        # warm: the plan, the link handshake and the connections, outside the timing
        warm = dict(updates[0], update_ts=(datetime.now(UTC) - timedelta(days=1)).isoformat())
        await client.post(f"{net.endpoint['KOR']}/stream/tracks", json=warm, headers=publish_headers)
        await asyncio.wait_for(ws.recv(), timeout=10)
        before = await _counters(net, client)
        # what the machine did while this run's tracks were on their way: the nodes' CPU and this
        # process's (the client) told apart from the rest of the machine's, and what the host stole
        own = [*net.pids.values(), os.getpid()]
        machine_before = machine_sample(own)
        consumer = asyncio.create_task(consume(ws))
        semaphore = asyncio.Semaphore(connections)
        errors = 0

        async def post(body: dict[str, Any]) -> None:
            nonlocal errors
            async with semaphore:
                sent[body["update_ts"]] = time.perf_counter()
                response = await client.post(
                    f"{net.endpoint['KOR']}/stream/tracks", json=body, headers=publish_headers
                )
                if response.status_code != 202:
                    errors += 1

        began = time.perf_counter()
        if publish == "ws":
            pub_url = net.endpoint["KOR"].replace("http", "ws") + "/stream/tracks/publish"
            async with connect(
                pub_url, additional_headers=publish_headers, max_size=2**20, compression=compression
            ) as pub:
                chunks = [updates[i : i + feed_batch] for i in range(0, len(updates), feed_batch)]
                texts = [orjson.dumps(c[0] if feed_batch == 1 else c).decode() for c in chunks]
                began = time.perf_counter()
                for i, (chunk, text) in enumerate(zip(chunks, texts, strict=True)):
                    if rate:
                        delay = began + i * feed_batch / rate - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    instant = time.perf_counter()
                    for body in chunk:
                        sent[body["update_ts"]] = instant
                    await pub.send(text)
                sending_s = time.perf_counter() - began
                await settle()
        else:
            tasks = []
            for i, body in enumerate(updates):
                if rate:
                    delay = began + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(body)))
            await asyncio.gather(*tasks)
            sending_s = time.perf_counter() - began
            await settle()
        consumer.cancel()
        machine = machine_during(machine_before, machine_sample(own))
        last = max(received.values(), default=began)
        after = await _counters(net, client)
    latencies = sorted((received[k] - sent[k]) * 1000 for k in received if k in sent)
    # whether the run was long enough: p99 of each half of the run (by send order) beside the whole
    in_order = [
        (received[u["update_ts"]] - sent[u["update_ts"]]) * 1000
        for u in updates
        if u["update_ts"] in received
    ]
    halves = [sorted(in_order[: len(in_order) // 2]), sorted(in_order[len(in_order) // 2 :])]
    return {
        "latencies_ms": latencies,
        "p99_halves_ms": [round(_quantile(h, 0.99), 3) for h in halves],
        "sent": len(sent),
        "received": len(received),
        "lost": len(sent) - len(received),
        # what each stage counted of this run's updates (the node's counters, after minus before)
        "stages": {name: after[name] - before[name] for name in after} | {"consumer got": len(received)},
        "per_frame": _per_frame({name: after[name] - before[name] for name in after}),
        "consumer_messages": messages,
        "errors": errors,
        "sending_s": sending_s,
        "elapsed_s": last - began,
        "routes": sorted(routes),
        "machine": machine,
    }


async def _counters(net: _Network, client: httpx.AsyncClient) -> dict[str, float]:
    """The stream's counters of KOR, USA and JPN (``_STAGES``) as their ``/metrics`` have them now."""
    values: dict[str, float] = {}
    for party in ("KOR", "USA", "JPN"):
        admin = {"Authorization": f"Bearer {net.tokens[party]['admin']}"}
        response = await client.get(f"{net.endpoint[party]}/metrics", headers=admin)
        response.raise_for_status()
        lines = response.text.splitlines()
        for owner, metric, name in _STAGES:
            if owner == party:  # absent (a link that carried nothing): none
                found = [line.rsplit(" ", 1)[1] for line in lines if line.rsplit(" ", 1)[0] == metric]
                values[name] = float(found[0]) if found else 0.0
    return values


def _per_frame(stages: dict[str, float]) -> dict[str, float]:
    """Messages a frame on each link that carried any in a run (a link's first frames may carry an
    authorisation beside them: counted among its messages): at 1,000/s mostly one, a track that finds
    its link idle going at once; a burst (a node held up) shares a frame."""
    return {
        name: round(stages[sent] / stages[frames], 2) for name, sent, frames in _LINKS if stages.get(frames)
    }


def _loss(run: dict[str, Any]) -> str | None:
    """What a run lost (``None``: nothing): how many of the updates sent never reached the consumer,
    and each stage's count, so the stage that lost them shows."""
    if not run["lost"]:
        return None
    stages = ", ".join(f"{k} {v:g}" for k, v in run["stages"].items())
    return f"INVALID: {run['lost']} of {run['sent']} lost ({stages})"


def _event_loop() -> str:
    """The event loop the nodes run on: uvicorn takes uvloop when it is installed (the ``fast``
    extra), asyncio's own loop otherwise; the benchmark's client uses the same."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _arun(coro: Any) -> Any:
    """Run ``coro`` on the same kind of event loop as the nodes."""
    if _event_loop() == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def link_saturation(count: int, passes: int, per_frame: int = 1) -> tuple[float, float]:
    """(link tracks/s with ``per_frame`` tracks in each frame, per-message Ed25519 tracks/s), best of
    ``passes`` each, one core."""
    at = datetime.now(UTC)
    update = _updates(1)[0]
    body = json.dumps({"track": update, "originator": "KOR", "recipient": "JPN", "via": None}).encode()
    burst = [body] * per_frame
    frames = max(1, count // per_frame)
    with tempfile.TemporaryDirectory() as tmp:
        kor = KeyRing.create(Path(tmp) / "k.json", "KOR", "kor", at - timedelta(days=1))
        jpn = KeyRing.create(Path(tmp) / "j.json", "JPN", "jpn", at - timedelta(days=1))
        kor_id = PeerIdentity.from_document(kor.identity("http://kor.invalid"))
        jpn_id = PeerIdentity.from_document(jpn.identity("http://jpn.invalid"))
        peers = {"KOR": kor_id}.get
        skew = timedelta(minutes=5)
        best_link = best_peer = 0.0
        for _ in range(passes):
            first, finish = initiate(kor, jpn_id, at)
            answer, receiver = accept(jpn, peers, first, at)
            sender = finish(answer)
            signer, verifier = BatchSigner(kor, "JPN"), BatchVerifier("JPN", peers)
            received = 0
            began = time.perf_counter()
            window = began
            for _ in range(frames):
                signed = sign_batch(kor, burst, at)  # the originator's signature over the frame's tracks
                for wire in sender.seal(TRACKS, signed, began):
                    frame = receiver.open(wire)
                    if frame is not None:
                        signer.add(frame.seq, signed, began)
                        verifier.add(frame.seq, frame.body)
                        for group in decode_groups(frame.body, "KOR"):
                            received += len(verify_group(group, peers, at, skew).entries)
                now = time.perf_counter()
                if now - window >= 0.05:
                    batch = signer.close(at)
                    assert batch is not None
                    verifier.verify(batch.jws, "KOR", at)
                    window = now
            assert received == frames * per_frame
            best_link = max(best_link, received / (time.perf_counter() - began))
            key = Ed25519PrivateKey.generate()
            public = key.public_key()
            began = time.perf_counter()
            for _ in range(count):
                public.verify(key.sign(body), body)
            best_peer = max(best_peer, count / (time.perf_counter() - began))
    return best_link, best_peer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="tracks per second for the latency runs")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--connections", type=int, default=16, help="HTTP connections publishing at KOR")
    parser.add_argument("--link-tracks", type=int, default=20_000, help="tracks per link saturation pass")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument(
        "--frame-tracks", type=int, default=64, help="tracks per frame in the coalesced link-path pass"
    )
    parser.add_argument(
        "--publish", choices=("ws", "post"), default="ws", help="publish over the WebSocket feed or POST each"
    )
    parser.add_argument(
        "--feed-batch",
        type=int,
        default=1,
        help="updates per feed message in the saturation run (ws publish)",
    )
    parser.add_argument(
        "--batched-feed",
        type=int,
        default=100,
        help="updates per feed message in the batched saturation run",
    )
    parser.add_argument(
        "--consumer-batch",
        type=int,
        default=1000,
        help="tracks per consumer message at most in the batched saturation run "
        "(/stream/tracks/ws?batch=N); 0: no batched run",
    )
    parser.add_argument(
        "--compression",
        choices=("none", "deflate"),
        default="none",
        help="the client's WebSocket permessage-deflate offer (feed and consumer): none, or deflate "
        "(the websockets default, what runs before 2026-11-29 04:50 UTC used)",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    compression = None if args.compression == "none" else "deflate"
    loads = [load_average()]
    began = time.perf_counter()
    count = max(10, int(args.rate * args.seconds))
    runs: dict[str, dict[str, Any]] = {}
    phases: dict[str, float] = {}  # seconds each step took (what --full's budget is made of)
    mark = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[phase] = round(now - mark, 1)
        mark = now

    with tempfile.TemporaryDirectory(prefix="gsomia-bench-stream-") as tmp:
        for name, hub in (("direct", False), ("via USA", True)):
            net = _Network(Path(tmp) / name.replace(" ", "-"), hub)
            lap(f"start {name}")
            try:
                runs[name] = _arun(
                    _run(net, _updates(count), args.rate, args.connections, args.publish, 1, compression)
                )
                lap(f"latency {name}")
                if not hub:
                    runs["saturation"] = _arun(
                        _run(
                            net,
                            _updates(count * 2),
                            None,
                            args.connections,
                            args.publish,
                            args.feed_batch,
                            compression,
                        )
                    )
                    lap("saturation")
                    if args.consumer_batch:
                        runs["saturation batched"] = _arun(
                            _run(net, _updates(count * 2), None, args.connections, "ws",
                                 args.batched_feed, compression, args.consumer_batch)
                        )  # fmt: skip
                        lap("saturation batched")
            finally:
                net.close()
                lap(f"stop {name}")
    link_before = machine_sample([os.getpid()])
    link_one, peer = link_saturation(args.link_tracks, args.passes, 1)
    link, _ = link_saturation(args.link_tracks, args.passes, args.frame_tracks)
    link_during = machine_during(link_before, machine_sample([os.getpid()]))
    lap("link path")
    rows: list[Row] = []
    for name, target in (("direct", TARGET_P99_DIRECT_MS), ("via USA", TARGET_P99_HUB_MS)):
        lat = runs[name]["latencies_ms"]
        lost = _loss(runs[name])  # the latencies of what arrived say nothing of what did not
        during = describe_during(runs[name]["machine"])
        for q, label in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
            value = _quantile(lat, q)
            met = (value < target) if label == "p99" and lost is None else None
            rows.append(Row(f"latency {label} KOR->JPN {name} at {args.rate:g}/s", value, "ms",
                            lost or (f"p99 < {target:g} ms" if label == "p99" else "-"), met,
                            machine=during))  # fmt: skip
        offered = runs[name]["sent"] / runs[name]["sending_s"] if runs[name]["sending_s"] else 0.0
        rows.append(Row(f"achieved publish rate {name}", offered, "tracks/s", f"{args.rate:g}/s offered",
                        None, machine=during))  # fmt: skip
    sat = runs["saturation"]
    e2e = sat["received"] / sat["elapsed_s"] if sat["elapsed_s"] > 0 else 0.0
    feed = f", {args.feed_batch} per message" if args.publish == "ws" and args.feed_batch > 1 else ""
    lost = _loss(sat)  # a rate over the tracks that arrived, when some did not, is no figure
    rows.append(Row(f"saturation end to end KOR->JPN direct ({args.publish} publish{feed})", e2e, "tracks/s",
                    lost or f">= {TARGET_SATURATION:,.0f}/s",
                    None if lost else e2e >= TARGET_SATURATION,
                    machine=describe_during(sat["machine"])))  # fmt: skip
    if "saturation batched" in runs:
        sat = runs["saturation batched"]
        e2e = sat["received"] / sat["elapsed_s"] if sat["elapsed_s"] > 0 else 0.0
        lost = _loss(sat)
        rows.append(Row(f"saturation end to end KOR->JPN direct (ws publish, {args.batched_feed} per "
                        f"message; consumer batches of up to {args.consumer_batch})", e2e, "tracks/s",
                        lost or f">= {TARGET_SATURATION:,.0f}/s",
                        None if lost else e2e >= TARGET_SATURATION,
                        machine=describe_during(sat["machine"])))  # fmt: skip
    rows.append(Row("link path, 1 track per frame (originator sig+seal+open+Merkle), one core", link_one,
                    "tracks/s", "-", None, "per-message Ed25519 sign+verify", peer,
                    describe_during(link_during)))  # fmt: skip
    rows.append(Row(f"link path, {args.frame_tracks} tracks per frame (the same), one core", link, "tracks/s",
                    f">= {TARGET_SATURATION:,.0f}/s", link >= TARGET_SATURATION,
                    "per-message Ed25519 sign+verify", peer, describe_during(link_during)))  # fmt: skip
    loads.append(load_average())
    figures = {
        "benchmark": "stream",
        "rate": args.rate,
        "seconds": args.seconds,
        "connections": args.connections,
        "publish": args.publish,
        "feed_batch": args.feed_batch,
        "compression": args.compression,
        "event_loop": _event_loop(),
        "runs": {k: {x: y for x, y in v.items() if x != "latencies_ms"} for k, v in runs.items()},
        "rows": [r.as_dict() for r in rows],
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "total_s": round(time.perf_counter() - began, 1),
        "phases_s": phases,
        "load_average_1min": {"start": loads[0], "end": loads[1]},
        "link_path_machine": link_during,
    }
    if args.json:
        print(json.dumps(figures, ensure_ascii=False))
        return 0
    print(f"stream benchmark on {cpu_model()} ({os.cpu_count()} cores), load {loads[0]} -> {loads[1]}, "
          f"client WebSocket compression {args.compression}, event loop {_event_loop()}")  # fmt: skip
    steps = ", ".join(f"{k} {v} s" for k, v in phases.items())
    print(f"  took {time.perf_counter() - began:.1f} s: {steps}")
    for name, run in runs.items():
        halves = f", p99 of each half {run['p99_halves_ms']} ms" if not name.startswith("saturation") else ""
        print(f"  {name}: sent {run['sent']}, received at JPN {run['received']}, errors {run['errors']}, "
              f"routes {run['routes']}{halves}")  # fmt: skip
        print(f"  {name}, the machine meanwhile: {describe_during(run['machine'])}")
        links = ", ".join(f"{k} {v:g}" for k, v in run["per_frame"].items())
        print(f"  {name}, messages a frame: {links or 'none sent'}")
        if run["lost"]:
            print(f"  {name}: {_loss(run)}")
    for r in rows:
        d = r.as_dict()
        verdict = "" if r.met is None else ("met" if r.met else "NOT met")
        peer_text = f"  (peer {r.peer}: {d['peer_value']:,} {r.unit}, ratio {d['ratio']})" if r.peer else ""
        print(f"  {r.figure:<66} {r.value:>12,.3f} {r.unit:<9} target {r.target:<16} {verdict}{peer_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
