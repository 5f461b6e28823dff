"""The stream link hellos a node has answered, shared by its processes: a captured first handshake
message replayed to another process of the node is refused there too. Only hellos that passed the
handshake (a registered peer's) are written, and each is forgotten after the memory window, so the
table stays as small as the peers' genuine link openings."""

from __future__ import annotations

from sqlalchemy import delete, insert

from gsomia.errors import ConflictError
from gsomia.store import _tables as t
from gsomia.store._store import Store

__all__ = ["LinkHellos"]


class LinkHellos:
    """Hellos answered, over a :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def first_sight(self, digest: str, now_us: int, memory_us: int) -> bool:
        """Record ``digest`` (a hello's SHA-256, hex) as answered now: ``False`` if any process of the
        node recorded it within ``memory_us`` (a replay); older records are forgotten first."""
        try:
            with self.store._begin() as conn:
                conn.execute(delete(t.link_hellos).where(t.link_hellos.c.seen_us < now_us - memory_us))
                conn.execute(insert(t.link_hellos).values(digest=digest, seen_us=now_us))
        except ConflictError:
            return False
        return True
