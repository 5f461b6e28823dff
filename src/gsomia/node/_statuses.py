"""The TAXII server's status resources (one per POST of objects), kept in the database so every
process of the node answers the same; each is shown only to the person who posted."""

from __future__ import annotations

from gsomia.core.access import Person
from gsomia.errors import NotFoundError
from gsomia.kernel import NodeContext
from gsomia.store import StatusRow, TaxiiStore

__all__ = ["Statuses"]


class Statuses:
    """Status resources over the kernel's store (a bounded number per person)."""

    def __init__(self, kernel: NodeContext) -> None:
        self._store = TaxiiStore(kernel.store)

    def keep(self, row: StatusRow) -> None:
        """Keep the outcome of a POST (the poster's oldest beyond the bound are dropped)."""
        self._store.put_status(row)

    def status(self, actor: Person, status_id: str) -> StatusRow:
        """A POST's status: only for the person who posted (to anyone else there is none)."""
        row = self._store.status(status_id)
        if row is None or row.owner != actor.id:
            raise NotFoundError(f"no status {status_id!r} of yours at this node")
        return row
