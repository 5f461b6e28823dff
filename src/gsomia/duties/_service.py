"""The duties after release, as workflows over the node: each one decided by the pure core,
written in one transaction with its audit records, and told to partners over the exchange.

- copies, translations, derivatives (Art. 4.3, 11, 14, 15): :meth:`Duties.derive`;
- reclassification and recall by the originator (Art. 6(g)): :meth:`Duties.reclassify`,
  :meth:`Duties.recall`, applied downstream by :meth:`Duties.receive`, acknowledged back;
- destruction (Art. 6(h), 13): :meth:`Duties.destroy`, :meth:`Duties.send_destruction_record`;
- loss or compromise (Art. 17): :meth:`Duties.report_incident`, :meth:`Duties.advance_incident`;
- termination (Art. 21.4): :meth:`Duties.termination_report`;
- visits (Art. 8): :meth:`Duties.authorise_visit` (``decide_read`` caps the visitor);
- registers (Art. 2, 3): :meth:`Duties.add_authority`, :meth:`Duties.record_rules`.

Every refusal is recorded (``Node._refuse``) before it is raised.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gsomia._codec import canonical, label_to_dict
from gsomia.core.access import Person, Role
from gsomia.core.derivation import DerivationKind, derive_label
from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.investigation import (
    IncidentNature,
    Investigation,
    InvestigationState,
    open_investigation,
)
from gsomia.core.labels import SecurityLabel
from gsomia.core.parties import Scheme
from gsomia.core.recall import ChangeKind, LabelChange, check_originator, reclassified
from gsomia.core.registers import Authority, RulesVersion, affected_by
from gsomia.core.visits import VisitAuthorisation, VisitScope
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties._messages import (
    DUTY_KIND,
    change_content,
    destruction_content,
    destruction_request_content,
    incident_content,
    parse_steps,
    steps_json,
)
from gsomia.errors import (
    AgreementError,
    GsomiaError,
    InvalidInputError,
    ItemGoneError,
    LabelError,
    NotFoundError,
)
from gsomia.exchange._messages import item_content
from gsomia.store import ItemRow, NewItem, OutboxRow
from gsomia.store._duties import (
    DestructionRow,
    DutiesStore,
    IncidentRow,
    LabelAckRow,
    LabelChangeRow,
    Op,
    VisitRow,
)

if TYPE_CHECKING:
    from gsomia.node._service import Item, Node

__all__ = ["Duties"]

_HANDLERS = (Role.SECURITY_OFFICER, Role.RELEASE_OFFICER)


def _us(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def _from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


class Duties:
    """One node's duties after release."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.db = DutiesStore(node.store)

    @property
    def party(self) -> str:
        return self.node.party

    def _schemes(self) -> dict[str, Scheme]:
        return {code: p.scheme for code, p in self.node.catalogue.parties.items()}

    def _held(self, item_id: str) -> ItemRow:
        row = self.node.store.get_item(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id!r} at this node")
        if row.state != "held":
            raise ItemGoneError(f"item {item_id} was {row.state}: its record remains, its payload is gone")
        return row

    def _known(self, item_id: str) -> ItemRow:
        row = self.node.store.get_item(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id!r} at this node")
        return row

    def _duty(self, to: str, hop: str, content: bytes, item_id: str | None, now: datetime) -> OutboxRow:
        """A signed duty message for ``to``, queued for the next hop ``hop``."""
        peer = self.node.exchange.peer(hop)
        if peer is None:
            raise AgreementError(f"no registered link with {hop}: import its identity document first")
        jws = sign_origin(self.node.ring, content, now)
        body = {"kind": DUTY_KIND, "to": to, "duty": jws}
        return self.node.exchange._queue(peer, body, DUTY_KIND, item_id, now, final_recipient=to)

    def _upstream(self, row: ItemRow, content: bytes, now: datetime) -> OutboxRow:
        """A message for the item's originator, by the channel the item came in on (through a hub too)."""
        hop = row.received_from or row.originator
        return self._duty(row.originator, hop, content, row.id, now)

    # --- 1. copies, translations, derivatives ---

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
            at = _us(now)
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
            created_us=_us(label.created),
            ingested_us=_us(now),
            ingested_by=who,
            payload_type=payload_type,
            payload_size=len(payload),
            payload=node.cipher.seal(new_id, label_json, payload),
            origin_jws=origin,
        )

    # --- 2. reclassification and recall ---

    def reclassify(self, actor: Person, item_id: str, classification: str, reason: str) -> LabelChangeRow:
        """The originator's new level for its item, here and at every holder downstream."""
        return self._change(actor, item_id, ChangeKind.RECLASSIFY, classification, reason)

    def recall(self, actor: Person, item_id: str, reason: str) -> LabelChangeRow:
        """The originator withdraws its item, here and at every holder downstream."""
        return self._change(actor, item_id, ChangeKind.RECALL, None, reason)

    def _change(
        self, actor: Person, item_id: str, kind: ChangeKind, classification: str | None, reason: str
    ) -> LabelChangeRow:
        node = self.node
        what = f"item.{kind.value}"
        try:
            node.require_any(actor, _HANDLERS, what)
            row = self._held(item_id)
            label = node._from_row(row).label
            check_originator(self.party, label, kind.value)
            node.decide_read(actor, label).raise_if_refused()
            now = node.clock()
            new_label = None
            if kind is ChangeKind.RECLASSIFY:
                new_label = reclassified(label, str(classification), node.catalogue.party(self.party).scheme)
            change = LabelChange(
                item_id,
                self.party,
                row.label_version + 1,
                kind,
                None if new_label is None else new_label.classification,
                reason,
                now,
            )
            origin = None
            if new_label is not None:
                payload = node.cipher.open(row.id, row.label, row.payload)
                origin = sign_origin(
                    node.ring, item_content(row.id, new_label, row.payload_type, payload), now
                )
            content = change_content(change, origin)
            jws = sign_origin(node.ring, content, now)
            ops, touched, _, after = self._apply(row, change, new_label, origin)
            resealed, queued = self._pending_releases(after, item_id, now)
            ops += resealed
            sent = self.db.sent_to(item_id)
            hops = sorted({hop for hop, _ in sent} | {e.recipient for e in self.db.pending_releases(item_id)})
            holders = sorted({p for pair in sent for p in pair} | queued)
            outbox = [self._duty(hop, hop, content, item_id, now) for hop in hops]
            record = LabelChangeRow(
                item_id, change.version, kind.value, change.classification, reason, _us(now), jws, _us(now)
            )
            ops.append(self.db.put("label_changes", record))
            ops += [
                self.db.put("label_acks", LabelAckRow(item_id, change.version, p, "pending", None, None))
                for p in holders
            ]
            audit = node._row(
                what,
                actor.id,
                item_id,
                "allowed",
                version=change.version,
                classification=change.classification,
                reason=reason,
                holders=holders,
                copies=touched[1:],
            )
            self.db.commit(ops=ops, outbox=outbox, audit=[audit])
        except GsomiaError as exc:
            raise node._refuse(what, actor.id, item_id, exc) from None
        return record

    def _apply(
        self, row: ItemRow, change: LabelChange, originator_label: SecurityLabel | None, origin: str | None
    ) -> tuple[list[Op], list[str], bool, ItemRow | None]:
        """Ops that apply ``change`` to the item and every copy and derivative of it here, re-sealing each
        payload under its new label (the label is the payload's AAD); the ids touched, item first;
        whether they were withdrawn (a recall, or a new level with no equivalent here); and the item's
        row as it will be (``None`` if withdrawn)."""
        node = self.node
        ops: list[Op] = []
        after: ItemRow | None = None
        touched = [row.id]
        new_labels: dict[str, SecurityLabel] = {}
        withdrawn = change.kind is ChangeKind.RECALL
        if originator_label is not None:
            if row.originator == self.party:
                label = originator_label
            else:
                try:
                    label = node._received_label(originator_label, row.received_from, row.agreement)
                except LabelError:
                    withdrawn = True  # the new level has no equivalent here: the item cannot be held
            if not withdrawn:
                new_labels[row.id] = label
                op, after = self._reseal(row, label, row.label_version + 1, origin)
                ops.append(op)
        queue = [row.id]
        seen = {row.id}
        while queue:
            for derived_id, _kind in self.db.derived_from(queue.pop(0)):
                if derived_id in seen:
                    continue
                seen.add(derived_id)
                queue.append(derived_id)
                derived = node.store.get_item(derived_id)
                if derived is None or derived.state != "held":
                    continue
                touched.append(derived_id)
                if withdrawn:
                    continue
                sources = self.db.sources_of(derived_id)
                labels = []
                for source_id, _ in sources:
                    if source_id in new_labels:
                        labels.append(new_labels[source_id])
                    else:
                        source = node.store.get_item(source_id)
                        if source is None:
                            raise NotFoundError(f"source {source_id} of {derived_id} is gone")
                        labels.append(node._from_row(source).label)
                current = node._from_row(derived).label
                how = DerivationKind(sources[0][1])
                label = derive_label(how, labels, self._schemes(), created=current.created)
                new_labels[derived_id] = label
                own_origin = None
                if label.originator == self.party:
                    payload = node.cipher.open(derived.id, derived.label, derived.payload)
                    own_origin = sign_origin(
                        node.ring, item_content(derived.id, label, derived.payload_type, payload), change.at
                    )
                ops.append(self._reseal(derived, label, derived.label_version + 1, own_origin)[0])
        if withdrawn:
            ops = [self.db.withdraw(i, "recalled") for i in touched]
            after = None
        return ops, touched, withdrawn, after

    def _reseal(
        self, row: ItemRow, label: SecurityLabel, version: int, origin: str | None
    ) -> tuple[Op, ItemRow]:
        """The conditional update re-sealing ``row`` under ``label``, and the row as it will be."""
        node = self.node
        label_json = canonical(label_to_dict(label))
        payload = node.cipher.seal(row.id, label_json, node.cipher.open(row.id, row.label, row.payload))
        sealed_origin = None if origin is None else node.cipher.seal(row.id, label_json, origin.encode())
        after = replace(
            row,
            label=label_json,
            classification=label.classification,
            label_version=version,
            payload=payload,
            origin_jws=sealed_origin,
        )
        op = self.db.relabel(
            row.id, row.label_version, version, label_json, label.classification, payload, sealed_origin
        )
        return op, after

    def _pending_releases(
        self, after: ItemRow | None, item_id: str, now: datetime
    ) -> tuple[list[Op], set[str]]:
        """Releases of the item queued but not yet sent: re-sealed with the new label (or, after a
        withdrawal, left for delivery to refuse); the parties they are for, to receive the change too."""
        exchange = self.node.exchange
        ops: list[Op] = []
        parties: set[str] = set()
        for entry in self.db.pending_releases(item_id):
            parties |= {entry.recipient, entry.final_recipient}
            if after is None:
                continue  # the item is gone: the sender's re-decision finds it withdrawn
            refusal, decision = exchange._recheck(entry, now)
            peer = exchange.peer(entry.recipient)
            if refusal is not None or decision is None or peer is None:
                continue  # delivery decides again and refuses it, with the reason
            body = exchange._item_body(json.loads(entry.request), decision, row=after)
            envelope = seal(self.node.ring, peer, body, msg_id=entry.msg_id, at=now, ttl=exchange.ttl)
            ops.append(self.db.replace_envelope(entry.msg_id, envelope))
        return ops, parties

    def label_status(self, actor: Person, item_id: str) -> dict[str, Any]:
        """The item's label changes and, per change, which holders applied it and which have not."""
        row = self._known(item_id)
        node = self.node
        node.require_any(actor, _HANDLERS, "item.label-status")
        changes = self.db.label_changes(item_id)
        acks = self.db.acks(item_id)
        return {
            "item": item_id,
            "state": row.state,
            "label_version": row.label_version,
            "classification": row.classification,
            "changes": [
                {
                    "version": c.version,
                    "kind": c.kind,
                    "classification": c.classification,
                    "reason": c.reason,
                    "at": _from_us(c.at_us).isoformat(),
                    "applied": sorted(
                        a.party for a in acks if a.version == c.version and a.state != "pending"
                    ),
                    "pending": sorted(
                        a.party for a in acks if a.version == c.version and a.state == "pending"
                    ),
                    "acks": [
                        {
                            "party": a.party,
                            "state": a.state,
                            "detail": None if a.detail is None else json.loads(a.detail),
                        }
                        for a in acks
                        if a.version == c.version
                    ],
                }
                for c in changes
            ],
        }

    # --- 3. destruction ---

    def destroy(
        self,
        actor: Person,
        item_id: str,
        *,
        method: str,
        witness: str,
        reason: str,
        notify: bool = False,
    ) -> dict[str, Any]:
        """Destroy (or record the return of) an item: a signed record, the payload gone, the record kept."""
        node = self.node
        try:
            row = self._held(item_id)
            label = node._from_row(row).label
            node.decide_read(actor, label).raise_if_refused()
            try:
                how = DestructionMethod(method)
            except ValueError:
                known = ", ".join(m.value for m in DestructionMethod)
                raise InvalidInputError(f"method must be one of {known}") from None
            witnessed_by = node.person(witness)
            if not node.decide_read(witnessed_by, label).allowed:
                raise InvalidInputError(f"the witness {witness} is not cleared for this item")
            now = node.clock()
            record = DestructionRecord(
                item_id, self.party, row.originator, row.classification, actor.id, witness, how, reason, now
            )
            content = destruction_content(record)
            jws = sign_origin(node.ring, content, now)
            outbox = []
            if notify and row.originator != self.party:
                outbox.append(self._upstream(row, content, now))
            saved = DestructionRow(
                item_id, self.party, _us(now), actor.id, witness, how.value, jws, _us(now) if outbox else None
            )
            audit = node._row(
                "item.destroy",
                actor.id,
                item_id,
                "allowed",
                method=how.value,
                witness=witness,
                reason=reason,
                record=jws,
                sent=bool(outbox),
            )
            self.db.commit(
                ops=[self.db.withdraw(item_id, "destroyed"), self.db.put("destructions", saved)],
                outbox=outbox,
                inventory=[
                    (
                        item_id,
                        _us(now),
                        "destroyed",
                        self.party,
                        actor.id,
                        canonical({"method": how.value, "witness": witness}),
                    )
                ],
                audit=[audit],
            )
        except GsomiaError as exc:
            raise node._refuse("item.destroy", actor.id, item_id, exc) from None
        return _destruction_out(saved)

    def send_destruction_record(self, actor: Person, item_id: str) -> dict[str, Any]:
        """Send this node's signed destruction record of ``item_id`` to its originator (on request)."""
        node = self.node
        try:
            node.require_any(actor, _HANDLERS, "item.destruction-send")
            saved = self.db.destruction(item_id, self.party)
            if saved is None:
                raise NotFoundError(f"no destruction record of {item_id!r} at this node")
            row = self._known(item_id)
            if row.originator == self.party:
                raise InvalidInputError(
                    "this node originated the item: there is no one to send the record to"
                )
            now = node.clock()
            hop = row.received_from or row.originator
            peer = node.exchange.peer(hop)
            if peer is None:
                raise AgreementError(f"no registered link with {hop}")
            body = {"kind": DUTY_KIND, "to": row.originator, "duty": saved.jws}
            entry = node.exchange._queue(peer, body, DUTY_KIND, item_id, now, final_recipient=row.originator)
            self.db.commit(
                ops=[self.db.mark_sent(item_id, self.party, _us(now))],
                outbox=[entry],
                audit=[node._row("item.destruction-send", actor.id, item_id, "allowed", to=row.originator)],
            )
        except GsomiaError as exc:
            raise node._refuse("item.destruction-send", actor.id, item_id, exc) from None
        return _destruction_out(replace(saved, sent_us=_us(now)))

    def request_destruction_record(self, actor: Person, item_id: str, holder: str) -> str:
        """As originator, ask a holder for its destruction record; a holder that destroyed the item
        sends the signed record back at once. Returns the message id of the request."""
        node = self.node
        try:
            node.require_any(actor, _HANDLERS, "item.destruction-request")
            row = self._known(item_id)
            check_originator(self.party, node._from_row(row).label, "ask for destruction records of")
            code = node.catalogue.party(holder.upper()).code
            hops = sorted({hop for hop, final in self.db.sent_to(item_id) if code in (hop, final)})
            if not hops:
                raise InvalidInputError(f"item {item_id} was never sent to {code}")
            now = node.clock()
            content = destruction_request_content(item_id, self.party, code, now)
            entry = self._duty(code, hops[0], content, item_id, now)
            self.db.commit(
                outbox=[entry],
                audit=[node._row("item.destruction-request", actor.id, item_id, "allowed", holder=code)],
            )
        except GsomiaError as exc:
            raise node._refuse("item.destruction-request", actor.id, item_id, exc) from None
        return entry.msg_id

    def destructions(self, actor: Person, item_id: str | None = None) -> list[dict[str, Any]]:
        """Destruction records: this node's own, and those holders sent to it as originator."""
        self.node.require_any(actor, _HANDLERS, "item.destructions")
        return [_destruction_out(r) for r in self.db.destructions(item_id)]

    # --- 4. loss or compromise ---

    def report_incident(self, actor: Person, item_id: str, nature: str, text: str) -> dict[str, Any]:
        """A holder reports a loss or (possible) compromise: opened here, the originator told at once."""
        node = self.node
        try:
            node.require_any(actor, _HANDLERS, "incident.report")
            row = self._known(item_id)
            try:
                kind = IncidentNature(nature)
            except ValueError:
                raise InvalidInputError("nature must be loss, compromise or possible-compromise") from None
            now = node.clock()
            investigation = open_investigation(
                uuid.uuid4().hex, item_id, row.originator, self.party, kind, at=now, by=actor.id, text=text
            )
            saved = self._save_incident(actor, row, investigation, now, "incident.report")
        except GsomiaError as exc:
            raise node._refuse("incident.report", actor.id, item_id, exc) from None
        return saved

    def advance_incident(self, actor: Person, incident_id: str, state: str, text: str) -> dict[str, Any]:
        """The holder's investigation moves on (findings, measures, closed); the originator is told."""
        node = self.node
        try:
            node.require_any(actor, _HANDLERS, "incident.advance")
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
            now = node.clock()
            current = _investigation(found)
            investigation = current.advance(step, at=now, by=actor.id, text=text)
            saved = self._save_incident(
                actor, self._known(found.item_id), investigation, now, "incident.advance"
            )
        except GsomiaError as exc:
            raise node._refuse("incident.advance", actor.id, incident_id, exc) from None
        return saved

    def _save_incident(
        self, actor: Person, row: ItemRow, investigation: Investigation, now: datetime, kind: str
    ) -> dict[str, Any]:
        node = self.node
        content = incident_content(investigation)
        jws = sign_origin(node.ring, content, now)
        outbox: list[OutboxRow] = []
        unsent = None
        if row.originator != self.party:
            try:
                outbox.append(self._upstream(row, content, now))
            except AgreementError as exc:  # the report is kept all the same; the operator must act
                unsent = f"the originator {row.originator} could not be told: {exc}"
        saved = _incident_row(investigation, jws, now)
        self.db.commit(
            ops=[self.db.put("incidents", saved, replace_keys=("id",))],
            outbox=outbox,
            audit=[
                node._row(
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
        self.node.require_any(actor, _HANDLERS, "incident.list")
        return [_incident_out(r) for r in self.db.incidents()]

    # --- 5. termination ---

    def termination_report(self, actor: Person, at: datetime | None = None) -> dict[str, Any]:
        """Per partner: the items held here that came from it, and this node's items it holds,
        with their status. Protection continues after termination (Art. 21.4)."""
        node = self.node
        node.require_any(actor, _HANDLERS, "termination.report")
        when = at or node.clock()
        rows = {r.id: r for r in self.db.items_where()}
        sent = self.db.sent_by_party()
        destroyed_there = {(d.item_id, d.holder) for d in self.db.destructions() if d.holder != self.party}
        partners: dict[str, dict[str, Any]] = {}
        for agreement in node.catalogue.agreements_of(self.party):
            state = agreement.state_at(when)
            for party in agreement.parties:
                if party == self.party:
                    continue
                entry = partners.setdefault(
                    party, {"party": party, "agreements": [], "held_here": [], "held_there": []}
                )
                entry["agreements"].append(
                    {"agreement": agreement.id, "in_force": state.in_force, "status": str(state.status.value)}
                )
        for row in rows.values():
            if row.originator != self.party and row.originator in partners:
                partners[row.originator]["held_here"].append(_report_item(row))
        for party, items in sent.items():
            if party not in partners:
                continue
            for item_id, hop in items:
                ours = rows.get(item_id)
                partners[party]["held_there"].append(
                    {
                        "item": item_id,
                        "via": None if hop == party else hop,
                        "classification": None if ours is None else ours.classification,
                        "label_version": None if ours is None else ours.label_version,
                        "status": "destroyed" if (item_id, party) in destroyed_there else "held",
                    }
                )
        node.store.append_audit(
            [node._row("termination.report", actor.id, None, "allowed", at=when.isoformat())]
        )
        return {
            "party": self.party,
            "at": when.isoformat(),
            "partners": [partners[p] for p in sorted(partners)],
        }

    # --- 6. visits ---

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
        node = self.node
        who = actor.id if actor else "operator"
        try:
            node.require_any(actor, (Role.SECURITY_OFFICER, Role.ADMINISTRATOR), "visit.authorise")
            node.person(person_id)
            level = node.catalogue.party(self.party).scheme.level(highest).name
            visit = VisitAuthorisation(uuid.uuid4().hex, person_id, self.party, level, starts, ends, purpose)
            row = VisitRow(visit.id, person_id, level, _us(starts), _us(ends), purpose, who)
            self.db.commit(
                ops=[self.db.put("visits", row)],
                audit=[
                    node._row(
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
            raise node._refuse("visit.authorise", who, person_id, exc) from None
        return _visit_out(row)

    def visit_scope(self, person_id: str, at: datetime) -> VisitScope | None:
        """The reader's visits at ``at``; ``None`` for someone who is not a visitor."""
        rows = self.db.visits_of(person_id)
        if not rows:
            return None
        return VisitScope(
            tuple(
                VisitAuthorisation(
                    r.id,
                    r.person_id,
                    self.party,
                    r.highest,
                    _from_us(r.starts_us),
                    _from_us(r.ends_us),
                    r.purpose,
                )
                for r in rows
            ),
            at,
        )

    def visits(self, actor: Person | None) -> list[dict[str, Any]]:
        self.node.require_any(actor, (Role.SECURITY_OFFICER, Role.ADMINISTRATOR), "visit.list")
        return [_visit_out(r) for r in self.db.visits()]

    # --- 7. registers ---

    def add_authority(
        self, actor: Person | None, party: str, authority_id: str, name: str, function: str
    ) -> dict[str, Any]:
        """Record a competent authority of a party (Art. 2)."""
        node = self.node
        who = actor.id if actor else "operator"
        try:
            node.require_any(actor, (Role.ADMINISTRATOR,), "register.authority")
            authority = Authority(node.catalogue.party(party.upper()).code, authority_id, name, function)
            now = _us(node.clock())
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
                    node._row(
                        "register.authority", who, f"{authority.party}/{authority.id}", "allowed", name=name
                    )
                ],
            )
        except GsomiaError as exc:
            raise node._refuse("register.authority", who, authority_id, exc) from None
        return _dated(row)

    def authorities(self, party: str | None = None) -> list[dict[str, Any]]:
        return [_dated(r) for r in self.db.authorities(party.upper() if party else None)]

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
        node = self.node
        who = actor.id if actor else "operator"
        try:
            node.require_any(actor, (Role.ADMINISTRATOR, Role.SECURITY_OFFICER), "register.rules")
            code = node.catalogue.party(party.upper()).code
            scheme = node.catalogue.party(code).scheme
            names = frozenset(scheme.level(level).name for level in levels)
            rules = RulesVersion(code, self.db.last_rules_version(code) + 1, title, summary, names, effective)
            now = _us(node.clock())
            row = {
                "party": code,
                "version": rules.version,
                "title": title,
                "summary": summary,
                "levels": canonical(sorted(names)),
                "effective_us": _us(effective),
                "recorded_us": now,
            }
            flagged = [
                r.id for r in self.db.items_where(state="held") if affected_by(rules, node._from_row(r).label)
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
                    node._row(
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
            raise node._refuse("register.rules", who, party, exc) from None
        return {**_dated(row), "levels": sorted(names), "flagged": flagged}

    def rules(self, party: str | None = None) -> list[dict[str, Any]]:
        return [
            {**_dated(r), "levels": json.loads(str(r["levels"]))}
            for r in self.db.rules(party.upper() if party else None)
        ]

    def flags(self, item_id: str | None = None) -> list[dict[str, Any]]:
        return [_dated(r) for r in self.db.flags(item_id)]


def _dated(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key.endswith("_us") and isinstance(value, int):
            out[key[:-3]] = _from_us(value).isoformat()
        else:
            out[key] = value
    return out


def _destruction_out(row: DestructionRow) -> dict[str, Any]:
    return {
        "item": row.item_id,
        "holder": row.holder,
        "at": _from_us(row.at_us).isoformat(),
        "by": row.actor,
        "witness": row.witness,
        "method": row.method,
        "record": row.jws,
        "sent": None if row.sent_us is None else _from_us(row.sent_us).isoformat(),
    }


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
        _us(now),
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
        "updated": _from_us(row.updated_us).isoformat(),
    }


def _visit_out(row: VisitRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "person": row.person_id,
        "highest": row.highest,
        "starts": _from_us(row.starts_us).isoformat(),
        "ends": _from_us(row.ends_us).isoformat(),
        "purpose": row.purpose,
        "authorised_by": row.authorised_by,
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
