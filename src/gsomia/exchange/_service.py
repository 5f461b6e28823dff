"""The exchange between nodes: one :class:`Exchange` per node, composed of one part per concern.

- ``_peers``: registering partners' identity documents, the agreements each link serves, key
  rotation and revocation (the kernel's peer directory is what every service reads).
- ``_release``: ``release`` decides now and, if allowed, writes the sealed envelope and the
  decision in one transaction (the outbox). Nothing leaves on a refusal. ``release_many``
  does the same for a selection, in one transaction.
- ``_delivery``: ``deliver_due`` decides again at the instant of sending, pushes batches to
  each peer's ``/inbox`` and keeps the signed receipts; transport failures retry with backoff.
- ``_inbox``: ``receive`` opens, checks, decides and stores a batch of envelopes, exactly once;
  a hub relays what the originator authorised, and only that. Message kinds are dispatched
  through a handler table other services register with (duties, the audit log's tree heads).
- ``_consents``: consents on file and the third-party consent workflow.
- ``_equivalences``: a party's equivalence changes, proposed here (signed, queued for each partner)
  and received from partners (verified, checked, applied from their instant).

Each part is a class over the one below it (``_base`` holds the shared state and helpers),
so every method a part calls is one mypy sees on that part.
"""

from __future__ import annotations

from datetime import timedelta

from gsomia.exchange._delivery import Deliveries, Delivery
from gsomia.exchange._inbox import Inbox
from gsomia.exchange._release import MAX_RELEASE_ITEMS, PreparedRelease, Released
from gsomia.kernel import NodeContext

__all__ = ["MAX_RELEASE_ITEMS", "Delivery", "Exchange", "PreparedRelease", "Released"]


class Exchange(Deliveries, Inbox):
    """A node's side of the federation."""

    def __init__(
        self,
        kernel: NodeContext,
        *,
        ttl: timedelta = timedelta(hours=24),
        skew: timedelta = timedelta(minutes=5),
    ) -> None:
        super().__init__(kernel, ttl=ttl, skew=skew)
        self._register_own()
