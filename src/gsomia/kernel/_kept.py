"""Rows a process keeps read, while the store's generation counter for them stays where it was.

A :class:`Kept` answers from what it read until the counter named ``name`` moves (any process's
write to that kind of state bumps it in the same transaction; :class:`~gsomia.kernel.ChangeWatch`
reads the counters at most every ~250 ms, at once after a write in this process), then reads
again. Nothing is kept for a key the store does not hold (``None``), so a guessed key costs a
query each time and fills nothing. :meth:`Kept.peek` answers only from memory, for a caller that
must not wait on the store (an event loop): ``None`` there means "ask :meth:`Kept.get`";
:meth:`Kept.holds` says whether asking it is likely to find the key without a query.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from gsomia.kernel._watch import ChangeWatch

__all__ = ["Kept"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """``load(key)`` kept per key while generation ``name`` holds; at most ``limit`` keys."""

    def __init__(
        self, watch: ChangeWatch, name: str, load: Callable[[K], V | None], *, limit: int = 10_000
    ) -> None:
        self._watch = watch
        self._name = name
        self._load = load
        self._limit = limit
        # (the generation read, the values then): replaced whole, so a reader sees one or the other
        self._held: tuple[int, dict[K, V]] = (-1, {})

    def get(self, key: K) -> V | None:
        generation = self._watch.generation(self._name)
        held = self._held
        if held[0] != generation:
            held = (generation, {})
            self._held = held
        try:
            return held[1][key]
        except KeyError:
            pass
        # the row may be newer than ``generation`` (a write in between): read again at the next move
        value = self._load(key)
        if value is not None:
            if len(held[1]) >= self._limit:
                held[1].clear()
            held[1][key] = value
        return value

    def peek(self, key: K) -> V | None:
        """``key``'s value if it is kept and the counter's last read still holds; ``None``
        otherwise (not kept, or the counters are due to be read): never reads the store."""
        generation = self._watch.fresh(self._name)
        held = self._held
        if generation is None or held[0] != generation:
            return None
        return held[1].get(key)

    def holds(self, key: K) -> bool:
        """Whether ``key`` was kept under the last generation read (perhaps moved since): a caller
        that must not wait on the store may hand ``key`` to a thread that asks :meth:`get`, which
        reads the counters and, if one moved, the store. Never reads the store; says nothing about
        the value's validity now."""
        return key in self._held[1]
