"""The stage probe of ``benchmarks/probe_stream.py``, loaded by a node process through ``PYTHONPATH``.

Inert unless ``GSOMIA_STAGE_PROBE`` names a directory and the process is ``gsomia node serve``: then
it wraps a few of the stream's functions (nothing else changes) and writes, once the probe has made
``DIR/flush`` (after its run), one JSON line per event to ``DIR/PARTY-PID.jsonl``, each with a
``time.perf_counter()`` instant (the system's monotonic clock, comparable across the processes of
one machine). A track is named by its
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
- ``commit``: each replay-memory commit, in its thread or on the event loop (wall, the committing
  thread's CPU, groups, audit rows);
- ``ckpt``: each checkpoint pass of ``Store.checkpoint_aside`` (wall, pages in the log, backfilled);
- ``lag``: the event loop late by more than 2 ms for a 2 ms sleep, with the loop thread's CPU and the
  process's in that time (a loop busy, or waiting); ``gc``: a collection over 0.5 ms;
- ``stack``: while the loop has not turned for 15 ms, its thread's stack every 5 ms, with the loop
  thread's CPU clock (a watchdog thread's sample: what a late turn is spent on).
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
        # the collector's state: objects frozen, objects in the oldest generation, collections so far
        import collections

        # and what the oldest generation holds, by type (what a full collection would walk)
        kinds = collections.Counter(type(o).__name__ for o in gc.get_objects(2)).most_common(12)
        oldest = len(gc.get_objects(2))
        events.append(("gcstate", clock(), gc.get_freeze_count(), oldest, gc.get_stats(), kinds))
        taken = events[:]
        del events[: len(taken)]
        if taken:
            with open(os.path.join(directory, f"{party}-{os.getpid()}.jsonl"), "a") as out:
                out.writelines(json.dumps(e) + "\n" for e in taken)

    # written once the probe asks (``DIR/flush`` made, after its run) and at the process's exit: a
    # thread writing them every half second held the interpreter's lock ~12 ms each time in every
    # node, a late turn of each loop the probe itself made
    atexit.register(flush)
    asked = os.path.join(directory, "flush")
    beat: dict[str, Any] = {}

    def watchdog() -> None:
        """While the loop has not turned for 15 ms, its thread's stack every 5 ms (``stack``): what
        a late turn was spent on, or that the thread was not running Python (uvloop's own run)."""
        import traceback

        turns = 0
        while True:
            time.sleep(0.005)
            turns += 1
            if turns % 100 == 0 and os.path.exists(asked):
                flush()
            last, tid = beat.get("at"), beat.get("tid")
            if last is None or (age := clock() - last) < 0.015:
                continue
            frame = sys._current_frames().get(tid)
            if frame is None:
                continue
            stack = [
                f"{os.path.basename(f.filename)}:{f.name}:{f.lineno}" for f in traceback.extract_stack(frame)
            ]
            cpu = time.clock_gettime(beat["cpu"])  # the loop thread's CPU clock
            events.append(("stack", clock(), last, age, cpu, stack[-14:]))

    threading.Thread(target=watchdog, daemon=True, name="stage-probe").start()
    started: dict[str, float] = {}

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if info["generation"] == 2:  # what the full collection is about to look at
                started["gc_size"] = len(gc.get_objects(2))
            started["gc"], started["gc_cpu"] = clock(), time.thread_time()
        elif (spent := clock() - started.get("gc", clock())) > 0.0005:
            cpu = time.thread_time() - started.get("gc_cpu", 0.0)
            size = started.pop("gc_size", None) if info["generation"] == 2 else None
            events.append(("gc", clock(), info["generation"], spent, cpu, info["collected"], size))

    gc.callbacks.append(collected)
    freeze = gc.freeze

    def freeze_() -> None:
        freeze()
        events.append(("freeze", clock(), gc.get_freeze_count()))

    gc.freeze = freeze_
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

    async def arrive_(self: Any, sender: str, seq: int, group: Any, **how: Any) -> Any:
        tracks = [ts_of(entry.message) for entry in group.entries]
        events.append(("verified", clock(), sender, seq, tracks))
        arrival = await arrive(self, sender, seq, group, **how)
        arrival.remembered.add_done_callback(lambda _: events.append(("remembered", clock(), tracks)))
        return arrival

    async def take_group_(self: Any, sender: str, arrival: Any) -> Any:
        events.append(("take", clock(), [ts_of(m.track) for m in arrival.read]))
        return await take_group(self, sender, arrival)

    async def emit_(self: Any, track: bytes, label: Any, route: str, agreement: Any) -> Any:
        if route != "local":
            events.append(("emit", clock(), ts_of(track)))
        return await emit(self, track, label, route, agreement)

    async def consume_(self: Any, person: Any, subscription: Any, *args: Any, **kwargs: Any) -> Any:
        async for seq, track in consume(self, person, subscription, *args, **kwargs):
            events.append(("yield", clock(), ts_of(track)))
            yield seq, track

    async def start_(self: Any) -> None:
        await start(self)
        if getattr(self, "_stage_probe_lag", None) is None:

            async def lag() -> None:
                beat["tid"] = threading.get_ident()
                beat["cpu"] = time.pthread_getcpuclockid(beat["tid"])
                while True:
                    began, cpu, everyone = clock(), time.thread_time(), time.process_time()
                    beat["at"] = began
                    await asyncio.sleep(0.002)
                    if (late := clock() - began - 0.002) > 0.002:
                        # the loop thread's own CPU in that time, and the whole process's: a late turn
                        # the loop spent working, or waiting (descheduled, or for the interpreter's lock)
                        spent, process = time.thread_time() - cpu, time.process_time() - everyone
                        events.append(("lag", clock(), late, spent, process))

            self._stage_probe_lag = asyncio.ensure_future(lag())

    remember = store.Store.remember_signed_arrivals

    def remember_(self: Any, arrivals: Any, forget: int, audit: Any = ()) -> Any:
        began, cpu = clock(), time.thread_time()
        try:
            return remember(self, arrivals, forget, audit)
        finally:
            events.append(("commit", began, clock(), time.thread_time() - cpu, len(arrivals), len(audit)))

    at_once = getattr(store.Store, "remember_signed_arrivals_at_once", None)

    def at_once_(self: Any, arrivals: Any, forget: int) -> Any:
        began, cpu = clock(), time.thread_time()
        answers = at_once(self, arrivals, forget)
        if answers is not None:  # made on the event loop (None: the memory's thread makes it)
            events.append(("commit", began, clock(), time.thread_time() - cpu, len(arrivals), 0))
        return answers

    if at_once is not None:
        store.Store.remember_signed_arrivals_at_once = at_once_  # type: ignore[method-assign]
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
