"""Return or destroy when the purpose ends (Art. 6(h), 13): the holder's queue.

An item provided by another party joins the queue when the holder records that its purpose
has ended, or when the agreement it was received under is no longer in force (no new transfer
is allowed, but protection goes on, Art. 21.4: it is returned to its originator, which the
release engine still allows, or destroyed). It leaves the queue once destroyed or recalled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gsomia.core.access import Person
from gsomia.core.instants import epoch_us
from gsomia.duties._base import HANDLERS, DutyBase
from gsomia.errors import GsomiaError, InvalidInputError
from gsomia.kernel import from_us

__all__ = ["_Disposal"]


class _Disposal(DutyBase):
    """The queue of items to return or destroy. Part of :class:`gsomia.duties.Duties`."""

    def end_purpose(self, actor: Person, item_id: str, reason: str) -> dict[str, Any]:
        """Record that the purpose ``item_id`` was provided for has ended: it joins the queue."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, HANDLERS, "item.purpose-ended")
            row = self._held(item_id)
            kernel.decide_read(actor, kernel.items.item(row).label).raise_if_refused()
            if not reason.strip() or len(reason) > 500:
                raise InvalidInputError("the reason must be 1 to 500 characters")
            if item_id in self.db.purpose_ends():
                raise InvalidInputError(f"the end of {item_id}'s purpose is already recorded")
            now = kernel.clock()
            saved = {"item_id": item_id, "at_us": epoch_us(now), "actor": actor.id, "reason": reason}
            self.db.commit(
                ops=[self.db.put("purpose_ends", saved)],
                audit=[kernel.audit_row("item.purpose-ended", actor.id, item_id, "allowed", reason=reason)],
            )
        except GsomiaError as exc:
            raise kernel.refuse("item.purpose-ended", actor.id, item_id, exc) from None
        return {"item": item_id, "at": now.isoformat(), "by": actor.id, "reason": reason}

    def disposal_queue(self, actor: Person, at: datetime | None = None) -> list[dict[str, Any]]:
        """Items held here from another party that are due for return or destruction at ``at``
        (default now), each with why and where it goes back to; only those ``actor`` may read."""
        kernel = self.kernel
        kernel.require_any(actor, HANDLERS, "item.disposal-queue")
        when = at or kernel.clock()
        ended = self.db.purpose_ends()
        queue = []
        for row in self.db.items_where(state="held"):
            if row.originator == self.party or not self._may_read(actor, row):
                continue  # an officer sees only what they may read (issue 14 §6)
            reasons = []
            record = ended.get(row.id)
            if record is not None and int(str(record["at_us"])) <= epoch_us(when):
                reasons.append(
                    f"its purpose ended ({record['reason']}, recorded by {record['actor']} at "
                    f"{from_us(int(str(record['at_us']))).isoformat()})"
                )
            if row.agreement is not None and row.agreement in kernel.catalogue.agreements:
                state = kernel.catalogue.agreement(row.agreement).state_at(when)
                if state.status.value == "terminated":
                    reasons.append(f"{row.agreement} is terminated: {state.explanation}")
            if reasons:
                queue.append(
                    {
                        "item": row.id,
                        "originator": row.originator,
                        "classification": row.classification,
                        "agreement": row.agreement,
                        "return_to": row.originator,
                        "why": reasons,
                    }
                )
        return queue
