"""The node's own key ring as the store holds it: one ring for every process of the node.

The ring's private document is sealed under the node key (AES-256-GCM, as payloads are) in the
store's ``key_ring`` row. Every process reads it again when the ``keys`` generation moves
(:class:`~gsomia.kernel._watch.ChangeWatch`), so a rotation or a revocation made by any process
(``gsomia node rotate-keys`` beside a serving node) is used by every process within a fraction of a
second: what it signs, what it opens, the identity document it publishes. A change is a
compare-and-set on the generation it was computed from: two rotations at once both land, in turn.

A node directory from before the store kept the ring (``keys.json``) has it imported on first open.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from gsomia.core.instants import epoch_us
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.keys import KeyRing
from gsomia.errors import ConfigError, ConflictError
from gsomia.kernel._watch import ChangeWatch
from gsomia.store import KEYS, SharedState, Store

__all__ = ["StoreKeyRing"]

_SEALED_AS = "key ring"  # the name the sealed document is bound to
_WHERE = Path("the key ring in the store")  # names the ring in error messages
_ATTEMPTS = 8  # compare-and-set rounds before a change gives up (only under a storm of changes)


class StoreKeyRing(KeyRing):
    """A :class:`KeyRing` whose keys are the store's, read again whenever they changed there."""

    __slots__ = ("_cipher", "_reload", "_seen", "_shared", "_watch")

    def __init__(
        self, shared: SharedState, cipher: PayloadCipher, watch: ChangeWatch, generation: int, ring: KeyRing
    ) -> None:
        super().__init__(_WHERE, ring.party, ring.node, ())
        self._take(ring)
        self._shared = shared
        self._cipher = cipher
        self._watch = watch
        self._seen = generation
        self._reload = threading.Lock()

    @classmethod
    def open(
        cls,
        store: Store,
        cipher: PayloadCipher,
        watch: ChangeWatch,
        *,
        party: str,
        at: datetime,
        legacy: Path | None = None,
    ) -> StoreKeyRing:
        """The node's ring from the store; on a first open, ``legacy`` (an older node's key file)
        imported if there is one, else new keys valid from ``at``."""
        shared = SharedState(store)
        found = shared.key_ring()
        if found is None:
            if legacy is not None and legacy.exists():
                first = KeyRing.load(legacy)
            else:
                first = KeyRing.generate(_WHERE, party, f"{party.lower()}-node", at)
            shared.create_key_ring(_seal(cipher, first), epoch_us(at))  # another process may win
            found = shared.key_ring()
            if found is None:  # never: a ring was just stored
                raise ConfigError("the store holds no key ring after one was stored")
        generation, sealed = found
        ring = _unseal(cipher, sealed)
        if ring.party != party:
            raise ConfigError(f"{_WHERE} belongs to {ring.party}, not to this node's party {party}")
        return cls(shared, cipher, watch, generation, ring)

    def _check(self) -> None:
        generation = self._watch.generation(KEYS)
        if generation != self._seen:
            with self._reload:
                if generation != self._seen:
                    self._refresh()

    def _refresh(self) -> None:
        found = self._shared.key_ring()
        if found is None:  # never: the ring row is not deleted
            raise ConfigError(f"{_WHERE} is gone")
        generation, sealed = found
        self._take(_unseal(self._cipher, sealed))
        self._seen = generation

    # -- changing: in the store, compare-and-set, then here

    def rotate(self, at: datetime, overlap: timedelta) -> None:
        """New signing and encryption keys from ``at`` (the older end at ``at + overlap``), for every
        process of the node."""
        self._change(lambda ring: ring.rotated(at, overlap), at)

    def revoke(self, kid: str, at: datetime) -> None:
        """Key ``kid`` refused from ``at`` on, in every process of the node."""
        self._change(lambda ring: ring.revoked(kid, at), at)

    def _change(self, how: Callable[[KeyRing], KeyRing], at: datetime) -> None:
        for _ in range(_ATTEMPTS):
            found = self._shared.key_ring()
            if found is None:  # never: the ring row is not deleted
                raise ConfigError(f"{_WHERE} is gone")
            generation, sealed = found
            changed = how(_unseal(self._cipher, sealed))
            if self._shared.replace_key_ring(_seal(self._cipher, changed), generation, epoch_us(at)):
                with self._reload:
                    self._take(changed)
                    self._seen = generation + 1
                self._watch.stale()
                return
        raise ConflictError("the key ring kept changing while this change was made; try again")


def _seal(cipher: PayloadCipher, ring: KeyRing) -> bytes:
    return cipher.seal_secret(_SEALED_AS, json.dumps(ring.to_document(), sort_keys=True).encode())


def _unseal(cipher: PayloadCipher, sealed: bytes) -> KeyRing:
    try:
        document = json.loads(cipher.open_secret(_SEALED_AS, sealed))
    except ValueError as exc:
        raise ConfigError(f"{_WHERE} is not valid JSON") from exc
    return KeyRing.from_document(document, _WHERE)
