"""The node's background loops, in one place for ``gsomia node serve`` and the API app: deliver
the outbox, integrate the audit records into the Merkle log and sign its head, share this node's
signed head, check the partners' and gossip them to each other, all over one :class:`PeerTransport`.

Every process of a node runs these loops; each kind of work is done only by the process holding
its lease in the store (``_lease``): ``outbox`` (the scheduled downgrades' duty messages, and on
SQLite all of the outbox's delivery), ``audit`` and ``gossip``. Another process takes a kind of
work over within the lease's time when its holder dies.

On PostgreSQL the outbox's delivery is shared peer by peer: a lease per next hop
(``deliver:PEER``, :class:`~gsomia.node._lease.SharedWork`), each process holding its share of
them, so two processes deliver to different peers at once and a dead one's peers are taken over
within the lease's time. Within a peer one process delivers, in order, as before; every
outcome is still written by compare-and-set (``FederationStore.settle_many``) and the receiver
answers a message it already holds as a duplicate with its first receipt, so a hand-over while a
batch is on the wire sends nothing twice into the receiver's holdings. SQLite stays one process:
there the ``outbox`` lease's holder delivers to every peer.

The ``audit`` work is the audit log's writer: :meth:`AuditLog.integrate` and
:meth:`AuditLog.sign_head` run under the database's lock as well, so even two writers (a lease
taken over while its old holder is still finishing, ``gsomia audit integrate`` beside a serving
node) never interleave; whatever serves the log (API, dashboard, CLI) only reads what they wrote.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gsomia.audit import AuditLog, TreeHeads
from gsomia.duties import Duties
from gsomia.exchange import Exchange, HttpTransport, PeerTransport
from gsomia.node._lease import DEFAULT_TTL, Lease, SharedWork, process_holder
from gsomia.store import LeaseStore

__all__ = ["DELIVER", "IDLE_PAUSE_S", "LEASES", "NodeRuntime"]

OUTBOX, AUDIT, GOSSIP = "outbox", "audit", "gossip"
LEASES = (OUTBOX, AUDIT, GOSSIP)  # the node's background work, one lease each
DELIVER = "deliver"  # the outbox's delivery on PostgreSQL: a lease per peer, ``deliver:PEER``
INTEGRATE_BATCH = 2000  # audit records a transaction integrates at most
SHARED_ROUND = 300  # outbox entries a round reads at most when delivery is shared: it asks again soon
PRUNE_EVERY_S = 10.0  # how often the holder of the audit lease deletes the rate counters of ended windows
IDLE_PAUSE_S = 1.0  # the longest pause of a loop whose rounds find nothing (its own process's commits end it)

_log = logging.getLogger("gsomia.sender")


class NodeRuntime:
    """Threads running the node's rounds until :meth:`stop`; each round is :meth:`round`: the
    outbox's delivery on one thread, the audit log's writer and the heads' exchange on another.

    ``interval`` is the pause after a round that sent nothing, cut short when this process (or,
    on PostgreSQL, another of the node's) commits outbox entries (``Store.on_queued``): the pause
    is the safety net for retries coming due and for writers that cannot wake it (SQLite's CLI
    beside a serving node). Each round that finds nothing doubles the pause, up to
    ``idle_pause`` (at least ``interval``); a round that finds work, or a wake, sets it back to
    ``interval``. So what another process commits (a CLI's outbox entries on SQLite, another
    process's audit records) is picked up within ``idle_pause`` and a round, the store being read
    every time; this process's own commits wake the loops at once. The audit log's writer is
    woken so by this process's audit records (``Store.on_audited``), its rounds still
    ``interval`` apart (one integration gathers what a busy node wrote meanwhile), and it reads
    whether anything is pending before it takes the tree's lock (:meth:`AuditLog.integrate`);
    its pause never passes the next head due to be signed or exchanged. A new head is signed
    after a round that grew the log, at most every ``sign_every`` seconds (a bounded number of
    heads, each a proof target); heads are shared and checked every ``head_every`` seconds. A
    failure is logged, never fatal: a crashed loop would silently stop all delivery. Each kind
    of work is done only while this process holds its lease (``lease_ttl`` seconds, renewed as
    the rounds go); :meth:`stop` releases them for another process at once. Without
    ``deliver`` (``node serve --no-sender``) only the audit work is done.
    """

    def __init__(
        self,
        exchange: Exchange,
        audit: AuditLog,
        heads: TreeHeads,
        transport: PeerTransport | None = None,
        *,
        interval: float = 0.2,
        idle_pause: float = IDLE_PAUSE_S,
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
        self.idle_pause = max(interval, idle_pause)
        self.head_every = head_every
        self._stop = threading.Event()
        # set by every commit that queues outbox entries (this process's, or another's told by
        # PostgreSQL's notification): a round starts then, not at the end of the pause, so a node
        # carries an officer's committed selection while the next one is being released
        self._wake = threading.Event()
        if deliver:
            exchange.kernel.store.on_queued(self._wake.set)
        # set by every commit of this process that writes audit records to integrate: the writer's
        # next round comes then (``interval`` after the one before), not at the end of its idle pause
        self._audited = threading.Event()
        exchange.kernel.store.on_audited(self._audited.set)
        self._threads: list[threading.Thread] = []  # the delivery loop's and the audit writer's
        self._last_head = float("-inf")
        self.sign_every = sign_every
        self.deliver = deliver  # False: only the audit log's writer (a node serving with --no-sender)
        self._last_sign = float("-inf")
        self._last_prune = float("-inf")
        self._grown = True  # sign at the first round holding the lease: there is a head to serve
        self._worked = False  # whether the audit writer's last round found work (its pause then stays short)
        self.holder = holder if holder is not None else process_holder()
        store = LeaseStore(exchange.kernel.store)
        self._leases = {name: Lease(store, name, self.holder, ttl=lease_ttl) for name in LEASES}
        # PostgreSQL: delivery shared out peer by peer; SQLite: the ``outbox`` lease's holder does it all
        self.shared = store.store.engine.dialect.name != "sqlite"
        self.delivery = SharedWork(store, DELIVER, self.holder, ttl=lease_ttl)
        self._recount_every = lease_ttl / 3
        self._next_recount = float("-inf")
        self._waiting: set[str] = set()  # the next hops pending outbox entries wait for, as last read

    @property
    def leases(self) -> dict[str, Lease]:
        """Every lease this process has held or asked for, by name: the kinds of work and, on
        PostgreSQL, each peer's delivery (``deliver:PEER``)."""
        parts = {f"{DELIVER}:{party}": lease for party, lease in self.delivery.parts.items()}
        return {**self._leases, **parts}

    def delivering(self) -> set[str] | None:
        """The peers whose outbox this process delivers now (``None``: every peer, the SQLite
        ``outbox`` holder). The peers are the registered ones and whichever next hop pending
        entries wait for (read again every third of the lease's time)."""
        if not self.shared:  # asked just before, in the same round
            return None if self._leases[OUTBOX].held() else set()
        start = time.monotonic()
        if start >= self._next_recount:
            self._next_recount = start + self._recount_every
            self._waiting = self.exchange.fed.pending_recipients()
        registered = {identity.party for identity, _ in self.exchange.peers()}
        return self.delivery.held(registered | self._waiting)

    def round(self) -> int:
        """One round: deliver what is due, grow the log and sign its head, and (when due) share and
        check heads; how many outbox entries were settled. Each part only if this process holds
        its lease (and, for delivery and heads, only if it delivers at all)."""
        sent = self._deliver()
        self._audit()
        self._gossip()
        return sent

    def _deliver(self) -> int:
        """The outbox's part of a round (its lease held): due downgrades queued, what is due sent."""
        sent = []
        if self.deliver:
            outbox = self._leases[OUTBOX].held()
            if self.duties is not None and outbox:
                self.duties.apply_due_downgrades()  # due downgrades queue their duty messages first
            peers = self.delivering()
            # a run to a peer reads what was queued since before it waits for its batches on their way
            # (the receiver busy meanwhile: issue 18), for a third of the lease's time at most, so the
            # round ends, and asks for its leases again, well within it
            until = time.monotonic() + self._recount_every
            follow = self._following(until)
            if peers is None:
                sent = self.exchange.deliver_due(self.transport, follow=follow)
            elif peers:  # smaller rounds, each peer's lease renewed between its batches
                sent = self.exchange.deliver_due(
                    self.transport, SHARED_ROUND, peers=peers, keep=self.delivery.holds, follow=follow
                )
        return len(sent)

    def _following(self, until: float) -> Callable[[str], bool]:
        """Whether a delivery run goes on reading what was queued: until ``until`` (monotonic), and
        not once the runtime is stopping."""
        return lambda _party: not self._stop.is_set() and time.monotonic() < until

    def _audit(self) -> bool:
        """The audit log's part of a round (its lease held): records integrated, the head signed;
        whether a long backlog was left for the next round (the work done is :attr:`_worked`)."""
        more = False
        self._worked = False
        if self._leases[AUDIT].held():
            self.audit.kernel.close_refusal_tallies()  # closed windows of counted refusals: a record each
            if time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = time.monotonic()
                self.audit.kernel.admission.prune()  # per-source budgets of windows that have ended
            # each batch its own short transaction under the lock; a long backlog is left for the next
            # round after a third of the lease's time, so the leases this round asks for are renewed
            until = time.monotonic() + self._recount_every
            while self.audit.integrate(INTEGRATE_BATCH):
                self._grown = self._worked = True
                if time.monotonic() >= until:
                    more = True
                    break
            if self._grown and time.monotonic() - self._last_sign >= self.sign_every:
                self._last_sign = time.monotonic()
                self._grown = False
                self._worked = True
                self.audit.sign_head()
        return more

    def _gossip(self) -> None:
        """Heads shared and checked, every ``head_every`` seconds (asked every round, so the holder
        renews its lease between two exchanges of heads)."""
        if (
            self.deliver
            and self._leases[GOSSIP].held()
            and time.monotonic() - self._last_head >= self.head_every
        ):
            self._last_head = time.monotonic()
            self._worked = True
            self.heads.share_head()
            self.audit.check_partners(self.transport)
            self.audit.check_gossip(self.transport)
            self.heads.gossip()  # the heads held of each partner, to the others (issue 14 §4)

    def _run(self) -> None:
        """A process that delivers: the outbox's rounds, woken by queued entries.
        The audit log's writer runs on a thread of its own (:meth:`_run_audit`), so that a round of
        integration never holds up the next batch (issue 18: a serving KOR's worker sent nothing
        while it integrated the records of the batches before, and the receiver idled meanwhile)."""
        pause = self.interval
        while not self._stop.is_set():
            sent = 0
            self._wake.clear()  # before the round reads the outbox: a commit after this wakes the next
            try:
                sent = self._deliver()
            except Exception:
                _log.exception("delivery round failed")
            # the pause: until it ends, entries are queued, or stop; longer while rounds find nothing
            woken = bool(sent) or self._wake.wait(pause)
            pause = self.interval if woken else min(pause * 2, self.idle_pause)

    def _run_audit(self) -> None:
        """The audit log's writer, and the heads' exchange (which signs a head, a writer's work too):
        its rounds, every ``interval`` unless a long backlog is left."""
        pause = self.interval
        while not self._stop.is_set():
            more = False
            self._worked = False
            began = time.monotonic()
            self._audited.clear()  # before the round reads what is pending: a later commit wakes the next
            try:
                more = self._audit()
                self._gossip()
            except Exception:
                _log.exception("audit round failed")
            if more:
                continue
            pause = self.interval if self._worked else min(pause * 2, self.idle_pause, self._due_in())
            # the pause, ended by this process's audit records or stop; the next round still comes
            # ``interval`` after this one began, so a busy node's records are integrated together
            if self._audited.wait(pause) and not self._stop.is_set():
                pause = self.interval
                self._stop.wait(max(0.0, began + self.interval - time.monotonic()))

    def _due_in(self) -> float:
        """How soon the audit writer's next timed work falls due (a head to sign for a log that grew,
        the heads' exchange), never under ``interval``: its idle pause ends no later."""
        due = float("inf")
        if self.deliver and self._leases[GOSSIP].epoch is not None:  # this process exchanges the heads
            due = self._last_head + self.head_every
        if self._grown and self._leases[AUDIT].epoch is not None:  # and signs them
            due = min(due, self._last_sign + self.sign_every)
        return max(self.interval, due - time.monotonic())

    def start(self) -> None:
        if self._threads:
            return
        party = self.exchange.party
        # without delivery (``--no-sender``) the audit log's writer is the only loop
        loops = [(self._run, "sender")] if self.deliver else []
        self._threads = [
            threading.Thread(target=target, daemon=True, name=f"gsomia-{name}-{party}")
            for target, name in [*loops, (self._run_audit, "audit")]
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        self._wake.set()
        self._audited.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._threads = []
        for lease in self._leases.values():
            lease.release()
        self.delivery.release()
        self.transport.close()
