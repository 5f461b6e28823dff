"""The stage probe of ``benchmarks/probe_stream.py``, loaded by a node process through ``PYTHONPATH``.

Inert unless ``GSOMIA_STAGE_PROBE`` names a directory and the process is ``gsomia node serve``: then
it wraps a few of the stream's functions (nothing else changes) and writes, every half second, one
JSON line per event to ``DIR/PARTY-PID.jsonl``, each with a ``time.perf_counter()`` instant (the
system's monotonic clock, comparable across the processes of one machine). A track is named by its
``update_ts``, unique in the benchmark's updates:

- ``pub``: the originator's ``StreamService.publish`` called (the feed message read);
- ``queued``: a track put on a link's queue (``_send``), with the link's partner;
- ``sealed``: a ``TRACKS`` frame sealed, with its partner, sequence number, the instants its body
  (the originator's signed root over the frame's tracks) began and ended, and its tracks;
- ``opened``: a ``TRACKS`` frame opened at a receiver (entry and exit), with sender and sequence;
- ``verified``: a verified group handed to the replay memory (``_arrive``), with its tracks;
- ``remembered``: that group's commit answered on the event loop;
- ``take``: the link's taker reached the group (it then waits for its commit, if not answered);
- ``emit`` / ``yield``: a received track put on the bus / given to a consumer;
- ``commit``: each replay-memory commit in its thread (wall, the thread's CPU, groups, audit rows);
- ``ckpt``: each checkpoint pass of ``Store.checkpoint_aside`` (wall, pages in the log, backfilled);
- ``lag``: the event loop late by more than 2 ms for a 2 ms sleep; ``gc``: a collection over 0.5 ms.
"""

from __future__ import annotations

import os
import sys

_DIR = os.environ.get("GSOMIA_STAGE_PROBE")


def _install(directory: str) -> None:
    import asyncio
    import atexit
    import gc
    import json
    import re
    import threading
    import time
    from typing import Any

    import gsomia.store._checkpoints as checkpoints
    import gsomia.store._store as store
    import gsomia.stream._link as link
    import gsomia.stream._service as service

    argv = sys.orig_argv
    party = os.path.basename(argv[argv.index("--dir") + 1]).upper()
    clock = time.perf_counter
    events: list[tuple[Any, ...]] = []
    update_ts = re.compile(rb'"update_ts":"([^"]+)"')

    def ts_of(data: bytes) -> str | None:
        found = update_ts.search(data)
        return found.group(1).decode() if found else None

    def flush() -> None:
        taken = events[:]
        del events[: len(taken)]
        if taken:
            with open(os.path.join(directory, f"{party}-{os.getpid()}.jsonl"), "a") as out:
                out.writelines(json.dumps(e) + "\n" for e in taken)

    def flusher() -> None:
        while True:
            time.sleep(0.5)
            flush()

    threading.Thread(target=flusher, daemon=True, name="stage-probe").start()
    atexit.register(flush)
    started: dict[str, float] = {}

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started["gc"] = clock()
        elif (spent := clock() - started.get("gc", clock())) > 0.0005:
            events.append(("gc", clock(), info["generation"], spent))

    gc.callbacks.append(collected)
    cls: Any = service.StreamService
    publish, send, frame_body, arrive, take_group = (
        cls.publish, cls._send, cls._frame_body, cls._arrive, cls._take_group
    )  # fmt: skip
    emit, consume, start = cls._emit, cls._consume, cls.start

    async def publish_(self: Any, actor: Any, data: Any) -> Any:
        events.append(("pub", clock(), data.get("update_ts") if isinstance(data, dict) else None))
        return await publish(self, actor, data)

    async def send_(self: Any, partner: str, kind: int, body: Any, *args: Any, **kwargs: Any) -> Any:
        message = body if isinstance(body, bytes) else body.entry.message
        events.append(("queued", clock(), partner, ts_of(message)))
        return await send(self, partner, kind, body, *args, **kwargs)

    last_body: dict[str, Any] = {}

    def frame_body_(self: Any, batch: list[Any]) -> bytes:
        began = clock()
        body: bytes = frame_body(self, batch)
        tracks = [ts_of(m if isinstance(m, bytes) else m.entry.message) for m in batch]
        last_body.update(tracks=tracks, began=began, ended=clock())
        return body

    seal, open_ = link.LinkSession.seal, link.LinkSession.open

    def seal_(self: Any, kind: int, body: bytes, now: float) -> Any:
        frames = seal(self, kind, body, now)
        if kind == link.TRACKS and "tracks" in last_body:
            events.append(("sealed", clock(), self.peer, self.sent - 1, last_body["began"],
                           last_body["ended"], last_body.pop("tracks")))  # fmt: skip
        return frames

    def open__(self: Any, data: bytes) -> Any:
        began = clock()
        frame = open_(self, data)
        if frame is not None and frame.kind == link.TRACKS:
            events.append(("opened", began, clock(), self.peer, frame.seq))
        return frame

    async def arrive_(self: Any, sender: str, seq: int, group: Any) -> Any:
        tracks = [ts_of(entry.message) for entry in group.entries]
        events.append(("verified", clock(), sender, seq, tracks))
        arrival = await arrive(self, sender, seq, group)
        arrival.remembered.add_done_callback(lambda _: events.append(("remembered", clock(), tracks)))
        return arrival

    async def take_group_(self: Any, sender: str, arrival: Any) -> Any:
        events.append(("take", clock(), [m.track["update_ts"] for m in arrival.read]))
        return await take_group(self, sender, arrival)

    async def emit_(self: Any, track: bytes, label: Any, route: str, agreement: Any) -> Any:
        if route != "local":
            events.append(("emit", clock(), ts_of(track)))
        return await emit(self, track, label, route, agreement)

    async def consume_(self: Any, person: Any, subscription: Any) -> Any:
        async for seq, track in consume(self, person, subscription):
            events.append(("yield", clock(), ts_of(track)))
            yield seq, track

    async def start_(self: Any) -> None:
        await start(self)
        if getattr(self, "_stage_probe_lag", None) is None:

            async def lag() -> None:
                while True:
                    began = clock()
                    await asyncio.sleep(0.002)
                    if (late := clock() - began - 0.002) > 0.002:
                        events.append(("lag", clock(), late))

            self._stage_probe_lag = asyncio.ensure_future(lag())

    remember = store.Store.remember_signed_arrivals

    def remember_(self: Any, arrivals: Any, forget: int, audit: Any = ()) -> Any:
        began, cpu = clock(), time.thread_time()
        try:
            return remember(self, arrivals, forget, audit)
        finally:
            events.append(("commit", began, clock(), time.thread_time() - cpu, len(arrivals), len(audit)))

    checkpoint = checkpoints.Checkpointer._checkpoint

    def checkpoint_(self: Any) -> tuple[int, int]:
        began = clock()
        pages = checkpoint(self)
        events.append(("ckpt", began, clock(), *pages))
        return pages

    cls.publish, cls._send, cls._frame_body, cls._arrive = publish_, send_, frame_body_, arrive_
    cls._take_group, cls._emit, cls._consume, cls.start = take_group_, emit_, consume_, start_
    link.LinkSession.seal, link.LinkSession.open = seal_, open__  # type: ignore[method-assign]
    store.Store.remember_signed_arrivals = remember_  # type: ignore[method-assign]
    checkpoints.Checkpointer._checkpoint = checkpoint_  # type: ignore[method-assign]


if _DIR and "node" in sys.orig_argv and "serve" in sys.orig_argv:
    _install(_DIR)
