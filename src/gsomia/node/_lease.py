"""This process's hold on a lease: which kind of background work it may do now.

Every process of a node runs the same background loops; before each piece of work a loop asks
:meth:`Lease.held`, and only the process holding that work's lease in the store does it. The
holder renews its lease when a third of its time is spent, so a process that dies (or is
stopped, or loses the database) has its work taken over by another within the lease's time.
A process that does not hold a lease asks the store again at most every third of that time.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from gsomia.errors import StoreError
from gsomia.store import LeaseStore

__all__ = ["DEFAULT_TTL", "Lease", "process_holder"]

DEFAULT_TTL = 5.0  # seconds: how long a dead holder's work waits before another process takes it

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
