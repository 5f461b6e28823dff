"""The partners this node knows: each one's identity document (public keys, endpoint) and the
agreements its government-to-government link is registered for (Art. 9).

Read by every service (the exchange seals and opens with these keys, the stream opens link
sessions, the audit log asks partners for proofs); written only by the exchange's peer
registration, which calls :meth:`PeerDirectory.invalidate` after each write.
"""

from __future__ import annotations

import json

from gsomia.crypto.keys import PeerIdentity
from gsomia.store import FederationStore

__all__ = ["PeerDirectory"]


class PeerDirectory:
    """Registered peers, read from the store once and kept until the next registration here."""

    def __init__(self, fed: FederationStore) -> None:
        self._fed = fed
        self._peers: dict[str, tuple[PeerIdentity, frozenset[str]]] | None = None

    def _load(self) -> dict[str, tuple[PeerIdentity, frozenset[str]]]:
        peers = self._peers
        if peers is None:
            peers = self._peers = {
                row.party: (
                    PeerIdentity.from_document(json.loads(row.document)),
                    frozenset(json.loads(row.agreements)),
                )
                for row in self._fed.peers()
            }
        return peers

    def invalidate(self) -> None:
        """Forget what was read: the next look-up reads the store again."""
        self._peers = None

    def peer(self, party: str) -> PeerIdentity | None:
        """The registered identity of ``party``, or ``None`` (also the key look-up for verification)."""
        found = self._load().get(party)
        return None if found is None else found[0]

    def links(self, party: str) -> frozenset[str]:
        """The agreements the G2G link with ``party`` is registered for (Art. 9)."""
        found = self._load().get(party)
        return frozenset() if found is None else found[1]

    def all(self) -> list[tuple[PeerIdentity, frozenset[str]]]:
        """Every registered peer with its links, by party."""
        return sorted(self._load().values(), key=lambda p: p[0].party)
