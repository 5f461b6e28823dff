"""What an operator watches at a node, for ``/metrics``: who may read it (administrators) and the
gauges read from the store when scraped, so that every process of the node reports the same (the
outbox's backlog per next hop, the audit records not yet in the Merkle log, when each partner's
tree head last came, the leases' holders on the database's clock)."""

from __future__ import annotations

from dataclasses import dataclass

from gsomia.core.access import Person, Role
from gsomia.exchange import Exchange
from gsomia.kernel import NodeContext
from gsomia.store import Backlog, Gauges, LeaseRow, LeaseStore

__all__ = ["METRICS_READERS", "LeaseGauge", "Metrics"]

METRICS_READERS = (Role.ADMINISTRATOR,)  # who reads the node's metrics


@dataclass(frozen=True, slots=True)
class LeaseGauge:
    """The leases as the store has them, and the database's clock they expire by (µs)."""

    now_us: int
    leases: tuple[LeaseRow, ...]


class Metrics:
    """The node's gauges over the kernel's store and the exchange's peers."""

    def __init__(self, kernel: NodeContext, exchange: Exchange) -> None:
        self.kernel = kernel
        self.exchange = exchange
        self._gauges = Gauges(kernel.store)
        self._leases = LeaseStore(kernel.store)

    def require_reader(self, actor: Person | None) -> None:
        """Refuse (and record) unless ``actor`` may read this node's metrics: administrators."""
        self.kernel.require_any(actor, METRICS_READERS, "metrics.read")

    def outbox(self) -> dict[str, Backlog]:
        """Per next hop (every registered peer, and any other the outbox still names): the pending
        entries and the oldest one's creation (µs; ``None`` when none waits)."""
        backlog = self._gauges.outbox()
        peers = {p.party for p, _ in self.exchange.peers()} | set(backlog)
        return {peer: backlog.get(peer, Backlog(0, None)) for peer in sorted(peers)}

    def unintegrated(self) -> Backlog:
        """The audit records not yet integrated into the Merkle log, and the oldest one's instant."""
        return self._gauges.unintegrated()

    def partner_heads(self) -> dict[str, int]:
        """Per partner: when its newest tree head was received (µs)."""
        return self._gauges.partner_heads()

    def leases(self) -> LeaseGauge:
        """Every lease, with the database's clock to judge which still runs."""
        now = self._leases.now_us()
        return LeaseGauge(now, tuple(self._leases.leases()))
