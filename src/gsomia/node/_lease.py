"""This process's hold on a lease: which kind of background work it may do now.

Every process of a node runs the same background loops; before each piece of work a loop asks
:meth:`Lease.held`, and only the process holding that work's lease in the store does it. The
holder renews its lease when a third of its time is spent, so a process that dies (or is
stopped, or loses the database) has its work taken over by another within the lease's time.
A process that does not hold a lease asks the store again at most every third of that time.

Work made of independent parts (the outbox's delivery, peer by peer) is shared out by
:class:`SharedWork`: a lease per part, and each process takes at most its fair share of the parts
(their number over the processes doing that work, each of which keeps a lease of its own as a
sign of life), so two processes do different parts at once and a dead one's parts are taken over.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Mapping

from gsomia.errors import StoreError
from gsomia.store import LeaseStore

__all__ = ["DEFAULT_TTL", "Lease", "SharedWork", "process_holder"]

DEFAULT_TTL = 5.0  # seconds: how long a dead holder's work waits before another process takes it
FORGET_AFTER_US = 60_000_000  # a dead process's sign of life is deleted a minute after it ended

_log = logging.getLogger("gsomia.lease")


def process_holder() -> str:
    """A name for this process that no other process of any machine shares: host, pid, a nonce."""
    return f"{socket.gethostname()[:100]}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


class Lease:
    """One named lease as this process holds it (or not)."""

    def __init__(
        self,
        leases: LeaseStore,
        name: str,
        holder: str,
        *,
        ttl: float = DEFAULT_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0:
            raise ValueError("a lease's time must be positive")
        self.leases = leases
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self._monotonic = monotonic
        self._valid_until = float("-inf")  # this process holds the lease before this instant
        self._next_ask = float("-inf")  # the store is asked again from this instant
        self.epoch: int | None = None  # the epoch the lease is held under (None: not held)
        self._warned = False

    def held(self) -> bool:
        """Whether this process holds the lease now, renewing or claiming it in the store when due.

        A store failure is never taken as holding it: the lease runs out and the work stops here."""
        start = self._monotonic()
        if start < self._next_ask:
            return start < self._valid_until
        try:
            epoch = self.leases.claim(self.name, self.holder, int(self.ttl * 1_000_000))
        except StoreError:
            _log.warning("lease %s: the store did not answer; holding it until it runs out", self.name)
            epoch = None
            self._next_ask = start + self.ttl / 3
            return start < self._valid_until
        self._next_ask = start + self.ttl / 3
        if epoch is None:
            if self.epoch is not None:
                _log.warning("lease %s: lost to another process", self.name)
            self.epoch, self._valid_until = None, float("-inf")
            self._one_process_warning()
            return False
        if epoch != self.epoch:
            _log.info("lease %s: held by this process (%s), epoch %d", self.name, self.holder, epoch)
        self.epoch = epoch
        self._valid_until = start + self.ttl  # measured from before the claim: never later than the row's
        return True

    def release(self) -> None:
        """Let another process take the lease at once (a clean stop)."""
        if self.epoch is None:
            return
        self.epoch, self._valid_until, self._next_ask = None, float("-inf"), float("-inf")
        try:
            self.leases.release(self.name, self.holder)
        except StoreError:
            _log.warning("lease %s: could not be released; it runs out by itself", self.name)

    def _one_process_warning(self) -> None:
        if self._warned or self.leases.store.engine.dialect.name != "sqlite":
            return
        self._warned = True
        _log.warning(
            "another process holds this node's %s work on the same SQLite database: SQLite is the "
            "one-process embedded store; this process leaves that work to the other. Run several "
            "processes of a node on PostgreSQL.",
            self.name,
        )


def _rank(holder: str, part: str) -> bytes:
    """This process's preference for ``part`` (rendezvous hashing): processes prefer different parts."""
    return hashlib.sha256(f"{holder}\0{part}".encode()).digest()


class SharedWork:
    """Work made of parts (``deliver`` and a peer's party, say), each part under its own lease
    (``PREFIX:PART``), shared out among the processes doing it.

    Each process doing the work keeps a lease of its own (``member:PREFIX:…``, a sign of life);
    the processes whose sign of life runs are the sharers, and each holds at most
    ``ceil(parts / sharers)`` parts: it renews the parts it holds, gives back those above its
    share (a new sharer came), and claims free ones (never held, released, or run out because
    their holder died) up to its share, in an order of its own so that sharers seldom race for
    the same part. A dead process's parts are free once their leases run out, and its sign of life
    runs out at the same time, so the survivors' shares grow to cover them: a takeover takes the
    lease's time and a third. Each part is held by one process at a time (the lease's
    compare-and-set), so what must happen in order within a part (a peer's outbox) still does.
    """

    def __init__(
        self,
        leases: LeaseStore,
        prefix: str,
        holder: str,
        *,
        ttl: float = DEFAULT_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.prefix = prefix
        self.holder = holder
        self.ttl = ttl
        self._monotonic = monotonic
        self._members_prefix = f"member:{prefix}:"
        self._member = Lease(
            leases,
            self._members_prefix + hashlib.sha256(holder.encode()).hexdigest()[:20],
            holder,
            ttl=ttl,
            monotonic=monotonic,
        )
        self._parts: dict[str, Lease] = {}
        self._sharers = 1
        self._next_count = float("-inf")
        self._next_forget = float("-inf")

    @property
    def parts(self) -> Mapping[str, Lease]:
        """The leases of the parts this process has held or asked for, by part (a copy)."""
        return dict(self._parts)

    def sharers(self) -> int:
        """How many processes share the work, as last counted (this one included)."""
        return self._sharers

    def held(self, parts: Collection[str]) -> set[str]:
        """The parts of ``parts`` this process does now: those whose leases it holds or takes, at
        most its share. A part it holds stays in its care (renewed) even if ``parts`` no longer
        names it, until it is given back."""
        start = self._monotonic()
        if not self._member.held():  # the store does not answer: only what is surely still ours
            return {part for part, lease in self._parts.items() if lease.epoch is not None and lease.held()}
        if start >= self._next_count:
            try:
                self._sharers = max(1, len(self.leases.running(self._members_prefix)))
                self._next_count = start + self.ttl / 3
                if start >= self._next_forget:
                    self._next_forget = start + FORGET_AFTER_US / 1e6
                    self.leases.forget(self._members_prefix, FORGET_AFTER_US)
            except StoreError:
                _log.warning("shared work %s: the store did not answer the count of sharers", self.prefix)
        every = set(parts) | {part for part, lease in self._parts.items() if lease.epoch is not None}
        share = math.ceil(len(every) / self._sharers) if every else 0
        holding = {part for part, lease in self._parts.items() if lease.epoch is not None and lease.held()}
        # above its share (a sharer joined): give back the parts this process cares least for
        for part in sorted(holding, key=lambda p: _rank(self.holder, p), reverse=True):
            if len(holding) <= share:
                break
            self._parts[part].release()
            holding.discard(part)
            _log.info("shared work %s: %s given back (%d sharers)", self.prefix, part, self._sharers)
        for part in sorted(every - holding, key=lambda p: _rank(self.holder, p)):
            if len(holding) >= share:
                break
            lease = self._parts.get(part)
            if lease is None:
                lease = Lease(
                    self.leases, f"{self.prefix}:{part}", self.holder, ttl=self.ttl, monotonic=self._monotonic
                )
                self._parts = {**self._parts, part: lease}  # replaced whole: a reader elsewhere sees one
            if lease.held():
                holding.add(part)
        return holding

    def holds(self, part: str) -> bool:
        """Whether this process still holds ``part`` (renewing its lease, and the sign of life, when
        due): asked between two pieces of a long piece of work, which stops when it is lost."""
        lease = self._parts.get(part)
        if lease is None or lease.epoch is None:
            return False
        self._member.held()
        return lease.held()

    def release(self) -> None:
        """Give every part back, and the sign of life (a clean stop)."""
        for lease in self._parts.values():
            lease.release()
        self._member.release()
