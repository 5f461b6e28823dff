"""The partners this node knows: each one's identity document (public keys, endpoint) and the
agreements its government-to-government link is registered for (Art. 9).

Read by every service (the exchange seals and opens with these keys, the stream opens link
sessions and checks signed batches, the duties and the audit log verify partners' signatures);
written only by the exchange's peer registration and key revocation, in any process of the node
(``gsomia peer add`` or ``peer revoke-key`` beside a serving node), each written only if the
registrations are still those it read (:meth:`PeerDirectory.peer_at` gives the generation to
compare and set). The store is the truth: each
process reads the peers again when the store's ``peers`` generation moved, which it checks on
use at most every ~250 ms (:class:`~gsomia.kernel._watch.ChangeWatch`), so a revoked key is
refused by every process within a second, and a replaced identity document's TLS certificate pins
(``tls``) are the ones a connection is checked against within a second too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gsomia.crypto.keys import PeerIdentity
from gsomia.kernel._watch import ChangeWatch
from gsomia.store import PEERS, FederationStore

__all__ = ["PeerDirectory"]


@dataclass(frozen=True, slots=True)
class _Held:
    generation: int
    peers: dict[str, tuple[PeerIdentity, frozenset[str]]]
    pins: dict[str, PeerIdentity]


class PeerDirectory:
    """Registered peers, as the store holds them: read again whenever the store's changed."""

    def __init__(self, fed: FederationStore, watch: ChangeWatch) -> None:
        self._fed = fed
        self._watch = watch
        # (the generation read, the peers then, the peers by certificate pin): replaced whole, so a
        # reader sees one or the other
        self._peers: _Held | None = None

    def _load(self) -> dict[str, tuple[PeerIdentity, frozenset[str]]]:
        return self._held().peers

    def _held(self) -> _Held:
        generation = self._watch.generation(PEERS)
        held = self._peers
        if held is not None and held.generation == generation:
            return held
        peers = {
            row.party: (
                PeerIdentity.from_document(json.loads(row.document)),
                frozenset(json.loads(row.agreements)),
            )
            for row in self._fed.peers()
        }
        pins = {pin: identity for identity, _ in peers.values() for pin in identity.tls}
        # the rows may be newer than ``generation`` (a write in between): read again at the next move
        held = _Held(generation, peers, pins)
        self._peers = held
        return held

    def invalidate(self) -> None:
        """After a write in this process: read the generation (and so the peers) again at once."""
        self._watch.stale()

    def peer_at(self, party: str) -> tuple[int, PeerIdentity | None, frozenset[str]]:
        """The registered identity of ``party`` (or ``None``) and its links, with the generation of
        the peers they were read at: what a writer compares and sets (``FederationStore.put_peer``)."""
        held = self._held()
        found = held.peers.get(party)
        return (held.generation, None, frozenset()) if found is None else (held.generation, *found)

    def peer(self, party: str) -> PeerIdentity | None:
        """The registered identity of ``party``, or ``None`` (also the key look-up for verification)."""
        found = self._load().get(party)
        return None if found is None else found[0]

    def links(self, party: str) -> frozenset[str]:
        """The agreements the G2G link with ``party`` is registered for (Art. 9)."""
        found = self._load().get(party)
        return frozenset() if found is None else found[1]

    def by_certificate(self, pin: str) -> PeerIdentity | None:
        """The registered peer whose identity document names the TLS certificate of pin ``pin``
        (:mod:`gsomia.crypto.tls`), or ``None``: a certificate no registered identity names."""
        return self._held().pins.get(pin)

    def all(self) -> list[tuple[PeerIdentity, frozenset[str]]]:
        """Every registered peer with its links, by party."""
        return sorted(self._load().values(), key=lambda p: p[0].party)
