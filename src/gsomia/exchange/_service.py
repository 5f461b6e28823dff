"""The exchange between nodes: one :class:`Exchange` per node, composed of one part per concern.

- ``_peers``: partners' identity documents, the agreements each link serves, key rotation
  and revocation.
- ``_release``: ``release`` decides now and, if allowed, writes the sealed envelope and the
  decision in one transaction (the outbox). Nothing leaves on a refusal.
- ``_delivery``: ``deliver_due`` decides again at the instant of sending, pushes batches to
  each peer's ``/inbox`` and keeps the signed receipts; transport failures retry with backoff.
- ``_inbox``: ``receive`` opens, checks, decides and stores a batch of envelopes, exactly once;
  a hub relays what the originator authorised, and only that.
- ``_heads``: signed tree heads shared with peers, and proofs of delivery.
- ``_consents``: consents on file and the third-party consent workflow.

Each part is a class over the one below it (``_base`` holds the shared state and helpers),
so every method a part calls is one mypy sees on that part.
"""

from __future__ import annotations

from gsomia.exchange._delivery import Deliveries, Delivery
from gsomia.exchange._inbox import Inbox
from gsomia.exchange._release import PreparedRelease

__all__ = ["Delivery", "Exchange", "PreparedRelease"]


class Exchange(Deliveries, Inbox):
    """A node's side of the federation."""
