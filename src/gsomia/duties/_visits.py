"""Visits (Art. 8): the host authorises a visit and sets the highest level the visitor may see."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.visits import VisitAuthorisation, VisitScope
from gsomia.duties._base import DutyBase
from gsomia.errors import GsomiaError
from gsomia.kernel import from_us
from gsomia.store import VisitRow

__all__ = ["_Visits"]


class _Visits(DutyBase):
    """Visits. Part of :class:`gsomia.duties.Duties`."""

    def authorise_visit(
        self,
        actor: Person | None,
        person_id: str,
        *,
        highest: str,
        starts: datetime,
        ends: datetime,
        purpose: str,
    ) -> dict[str, Any]:
        """The host authorises a visit and sets the highest level the visitor may see (Art. 8)."""
        kernel = self.kernel
        who = actor.id if actor else "operator"
        try:
            kernel.require_any(actor, (Role.SECURITY_OFFICER, Role.ADMINISTRATOR), "visit.authorise")
            kernel.person(person_id)
            level = kernel.catalogue.party(self.party).scheme.level(highest).name
            visit = VisitAuthorisation(uuid.uuid4().hex, person_id, self.party, level, starts, ends, purpose)
            row = VisitRow(visit.id, person_id, level, epoch_us(starts), epoch_us(ends), purpose, who)
            self.db.commit(
                ops=[self.db.put("visits", row)],
                audit=[
                    kernel.audit_row(
                        "visit.authorise",
                        who,
                        person_id,
                        "allowed",
                        visit=visit.id,
                        highest=level,
                        starts=starts.isoformat(),
                        ends=ends.isoformat(),
                        purpose=purpose,
                    )
                ],
            )
        except GsomiaError as exc:
            raise kernel.refuse("visit.authorise", who, person_id, exc) from None
        return _visit_out(row)

    def visit_scope(self, person_id: str, at: datetime) -> VisitScope | None:
        """The reader's visits at ``at``; ``None`` for someone who is not a visitor."""
        return self.kernel.visit_scope(person_id, at)

    def visits(self, actor: Person | None) -> list[dict[str, Any]]:
        self.kernel.require_any(actor, (Role.SECURITY_OFFICER, Role.ADMINISTRATOR), "visit.list")
        return [_visit_out(r) for r in self.db.visits()]


def _visit_out(row: VisitRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "person": row.person_id,
        "highest": row.highest,
        "starts": from_us(row.starts_us).isoformat(),
        "ends": from_us(row.ends_us).isoformat(),
        "purpose": row.purpose,
        "authorised_by": row.authorised_by,
    }
