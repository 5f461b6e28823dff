"""Visits (Art. 8): the host authorises a visit and sets the highest level the visitor may see; it
may end one early (revoked now, or shortened to an earlier end)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.visits import VisitAuthorisation, VisitScope
from gsomia.duties._base import DutyBase
from gsomia.errors import GsomiaError, InvalidInputError, NotFoundError
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
            if ends <= starts:  # a record may end at its start (withdrawn early); a new visit may not
                raise InvalidInputError("a visit ends after it starts")
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

    def end_visit(self, actor: Person | None, visit_id: str, ends: datetime | None = None) -> dict[str, Any]:
        """End a visit early (Art. 8): now (revoked), or at ``ends``, earlier than it ends now
        (shortened; extending one is authorising another). Ended before it began, it ends at its
        start and is never in force; its record stays, so its visitor stays one. Every process
        reads visits again at once (the ``visits`` counter): the visitor's reads, and an open
        stream of theirs, follow within about a second; a stream they may no longer read is closed."""
        kernel = self.kernel
        who = actor.id if actor else "operator"
        try:
            kernel.require_any(actor, (Role.SECURITY_OFFICER, Role.ADMINISTRATOR), "visit.end")
            row = self.db.visit(visit_id)
            if row is None:
                raise NotFoundError(f"no visit {visit_id!r} at this node")
            now = kernel.clock()
            until = now if ends is None else ends
            if ends is not None and until.tzinfo is None:
                raise InvalidInputError("ends: an instant with its offset, e.g. 2024-03-01T17:00+09:00")
            was = from_us(row.ends_us)
            if until >= was:
                raise InvalidInputError(
                    f"visit {visit_id} ends at {was.isoformat()}: a new end must be earlier "
                    "(to extend a visit, authorise another)"
                )
            ends_us = max(epoch_us(until), row.starts_us)  # before it began: at its start, never in force
            audit = kernel.audit_row(
                "visit.end", who, row.person_id, "allowed",
                visit=visit_id, was=was.isoformat(), ends=from_us(ends_us).isoformat(),
            )  # fmt: skip
            self.db.commit(ops=[self.db.end_visit(visit_id, row.ends_us, ends_us)], audit=[audit])
        except GsomiaError as exc:
            raise kernel.refuse("visit.end", who, visit_id, exc) from None
        return _visit_out(replace(row, ends_us=ends_us))

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
