"""The node's background loops, in one place for ``gsomia node serve`` and the API app: deliver
the outbox, integrate the audit records into the Merkle log and sign its head, share this node's
signed head, check the partners' and gossip them to each other, all over one :class:`PeerTransport`.

Every process of a node runs these loops; each kind of work is done only by the process holding
its lease in the store (``_lease``): ``outbox``, ``audit`` and ``gossip``. Another process takes
a kind of work over within the lease's time when its holder dies.

The ``audit`` work is the audit log's writer: :meth:`AuditLog.integrate` and
:meth:`AuditLog.sign_head` run under the database's lock as well, so even two writers (a lease
taken over while its old holder is still finishing, ``gsomia audit integrate`` beside a serving
node) never interleave; whatever serves the log (API, dashboard, CLI) only reads what they wrote.
"""

from __future__ import annotations

import logging
import threading
import time

from gsomia.audit import AuditLog, TreeHeads
from gsomia.duties import Duties
from gsomia.exchange import Exchange, HttpTransport, PeerTransport
from gsomia.node._lease import DEFAULT_TTL, Lease, process_holder
from gsomia.store import LeaseStore

__all__ = ["LEASES", "NodeRuntime"]

OUTBOX, AUDIT, GOSSIP = "outbox", "audit", "gossip"
LEASES = (OUTBOX, AUDIT, GOSSIP)  # the node's background work, one lease each
PRUNE_EVERY_S = 10.0  # how often the holder of the audit lease deletes the rate counters of ended windows

_log = logging.getLogger("gsomia.sender")


class NodeRuntime:
    """A thread running the node's rounds until :meth:`stop`; each round is :meth:`round`.

    ``interval`` is the pause after a round that sent nothing; a new head is signed after a round
    that grew the log, at most every ``sign_every`` seconds (a bounded number of heads, each a proof
    target); heads are shared and checked every ``head_every`` seconds. A failure is logged, never
    fatal: a crashed loop would silently stop all delivery. Each kind of work is done only while
    this process holds its lease (``lease_ttl`` seconds, renewed as the rounds go); :meth:`stop`
    releases them for another process at once. Without ``deliver`` (``node serve --no-sender``)
    only the audit work is done.
    """

    def __init__(
        self,
        exchange: Exchange,
        audit: AuditLog,
        heads: TreeHeads,
        transport: PeerTransport | None = None,
        *,
        interval: float = 0.2,
        head_every: float = 5.0,
        sign_every: float = 1.0,
        deliver: bool = True,
        lease_ttl: float = DEFAULT_TTL,
        holder: str | None = None,
        duties: Duties | None = None,
    ) -> None:
        self.exchange = exchange
        self.duties = duties
        self.audit = audit
        self.heads = heads
        # HTTP(S) by default: mutual TLS with the node's certificate when it runs TLS
        self.transport = transport if transport is not None else HttpTransport(tls=exchange.kernel.tls)
        self.interval = interval
        self.head_every = head_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_head = float("-inf")
        self.sign_every = sign_every
        self.deliver = deliver  # False: only the audit log's writer (a node serving with --no-sender)
        self._last_sign = float("-inf")
        self._last_prune = float("-inf")
        self._grown = True  # sign at the first round holding the lease: there is a head to serve
        self.holder = holder if holder is not None else process_holder()
        store = LeaseStore(exchange.kernel.store)
        self.leases = {name: Lease(store, name, self.holder, ttl=lease_ttl) for name in LEASES}

    def round(self) -> int:
        """One round: deliver what is due, grow the log and sign its head, and (when due) share and
        check heads; how many outbox entries were settled. Each part only if this process holds
        its lease (and, for delivery and heads, only if it delivers at all)."""
        sent = []
        if self.deliver and self.leases[OUTBOX].held():
            if self.duties is not None:  # scheduled downgrades due now queue their duty messages first
                self.duties.apply_due_downgrades()
            sent = self.exchange.deliver_due(self.transport)
        if self.leases[AUDIT].held():
            self.audit.kernel.close_refusal_tallies()  # closed windows of counted refusals: a record each
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = time.monotonic()
                self.audit.kernel.admission.prune()  # per-source budgets of windows that have ended
            while self.audit.integrate():  # each batch its own short transaction under the lock
                self._grown = True
            if self._grown and time.monotonic() - self._last_sign >= self.sign_every:
                self._last_sign = time.monotonic()
                self._grown = False
                self.audit.sign_head()
        # asked every round, so the holder renews its lease between two exchanges of heads
        if (
            self.deliver
            and self.leases[GOSSIP].held()
            and time.monotonic() - self._last_head >= self.head_every
        ):
            self._last_head = time.monotonic()
            self.heads.share_head()
            self.audit.check_partners(self.transport)
            self.audit.check_gossip(self.transport)
            self.heads.gossip()  # the heads held of each partner, to the others (issue 14 §4)
        return len(sent)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = 0
            try:
                sent = self.round()
            except Exception:
                _log.exception("delivery round failed")
            if not sent:
                self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"gsomia-sender-{self.exchange.party}"
        )
        self._thread.start()

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        for lease in self.leases.values():
            lease.release()
        self.transport.close()
