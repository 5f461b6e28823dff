"""Reclassification and recall by the originator (Art. 6(g)): applied to the item and every copy and
derivative here, re-sealed under the new label version, sent downstream, acknowledged back."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, label_to_dict
from gsomia.core.access import Person
from gsomia.core.derivation import DerivationKind, derive_label
from gsomia.core.instants import epoch_us
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.recall import ChangeKind, LabelChange, check_originator, reclassified
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.duties._base import HANDLERS, DutyBase
from gsomia.duties._messages import HeldPortion, PortionChange, change_content, kept_content
from gsomia.errors import (
    GsomiaError,
    InvalidInputError,
    ItemGoneError,
    LabelError,
    NotFoundError,
)
from gsomia.kernel import Item, NewPortion, PortionMark, from_us, item_content
from gsomia.store import (
    AuditRow,
    ItemRow,
    LabelAckRow,
    LabelChangeRow,
    Op,
    OutboxRow,
)

__all__ = ["_Labels"]


def _routes(pending: list[OutboxRow], sent: list[tuple[str, str]]) -> dict[str, str]:
    """Each party that received, is receiving or will receive the item from here, and the next hop
    that reaches it (itself, or the hub the item went through)."""
    route: dict[str, str] = {}
    for entry in pending:
        route.setdefault(entry.recipient, entry.recipient)
        route.setdefault(entry.final_recipient, entry.recipient)
    for hop, final in sent:
        route.setdefault(hop, hop)
        route.setdefault(final, hop)
    return route


class _Labels(DutyBase):
    """Reclassification and recall. Part of :class:`gsomia.duties.Duties`."""

    def reclassify(
        self, actor: Person, item_id: str, classification: str, reason: str, *, portion: str | None = None
    ) -> LabelChangeRow:
        """The originator's new level for its item, here and at every holder downstream; with
        ``portion``, for that portion of an item in portions (at every holder of that portion)."""
        if portion is not None:
            return self._change_portion(actor, item_id, portion, classification, reason)
        return self._change(actor, item_id, ChangeKind.RECLASSIFY, classification, reason)

    def _change_portion(
        self, actor: Person, item_id: str, portion: str, classification: str, reason: str
    ) -> LabelChangeRow:
        """One portion reclassified by the originator (Art. 6(g)): the portions signed again under a new
        root (the item's label, the highest of theirs, and the label's next version with it), the item
        and its copies re-sealed here, queued releases re-sealed, and the change signed for each holder
        of that portion by name, carrying only what it needs of the portions it holds (their labels and
        inclusion proofs under the new root; no payload), sent by the path the item took to it."""
        kernel = self.kernel
        what = "item.reclassify"
        try:
            kernel.require_any(actor, HANDLERS, what)
            row = self._held(item_id)
            item = kernel.items.item(row)
            check_originator(self.party, item.label, "reclassify")
            kernel.decide_read(actor, item.label, item_id).raise_if_refused()
            if row.portions is None:
                raise InvalidInputError(f"item {item_id} is not in portions: reclassify the item itself")
            mark = next((m for m in item.portions if m.id == portion), None)
            if mark is None:
                raise NotFoundError(f"item {item_id} has no portion {portion!r}")
            now = kernel.clock()
            scheme = kernel.catalogue.party(self.party).scheme
            new_label = reclassified(mark.label, classification, scheme)
            change = LabelChange(
                item_id,
                self.party,
                row.label_version + 1,
                ChangeKind.RECLASSIFY,
                new_label.classification,
                reason,
                now,
            )
            _, held = kernel.items.signed(row)
            portions = [
                NewPortion(p.id, new_label if p.id == portion else p.label, p.payload_type, p.payload)
                for p in held
            ]
            origin, content, signed = kernel.items.sign_portions(item_id, portions, now, change.version)
            sealed = kernel.items.seal_portions(content, signed, origin=origin, now=now, by=row.ingested_by)
            relabel, after = self._resealed(row, sealed, change.version, now)
            ops: list[Op] = [relabel]
            banner_label = kernel.items.stored_label(sealed.label)
            more, copies = self._rederive(
                item_id, {item_id: banner_label}, now, False, {item_id: kernel.items.item(after)}
            )
            ops += more
            resealed, _ = self._pending_releases(after, item_id, now)
            ops += resealed
            by_index = {p.id: p for p in signed}
            holders = {h: ids for h, ids in self._portion_holders(item_id).items() if portion in ids}
            route = _routes(self.db.pending_releases(item_id), self.db.sent_to(item_id))
            outbox = []
            for holder, ids in sorted(holders.items()):
                told = PortionChange(
                    portion,
                    tuple(
                        HeldPortion(
                            p,
                            by_index[p].index,
                            label_to_dict(by_index[p].label),
                            tuple(h.hex() for h in by_index[p].proof),
                        )
                        for p in sorted(ids, key=lambda i: by_index[i].index)
                        if p in by_index
                    ),
                )
                content_for = change_content(change, origin, holder, told)
                outbox.append(self._duty(holder, route.get(holder, holder), content_for, item_id, now))
            record, rows, audit = self._portion_change_rows(
                what, actor, change, origin, portion, sorted(holders), now, copies=copies
            )
            self.db.commit(ops=[*ops, *rows], outbox=outbox, audit=[audit])
        except GsomiaError as exc:
            raise kernel.refuse(what, actor.id, item_id, exc) from None
        return record

    def _portion_holders(self, item_id: str) -> dict[str, set[str]]:
        """Each party this node sent (or is sending) the item in portions to, and the portions it
        holds: the final recipient and the hub it went through hold what the release carried, less
        a portion this node recalled after that release was queued (the holders dropped it)."""
        recalled = [
            (change.at_us, content["portion"])
            for change in self.db.label_changes(item_id)
            if change.kind == ChangeKind.RECALL.value
            and isinstance((content := kept_content(change.jws)).get("portion"), str)
        ]
        out: dict[str, set[str]] = {}
        for entry in self.kernel.fed.item_messages(item_id):
            if entry.state in ("undeliverable", "cancelled"):
                continue
            ids = set(json.loads(entry.request or "{}").get("portions") or ())
            ids -= {portion for at_us, portion in recalled if at_us >= entry.created_us}
            for party in {entry.recipient, entry.final_recipient} - {self.party}:
                out.setdefault(party, set()).update(ids)
        return out

    def recall(
        self, actor: Person, item_id: str, reason: str, *, portion: str | None = None
    ) -> LabelChangeRow:
        """The originator withdraws its item, here and at every holder downstream; with ``portion``,
        that portion of an item in portions, at every holder of it (the rest stays held)."""
        if portion is not None:
            return self._recall_portion(actor, item_id, portion, reason)
        return self._change(actor, item_id, ChangeKind.RECALL, None, reason)

    def _recall_portion(self, actor: Person, item_id: str, portion: str, reason: str) -> LabelChangeRow:
        """One portion recalled by the originator (Art. 6(g)): each holder of it, told by name in a
        change signed for it, drops that portion and keeps the rest (the originator's signed root
        still proves them), its copies holding it withdrawn. The originator keeps its item whole; a
        release of it still queued leaves first and the recall follows it (the outbox keeps a peer's
        order), so the holder drops the portion on arrival."""
        kernel = self.kernel
        what = "item.recall-portion"
        try:
            kernel.require_any(actor, HANDLERS, what)
            if not reason.strip():
                raise InvalidInputError("give the reason for the recall")
            row = self._held(item_id)
            item = kernel.items.item(row)
            check_originator(self.party, item.label, "recall")
            kernel.decide_read(actor, item.label, item_id).raise_if_refused()
            if row.portions is None:
                raise InvalidInputError(f"item {item_id} is not in portions: recall the item itself")
            if all(m.id != portion for m in item.portions):
                raise NotFoundError(f"item {item_id} has no portion {portion!r}")
            now = kernel.clock()
            change = LabelChange(
                item_id, self.party, row.label_version + 1, ChangeKind.RECALL, None, reason, now
            )
            holders = sorted(h for h, ids in self._portion_holders(item_id).items() if portion in ids)
            route = _routes(self.db.pending_releases(item_id), self.db.sent_to(item_id))
            told = PortionChange(portion, ())
            outbox = [
                self._duty(h, route.get(h, h), change_content(change, None, h, told), item_id, now)
                for h in holders
            ]
            record, rows, audit = self._portion_change_rows(what, actor, change, None, portion, holders, now)
            bump = self.db.bump_version(item_id, row.label_version, change.version)
            self.db.commit(ops=[bump, *rows], outbox=outbox, audit=[audit])
        except GsomiaError as exc:
            raise kernel.refuse(what, actor.id, item_id, exc) from None
        return record

    def hold_as(self, actor: Person, item_id: str, classification: str, reason: str) -> dict[str, Any]:
        """A security or release officer applies another level the agreement offers this node for a received
        item (Art. 4.2 of the ROK–Japan agreement: Korean Class II is "極秘/特定秘密" in Japan). The
        item and its copies here are re-sealed under it, its label's alternative names it (the
        label, the markings and every clearance comparison use it), and the record says who
        changed it from what, and why. The officer must be cleared for the level applied."""
        kernel = self.kernel
        what = "item.hold-as"
        try:
            kernel.require_any(actor, HANDLERS, what)
            if not reason.strip():
                raise InvalidInputError("give the reason for the level applied")
            row, item, _ = kernel.readable(actor, item_id, what)
            if row.state != "held":
                raise ItemGoneError(f"item {item_id} was {row.state}: its payload is gone")
            label = item.label
            applied = label.alternative_for(self.party)
            if applied is None or row.agreement is None:
                raise InvalidInputError(
                    f"item {item_id} is {self.party}'s own: it is held under its originator's level only"
                )
            now = kernel.clock()
            offered = kernel.items.level_choices(label, row.agreement, now)
            if classification not in offered:
                raise InvalidInputError(
                    f"{row.agreement} lets {self.party} hold {label.originator} {label.classification} "
                    f"as {' or '.join(offered) or 'nothing'} at this instant, not {classification!r}"
                )
            if classification == applied.classification:
                raise InvalidInputError(f"item {item_id} is held as {classification} already")
            held = replace(
                label,
                alternatives=tuple(
                    AlternativeLabel(a.party, classification, a.agreement) if a.party == self.party else a
                    for a in label.alternatives
                ),
            )
            kernel.decide_read(actor, held, item_id).raise_if_refused()  # cleared for the level applied
            op, _ = self._reseal(row, held, row.label_version, kernel.items.origin(row))
            ops, copies = self._rederive(item_id, {item_id: held}, now, False)
            audit = kernel.audit_row(
                what,
                actor.id,
                item_id,
                "allowed",
                agreement=row.agreement,
                originator_level=f"{label.originator} {label.classification}",
                was=applied.classification,
                classification=classification,
                reason=reason,
                copies=copies,
            )
            self.db.commit(ops=[op, *ops], audit=[audit])
        except GsomiaError as exc:
            raise kernel.refuse(what, actor.id, item_id, exc) from None
        return {
            "item": item_id,
            "agreement": row.agreement,
            "originator_level": label.classification,
            "was": applied.classification,
            "classification": classification,
            "copies": copies,
        }

    def _change(
        self, actor: Person, item_id: str, kind: ChangeKind, classification: str | None, reason: str
    ) -> LabelChangeRow:
        kernel = self.kernel
        what = f"item.{kind.value}"
        try:
            kernel.require_any(actor, HANDLERS, what)
            row = self._held(item_id)
            label = kernel.items.item(row).label
            check_originator(self.party, label, kind.value)
            kernel.decide_read(actor, label, item_id).raise_if_refused()
            if kind is ChangeKind.RECLASSIFY and row.portions is not None:
                # each portion carries its own signed label under the root: one new label for the
                # whole would leave the portions' labels (what readers are decided on) behind
                raise InvalidInputError(
                    f"item {item_id} is in portions, each with its own label: it cannot be reclassified "
                    "as a whole (recall or destroy it, and ingest it again with the new labels)"
                )
            now = kernel.clock()
            new_label = None
            if kind is ChangeKind.RECLASSIFY:
                new_label = reclassified(
                    label, str(classification), kernel.catalogue.party(self.party).scheme
                )
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
                payload = kernel.cipher.open(row.id, row.label, row.payload)
                origin = sign_origin(
                    kernel.ring,
                    item_content(row.id, new_label, row.payload_type, payload, change.version),
                    now,
                )
            jws = sign_origin(kernel.ring, change_content(change, origin, self.party), now)
            # in flight first, then delivered: an entry settled in between is seen in one or the other
            pending = self.db.pending_releases(item_id)
            sent = self.db.sent_to(item_id)
            if kind is ChangeKind.RECALL:
                # the originator keeps its own item; what is queued for others does not leave, and
                # whoever may be receiving it right now gets the recall too
                touched = [item_id]
                ops = [self.db.bump_version(item_id, row.label_version, change.version)]
                cancelled = [e for e in pending if e.state == "pending"]
                ops += [
                    self.db.cancel(e.msg_id, f"recalled by the originator: {reason}", epoch_us(now))
                    for e in cancelled
                ]
            else:
                ops, touched, _, after = self._apply(row, change, new_label, origin)
                resealed, _ = self._pending_releases(after, item_id, now)
                ops += resealed
                cancelled = []
            route = _routes(pending, sent)
            holders = sorted(route)
            # one change per holder, signed for that holder, by the path the item took to it
            outbox = [
                self._duty(holder, hop, change_content(change, origin, holder), item_id, now)
                for holder, hop in sorted(route.items())
            ]
            record, rows = self._change_rows(item_id, change, kind, reason, jws, holders, now)
            ops += rows
            audit = kernel.audit_row(
                what,
                actor.id,
                item_id,
                "allowed",
                version=change.version,
                classification=change.classification,
                reason=reason,
                holders=holders,
                copies=touched[1:],
                cancelled=[e.msg_id for e in cancelled],
            )
            self.db.commit(ops=ops, outbox=outbox, audit=[audit])
        except GsomiaError as exc:
            raise kernel.refuse(what, actor.id, item_id, exc) from None
        return record

    def _change_rows(
        self,
        item_id: str,
        change: LabelChange,
        kind: ChangeKind,
        reason: str,
        jws: str,
        holders: list[str],
        now: datetime,
    ) -> tuple[LabelChangeRow, list[Op]]:
        """The originator's record of a change it sent, and the operations that store it with one
        pending acknowledgement per holder."""
        record = LabelChangeRow(
            item_id,
            change.version,
            kind.value,
            change.classification,
            reason,
            epoch_us(now),
            jws,
            epoch_us(now),
        )
        return record, [
            self.db.put("label_changes", record),
            *(
                self.db.put("label_acks", LabelAckRow(item_id, change.version, p, "pending", None, None))
                for p in holders
            ),
        ]

    def _portion_change_rows(
        self,
        what: str,
        actor: Person,
        change: LabelChange,
        origin: str | None,
        portion: str,
        holders: list[str],
        now: datetime,
        **detail: Any,
    ) -> tuple[LabelChangeRow, list[Op], AuditRow]:
        """The originator's record of one portion's change (signed as it would be for this node, so
        that it names the portion), the operations storing it with one pending acknowledgement per
        holder, and the audit record of ``what`` ``actor`` did."""
        kernel = self.kernel
        jws = sign_origin(
            kernel.ring, change_content(change, origin, self.party, PortionChange(portion, ())), now
        )
        record, rows = self._change_rows(change.item, change, change.kind, change.reason, jws, holders, now)
        audit = kernel.audit_row(
            what,
            actor.id,
            change.item,
            "allowed",
            version=change.version,
            portion=portion,
            classification=change.classification,
            reason=change.reason,
            holders=holders,
            **detail,
        )
        return record, rows, audit

    def _apply(
        self, row: ItemRow, change: LabelChange, originator_label: SecurityLabel | None, origin: str | None
    ) -> tuple[list[Op], list[str], bool, ItemRow | None]:
        """Ops that apply ``change`` to the item and every copy and derivative of it here, re-sealing each
        payload under its new label (the label is the payload's AAD); the ids touched, item first (if
        it is still held: a destroyed or recalled original is skipped, its copies are not);
        whether they were withdrawn (a recall, or a new level with no equivalent here); and the item's
        row as it will be (``None`` if withdrawn)."""
        kernel = self.kernel
        ops: list[Op] = []
        after: ItemRow | None = None
        held = row.state == "held"  # a destroyed original still passes the change to its copies
        touched = [row.id] if held else []
        new_labels: dict[str, SecurityLabel] = {}
        withdrawn = change.kind is ChangeKind.RECALL
        if originator_label is not None:
            if row.originator == self.party:
                label = originator_label
            else:
                try:
                    label = kernel.items.received_label(
                        originator_label,
                        row.received_from,
                        row.agreement,
                        at=change.at,
                        prefer=kernel.items.applied(row.label),
                    )
                except LabelError:
                    withdrawn = True  # the new level has no equivalent here: the item cannot be held
            if not withdrawn:
                new_labels[row.id] = label
                if held:
                    op, after = self._reseal(row, label, change.version, origin)
                    ops.append(op)
        more_ops, copies = self._rederive(row.id, new_labels, change.at, withdrawn)
        ops += more_ops
        touched += copies
        if withdrawn:
            ops = [self.db.withdraw(i, "recalled") for i in touched]
            after = None
        return ops, touched, withdrawn, after

    def copied_portions(self, derived: ItemRow) -> frozenset[str] | None:
        """The portions a copy of one item in portions holds (a copy's payload is the portions its
        maker saw, by id); ``None`` for anything else (a translation, a derivative, a copy of an
        item signed whole or of several items), which may hold anything of its sources."""
        sources = self.db.sources_of(derived.id)
        if len(sources) != 1 or sources[0][1] != DerivationKind.COPY.value or derived.payload_type != "json":
            return None
        try:
            shown = json.loads(self.kernel.cipher.open(derived.id, derived.label, derived.payload))
            return frozenset(str(p["id"]) for p in shown["portions"])
        except (ValueError, KeyError, TypeError):
            return None

    def _copy_label(
        self, derived: ItemRow, source_id: str, portioned: dict[str, Item]
    ) -> SecurityLabel | None:
        """The label of a copy of the portions it holds of ``source_id`` (an item in portions, as it
        will be: ``portioned``, else as stored): the highest of those portions' labels, as a reader of
        them alone sees the item; ``None`` if it is not such a copy (or names a portion not held)."""
        ids = self.copied_portions(derived)
        if ids is None:
            return None
        source = portioned.get(source_id)
        if source is None:
            row = self.kernel.store.get_item(source_id)
            if row is None or row.portions is None:
                return None
            source = self.kernel.items.item(row)
        marks = [m for m in source.portions if m.id in ids]
        if not marks or len(marks) != len(ids):
            return None
        return self.kernel.items.shown(source, marks).label

    def _copies_without(
        self, item_id: str, source: Item, portion: str, at: datetime, *, gone: str, unknown: bool = True
    ) -> tuple[list[Op], list[AuditRow], list[str], list[str]]:
        """After ``portion`` of ``item_id`` is recalled or destroyed here (``source``: the item as it
        will be, without it): each held copy of the item's portions that holds that portion and
        others, sealed again without it under the label of the portions it keeps (re-derived, so a
        reader of those alone may now read it, as the rules allow); a copy of that portion alone
        withdrawn (``gone``: its state then); with ``unknown`` (a recall), any other copy,
        translation or derivative of the item, or of such a copy, that may hold the portion withdrawn
        too (fail closed: what it holds is not known), else left as it is, its label unchanged (a
        destruction here, which leaves a destroyed item's copies). (ops, one audit record per copy
        changed, the ids re-derived, the ids withdrawn.)"""
        kernel = self.kernel
        _, derived = self._rederive(item_id, {}, at, True)  # the held copies, nothing changed
        ops: list[Op] = []
        audit: list[AuditRow] = []
        rederived: list[str] = []
        withdrawn: list[str] = []
        for derived_id in derived:
            row = kernel.store.get_item(derived_id)
            if row is None:
                continue
            ids = self.copied_portions(row)
            direct = self.db.sources_of(derived_id) == [(item_id, DerivationKind.COPY.value)]
            if ids is not None and portion not in ids:
                continue  # a copy of portions that never held it
            keep = [m for m in source.portions if ids is not None and m.id in ids - {portion}]
            if direct and ids is not None and keep and len(keep) == len(ids) - 1:
                op, label = self._copy_without(row, source, keep, portion, at)
                ops.append(op)
                rederived.append(derived_id)
                audit.append(
                    kernel.audit_row(
                        "item.rederive",
                        None,
                        derived_id,
                        "allowed",
                        source=item_id,
                        dropped=portion,
                        portions=[m.id for m in keep],
                        classification=label.classification,
                    )
                )
                continue
            if not unknown and not (direct and ids is not None):
                continue  # a translation or derivative: left as it is, its label unchanged
            ops.append(self.db.withdraw(derived_id, gone))
            withdrawn.append(derived_id)
            audit.append(
                kernel.audit_row(
                    "item.rederive", None, derived_id, "allowed", source=item_id, dropped=portion, state=gone
                )
            )
        return ops, audit, rederived, withdrawn

    def _copy_without(
        self, row: ItemRow, source: Item, keep: list[PortionMark], portion: str, at: datetime
    ) -> tuple[Op, SecurityLabel]:
        """The copy ``row`` of some portions of ``source`` sealed again without ``portion``, under
        the label of the portions it keeps (``keep``), at its next version; and that label."""
        kernel = self.kernel
        shown = json.loads(kernel.cipher.open(row.id, row.label, row.payload))
        payload = canonical({"portions": [p for p in shown["portions"] if p["id"] != portion]}).encode()
        current = kernel.items.item(row).label
        label = derive_label(
            DerivationKind.COPY,
            [kernel.items.shown(source, keep).label],
            self._schemes(),
            created=current.created,
        )
        origin = None
        if label.originator == self.party:
            content = item_content(row.id, label, row.payload_type, payload, row.label_version + 1)
            origin = sign_origin(kernel.ring, content, at)
        return self._reseal(row, label, row.label_version + 1, origin, payload)[0], label

    def _rederive(
        self,
        item_id: str,
        new_labels: dict[str, SecurityLabel],
        at: datetime,
        withdrawn: bool,
        portioned: dict[str, Item] | None = None,
    ) -> tuple[list[Op], list[str]]:
        """Ops re-sealing every held copy and derivative of ``item_id`` here under the strictest label
        of its sources (``new_labels`` holds the sources' labels as they will be), and their ids. A
        copy of some portions of an item in portions (``portioned``: such sources as they will be)
        follows the labels of the portions it holds, not the whole item's."""
        kernel = self.kernel
        ops: list[Op] = []
        copies: list[str] = []
        queue = [item_id]
        seen = {item_id}
        while queue:
            for derived_id, _kind in self.db.derived_from(queue.pop(0)):
                if derived_id in seen:
                    continue
                seen.add(derived_id)
                queue.append(derived_id)
                derived = kernel.store.get_item(derived_id)
                if derived is None or derived.state != "held":
                    continue
                copies.append(derived_id)
                if withdrawn:
                    continue
                sources = self.db.sources_of(derived_id)
                labels = []
                for source_id, _ in sources:
                    of_portions = self._copy_label(derived, source_id, portioned or {})
                    if of_portions is not None:
                        labels.append(of_portions)
                    elif source_id in new_labels:
                        labels.append(new_labels[source_id])
                    else:
                        source = kernel.store.get_item(source_id)
                        if source is None:
                            raise NotFoundError(f"source {source_id} of {derived_id} is gone")
                        labels.append(kernel.items.item(source).label)
                current = kernel.items.item(derived).label
                how = DerivationKind(sources[0][1])
                label = derive_label(how, labels, self._schemes(), created=current.created)
                new_labels[derived_id] = label
                own_origin = None
                if label.originator == self.party:
                    payload = kernel.cipher.open(derived.id, derived.label, derived.payload)
                    own_origin = sign_origin(
                        kernel.ring,
                        item_content(
                            derived.id, label, derived.payload_type, payload, derived.label_version + 1
                        ),
                        at,
                    )
                ops.append(self._reseal(derived, label, derived.label_version + 1, own_origin)[0])
        return ops, copies

    def _reseal(
        self, row: ItemRow, label: SecurityLabel, version: int, origin: str | None, plain: bytes | None = None
    ) -> tuple[Op, ItemRow]:
        """The conditional update re-sealing ``row`` under ``label`` (with ``plain`` as its payload,
        else the one it holds), and the row as it will be."""
        kernel = self.kernel
        label_json = canonical(label_to_dict(label))
        size = None if plain is None else len(plain)  # a new payload: its size with it
        if plain is None:
            plain = kernel.cipher.open(row.id, row.label, row.payload)
        payload = kernel.cipher.seal(row.id, label_json, plain)
        sealed_origin = None if origin is None else kernel.cipher.seal(row.id, label_json, origin.encode())
        after = replace(
            row,
            label=label_json,
            classification=label.classification,
            label_version=version,
            payload=payload,
            origin_jws=sealed_origin,
            payload_size=row.payload_size if size is None else size,
        )
        op = self.db.relabel(
            row.id,
            row.label_version,
            version,
            label_json,
            label.classification,
            payload,
            sealed_origin,
            at_us=epoch_us(kernel.clock()),
            expected_label=row.label,
            payload_size=size,
        )
        return op, after

    def _pending_releases(
        self, after: ItemRow | None, item_id: str, now: datetime
    ) -> tuple[list[Op], set[str]]:
        """Releases of the item queued but not yet sent: re-sealed with the new label (or, after a
        withdrawal, left for delivery to refuse); the parties they are for, to receive the change too."""
        exchange = self.exchange
        ops: list[Op] = []
        parties: set[str] = set()
        for entry in self.db.pending_releases(item_id):
            parties |= {entry.recipient, entry.final_recipient}
            if after is None or entry.state != "pending":
                continue  # the item is gone (the sender's re-decision finds it withdrawn), or left by file
            refusal, decision = exchange.recheck(entry, now)
            peer = exchange.peer(entry.recipient)
            if refusal is not None or decision is None or peer is None:
                continue  # delivery decides again and refuses it, with the reason
            body = exchange.item_body(json.loads(entry.request), decision, row=after)
            envelope = seal(self.kernel.ring, peer, body, msg_id=entry.msg_id, at=now, ttl=exchange.ttl)
            ops.append(self.db.replace_envelope(entry.msg_id, envelope))
        return ops, parties

    def label_status(self, actor: Person, item_id: str) -> dict[str, Any]:
        """The item's label changes and, per change, which holders applied it and which have not."""
        kernel = self.kernel
        kernel.require_any(actor, HANDLERS, "item.label-status")
        try:
            row = self._known(item_id)
            # as classified as the item: the reasons and holders of its changes are about it
            kernel.decide_read(actor, kernel.items.item(row).label, row.id).raise_if_refused()
        except GsomiaError as exc:
            raise kernel.refuse("item.label-status", actor.id, item_id, exc) from None
        changes = self.db.label_changes(item_id)
        acks = self.db.acks(item_id)
        messages = self.db.duty_messages(item_id)
        return {
            "item": item_id,
            "state": row.state,
            "label_version": row.label_version,
            "classification": row.classification,
            "changes": [_change_status(c, acks, messages) for c in changes],
        }


_APPLIED = ("applied", "withdrawn", "already-applied")
_GONE = ("destroyed", "recalled")


def _change_status(
    change: LabelChangeRow, acks: list[LabelAckRow], messages: list[OutboxRow]
) -> dict[str, Any]:
    """One change as the originator sees it: per holder, applied, destroyed (nothing left to change),
    not held, not reachable (the message was refused or expired, with the reason), or pending with
    why (superseded by a later version the holder answered, or the last delivery error)."""
    mine = [a for a in acks if a.version == change.version]
    answered_later = {a.party for a in acks if a.version > change.version and a.state != "pending"}
    detail: list[dict[str, Any]] = []
    for a in mine:
        state, why = a.state, None
        if state == "pending":
            sent = [m for m in messages if m.final_recipient == a.party and m.created_us >= change.applied_us]
            if a.party in answered_later:
                state, why = "superseded", "the holder answered a later change"
            elif sent and all(m.state == "undeliverable" for m in sent):
                state, why = "not-reachable", sent[-1].last_error
            elif sent and sent[-1].last_error:
                why = sent[-1].last_error
            elif not sent:
                why = "no message could be queued for this holder"
            else:
                why = "sent, not yet answered"
        detail.append(
            {
                "party": a.party,
                "state": state,
                "why": why,
                "detail": None if a.detail is None else json.loads(a.detail),
            }
        )
    return {
        "version": change.version,
        "kind": change.kind,
        "portion": kept_content(change.jws).get("portion"),  # one portion's change (None: the item's)
        "classification": change.classification,
        "reason": change.reason,
        "at": from_us(change.at_us).isoformat(),
        "applied": sorted(d["party"] for d in detail if d["state"] in _APPLIED),
        "destroyed": sorted(d["party"] for d in detail if d["state"] in _GONE),
        "not_held": sorted(d["party"] for d in detail if d["state"] == "not-held"),
        "not_reachable": sorted(d["party"] for d in detail if d["state"] == "not-reachable"),
        "pending": sorted(d["party"] for d in detail if d["state"] == "pending"),
        "acks": detail,
    }
