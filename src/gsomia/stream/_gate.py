"""The gate of ``/stream/link``: what a caller may hold open, and make the node record, before it
has proved it is a registered peer.

Anyone can open a WebSocket to ``/stream/link``. Until the caller's first authenticated frame
arrives (key confirmation: only a holder of the pinned static key and of the handshake's
ephemeral key can make one), it is nobody, so what it costs the node is bounded:

- at most ``per_source`` such connections per source address at once (``too-many-links``);
- its hello within ``handshake_s`` seconds of connecting and its first frame within
  ``handshake_s`` of the answer (``handshake-timeout``);
- a hello seen before is refused without an answer (``replayed-handshake``): a replayed first
  message never gets a session, let alone an "opened" record.

In-memory and per process on purpose: these are the process's own sockets and seconds. Pure but
for the monotonic instants the caller passes in. Its refusals are audited elsewhere, in the store
(the kernel's refusal tally, bounded across every process of the node; ``StreamService.serve_link``),
as is a hello a process answered (``LinkHellos``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

__all__ = ["LinkGate"]


class LinkGate:
    """Admission of unauthenticated link connections."""

    __slots__ = (
        "_hellos",
        "_pending",
        "handshake_s",
        "hello_memory_s",
        "limit",
        "per_source",
    )

    def __init__(
        self,
        *,
        per_source: int = 8,
        handshake_s: float = 5.0,
        hello_memory_s: float = 600.0,
        limit: int = 4096,
    ) -> None:
        self.per_source = per_source
        self.handshake_s = handshake_s
        self.hello_memory_s = hello_memory_s
        self._pending: dict[str, int] = {}  # source -> connections not yet confirmed
        self._hellos: OrderedDict[bytes, float] = OrderedDict()  # digest -> when first seen
        self.limit = limit  # hellos remembered, at most

    def admit(self, source: str) -> bool:
        """Count one more unconfirmed connection from ``source``; False (not counted) over the limit."""
        held = self._pending.get(source, 0)
        if held >= self.per_source:
            return False
        self._pending[source] = held + 1
        return True

    def release(self, source: str) -> None:
        """The connection from ``source`` was confirmed, or ended: it no longer counts."""
        held = self._pending.get(source, 0) - 1
        if held > 0:
            self._pending[source] = held
        else:
            self._pending.pop(source, None)

    def pending(self, source: str) -> int:
        return self._pending.get(source, 0)

    def fresh_hello(self, first: bytes, now: float) -> bool:
        """Whether this first message (hello and Noise message 1, whose ephemeral key is new for every
        genuine attempt) has not been seen within ``hello_memory_s``; remembers it either way."""
        digest = hashlib.sha256(first).digest()
        while self._hellos:
            oldest, seen = next(iter(self._hellos.items()))
            if now - seen <= self.hello_memory_s and len(self._hellos) < self.limit:
                break
            del self._hellos[oldest]
        if digest in self._hellos:
            return False
        self._hellos[digest] = now
        return True
