"""Registers (Art. 2, 3): competent authorities and each party's protection rules, versioned; a
recorded change flags the affected items."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gsomia._codec import canonical
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.registers import Authority, RulesVersion, affected_by
from gsomia.duties._base import DutyBase, dated
from gsomia.errors import GsomiaError

__all__ = ["_Registers"]


class _Registers(DutyBase):
    """Authorities and protection rules. Part of :class:`gsomia.duties.Duties`."""

    def add_authority(
        self, actor: Person | None, party: str, authority_id: str, name: str, function: str
    ) -> dict[str, Any]:
        """Record a competent authority of a party (Art. 2)."""
        kernel = self.kernel
        who = actor.id if actor else "operator"
        try:
            kernel.require_any(actor, (Role.ADMINISTRATOR,), "register.authority")
            authority = Authority(kernel.catalogue.party(party.upper()).code, authority_id, name, function)
            now = epoch_us(kernel.clock())
            row = {
                "party": authority.party,
                "id": authority.id,
                "name": authority.name,
                "function": authority.function,
                "recorded_us": now,
            }
            self.db.commit(
                ops=[self.db.put("authorities", row)],
                audit=[
                    kernel.audit_row(
                        "register.authority", who, f"{authority.party}/{authority.id}", "allowed", name=name
                    )
                ],
            )
        except GsomiaError as exc:
            raise kernel.refuse("register.authority", who, authority_id, exc) from None
        return dated(row)

    def authorities(self, party: str | None = None) -> list[dict[str, Any]]:
        return [dated(r) for r in self.db.authorities(party.upper() if party else None)]

    def record_rules(
        self,
        actor: Person | None,
        party: str,
        *,
        title: str,
        summary: str,
        levels: Sequence[str],
        effective: datetime,
    ) -> dict[str, Any]:
        """A new version of a party's protection rules (Art. 3); flags every item it affects."""
        kernel = self.kernel
        who = actor.id if actor else "operator"
        try:
            kernel.require_any(actor, (Role.ADMINISTRATOR, Role.SECURITY_OFFICER), "register.rules")
            code = kernel.catalogue.party(party.upper()).code
            scheme = kernel.catalogue.party(code).scheme
            names = frozenset(scheme.level(level).name for level in levels)
            rules = RulesVersion(code, self.db.last_rules_version(code) + 1, title, summary, names, effective)
            now = epoch_us(kernel.clock())
            row = {
                "party": code,
                "version": rules.version,
                "title": title,
                "summary": summary,
                "levels": canonical(sorted(names)),
                "effective_us": epoch_us(effective),
                "recorded_us": now,
            }
            flagged = [
                r.id
                for r in self.db.items_where(state="held")
                if affected_by(rules, kernel.items.item(r).label)
            ]
            reason = f"{code} protection rules changed (version {rules.version}: {title})"
            ops = [self.db.put("national_rules", row)]
            ops += [
                self.db.put(
                    "item_flags",
                    ({"item_id": i, "party": code, "version": rules.version, "reason": reason, "at_us": now}),
                )
                for i in flagged
            ]
            self.db.commit(
                ops=ops,
                audit=[
                    kernel.audit_row(
                        "register.rules",
                        who,
                        code,
                        "allowed",
                        version=rules.version,
                        title=title,
                        levels=sorted(names),
                        flagged=len(flagged),
                    )
                ],
            )
        except GsomiaError as exc:
            raise kernel.refuse("register.rules", who, party, exc) from None
        return {**dated(row), "levels": sorted(names), "flagged": flagged}

    def rules(self, party: str | None = None) -> list[dict[str, Any]]:
        return [
            {**dated(r), "levels": json.loads(str(r["levels"]))}
            for r in self.db.rules(party.upper() if party else None)
        ]

    def flags(self, item_id: str | None = None) -> list[dict[str, Any]]:
        return [dated(r) for r in self.db.flags(item_id)]
