"""Copies, translations and derivatives (Art. 4.3, 11, 14, 15), made through the node by cleared people."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gsomia._codec import canonical, label_to_dict
from gsomia.core.access import Person
from gsomia.core.derivation import DerivationKind, derive_label
from gsomia.core.instants import epoch_us
from gsomia.duties._base import DutyBase
from gsomia.errors import AccessDenied, GsomiaError, InvalidInputError
from gsomia.kernel import Item, check_item_id, check_payload_type, new_item_id
from gsomia.store import InventoryEntry

__all__ = ["_Copies"]


class _Copies(DutyBase):
    """Copies, translations and derivatives. Part of :class:`gsomia.duties.Duties`."""

    def derive(
        self,
        actor: Person,
        kind: str,
        sources: Sequence[str],
        *,
        payload: bytes | None = None,
        payload_type: str | None = None,
        item_id: str | None = None,
    ) -> Item:
        """A copy, translation or derivative made by a cleared person: the strictest label of its
        sources, counted in each source's inventory. Of a source in portions, what the maker may
        read of it counts: its label is the highest of those portions', and a copy holds them alone."""
        kernel = self.kernel
        subject = ",".join(sources)
        try:
            try:
                how = DerivationKind(kind)
            except ValueError:
                raise InvalidInputError("kind must be copy, translation or derivative") from None
            if not sources or len(set(sources)) != len(sources):
                raise InvalidInputError("name each source item once")
            now = kernel.clock()
            rows = [self._held(s) for s in sources]
            labels = []
            seen: dict[str, Item] = {}  # what the maker may see of each source (of one in portions: those)
            for row in rows:
                view = kernel.view(actor, kernel.items.item(row))
                if view.item is None:
                    raise AccessDenied(view.decision)
                seen[row.id] = view.item
                labels.append(view.item.label)
            label = derive_label(
                how, labels, self._schemes(), created=None if how is not DerivationKind.DERIVATIVE else now
            )
            # cleared for the result; the purpose was checked against each source (its consents)
            kernel.decide_read(replace(actor, purpose=None), label).raise_if_refused()
            top = next(
                r for r, lb in zip(rows, labels, strict=True) if lb.classification == label.classification
            )
            if payload is None:
                if how is not DerivationKind.COPY:
                    raise InvalidInputError(
                        f"a {how.value} needs its own payload (only a copy reuses its source's)"
                    )
                if top.portions is not None:  # a copy of the portions the maker may read, as one item
                    payload, payload_type = kernel.items.portions_payload(top, seen[top.id].portions), "json"
                else:
                    payload = kernel.cipher.open(top.id, top.label, top.payload)
                    payload_type = top.payload_type
            payload_type = payload_type or "json"
            check_payload_type(payload_type)
            new_id = item_id or new_item_id(now)
            subject = new_id
            check_item_id(new_id)
            if len(payload) > kernel.max_payload_bytes:
                raise InvalidInputError(f"payload of {len(payload)} bytes exceeds this node's limit")
            new = kernel.items.seal(
                new_id,
                label,
                payload_type,
                payload,
                now=now,
                by=actor.id,
                received_from=top.received_from,
                agreement=top.agreement,
            )
            at = epoch_us(now)
            inventory = [
                InventoryEntry(s, at, how.value, self.party, actor.id, canonical({"item": new_id}))
                for s in sources
            ]
            inventory.append(
                InventoryEntry(
                    new_id,
                    at,
                    "derived",
                    self.party,
                    actor.id,
                    canonical({"kind": how.value, "sources": list(sources)}),
                )
            )
            audit = kernel.audit_row(
                "item.derive",
                actor.id,
                new_id,
                "allowed",
                derivation=how.value,
                sources=list(sources),
                label=label_to_dict(label),
            )
            self.db.commit(
                items=[new],
                ops=[self.db.link_sources(new_id, [(s, how.value) for s in sources])],
                inventory=inventory,
                audit=[audit],
            )
        except GsomiaError as exc:
            raise kernel.refuse("item.derive", actor.id, subject, exc) from None
        return kernel.items.item_of(new, label)
