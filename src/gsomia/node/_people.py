"""A node's register of people: who is added (administrators), who may read the register
(administrators and security officers; anyone their own record), enabling and disabling a person
(disabling revokes every token and session of theirs at once), and the topics a decision form offers.

Every refusal is recorded in the audit records before it is raised (the kernel's ``refuse``)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from gsomia._codec import canonical, person_from_dict, person_to_dict
from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.errors import GsomiaError
from gsomia.kernel import NodeContext, check_item_id

__all__ = ["PEOPLE_READERS", "People"]

PEOPLE_READERS = (Role.ADMINISTRATOR, Role.SECURITY_OFFICER)  # who reads the register (docs/API.md)


class People:
    """The people of a node over the kernel's store, clock, catalogue and audit records."""

    def __init__(self, kernel: NodeContext) -> None:
        self.kernel = kernel

    def add_person(self, actor: Person | None, data: dict[str, Any]) -> Person:
        """Add a person (administrators; ``None``: the node's operator) from their record's dict form."""
        kernel = self.kernel
        kernel.require_any(actor, (Role.ADMINISTRATOR,), "person.add")
        try:
            person = person_from_dict(data, kernel.catalogue)
            check_item_id(person.id, "person id")
            for topic in sorted(person.need_to_know):  # a new person's; people held keep theirs
                kernel.catalogue.topic(topic)
            record = canonical(person_to_dict(person))
            row = kernel.audit_row(
                "person.add", actor.id if actor else "operator", person.id, "allowed", person=record
            )
            kernel.store.add_person(person.id, record, epoch_us(kernel.clock()), [row])
        except GsomiaError as exc:
            raise kernel.refuse(
                "person.add", actor.id if actor else "operator", str(data.get("id")), exc
            ) from None
        return person

    def person(self, person_id: str) -> Person:
        """The person ``person_id`` as the store holds them (no read decision: who is acting)."""
        return self.kernel.person(person_id)

    def list_people(self, actor: Person | None) -> list[Person]:
        """The register of people (administrators and security officers; ``None``: the operator)."""
        self.kernel.require_any(actor, PEOPLE_READERS, "person.list")
        return self._people()

    def _people(self) -> list[Person]:
        catalogue = self.kernel.catalogue
        return [person_from_dict(json.loads(r), catalogue) for r in self.kernel.store.list_people()]

    def read_person(self, actor: Person | None, person_id: str) -> Person:
        """One person's record: one's own, or anyone's for administrators and security officers."""
        if actor is None or actor.id != person_id:
            self.kernel.require_any(actor, PEOPLE_READERS, "person.read")
        return self.person(person_id)

    def topics(self) -> list[str]:
        """The topics the agreements scope and this node's people hold need-to-know for (what a
        decision form offers; no person's record is shown)."""
        scoped = {t for a in self.kernel.catalogue.agreements.values() for t in (a.scope_topics or ())}
        held = {t for p in self._people() for t in p.need_to_know}
        return sorted(scoped | held)

    def set_active(self, actor: Person | None, person_id: str, active: bool) -> tuple[Person, list[str]]:
        """Enable or disable a person (administrators); disabling revokes all their tokens and
        sessions at once, and every token minted from them. (the person, the token ids revoked)."""
        kernel = self.kernel
        kernel.require_any(actor, (Role.ADMINISTRATOR,), "person.update")
        person = replace(kernel.person(person_id), active=active)
        record = canonical(person_to_dict(person))
        who = actor.id if actor else "operator"
        at = epoch_us(kernel.clock())
        if active:
            row = kernel.audit_row("person.update", who, person_id, "allowed", active=True)
            kernel.store.update_person(person_id, record, at, [row])
            return person, []
        revoked = kernel.store.disable_person(
            person_id,
            record,
            at,
            lambda ids: [
                kernel.audit_row("person.update", who, person_id, "allowed", active=False, revoked=ids)
            ],
        )
        return person, revoked
