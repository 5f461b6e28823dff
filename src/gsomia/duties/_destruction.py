"""Return or destruction (Art. 6(h), 13): the signed record, the payload gone, the record sent to the
originator (on its request too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gsomia._codec import canonical
from gsomia.core.access import Person
from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.instants import epoch_us
from gsomia.core.recall import check_originator
from gsomia.crypto.envelope import sign_origin
from gsomia.duties._base import HANDLERS, DutyBase
from gsomia.duties._messages import (
    DUTY_KIND,
    destruction_content,
    destruction_request_content,
    kept_content,
)
from gsomia.errors import (
    AgreementError,
    GsomiaError,
    InvalidInputError,
    NotFoundError,
)
from gsomia.kernel import PortionMark, from_us
from gsomia.store import AuditRow, DestructionRow, InventoryEntry, Op, PortionDestructionRow

__all__ = ["_Destruction"]


class _Destruction(DutyBase):
    """Return or destruction. Part of :class:`gsomia.duties.Duties`."""

    # the copies of an item that lost a portion follow it (gsomia.duties._labels, in Duties)
    _copies_without: Callable[..., tuple[list[Op], list[AuditRow], list[str], list[str]]]

    def destroy(
        self,
        actor: Person,
        item_id: str,
        *,
        method: str,
        witness: str,
        reason: str,
        notify: bool = False,
        portion: str | None = None,
    ) -> dict[str, Any]:
        """Destroy (or record the return of) an item: a signed record, the payload gone, the record kept.
        With ``portion``, one portion of an item in portions: that portion gone, the rest held."""
        if portion is not None:
            return self._destroy_portion(
                actor, item_id, portion, method=method, witness=witness, reason=reason, notify=notify
            )
        kernel = self.kernel
        try:
            row = self._held(item_id)
            label = kernel.items.item(row).label
            kernel.decide_read(actor, label, row.name).raise_if_refused()
            how = _method(method)
            witnessed_by = kernel.person(witness)
            if not kernel.decide_read(witnessed_by, label, row.name).allowed:
                raise InvalidInputError(f"the witness {witness} is not cleared for this item")
            now = kernel.clock()
            # the signed record names the item as its originator did (``row.name``), and the sources
            # of a copy likewise; kept here under this node's reference (issue 22 §4)
            record = DestructionRecord(
                row.name, self.party, row.originator, row.classification, actor.id, witness, how, reason, now
            )
            content = destruction_content(record, self._names(self._originals(row)))
            jws = sign_origin(kernel.ring, content, now)
            outbox = []
            if notify and row.originator != self.party:
                outbox.append(self._upstream(row, content, now))
            saved = DestructionRow(
                item_id,
                self.party,
                epoch_us(now),
                actor.id,
                witness,
                how.value,
                jws,
                epoch_us(now) if outbox else None,
            )
            audit = kernel.audit_row(
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
                    InventoryEntry(
                        item_id,
                        epoch_us(now),
                        "destroyed",
                        self.party,
                        actor.id,
                        canonical({"method": how.value, "witness": witness}),
                    )
                ],
                audit=[audit],
            )
        except GsomiaError as exc:
            raise kernel.refuse("item.destroy", actor.id, item_id, exc) from None
        return _destruction_out(saved)

    def _destroy_portion(
        self,
        actor: Person,
        item_id: str,
        portion: str,
        *,
        method: str,
        witness: str,
        reason: str,
        notify: bool,
    ) -> dict[str, Any]:
        """One portion of an item in portions destroyed here (Art. 13): the item re-sealed without it
        (the originator's signed root still proves the portions left), under the highest label of
        those; its copies here follow (a copy of its portions drops that one, its label re-derived;
        a copy of that portion alone is destroyed with it; a translation or derivative keeps its
        label, as it does when a whole item is destroyed); the signed record kept and, with
        ``notify``, sent to the originator. The person and the witness must be cleared for that
        portion; a portion they may not read is unknown to them."""
        kernel = self.kernel
        what = "item.destroy-portion"
        try:
            row = self._held(item_id)
            item = kernel.items.item(row)
            if row.portions is None:
                raise InvalidInputError(f"item {item_id} is not in portions: destroy the item itself")
            _, seen, _ = kernel.readable(actor, item_id, what)  # none of it readable: an unknown item
            mark = next((m for m in seen.portions if m.id == portion), None)
            if mark is None:  # not held here, or not readable by them: the same words
                raise NotFoundError(f"item {item_id} has no portion {portion!r} held here")
            how = _method(method)
            witnessed_by = kernel.person(witness)
            if not kernel.decide_read(witnessed_by, mark.label, item_id).allowed:
                raise InvalidInputError(f"the witness {witness} is not cleared for this portion")
            if len(item.portions) == 1:
                raise InvalidInputError(
                    f"portion {portion} is the last portion of item {item_id} held here: destroy the item"
                )
            now = kernel.clock()
            record = DestructionRecord(
                item_id,
                self.party,
                row.originator,
                mark.label.classification,
                actor.id,
                witness,
                how,
                reason,
                now,
            )
            content = destruction_content(record, self._originals(row), portion=portion)
            jws = sign_origin(kernel.ring, content, now)
            outbox = []
            if notify and row.originator != self.party:
                outbox.append(self._upstream(row, content, now))
            signed, held = kernel.items.signed(row)
            left = [p for p in held if p.id != portion]
            origin = kernel.items.origin(row)
            if origin is None:
                raise InvalidInputError(f"item {item_id} carries no signed root of its originator")
            sealed = kernel.items.seal_portions(
                signed,
                left,
                origin=origin,
                now=now,
                by=row.ingested_by,
                received_from=row.received_from,
                agreement=row.agreement,
                prefer={m.id: _applied(m, self.party) for m in item.portions},
            )
            relabel, after = self._resealed(row, sealed, row.label_version, now)
            copies, changed, rederived, gone = self._copies_without(
                item_id, kernel.items.item(after), portion, now, gone="destroyed", unknown=False
            )
            saved = PortionDestructionRow(
                item_id,
                portion,
                self.party,
                epoch_us(now),
                actor.id,
                witness,
                how.value,
                jws,
                epoch_us(now) if outbox else None,
            )
            audit = kernel.audit_row(
                what,
                actor.id,
                item_id,
                "allowed",
                portion=portion,
                method=how.value,
                witness=witness,
                reason=reason,
                record=jws,
                sent=bool(outbox),
                copies=rederived,
                copies_destroyed=gone,
            )
            self.db.commit(
                ops=[relabel, *copies, self.db.put("portion_destructions", saved)],
                outbox=outbox,
                inventory=[
                    InventoryEntry(
                        item_id,
                        epoch_us(now),
                        "destroyed",
                        self.party,
                        actor.id,
                        canonical({"method": how.value, "witness": witness, "portion": portion}),
                    )
                ],
                audit=[audit, *changed],
            )
        except GsomiaError as exc:
            raise kernel.refuse(what, actor.id, item_id, exc) from None
        return _portion_destruction_out(saved)

    def send_destruction_record(self, actor: Person, item_id: str) -> dict[str, Any]:
        """Send this node's signed destruction record of ``item_id`` to its originator (on request)."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, HANDLERS, "item.destruction-send")
            saved = self.db.destruction(item_id, self.party)
            if saved is None:
                raise NotFoundError(f"no destruction record of {item_id!r} at this node")
            row = self._known(item_id)
            if row.originator == self.party:
                raise InvalidInputError(
                    "this node originated the item: there is no one to send the record to"
                )
            now = kernel.clock()
            hop = row.received_from or row.originator
            peer = self.exchange.peer(hop)
            if peer is None:
                raise AgreementError(f"no registered link with {hop}")
            body = {"kind": DUTY_KIND, "to": row.originator, "duty": saved.jws}
            entry = self.exchange.queue(peer, body, DUTY_KIND, item_id, now, final_recipient=row.originator)
            self.db.commit(
                ops=[self.db.mark_sent(item_id, self.party, epoch_us(now))],
                outbox=[entry],
                audit=[
                    kernel.audit_row("item.destruction-send", actor.id, item_id, "allowed", to=row.originator)
                ],
            )
        except GsomiaError as exc:
            raise kernel.refuse("item.destruction-send", actor.id, item_id, exc) from None
        return _destruction_out(replace(saved, sent_us=epoch_us(now)))

    def request_destruction_record(self, actor: Person, item_id: str, holder: str) -> str:
        """As originator, ask a holder for its destruction record; a holder that destroyed the item
        sends the signed record back at once. Returns the message id of the request."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, HANDLERS, "item.destruction-request")
            row = self._known(item_id)
            check_originator(self.party, kernel.items.item(row).label, "ask for destruction records of")
            code = kernel.catalogue.party(holder.upper()).code
            hops = sorted({hop for hop, final in self.db.sent_to(item_id) if code in (hop, final)})
            if not hops:
                raise InvalidInputError(f"item {item_id} was never sent to {code}")
            now = kernel.clock()
            content = destruction_request_content(item_id, self.party, code, now)
            entry = self._duty(code, hops[0], content, item_id, now)
            self.db.commit(
                outbox=[entry],
                audit=[
                    kernel.audit_row("item.destruction-request", actor.id, item_id, "allowed", holder=code)
                ],
            )
        except GsomiaError as exc:
            raise kernel.refuse("item.destruction-request", actor.id, item_id, exc) from None
        return entry.msg_id

    def destructions(self, actor: Person, item_id: str | None = None) -> list[dict[str, Any]]:
        """Destruction records: this node's own, and those holders sent to it as originator."""
        self.kernel.require_any(actor, HANDLERS, "item.destructions")
        rows = self.db.destructions(item_id)
        readable = self._readable(actor, {r.item_id for r in rows})  # as classified as the item
        # a portion's record: shown to whoever may read the item and the portion's level
        portions = [r for r in self.db.portion_destructions(item_id) if self._may_read_record(actor, r)]
        return [
            _destruction_out(r)
            for r in rows
            if r.item_id in readable
            or self._may_read_copy(actor, r.item_id, _sources(r.jws))
            or (  # a record kept before records about copies named their sources
                not _sources(r.jws)
                and self.kernel.store.get_item(r.item_id) is None
                and self._cleared_for(actor, _level(r.jws))
            )
        ] + [_portion_destruction_out(r) for r in portions]

    def _may_read_record(self, actor: Person, record: PortionDestructionRow) -> bool:
        """Whether ``actor`` may read the item a portion's record is about, at the level of the portion
        destroyed (the record names it; what is left may be lower): fail closed."""
        row = self.kernel.store.get_item(record.item_id)
        if row is None or not self._may_read(actor, row):
            return False
        try:
            held = self.kernel.items.item(row)
            label = replace(held.label, classification=_level(record.jws), alternatives=())
            if row.received_from is not None:
                label = self.kernel.items.received_label(label, row.received_from, row.agreement)
        except GsomiaError:
            return False
        return self.kernel.decide_read(actor, label, row.id).allowed


def _method(method: str) -> DestructionMethod:
    try:
        return DestructionMethod(method)
    except ValueError:
        known = ", ".join(m.value for m in DestructionMethod)
        raise InvalidInputError(f"method must be one of {known}") from None


def _applied(mark: PortionMark, party: str) -> str | None:
    """The level this node applied to a received portion (``None``: its own, or none applied)."""
    alternative = mark.label.alternative_for(party)
    return None if alternative is None else alternative.classification


def _portion_destruction_out(row: PortionDestructionRow) -> dict[str, Any]:
    return {
        "item": row.item_id,
        "portion": row.portion,
        "holder": row.holder,
        "at": from_us(row.at_us).isoformat(),
        "by": row.actor,
        "witness": row.witness,
        "method": row.method,
        "record": row.jws,
        "sent": None if row.sent_us is None else from_us(row.sent_us).isoformat(),
        "sources": _sources(row.jws),
    }


def _destruction_out(row: DestructionRow) -> dict[str, Any]:
    return {
        "item": row.item_id,
        "holder": row.holder,
        "at": from_us(row.at_us).isoformat(),
        "by": row.actor,
        "witness": row.witness,
        "method": row.method,
        "record": row.jws,
        "sent": None if row.sent_us is None else from_us(row.sent_us).isoformat(),
        "portion": None,
        # for a copy or derivative the holder made: the originator's items it was made from
        "sources": _sources(row.jws),
    }


def _sources(jws: str) -> list[str]:
    """The originator's items a signed record's copy was made from (empty: about the item itself)."""
    return [str(s) for s in kept_content(jws).get("sources", [])]


def _level(jws: str) -> str:
    """The originator's level a signed destruction record names."""
    return str(kept_content(jws).get("classification", ""))
