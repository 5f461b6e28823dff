"""Duty messages arriving over the exchange: applied here, passed on by a hub, acknowledged.

The handler the duties register for the inbox's ``duty`` messages (``Duties.receive``); what it
writes goes into the same transaction as the inbox row (the exchange's :class:`Batch`), so a
message id seen before changes nothing (exactly-once). The inner content is verified against
the signer's published key before anything else, by a hub too; a signer who does not speak
for the duty is refused.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from gsomia._codec import canonical, label_from_dict, label_to_dict
from gsomia.core.feedback import MAX_PER_ITEM
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.core.portions import PORTION_ID, check_portion
from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import Opened, sign_origin, signed_payload, verify_origin
from gsomia.duties._feedback import feedback_row
from gsomia.duties._incidents import _incident_row, signed_steps
from gsomia.duties._labels import _Labels as Duties
from gsomia.duties._messages import (
    DUTY_KIND,
    HeldPortion,
    PortionChange,
    ack_content,
    change_content,
    kept_content,
    parse_ack,
    parse_change,
    parse_destruction,
    parse_destruction_request,
    parse_duty,
    parse_feedback,
    parse_incident,
    parse_onward_portions,
    parse_portion_change,
    parse_sources,
    steps_json,
)
from gsomia.errors import AgreementError, GsomiaError, InvalidInputError, LabelError, ProofError
from gsomia.exchange import Batch, Exchange
from gsomia.kernel import (
    PortionedContent,
    SignedPortion,
    from_us,
    parse_item_content,
    parse_portioned_content,
    relabelled_leaf,
)
from gsomia.store import (
    AuditRow,
    DestructionRow,
    InboxRow,
    ItemRow,
    LabelAckRow,
    LabelChangeRow,
    Op,
    PortionDestructionRow,
)

__all__ = ["receive_duty"]


def receive_duty(duties: Duties, opened: Opened, now: datetime, accepted: Batch) -> dict[str, Any]:
    """Verify, apply or pass on one duty message; its writes join ``accepted``."""
    exchange = duties.exchange
    peers = duties.kernel.peers
    body = opened.body
    to, jws = body.get("to"), body.get("duty")
    if not isinstance(to, str) or not isinstance(jws, str):
        raise InvalidInputError("duty message: 'to' and 'duty' are required")
    if not peers.links(opened.sender):
        raise AgreementError(f"no registered link with {opened.sender}")
    signer, content = verify_origin(jws, peers.peer, now, own=duties.kernel.ring)
    kind, data = parse_duty(content)
    item = data.get("item") if isinstance(data.get("item"), str) else None
    if to != exchange.party:
        sources = parse_sources(data, kind) if kind in ("destruction-record", "incident") else ()
        originator = _originator_of(kind, signer, to, data)
        ref = _check_relay(duties, signer, to, kind, item, originator, sources)
        peer = exchange.peer(to)
        if peer is None:
            raise AgreementError(f"cannot pass a duty message on to {to}: no registered link")
        accepted.outbox.append(exchange.queue(peer, body, DUTY_KIND, ref, now, final_recipient=to))
        return _recorded(
            exchange, opened, item, "relayed", now, accepted, f"duty.relayed.{kind}", signer, to=to
        )
    if kind == "label-change":
        status = _label_change(duties, exchange, opened, signer, data, jws, now, accepted)
    elif kind == "label-ack":
        status = _label_ack(duties, signer, data, now, accepted)
    elif kind == "destruction-record":
        status = _destruction(duties, signer, data, jws, accepted)
    elif kind == "destruction-request":
        status = _destruction_request(duties, exchange, signer, data, now, accepted)
    elif kind == "incident":
        status = _incident(duties, signer, data, jws, now, accepted)
    elif kind == "feedback":
        status = _feedback(duties, signer, data, jws, now, accepted)
    else:
        raise InvalidInputError(f"unknown duty {kind!r}")
    detail: dict[str, Any] = {"result": status}
    if kind == "label-change":  # what changed (the feed tells a portion's recall from a label change)
        detail["change"] = data.get("change")
        if isinstance(data.get("portion"), str):
            detail["portion"] = data["portion"]
    return _recorded(exchange, opened, item, "recorded", now, accepted, f"duty.{kind}", signer, **detail)


def _originator_of(kind: str, signer: str, to: str, data: dict[str, Any]) -> str:
    """Whose item a duty message is about (an item is (originator, id), issue 22 §4): the one its
    content names, else the signer of a change or request (the originator speaks), else the party
    it goes to (a holder's answer goes to the originator)."""
    named = data.get("originator")
    if isinstance(named, str):
        return named
    return signer if kind in ("label-change", "destruction-request") else to


def _check_relay(
    duties: Duties,
    signer: str,
    to: str,
    kind: str,
    item: str | None,
    originator: str,
    sources: tuple[str, ...],
) -> str:
    """Pass a duty message on only along the item's recorded path (issue 14 §9): as the hub an
    agreement names between ``signer`` and ``to``, about an item it relayed between them; or as the
    holder that passed the originator's item on to ``to`` by its own release. A record about a copy
    the holder made (an id not known here) passes along the path of every item it names as its
    sources. Anything else (another party's message through a node that carried nothing between
    them) raises :class:`AgreementError`, which the inbox refuses and audits."""
    me = duties.party
    if item is None:
        raise AgreementError(f"{me} passes on only duties about an item it passed on; this {kind} names none")
    store = duties.kernel.store
    row = store.item_of(originator, item)
    if row is not None and _passed_on(duties, signer, to, row):
        return row.id
    if (
        sources
        and row is None
        and all(
            (source := store.item_of(originator, s)) is not None and _passed_on(duties, signer, to, source)
            for s in sources
        )
    ):
        return item
    raise AgreementError(
        f"{me} passed no item {item!r} on between {signer} and {to} (as a hub an agreement names, or by "
        f"its own release): a {kind} about it does not pass here"
    )


def _passed_on(duties: Duties, signer: str, to: str, row: ItemRow) -> bool:
    """Whether this node passed the item of ``row`` on between ``signer`` and ``to``: relayed as the
    hub an agreement names between them, or released onward by itself (the originator being one of
    them)."""
    me = duties.party
    originator = row.originator
    hub = any(a.relays(signer, me, to) for a in duties.kernel.catalogue.agreements_of(me))
    for entry in duties.kernel.fed.item_messages(row.id):
        route = json.loads(entry.request or "{}")
        if not {signer, to} <= {route.get("sender"), route.get("recipient"), originator}:
            continue
        relayed = hub and route.get("via") == [me]
        released = route.get("sender") == me != originator and originator in (signer, to)
        if relayed or released:
            return True
    return False


def _recorded(
    exchange: Exchange,
    opened: Opened,
    item: str | None,
    status: str,
    now: datetime,
    accepted: Batch,
    audit_kind: str,
    signer: str,
    **detail: Any,
) -> dict[str, Any]:
    receipt = exchange.receipt(opened, item, status, None, now)
    accepted.add_inbox(
        InboxRow(opened.msg_id, opened.sender, DUTY_KIND, item, epoch_us(now), status, receipt)
    )
    accepted.audit.append(
        exchange.kernel.audit_row(
            audit_kind, opened.sender, item, "allowed", msg_id=opened.msg_id, signer=signer, **detail
        )
    )
    return {"status": status, "receipt": receipt, "reason": None}


def _label_change(
    duties: Duties,
    exchange: Exchange,
    opened: Opened,
    signer: str,
    data: dict[str, Any],
    jws: str,
    now: datetime,
    accepted: Batch,
) -> str:
    """A holder applies the originator's change, addressed to it, to the item and its copies (whatever
    state the item itself is in), and acknowledges, naming where it sent the item on.

    Accepted only from the originator or from the party the item came from here; a change older
    than the version held is stale, one addressed to another holder misaddressed: both refused
    (and audited by the inbox). A change for an item not (yet) here is kept: a release may still be
    on its way, and applies the change when it arrives (:func:`apply_waiting`)."""
    kernel = duties.kernel
    change, origin, holder = parse_change(data)
    if signer != change.originator:
        raise InvalidInputError(f"a label change signed by {signer} speaks for {change.originator}")
    if holder != exchange.party:
        raise InvalidInputError(f"a label change addressed to {holder} reached {exchange.party}")
    portion_change = parse_portion_change(data)
    if portion_change is not None:
        return _portion_change(duties, exchange, opened, change, origin, portion_change, jws, now, accepted)
    # an item is (originator, id): the change is for the signer's item of that id, whatever the
    # reference it has here (issue 22 §4); another originator's item under the id is not touched
    row = kernel.store.item_of(change.originator, change.item)
    arriving = accepted.by_origin.get((change.originator, change.item))
    copies = 0
    onward: set[str] = set()
    record = LabelChangeRow(
        row.id if row is not None else waiting_key(change.originator, change.item),
        change.version,
        change.kind.value,
        change.classification,
        change.reason,
        epoch_us(change.at),
        jws,
        epoch_us(now),
    )
    if row is None and arriving is not None:  # the item arrived in this very batch
        _check_path(opened.sender, change, arriving.originator, arriving.received_from)
        _check_version(change, arriving.label_version)
        status = (
            "already-applied"
            if change.version == arriving.label_version
            else _apply_to_arriving(duties, change, origin, exchange, now, accepted, arriving.id)
        )
        onward = {
            p
            for e in accepted.outbox
            if e.kind == "item" and e.item_id == arriving.id
            for p in (e.recipient, e.final_recipient)
        }
        upstream = arriving.received_from or opened.sender
    elif row is None:
        # kept for the item it names, under a key no reference of an item here can be, so that
        # no other originator's item under the same id sees it (or blocks it)
        status = "not-held"
        if all(c.version != change.version for c in duties.db.label_changes(record.item_id)):
            accepted.ops.append(duties.db.put("label_changes", record))
        upstream = opened.sender
    else:
        _check_path(opened.sender, change, row.originator, row.received_from)
        _check_version(change, row.label_version)
        upstream = row.received_from or opened.sender
        # in flight first, then delivered: an entry settled in between is seen in one or the other
        in_flight = duties.db.pending_releases(row.id)
        onward = {p for e in in_flight for p in (e.recipient, e.final_recipient)}
        onward |= {p for pair in duties.db.sent_to(row.id) for p in pair}
        if change.version == row.label_version:
            status = "already-applied"
        else:
            new_label = None
            if change.kind is ChangeKind.RECLASSIFY:
                new_label = _signed_label(change, origin, exchange, now)
                if row.state == "held" and new_label[1] != kernel.cipher.open(row.id, row.label, row.payload):
                    raise InvalidInputError("the signed item's payload differs from the one held here")
            ops, touched, withdrawn, after = duties._apply(
                row, change, None if new_label is None else new_label[0], origin
            )
            resealed, _ = duties._pending_releases(after, row.id, now)
            copies = len(touched) - (1 if row.state == "held" else 0)
            if row.state != "held":
                ops.append(duties.db.bump_version(row.id, row.label_version, change.version))
                status = ("withdrawn" if withdrawn else "applied") if copies else row.state
            else:
                status = "withdrawn" if withdrawn else "applied"
            accepted.ops += ops + resealed
            accepted.ops.append(duties.db.put("label_changes", record))
    onward -= {exchange.party, change.originator}
    peer = exchange.peer(upstream)
    if peer is None:
        raise AgreementError(f"no registered link with {upstream} to acknowledge the change")
    ref = row.id if row is not None else (arriving.id if arriving is not None else change.item)
    _acknowledge(exchange, change, status, copies, onward, peer, now, accepted, ref)
    return status


def _portion_change(
    duties: Duties,
    exchange: Exchange,
    opened: Opened,
    change: LabelChange,
    origin: str | None,
    told: PortionChange,
    jws: str,
    now: datetime,
    accepted: Batch,
) -> str:
    """A holder applies the originator's reclassification or recall of one portion it holds. A
    reclassification: each portion held rebuilt with the label the originator names and checked
    against the originator's new signed root (so nothing but that portion's level can change), the
    item re-sealed under the highest label of the portions held, its copies re-derived, queued
    releases re-sealed. A recall: the portion dropped (:func:`_drop_portion`). Acknowledged, naming
    the parties this node sent that portion on to. Refused: a change to a portion never received
    here, a stale one, one not from the item's path. An item arriving in the same batch, ahead of the
    change, takes it before it is written (:func:`_portion_on_arrival`); for an item not held here
    the change is kept (:func:`_keep_portion_change`) and answered ``not-held``: a release that left
    the originator before the change may still be on its way, and takes it when it arrives
    (:func:`apply_waiting`), answered again then."""
    kernel = duties.kernel
    if change.kind is ChangeKind.RECALL and told.held:
        raise InvalidInputError("a portion's recall names no portion held: the holder drops one")
    row = kernel.store.item_of(change.originator, change.item)  # an item is (originator, id)
    arriving = accepted.by_origin.get((change.originator, change.item)) if row is None else None
    copies = 0
    onward: dict[str, set[str]] = {}
    if arriving is not None:  # the item arrived in this very batch, ahead of the change
        _check_path(opened.sender, change, arriving.originator, arriving.received_from)
        upstream = arriving.received_from or opened.sender
        status = _portion_on_arrival(duties, change, told.portion, arriving.id, now, accepted)
        for entry in accepted.outbox:  # passed on by this very batch (a hub)
            carried = set(json.loads(entry.request or "{}").get("portions") or ())
            if entry.kind == "item" and entry.item_id == arriving.id and told.portion in carried:
                for party in (entry.recipient, entry.final_recipient):
                    onward.setdefault(party, set()).update(carried)
    elif row is None:  # kept for the item: a release may still be on its way (apply_waiting)
        status, upstream = _keep_portion_change(duties, change, jws, now, accepted), opened.sender
    else:
        _check_path(opened.sender, change, row.originator, row.received_from)
        _check_version(change, row.label_version)
        upstream = row.received_from or opened.sender
        if row.portions is None:
            raise InvalidInputError(
                f"item {change.item} here is signed whole: no change to a portion {told.portion} applies"
            )
        marks = {m.id for m in kernel.items.marks(row.portions)}
        if told.portion not in marks:
            raise InvalidInputError(f"portion {told.portion} of item {change.item} was never received here")
        for entry in [*duties.db.pending_releases(row.id), *kernel.fed.item_messages(row.id)]:
            carried = set(json.loads(entry.request or "{}").get("portions") or ())
            if told.portion in carried and entry.state not in ("undeliverable", "cancelled"):
                for party in (entry.recipient, entry.final_recipient):
                    onward.setdefault(party, set()).update(carried)
        if change.version == row.label_version:
            status = "already-applied"
        elif row.state != "held":
            status = row.state  # destroyed or recalled here: nothing held to relabel
            accepted.ops.append(duties.db.bump_version(row.id, row.label_version, change.version))
            accepted.ops.append(duties.db.put("label_changes", _change_row(change, jws, now)))
        else:
            if change.kind is ChangeKind.RECALL:
                status, copies, ops, audit = _drop_portion(duties, row, change, told.portion, now)
                accepted.audit += audit
            else:
                status, copies, ops = _apply_portion(duties, row, change, origin, told, now)
            accepted.ops += ops
            held = replace(_change_row(change, jws, now), item_id=row.id)  # under its reference here
            accepted.ops.append(duties.db.put("label_changes", held))
    peer = exchange.peer(upstream)
    if peer is None:
        raise AgreementError(f"no registered link with {upstream} to acknowledge the change")
    _acknowledge_portion(exchange, change, status, copies, onward, peer, now, accepted)
    return status


def _acknowledge_portion(
    exchange: Exchange,
    change: LabelChange,
    status: str,
    copies: int,
    onward: dict[str, set[str]],
    peer: Any,
    now: datetime,
    accepted: Batch,
) -> None:
    """This node's signed answer to a portion's change, naming the parties it sent that portion on
    to and what they hold of the item, for the originator, by ``peer`` (the way the item came)."""
    onward = {p: ids for p, ids in onward.items() if p not in (exchange.party, change.originator)}
    content = ack_content(
        change.item,
        change.version,
        exchange.party,
        status,
        copies,
        now,
        sorted(onward),
        {p: sorted(ids) for p, ids in onward.items()},
    )
    body = {"kind": DUTY_KIND, "to": change.originator, "duty": sign_origin(exchange.ring, content, now)}
    accepted.outbox.append(
        exchange.queue(peer, body, DUTY_KIND, change.item, now, final_recipient=change.originator)
    )


WAITING_PER_ORIGINATOR = 1000  # changes kept for items not (yet) held here, per originator
# how long a portion's change waits for its item: past any release's delivery, 24 hours of
# retries at each hop (a hub's included), so a release still on its way always finds it
WAITING_AGE = timedelta(days=7)


def _keep_portion_change(
    duties: Duties, change: LabelChange, jws: str, now: datetime, accepted: Batch
) -> str:
    """A portion's change for an item not (yet) held here, kept in the store under the item's
    waiting key (:func:`waiting_key`) for its arrival, where any process of the node finds it; the
    same change again is kept once. Bounded: portion changes older than :data:`WAITING_AGE` are
    forgotten, and past :data:`WAITING_PER_ORIGINATOR` changes waiting from one originator another
    is refused (the inbox audits it; the originator sees the holder has not answered)."""
    key = waiting_key(change.originator, change.item)
    kept = duties.db.waiting_changes(waiting_key(change.originator, ""))
    if any(r.item_id == key and r.version == change.version for r in kept):
        return "not-held"
    oldest = epoch_us(now - WAITING_AGE)
    expired = [r for r in kept if r.applied_us < oldest and "portion" in kept_content(r.jws)]
    if len(kept) - len(expired) >= WAITING_PER_ORIGINATOR:
        raise InvalidInputError(
            f"{WAITING_PER_ORIGINATOR} changes of {change.originator} already wait here for items not "
            f"held: this change to {change.item} is not kept"
        )
    accepted.ops += [duties.db.drop_label_change(r.item_id, r.version) for r in expired]
    accepted.ops.append(duties.db.put("label_changes", replace(_change_row(change, jws, now), item_id=key)))
    return "not-held"


def _change_row(change: LabelChange, jws: str, now: datetime) -> LabelChangeRow:
    return LabelChangeRow(
        change.item,
        change.version,
        change.kind.value,
        change.classification,
        change.reason,
        epoch_us(change.at),
        jws,
        epoch_us(now),
    )


def _apply_portion(
    duties: Duties,
    row: ItemRow,
    change: LabelChange,
    origin: str | None,
    told: PortionChange,
    now: datetime,
) -> tuple[str, int, list[Op]]:
    """(status, copies changed, ops) of one portion's reclassification applied to the item held."""
    kernel = duties.kernel
    _, held = kernel.items.signed(row)
    root, portions = _reclassified(duties, change, origin, told, held, now)
    item = kernel.items.item(row)
    prefer = {
        m.id: (None if (a := m.label.alternative_for(duties.party)) is None else a.classification)
        for m in item.portions
    }
    try:
        sealed = kernel.items.seal_portions(
            root,
            portions,
            origin=str(origin),
            now=now,
            by=row.ingested_by,
            received_from=row.received_from,
            agreement=row.agreement,
            prefer=prefer,
        )
    except LabelError:  # the new level has no equivalent here: the item cannot be held (fail closed)
        _, copied = duties._rederive(row.id, {}, change.at, True)
        return "withdrawn", len(copied), [duties.db.withdraw(i, "recalled") for i in [row.id, *copied]]
    relabel, after = duties._resealed(row, sealed, change.version, now)
    ops: list[Op] = [relabel]
    more, copied = duties._rederive(
        row.id,
        {row.id: kernel.items.stored_label(sealed.label)},
        change.at,
        False,
        {row.id: kernel.items.item(after)},
    )
    resealed, _ = duties._pending_releases(after, change.item, now)
    return "applied", len(copied), ops + more + resealed


def _reclassified(
    duties: Duties,
    change: LabelChange,
    origin: str | None,
    told: PortionChange,
    held: tuple[SignedPortion, ...],
    now: datetime,
) -> tuple[PortionedContent, list[SignedPortion]]:
    """(the originator's new signed root, the portions ``held`` as they are under it) for one
    portion's reclassification: each portion rebuilt with the label the change names and checked
    against the new root, so nothing but that portion's level can change."""
    kernel = duties.kernel
    if origin is None:
        raise InvalidInputError("a portion's reclassification carries the originator's newly signed root")
    signer, content = verify_origin(origin, kernel.peers.peer, now, own=kernel.ring)
    root = parse_portioned_content(content, kernel.catalogue)
    if (
        signer != change.originator
        or root is None
        or root.item_id != change.item
        or root.label_version != change.version
    ):
        raise InvalidInputError("the originator's signed root does not match the change")
    named = {h.id: h for h in told.held}
    if set(named) != {p.id for p in held}:
        raise InvalidInputError("the change does not name exactly the portions held here")
    portions = []
    for p in held:
        entry = named[p.id]
        try:
            label = label_from_dict(entry.label, kernel.catalogue)
            proof = tuple(bytes.fromhex(h) for h in entry.proof)
        except (GsomiaError, ValueError) as exc:
            raise InvalidInputError(f"label-change.portions: portion {p.id}: {exc}") from exc
        expected = (
            replace(p.label, classification=str(change.classification)) if p.id == told.portion else p.label
        )
        if label != expected or entry.index != p.index:
            raise InvalidInputError(f"the change names portion {p.id} otherwise than as held here")
        leaf = relabelled_leaf(p.leaf, label)
        try:
            check_portion(leaf, p.index, root.size, proof, root.root)
        except ProofError as exc:
            raise InvalidInputError(
                f"portion {p.id} does not check against the originator's new root"
            ) from exc
        portions.append(SignedPortion(p.id, p.index, proof, leaf, label, p.payload_type, p.payload))
    return root, portions


def _drop_portion(
    duties: Duties, row: ItemRow, change: LabelChange, portion: str, now: datetime
) -> tuple[str, int, list[Op], list[AuditRow]]:
    """(status, copies changed, ops, audit records) of the originator's recall of one portion held
    here: the item sealed again without it, under the highest label of the portions left (the
    originator's signed root still proves them), queued releases re-sealed. A copy here made of the
    portions a reader saw keeps its place if that portion was not among them, and drops it if it
    holds others too, its label re-derived from those (:meth:`Duties._copies_without`); any other
    copy, translation or derivative of the item may hold the portion and is withdrawn (fail
    closed). The last portion held recalled: the item goes, as a recall of the whole."""
    kernel = duties.kernel
    item = kernel.items.item(row)
    if len(item.portions) == 1:
        _, derived = duties._rederive(row.id, {}, change.at, True)  # the held copies, nothing changed
        ops = [duties.db.withdraw(i, "recalled") for i in [row.id, *derived]]
        return "withdrawn", len(derived), ops, []
    content, held = kernel.items.signed(row)
    origin = kernel.items.origin(row)
    if origin is None:
        raise InvalidInputError(f"item {change.item} here carries no signed root of its originator")
    sealed = kernel.items.seal_portions(
        content,
        [p for p in held if p.id != portion],
        origin=origin,
        now=now,
        by=row.ingested_by,
        received_from=row.received_from,
        agreement=row.agreement,
        prefer={
            m.id: (None if (a := m.label.alternative_for(duties.party)) is None else a.classification)
            for m in item.portions
        },
    )
    relabel, after = duties._resealed(row, sealed, change.version, now)
    copies, audit, rederived, gone = duties._copies_without(
        row.id, kernel.items.item(after), portion, change.at, gone="recalled"
    )
    resealed, _ = duties._pending_releases(after, row.id, now)
    return "applied", len(rederived) + len(gone), [relabel, *copies, *resealed], audit


def _portion_on_arrival(
    duties: Duties, change: LabelChange, portion: str, ref: str, now: datetime, accepted: Batch
) -> str:
    """A portion's change for an item stored by the same batch (``ref``: its reference here), the
    item's release having left the originator before the change (the outbox keeps a peer's order).
    A recall drops the portion from the item before it is written (the last portion held: the item
    is stored withdrawn, and a hub passes none of it on); a reclassification the item already
    carries (a queued release leaves re-sealed with the new root) is already applied."""
    kernel = duties.kernel
    index = next(i for i, n in enumerate(accepted.items) if n.id == ref)
    arriving = accepted.items[index]
    _check_version(change, arriving.label_version)
    if arriving.portions is None:
        raise InvalidInputError(
            f"item {change.item} here is signed whole: no change to a portion {portion} applies"
        )
    marks = kernel.items.marks(arriving.portions)
    if portion not in {m.id for m in marks}:
        raise InvalidInputError(f"portion {portion} of item {change.item} was never received here")
    if change.version == arriving.label_version:
        return "already-applied"
    if change.kind is not ChangeKind.RECALL:
        return "not-held"  # a newer root than the one arriving: the release re-sealed it, or will
    if len(marks) == 1:
        return _withdraw_arriving(change, ref, accepted)
    if arriving.origin_jws is None:
        raise InvalidInputError(f"item {change.item} carries no signed root of its originator")
    content, held = kernel.items.signed_sealed(arriving.id, arriving.label, arriving.payload)
    origin = kernel.cipher.open(arriving.id, arriving.label, arriving.origin_jws).decode()
    _reseal_arriving(
        duties, index, content, [p for p in held if p.id != portion], origin, change, now, accepted
    )
    return "applied"


def _reseal_arriving(
    duties: Duties,
    index: int,
    root: PortionedContent,
    portions: list[SignedPortion],
    origin: str,
    change: LabelChange,
    now: datetime,
    accepted: Batch,
) -> None:
    """The item arriving at ``index`` of the batch sealed again, before it is written, with the
    ``portions`` it is to hold under the originator's ``root``, at the change's version (the banner:
    the highest label of those portions). :class:`LabelError`: one has no equivalent here."""
    kernel = duties.kernel
    arriving = accepted.items[index]
    if arriving.portions is None:
        raise InvalidInputError(f"item {change.item} here is signed whole: no change to a portion applies")
    sealed = kernel.items.seal_portions(
        root,
        portions,
        origin=origin,
        now=now,
        by=arriving.ingested_by,
        received_from=arriving.received_from,
        agreement=arriving.agreement,
        prefer={
            m.id: (None if (a := m.label.alternative_for(duties.party)) is None else a.classification)
            for m in kernel.items.marks(arriving.portions)
        },
        ref=arriving.id,
    )
    accepted.items[index] = replace(
        arriving,
        label=sealed.label,
        classification=sealed.classification,
        topics=sealed.topics,
        payload=sealed.payload,
        payload_size=sealed.payload_size,
        origin_jws=sealed.origin_jws,
        portions=sealed.portions,
        label_version=change.version,
    )


def _check_path(sender: str, change: LabelChange, originator: str, came_from: str | None) -> None:
    """Only the originator, or the party the item came from here, delivers the originator's change."""
    if originator != change.originator:
        raise InvalidInputError(f"item {change.item} here was not originated by {change.originator}")
    if sender not in (change.originator, came_from):
        raise InvalidInputError(
            f"a label change for {change.item} came from {sender}, who is not on its path here"
        )


def _check_version(change: LabelChange, held: int) -> None:
    if change.version < held:
        raise InvalidInputError(
            f"stale label change: version {change.version} of {change.item} is older than version {held} here"
        )


def _acknowledge(
    exchange: Exchange,
    change: LabelChange,
    status: str,
    copies: int,
    onward: set[str],
    peer: Any,
    now: datetime,
    accepted: Batch,
    ref: str,
) -> None:
    """This node's signed answer to ``change``, for the originator, by the way the item came (``ref``:
    the item's reference here, which the outbox entry names)."""
    content = ack_content(change.item, change.version, exchange.party, status, copies, now, sorted(onward))
    body = {"kind": DUTY_KIND, "to": change.originator, "duty": sign_origin(exchange.ring, content, now)}
    accepted.outbox.append(exchange.queue(peer, body, DUTY_KIND, ref, now, final_recipient=change.originator))


_KEPT_CHANGES = "duties.kept-label-changes"  # Batch.prefetched: claimed item ids with changes kept


def waiting_key(originator: str, item_id: str) -> str:
    """Where a change for ``originator``'s item ``item_id``, not (yet) held here, is kept: a key no
    reference of an item can be (``~`` is in none but a digest reference, which has no ``~`` first),
    one per (originator, id), so that another originator's item under the same id neither sees the
    change nor blocks it (issue 22 §4)."""
    key = f"~{originator}:{item_id}"
    return key if len(key) <= 128 else f"~{originator}:~{hashlib.sha256(item_id.encode()).hexdigest()[:48]}"


def apply_waiting(duties: Duties, item_id: str, now: datetime, accepted: Batch) -> None:
    """An item is arriving: the newest change of its originator kept here for it (it reached this node
    first), if newer than the item's version, applies before the item is stored; acknowledged."""
    arriving = next((n for n in reversed(accepted.items) if n.id == item_id), None)  # the newest
    if arriving is None:
        return
    name = arriving.origin_id or arriving.id
    # kept under the key of (originator, id); under the bare id before migration 0024
    keys = [waiting_key(arriving.originator, name), name]
    if accepted.claimed is not None and name in accepted.claimed:
        # which of the batch's items have changes kept here: one query for the batch, not one each
        kept = accepted.prefetched.get(_KEPT_CHANGES)
        if kept is None:
            asked = [*accepted.claimed, *(waiting_key(o, i) for o, i in accepted.pairs)]
            kept = accepted.prefetched[_KEPT_CHANGES] = duties.db.items_with_label_changes(asked)
        if not kept.intersection(keys):
            return
    waiting: list[tuple[LabelChange, str | None, LabelChangeRow]] = []
    portions: list[tuple[LabelChange, str | None, PortionChange, LabelChangeRow]] = []
    for row in (r for key in keys for r in duties.db.label_changes(key)):
        if row.version <= arriving.label_version and "portion" not in kept_content(row.jws):
            continue
        try:
            _, content = parse_duty(signed_payload(row.jws))
            change, origin, holder = parse_change(content)
            told = parse_portion_change(content)
        except GsomiaError:
            continue
        if change.originator != arriving.originator or holder != duties.party:
            continue
        if told is not None:
            portions.append((change, origin, told, row))
        elif row.version > arriving.label_version:
            waiting.append((change, origin, row))
    if portions:
        # kept for this item alone: forgotten under its waiting key once it is here, whatever they do
        accepted.ops += [duties.db.drop_label_change(r.item_id, r.version) for *_, r in portions]
        if not waiting:
            _apply_portions_waiting(duties, item_id, portions, now, accepted)
    if not waiting:
        return
    change, origin, kept_row = max(waiting, key=lambda w: w[0].version)
    recorded = {r.version for r in duties.db.label_changes(item_id)} if kept_row.item_id != item_id else {0}
    if kept_row.version not in recorded:  # the change applied is the item's now: under its reference too
        accepted.ops.append(duties.db.put("label_changes", replace(kept_row, item_id=item_id)))
    exchange = duties.exchange
    try:
        status = _apply_to_arriving(duties, change, origin, exchange, now, accepted, item_id)
    except GsomiaError:
        # the newer label cannot be applied (its signature no longer verifies): nothing kept at the old one
        status = "withdrawn"
    if status == "withdrawn":  # a hub does not pass on what was withdrawn
        _withdraw_arriving(change, item_id, accepted)
    peer = exchange.peer(arriving.received_from or change.originator)
    if peer is not None:
        _acknowledge(exchange, change, status, 0, set(), peer, now, accepted, item_id)
    accepted.audit.append(
        duties.kernel.audit_row(
            "duty.label-change.applied-on-arrival",
            arriving.received_from,
            item_id,
            "allowed",
            version=change.version,
            result=status,
        )
    )


def _apply_portions_waiting(
    duties: Duties,
    item_id: str,
    portions: list[tuple[LabelChange, str | None, PortionChange, LabelChangeRow]],
    now: datetime,
    accepted: Batch,
) -> None:
    """The originator's portion changes kept here for an item arriving now (``item_id``: its
    reference here), applied in the order of their versions before the item is written, whatever
    order they reached this node in: a recall drops its portion (:func:`_portion_on_arrival`), a
    reclassification relabels the portions held under the originator's new root
    (:func:`_reclassify_arriving`). Each is acknowledged and audited
    (``duty.label-change.applied-on-arrival``). A change to a portion the item does not carry changes
    nothing and is answered ``not-held``; one that cannot be applied otherwise (its signed root does
    not check) withdraws the item, as a change to the whole item does (fail closed)."""
    exchange = duties.exchange
    for change, origin, told, kept_row in sorted(portions, key=lambda p: p[0].version):
        index = next(i for i, n in enumerate(accepted.items) if n.id == item_id)
        arriving = accepted.items[index]
        if arriving.state != "held" or change.version <= arriving.label_version:
            continue  # withdrawn by an earlier change, or the item carries this change already
        marks = () if arriving.portions is None else duties.kernel.items.marks(arriving.portions)
        reason = None
        if told.portion not in {m.id for m in marks}:  # nothing of it here to change
            status, reason = (
                "not-held",
                f"portion {told.portion} of item {change.item} was never received here",
            )
        else:
            try:
                if change.kind is ChangeKind.RECALL:
                    if told.held:
                        raise InvalidInputError(
                            "a portion's recall names no portion held: the holder drops one"
                        )
                    status = _portion_on_arrival(duties, change, told.portion, item_id, now, accepted)
                else:
                    status = _reclassify_arriving(duties, change, origin, told, item_id, now, accepted)
            except GsomiaError as exc:  # the originator's change cannot apply: nothing kept at the old one
                status, reason = _withdraw_arriving(change, item_id, accepted), str(exc)
        if status in ("applied", "withdrawn"):
            accepted.ops.append(duties.db.put("label_changes", replace(kept_row, item_id=item_id)))
        onward: dict[str, set[str]] = {}
        for entry in accepted.outbox:  # passed on by this very batch (a hub)
            carried = set(json.loads(entry.request or "{}").get("portions") or ())
            if entry.kind == "item" and entry.item_id == item_id and told.portion in carried:
                for party in (entry.recipient, entry.final_recipient):
                    onward.setdefault(party, set()).update(carried)
        peer = exchange.peer(arriving.received_from or change.originator)
        if peer is not None:
            _acknowledge_portion(exchange, change, status, 0, onward, peer, now, accepted)
        accepted.audit.append(
            duties.kernel.audit_row(
                "duty.label-change.applied-on-arrival",
                arriving.received_from,
                item_id,
                "allowed" if reason is None else "refused",
                version=change.version,
                change=change.kind.value,
                portion=told.portion,
                result=status,
                **({} if reason is None else {"reason": reason}),
            )
        )


def _withdraw_arriving(change: LabelChange, item_id: str, accepted: Batch) -> str:
    """The item arriving stored withdrawn (a change to it could not be applied: fail closed), and a
    hub passes none of it on."""
    index = next(i for i, n in enumerate(accepted.items) if n.id == item_id)
    accepted.items[index] = replace(
        accepted.items[index], state="recalled", payload=b"", origin_jws=None, label_version=change.version
    )
    accepted.outbox[:] = [
        replace(e, state="undeliverable", last_error=f"recalled by the originator: {change.reason}")
        if e.kind == "item" and e.item_id == item_id
        else e
        for e in accepted.outbox
    ]
    return "withdrawn"


def _reclassify_arriving(
    duties: Duties,
    change: LabelChange,
    origin: str | None,
    told: PortionChange,
    ref: str,
    now: datetime,
    accepted: Batch,
) -> str:
    """One portion's reclassification, kept here, applied to the item arriving (``ref``: its
    reference here) before it is written: its portions checked against the originator's new root
    and sealed again under the highest label of those held (no equivalent here: withdrawn)."""
    kernel = duties.kernel
    index = next(i for i, n in enumerate(accepted.items) if n.id == ref)
    arriving = accepted.items[index]
    if arriving.portions is None:
        raise InvalidInputError(f"item {change.item} here is signed whole: no change to a portion applies")
    _, held = kernel.items.signed_sealed(arriving.id, arriving.label, arriving.payload)
    root, portions = _reclassified(duties, change, origin, told, held, now)
    try:
        _reseal_arriving(duties, index, root, portions, str(origin), change, now, accepted)
    except LabelError:  # the new level has no equivalent here: the item cannot be held (fail closed)
        return _withdraw_arriving(change, ref, accepted)
    return "applied"


def _signed_label(
    change: LabelChange, origin: str | None, exchange: Exchange, now: datetime
) -> tuple[SecurityLabel, bytes]:
    """The originator's newly signed item carried by a reclassification: (its label, its payload)."""
    if origin is None:
        raise InvalidInputError("a reclassification carries the originator's newly signed item")
    signer, content = verify_origin(origin, exchange.kernel.peers.peer, now, own=exchange.ring)
    signed = parse_item_content(content, exchange.kernel.catalogue)
    if (
        signer != change.originator
        or signed.item_id != change.item
        or signed.label.classification != change.classification
        or signed.label_version != change.version
    ):
        raise InvalidInputError("the originator's signed item does not match the change")
    return signed.label, signed.payload


def _apply_to_arriving(
    duties: Duties,
    change: LabelChange,
    origin: str | None,
    exchange: Exchange,
    now: datetime,
    accepted: Batch,
    ref: str,
) -> str:
    """The change applies to an item stored by the same batch (``ref``: its reference here): rewrite
    it before it is written."""
    kernel = duties.kernel
    index = next(i for i, n in enumerate(accepted.items) if n.id == ref)
    arriving = accepted.items[index]
    if arriving.originator != change.originator:
        raise InvalidInputError(f"item {change.item} here was not originated by {change.originator}")
    if change.kind is ChangeKind.RECALL:
        accepted.items[index] = replace(
            arriving, state="recalled", payload=b"", origin_jws=None, label_version=change.version
        )
        return "withdrawn"
    label, payload = _signed_label(change, origin, exchange, now)
    if payload != kernel.cipher.open(arriving.id, arriving.label, arriving.payload):
        raise InvalidInputError("the signed item's payload differs from the one arriving")
    try:
        applied = kernel.items.applied(arriving.label)
        held = kernel.items.received_label(
            label, arriving.received_from, arriving.agreement, at=now, prefer=applied
        )
    except LabelError:
        accepted.items[index] = replace(
            arriving, state="recalled", payload=b"", origin_jws=None, label_version=change.version
        )
        return "withdrawn"
    label_json = canonical(label_to_dict(held))
    accepted.items[index] = replace(
        arriving,
        label=label_json,
        classification=held.classification,
        label_version=change.version,
        payload=kernel.cipher.seal(arriving.id, label_json, payload),
        origin_jws=None if origin is None else kernel.cipher.seal(arriving.id, label_json, origin.encode()),
    )
    return "applied"


def _label_ack(duties: Duties, signer: str, data: dict[str, Any], now: datetime, accepted: Batch) -> str:
    """A holder's answer to this node's change. The parties it names as having the item from it get the
    change too, addressed to each and sent through that holder (the path the item took)."""
    item, version, holder, status, copies, at, onward = parse_ack(data)
    if signer != holder:
        raise InvalidInputError(f"an acknowledgement signed by {signer} speaks for {holder}")
    own = duties.kernel.store.item_of(duties.party, item)  # this node's own item: its reference is its id
    if own is None:
        raise InvalidInputError(f"an acknowledgement about {item}, which is no item of {duties.party}")
    asked = {a.party for a in duties.db.acks(item) if a.version == version}
    if holder not in asked:
        raise InvalidInputError(f"no change {version} of {item} was addressed to {holder}")
    detail = canonical({"status": status, "copies": copies, "at": at.isoformat(), "onward": sorted(onward)})
    accepted.ops.append(duties.db.ack(item, version, holder, status, epoch_us(now), detail))
    further = sorted(set(onward) - asked - {duties.party, holder})
    if further:
        _address_onward(duties, item, version, holder, further, now, accepted, parse_onward_portions(data))
    return status


def _address_onward(
    duties: Duties,
    item: str,
    version: int,
    via: str,
    parties: list[str],
    now: datetime,
    accepted: Batch,
    onward_portions: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """The originator's change ``version`` of ``item``, signed for each of ``parties``, sent through
    ``via`` (the holder that passed the item on to them). Only the item's current version is sent on:
    an older one is superseded, and the newer one's answers name these parties in turn. A portion's
    change goes to those ``onward_portions`` says got that portion, with what they hold of it."""
    row = duties.kernel.store.item_of(duties.party, item)
    if row is None or row.label_version != version:
        return
    change_row = next((c for c in duties.db.label_changes(item) if c.version == version), None)
    if change_row is None:
        return
    change = LabelChange(
        item,
        duties.party,
        version,
        ChangeKind(change_row.kind),
        change_row.classification,
        change_row.reason,
        from_us(change_row.at_us),
    )
    origin = None
    if change.kind is ChangeKind.RECLASSIFY and row.origin_jws is not None:
        origin = duties.kernel.cipher.open(row.id, row.label, row.origin_jws).decode()
    portion = kept_content(change_row.jws).get("portion")
    signed = {p.id: p for p in duties.kernel.items.signed(row)[1]} if isinstance(portion, str) else {}
    for party in parties:
        if duties.exchange.peer(via) is None or party not in duties.kernel.catalogue.parties:
            continue
        told = None
        if isinstance(portion, str):
            ids = [i for i in (onward_portions or {}).get(party, ()) if i in signed]
            if portion not in ids:
                continue  # that party did not get the portion changed
            told = PortionChange(
                portion,
                ()  # a recall: the holder drops the portion, and needs nothing of the rest
                if change.kind is ChangeKind.RECALL
                else tuple(
                    HeldPortion(
                        i,
                        signed[i].index,
                        label_to_dict(signed[i].label),
                        tuple(h.hex() for h in signed[i].proof),
                    )
                    for i in sorted(ids, key=lambda i: signed[i].index)
                ),
            )
        content = change_content(change, origin, party, told)
        accepted.outbox.append(duties._duty(party, via, content, item, now))
        accepted.ops.append(
            duties.db.put("label_acks", LabelAckRow(item, version, party, "pending", None, None))
        )


def _destruction(duties: Duties, signer: str, data: dict[str, Any], jws: str, accepted: Batch) -> str:
    record = parse_destruction(data)
    if signer != record.holder:
        raise InvalidInputError(f"a destruction record signed by {signer} speaks for {record.holder}")
    if record.originator != duties.party:
        raise InvalidInputError(f"a destruction record of a {record.originator} item sent to {duties.party}")
    _check_holder(duties, record.item, record.holder, parse_sources(data, "destruction-record"))
    portion = data.get("portion")
    if portion is not None:
        if not isinstance(portion, str) or not PORTION_ID.match(portion):
            raise InvalidInputError("destruction-record.portion: expected a portion id")
        _check_portion_sent(duties, record.item, portion, record.holder)
        kept = PortionDestructionRow(
            record.item,
            portion,
            record.holder,
            epoch_us(record.at),
            record.by,
            record.witness,
            record.method.value,
            jws,
        )
        accepted.ops.append(
            duties.db.put("portion_destructions", kept, replace_keys=("item_id", "portion", "holder"))
        )
        return "recorded"
    row = DestructionRow(
        record.item, record.holder, epoch_us(record.at), record.by, record.witness, record.method.value, jws
    )
    accepted.ops.append(duties.db.put("destructions", row, replace_keys=("item_id", "holder")))
    return "recorded"


def _destruction_request(
    duties: Duties, exchange: Exchange, signer: str, data: dict[str, Any], now: datetime, accepted: Batch
) -> str:
    """The originator asks for this node's destruction record: sent back if the item was destroyed."""
    item, originator, holder = parse_destruction_request(data)
    if signer != originator or holder != duties.party:
        raise InvalidInputError(
            f"a destruction request signed by {signer} for {holder} about {originator}'s item"
        )
    row = duties.kernel.store.item_of(originator, item)  # an item is (originator, id)
    if row is None:
        return "not-held"
    saved = duties.db.destruction(row.id, duties.party)
    if saved is None:
        return "not-destroyed"
    hop = row.received_from or originator
    peer = exchange.peer(hop)
    if peer is None:
        raise AgreementError(f"no registered link with {hop} to send the destruction record")
    body = {"kind": DUTY_KIND, "to": originator, "duty": saved.jws}
    accepted.outbox.append(exchange.queue(peer, body, DUTY_KIND, row.id, now, final_recipient=originator))
    accepted.ops.append(duties.db.mark_sent(row.id, duties.party, epoch_us(now)))
    return "record-sent"


def _incident(
    duties: Duties, signer: str, data: dict[str, Any], jws: str, now: datetime, accepted: Batch
) -> str:
    investigation = parse_incident(data)
    if signer != investigation.holder:
        raise InvalidInputError(f"an incident report signed by {signer} speaks for {investigation.holder}")
    if investigation.originator != duties.party:
        raise InvalidInputError(f"an incident about a {investigation.originator} item sent to {duties.party}")
    _check_holder(duties, investigation.item, investigation.holder, parse_sources(data, "incident"))
    known = duties.db.incident(investigation.id)
    signed = [jws]
    if known is not None:
        if known.holder != investigation.holder:
            raise InvalidInputError(f"incident {investigation.id} belongs to {known.holder}")
        before = json.loads(known.steps)
        same = (known.item_id, known.nature) == (investigation.item, investigation.nature.value)
        if not same or steps_json(investigation)[: len(before)] != before:
            raise InvalidInputError(
                f"incident {investigation.id}: a later report may only add steps, not change the item, "
                "the nature or the steps recorded"
            )
        if len(before) >= len(investigation.steps):
            return "already-recorded"
        signed = [*signed_steps(known.jws), jws]
    row = _incident_row(investigation, json.dumps(signed), now)
    accepted.ops.append(duties.db.put("incidents", row, replace_keys=("id",)))
    return investigation.state.value


def _feedback(
    duties: Duties, signer: str, data: dict[str, Any], jws: str, now: datetime, accepted: Batch
) -> str:
    """A holder's feedback about this node's item: kept with its signature, bounded per item and holder.
    Only from a holder the item went to; the same feedback again changes nothing; another with the
    same id from that holder is refused."""
    feedback = parse_feedback(data)
    if signer != feedback.holder:
        raise InvalidInputError(f"feedback signed by {signer} speaks for {feedback.holder}")
    if feedback.originator != duties.party:
        raise InvalidInputError(f"feedback about a {feedback.originator} item sent to {duties.party}")
    row = duties.kernel.store.item_of(duties.party, feedback.item)
    if row is None:
        raise InvalidInputError(f"no item {feedback.item} of {duties.party} to take feedback on")
    _check_sent(duties, feedback.item, feedback.holder)
    known = duties.db.feedback_entry(feedback.holder, feedback.id)
    if known is not None:
        if (known.item_id, known.kind, known.text) != (feedback.item, feedback.kind.value, feedback.text):
            raise InvalidInputError(
                f"feedback {feedback.id} from {feedback.holder} is already recorded otherwise"
            )
        return "already-recorded"
    if duties.db.feedback_count(feedback.item, feedback.holder) >= MAX_PER_ITEM:
        raise InvalidInputError(
            f"at most {MAX_PER_ITEM} feedback from {feedback.holder} about {feedback.item}"
        )
    accepted.ops.append(duties.db.put("feedback", feedback_row(feedback, jws, epoch_us(now))))
    return "recorded"


def _check_holder(duties: Duties, item_id: str, holder: str, sources: tuple[str, ...]) -> None:
    """A record about this node's item from ``holder`` is accepted only if the item went to ``holder``
    (directly, through a hub, or onward by a holder that said so). One about an item not known here
    (a copy or derivative the holder made) must name the items of this node it was made from, and
    each of them must have gone to ``holder``: a record about anything else is refused."""
    row = duties.kernel.store.item_of(duties.party, item_id)  # an item of this node's, by its id
    if row is not None:
        _check_sent(duties, item_id, holder)
        return
    if not sources:
        raise InvalidInputError(
            f"item {item_id} is not an item of {duties.party}, and the record names none of "
            f"{duties.party}'s items it was made from"
        )
    for source in sources:
        _check_sent(duties, source, holder)


def _check_portion_sent(duties: Duties, item_id: str, portion: str, holder: str) -> None:
    """A record about one portion of this node's item: the portion went to ``holder`` (this node's
    release to it, directly or through a hub). A holder this node reached only through another
    holder's onward release names a portion of the item (this node never saw which it got)."""
    row = duties.kernel.store.item_of(duties.party, item_id)
    if row is None or row.portions is None:
        raise InvalidInputError(f"item {item_id} here is not in portions")
    sent: set[str] = set()
    reached = False
    for entry in duties.kernel.fed.item_messages(item_id):
        if holder in (entry.recipient, entry.final_recipient) and entry.state != "undeliverable":
            reached = True
            sent |= set(json.loads(entry.request or "{}").get("portions") or ())
    known = {m.id for m in duties.kernel.items.item(row).portions}
    if portion not in (sent if reached else known):
        raise InvalidInputError(f"portion {portion} of item {item_id} was never sent to {holder}")


def _check_sent(duties: Duties, item_id: str, holder: str) -> None:
    row = duties.kernel.store.item_of(duties.party, item_id)
    if row is None:
        raise InvalidInputError(f"item {item_id} here is not an item of {duties.party}")
    holders = {p for pair in duties.db.sent_to(item_id) for p in pair}
    holders |= {a.party for a in duties.db.acks(item_id)}
    if holder not in holders:
        raise InvalidInputError(f"item {item_id} was never sent to {holder}")
