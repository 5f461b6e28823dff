"""Bulk loading for the large stores: the service's own row builder, run by one worker process a core.

``rows_in_workers`` yields the rows of each batch, in order, built by ``build(node, batch, size)``
in worker processes, each on a handle of its own on the node at ``directory`` (its store and its
keys, as a second process of the node has); the caller writes them to the store while the workers
build the next ones. ``build`` must be a module-level function (it is sent to the workers by name).
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import datetime
from pathlib import Path

from gsomia.node import Node, load_config
from gsomia.store import NewItem
from gsomia.testing import FakeClock

__all__ = ["rows_in_workers", "workers"]

Build = Callable[[Node, int, int], list[NewItem]]
_NODE: Node | None = None
_BUILD: Build | None = None


def workers() -> int:
    """One worker a core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _open(directory: str, at: datetime, build: Build) -> None:
    global _NODE, _BUILD
    _NODE = Node(load_config(Path(directory)), clock=FakeClock(at))
    _BUILD = build


def _run(batch: int, size: int) -> list[NewItem]:
    assert _NODE is not None
    assert _BUILD is not None
    return _BUILD(_NODE, batch, size)


def rows_in_workers(
    directory: Path, at: datetime, sizes: Sequence[int], build: Build
) -> Iterator[list[NewItem]]:
    """The rows of batch 0, 1, ... (``sizes[k]`` items in batch ``k``), each built by ``build``."""
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    setup = (str(directory), at, build)
    ahead = 2 * workers()  # batches built and not yet taken: bounded, so memory stays flat
    with ProcessPoolExecutor(workers(), context, initializer=_open, initargs=setup) as pool:
        pending: deque[Future[list[NewItem]]] = deque()
        for batch, size in enumerate(sizes):
            pending.append(pool.submit(_run, batch, size))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
