"""The server of ``gsomia node serve``: uvicorn's, with the collector settled once it has started.

``node serve`` freezes the objects made while the node is opened and its app built
(``gc.freeze()``, before the server starts): the collector never looks at them again. What the
app makes in its start-up after that (the routes' models, validators and serializers built by the
lifespan, ``_warm_routes``: ~33,000 objects a node, with the links' and the stream's own) stayed in
its view, and the collection of the oldest generation that came about once in each 10 s latency
run at 1,000 tracks/s walked all of them: 43,000-52,000 objects, 25-51 ms of the loop's CPU on the
shared machine, a late turn for every track then on its way, at KOR, JPN and the USA alike
(benchmarks/JOURNAL.md, bench_stream). Here, once the lifespan's start-up is over and the sockets
listen, before any request is read, one full collection (the start-up's garbage is not kept for
ever) and a second freeze: the collections while serving walk only what was made since.

Only the served process does this: the app's lifespan runs in every test's client too, where a
freeze for each app built would keep every dead app's cycles for the rest of the run.
"""

from __future__ import annotations

import gc
import socket

import uvicorn

__all__ = ["SettledServer"]


class SettledServer(uvicorn.Server):
    """``uvicorn.Server`` that collects and freezes once its start-up is over (see the module)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:  # started: nothing of the start-up is needed by the collector
            gc.collect()
            gc.freeze()
