"""Termination (Art. 21.4): protection goes on; the report lists, per partner, what each side holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gsomia.core.access import Person
from gsomia.duties._base import HANDLERS, DutyBase
from gsomia.store import ItemRow

__all__ = ["_Termination"]


class _Termination(DutyBase):
    """The termination report. Part of :class:`gsomia.duties.Duties`."""

    def termination_report(self, actor: Person, at: datetime | None = None) -> dict[str, Any]:
        """Per partner: the items held here that came from it, this node's own items it holds, with
        their status, and other parties' items this node passed on to it (relayed or released onward).
        Only items ``actor`` may read are listed. Protection continues after termination (Art. 21.4)."""
        kernel = self.kernel
        kernel.require_any(actor, HANDLERS, "termination.report")
        when = at or kernel.clock()
        rows = {r.id: r for r in self.db.items_where()}
        sent = self.db.sent_by_party()
        destroyed_there = {(d.item_id, d.holder) for d in self.db.destructions() if d.holder != self.party}
        recalled_there = {(a.item_id, a.party) for a in self.db.all_acks() if a.state == "withdrawn"}
        partners: dict[str, dict[str, Any]] = {}
        for agreement in kernel.catalogue.agreements_of(self.party):
            state = agreement.state_at(when)
            for party in agreement.parties:
                if party == self.party:
                    continue
                entry = partners.setdefault(
                    party,
                    {"party": party, "agreements": [], "held_here": [], "held_there": [], "passed_on": []},
                )
                entry["agreements"].append(
                    {"agreement": agreement.id, "in_force": state.in_force, "status": str(state.status.value)}
                )
        # each line is as classified as its item: only what the reader may read is listed
        readable = {i for i, r in rows.items() if self._may_read(actor, r)}
        for row in rows.values():
            if row.originator != self.party and row.originator in partners and row.id in readable:
                partners[row.originator]["held_here"].append(_report_item(row))
        for party, items in sent.items():
            if party not in partners:
                continue
            for item_id, hop in items:
                ours = rows.get(item_id)
                if ours is None or item_id not in readable:
                    continue
                if ours.originator != self.party:  # relayed or passed on: another party's item
                    partners[party].setdefault("passed_on", []).append(
                        {"item": item_id, "originator": ours.originator, "via": None if hop == party else hop}
                    )
                    continue
                partners[party]["held_there"].append(
                    {
                        "item": item_id,
                        "via": None if hop == party else hop,
                        "classification": None if ours is None else ours.classification,
                        "label_version": None if ours is None else ours.label_version,
                        "status": "destroyed"
                        if (item_id, party) in destroyed_there
                        else ("recalled" if (item_id, party) in recalled_there else "held"),
                    }
                )
        kernel.store.append_audit(
            [kernel.audit_row("termination.report", actor.id, None, "allowed", at=when.isoformat())]
        )
        return {
            "party": self.party,
            "at": when.isoformat(),
            "partners": [partners[p] for p in sorted(partners)],
        }


def _report_item(row: ItemRow) -> dict[str, Any]:
    return {
        "item": row.id,
        "classification": row.classification,
        "label_version": row.label_version,
        "received_from": row.received_from,
        "agreement": row.agreement,
        "status": row.state,
    }
