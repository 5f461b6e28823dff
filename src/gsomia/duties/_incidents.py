"""Loss or compromise (Art. 17): the holder reports and investigates; the originator is told at each step."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from gsomia._codec import canonical
from gsomia.core.access import Person
from gsomia.core.instants import epoch_us
from gsomia.core.investigation import (
    IncidentNature,
    Investigation,
    InvestigationState,
    open_investigation,
)
from gsomia.crypto.envelope import sign_origin
from gsomia.duties._base import HANDLERS, DutyBase
from gsomia.duties._messages import (
    incident_content,
    kept_content,
    parse_steps,
    steps_json,
)
from gsomia.errors import (
    AgreementError,
    GsomiaError,
    InvalidInputError,
    NotFoundError,
)
from gsomia.kernel import from_us
from gsomia.store import IncidentRow, ItemRow, OutboxRow

__all__ = ["_Incidents"]


class _Incidents(DutyBase):
    """Loss or compromise. Part of :class:`gsomia.duties.Duties`."""

    def report_incident(self, actor: Person, item_id: str, nature: str, text: str) -> dict[str, Any]:
        """A holder reports a loss or (possible) compromise: opened here, the originator told at once."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, HANDLERS, "incident.report")
            row = self._known(item_id)
            try:
                kind = IncidentNature(nature)
            except ValueError:
                raise InvalidInputError("nature must be loss, compromise or possible-compromise") from None
            now = kernel.clock()
            investigation = open_investigation(
                uuid.uuid4().hex, item_id, row.originator, self.party, kind, at=now, by=actor.id, text=text
            )
            saved = self._save_incident(actor, row, investigation, now, "incident.report")
        except GsomiaError as exc:
            raise kernel.refuse("incident.report", actor.id, item_id, exc) from None
        return saved

    def advance_incident(self, actor: Person, incident_id: str, state: str, text: str) -> dict[str, Any]:
        """The holder's investigation moves on (findings, measures, closed); the originator is told."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, HANDLERS, "incident.advance")
            found = self.db.incident(incident_id)
            if found is None:
                raise NotFoundError(f"no incident {incident_id!r} at this node")
            if found.holder != self.party:
                raise InvalidInputError(
                    f"incident {incident_id} is investigated by its holder {found.holder}; "
                    "this node only sees it"
                )
            try:
                step = InvestigationState(state)
            except ValueError:
                raise InvalidInputError("state must be findings, measures or closed") from None
            now = kernel.clock()
            current = _investigation(found)
            investigation = current.advance(step, at=now, by=actor.id, text=text)
            saved = self._save_incident(
                actor, self._known(found.item_id), investigation, now, "incident.advance"
            )
        except GsomiaError as exc:
            raise kernel.refuse("incident.advance", actor.id, incident_id, exc) from None
        return saved

    def _save_incident(
        self, actor: Person, row: ItemRow, investigation: Investigation, now: datetime, kind: str
    ) -> dict[str, Any]:
        kernel = self.kernel
        # the signed report names the item as its originator did; kept here under this node's
        # reference for it (issue 22 §4)
        investigation = replace(investigation, item=row.id)
        content = incident_content(replace(investigation, item=row.name), self._names(self._originals(row)))
        jws = sign_origin(kernel.ring, content, now)
        outbox: list[OutboxRow] = []
        unsent = None
        if row.originator != self.party:
            try:
                outbox.append(self._upstream(row, content, now))
            except AgreementError as exc:  # the report is kept all the same; the operator must act
                unsent = f"the originator {row.originator} could not be told: {exc}"
        known = self.db.incident(investigation.id)
        signed = [jws] if known is None else [*signed_steps(known.jws), jws]  # every signed step kept
        saved = _incident_row(investigation, json.dumps(signed), now)
        self.db.commit(
            ops=[self.db.put("incidents", saved, replace_keys=("id",))],
            outbox=outbox,
            audit=[
                kernel.audit_row(
                    kind,
                    actor.id,
                    row.id,
                    "allowed",
                    incident=investigation.id,
                    nature=investigation.nature.value,
                    state=investigation.state.value,
                    notified=row.originator if outbox else None,
                    unsent=unsent,
                )
            ],
        )
        return {**_incident_out(saved), "notified": row.originator if outbox else None, "unsent": unsent}

    def incidents(self, actor: Person) -> list[dict[str, Any]]:
        """The incidents about items ``actor`` may read (each is as classified as its item)."""
        self.kernel.require_any(actor, HANDLERS, "incident.list")
        rows = self.db.incidents()
        readable = self._readable(actor, {r.item_id for r in rows})
        return [
            _incident_out(r)
            for r in rows
            if r.item_id in readable or self._may_read_copy(actor, r.item_id, _sources(r))
        ]


def signed_steps(kept: str) -> list[str]:
    """Every signed report of an incident kept here, oldest first (a JSON list of JWS; one bare JWS
    as stored before the steps were kept)."""
    if kept.startswith("["):
        return [str(j) for j in json.loads(kept)]
    return [kept]


def _sources(row: IncidentRow) -> list[str]:
    """For an incident about a copy a holder made: the originator's items it was made from, as the
    holder's first signed report names them (verified when it arrived)."""
    sources = kept_content(signed_steps(row.jws)[0]).get("sources", [])
    return [str(s) for s in sources] if isinstance(sources, list) else []


def _incident_row(investigation: Investigation, jws: str, now: datetime) -> IncidentRow:
    return IncidentRow(
        investigation.id,
        investigation.item,
        investigation.originator,
        investigation.holder,
        investigation.nature.value,
        investigation.state.value,
        canonical(steps_json(investigation)),
        jws,
        epoch_us(now),
    )


def _investigation(row: IncidentRow) -> Investigation:
    return Investigation(
        row.id,
        row.item_id,
        row.originator,
        row.holder,
        IncidentNature(row.nature),
        parse_steps(json.loads(row.steps)),
    )


def _incident_out(row: IncidentRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "item": row.item_id,
        "originator": row.originator,
        "holder": row.holder,
        "nature": row.nature,
        "state": row.state,
        "steps": json.loads(row.steps),
        "sources": _sources(row),  # for a copy the holder made: the originator's items it came from
        "updated": from_us(row.updated_us).isoformat(),
    }
