"""Copies, translations and derivatives (Art. 4.3, 11, 14, 15), made through the node by cleared people."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from gsomia._codec import canonical, label_to_dict
from gsomia.core.access import Person
from gsomia.core.derivation import DerivationKind, derive_label
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.crypto.envelope import sign_origin
from gsomia.errors import (
    GsomiaError,
    InvalidInputError,
)
from gsomia.exchange._messages import item_content
from gsomia.store import ItemRow, NewItem

if TYPE_CHECKING:
    from gsomia.node._service import Item

from gsomia.duties._base import DutyBase

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
        sources, counted in each source's inventory."""
        from gsomia.node._service import _ITEM_ID, _PAYLOAD_TYPES

        node = self.node
        subject = ",".join(sources)
        try:
            try:
                how = DerivationKind(kind)
            except ValueError:
                raise InvalidInputError("kind must be copy, translation or derivative") from None
            if not sources or len(set(sources)) != len(sources):
                raise InvalidInputError("name each source item once")
            now = node.clock()
            rows = [self._held(s) for s in sources]
            labels = []
            for row in rows:
                label = node._from_row(row).label
                node.decide_read(actor, label).raise_if_refused()
                labels.append(label)
            label = derive_label(
                how, labels, self._schemes(), created=None if how is not DerivationKind.DERIVATIVE else now
            )
            node.decide_read(actor, label).raise_if_refused()
            top = next(
                r for r, lb in zip(rows, labels, strict=True) if lb.classification == label.classification
            )
            if payload is None:
                if how is not DerivationKind.COPY:
                    raise InvalidInputError(
                        f"a {how.value} needs its own payload (only a copy reuses its source's)"
                    )
                payload = node.cipher.open(top.id, top.label, top.payload)
                payload_type = top.payload_type
            payload_type = payload_type or "json"
            if payload_type not in _PAYLOAD_TYPES:
                raise InvalidInputError(f"payload_type must be one of {', '.join(sorted(_PAYLOAD_TYPES))}")
            new_id = item_id or str(uuid.uuid4())
            subject = new_id
            if not _ITEM_ID.match(new_id):
                raise InvalidInputError(f"item id {new_id!r} must be 1-128 letters, digits or ._:-")
            new = self._new_item(new_id, label, top, payload, payload_type, actor.id, now)
            at = epoch_us(now)
            inventory = [
                (s, at, how.value, self.party, actor.id, canonical({"item": new_id})) for s in sources
            ]
            inventory.append(
                (
                    new_id,
                    at,
                    "derived",
                    self.party,
                    actor.id,
                    canonical({"kind": how.value, "sources": list(sources)}),
                )
            )
            audit = node._row(
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
            raise node._refuse("item.derive", actor.id, subject, exc) from None
        return node._item(
            new.id,
            label,
            new.received_from,
            new.agreement,
            new.ingested_us,
            actor.id,
            payload_type,
            new.payload_size,
        )

    def _new_item(
        self,
        new_id: str,
        label: SecurityLabel,
        top: ItemRow,
        payload: bytes,
        payload_type: str,
        who: str,
        now: datetime,
    ) -> NewItem:
        node = self.node
        if len(payload) > node.config.max_payload_bytes:
            raise InvalidInputError(f"payload of {len(payload)} bytes exceeds this node's limit")
        label_json = canonical(label_to_dict(label))
        origin = None
        if label.originator == self.party:
            jws = sign_origin(node.ring, item_content(new_id, label, payload_type, payload), now)
            origin = node.cipher.seal(new_id, label_json, jws.encode())
        return NewItem(
            id=new_id,
            originator=label.originator,
            classification=label.classification,
            label=label_json,
            topics=label.topics,
            received_from=top.received_from,
            agreement=top.agreement,
            created_us=epoch_us(label.created),
            ingested_us=epoch_us(now),
            ingested_by=who,
            payload_type=payload_type,
            payload_size=len(payload),
            payload=node.cipher.seal(new_id, label_json, payload),
            origin_jws=origin,
        )
