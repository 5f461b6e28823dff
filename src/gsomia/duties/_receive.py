"""Duty messages arriving over the exchange: applied here, passed on by a hub, acknowledged.

The handler the duties register for the inbox's ``duty`` messages (``Duties.receive``); what it
writes goes into the same transaction as the inbox row (the exchange's :class:`Batch`), so a
message id seen before changes nothing (exactly-once). The inner content is verified against
the signer's published key before anything else, by a hub too; a signer who does not speak
for the duty is refused.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from gsomia._codec import canonical, label_to_dict
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.core.recall import ChangeKind, LabelChange
from gsomia.crypto.envelope import Opened, sign_origin, verify_origin
from gsomia.duties._incidents import _incident_row
from gsomia.duties._labels import _Labels as Duties
from gsomia.duties._messages import (
    DUTY_KIND,
    ack_content,
    parse_ack,
    parse_change,
    parse_destruction,
    parse_destruction_request,
    parse_duty,
    parse_incident,
)
from gsomia.errors import AgreementError, InvalidInputError, LabelError
from gsomia.exchange import Batch, Exchange
from gsomia.kernel import parse_item_content
from gsomia.store import DestructionRow, InboxRow, LabelChangeRow

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
        _check_relay(duties, signer, to, kind, item)
        peer = exchange.peer(to)
        if peer is None:
            raise AgreementError(f"cannot pass a duty message on to {to}: no registered link")
        accepted.outbox.append(exchange.queue(peer, body, DUTY_KIND, item, now, final_recipient=to))
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
    else:
        raise InvalidInputError(f"unknown duty {kind!r}")
    return _recorded(exchange, opened, item, "recorded", now, accepted, f"duty.{kind}", signer, result=status)


def _check_relay(duties: Duties, signer: str, to: str, kind: str, item: str | None) -> None:
    """Pass a duty message on only as a hub an agreement names between ``signer`` and ``to``, and
    only about an item this node relayed between them: the message follows the path the item was
    addressed by. Raises :class:`AgreementError` otherwise (the inbox refuses and audits it)."""
    me = duties.party
    if not any(a.relays(signer, me, to) for a in duties.kernel.catalogue.agreements_of(me)):
        raise AgreementError(f"no agreement names {me} as a hub between {signer} and {to}: it relays nothing")
    if item is None:
        raise AgreementError(f"a hub carries only duties about an item it relayed; this {kind} names none")
    row = duties.kernel.store.get_item(item)
    originator = None if row is None else row.originator
    for entry in duties.kernel.fed.item_messages(item):
        route = json.loads(entry.request or "{}")
        if route.get("via") == [me] and {signer, to} <= {
            route.get("sender"),
            route.get("recipient"),
            originator,
        }:
            return
    raise AgreementError(
        f"{me} relayed no item {item!r} between {signer} and {to}: its {kind} does not pass here"
    )


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
    """A holder applies the originator's change to the item and its copies, passes it on, acknowledges."""
    kernel = duties.kernel
    change, origin = parse_change(data)
    if signer != change.originator:
        raise InvalidInputError(f"a label change signed by {signer} speaks for {change.originator}")
    row = kernel.store.get_item(change.item)
    copies = 0
    onward: set[str] = set()
    upstream = row.received_from if row is not None else None
    if row is None and change.item in accepted.item_ids:  # the item arrived in this very batch
        status = _apply_to_arriving(duties, change, origin, exchange, now, accepted)
        onward = {e.recipient for e in accepted.outbox if e.kind == "item" and e.item_id == change.item}
        upstream = next(n.received_from for n in accepted.items if n.id == change.item)
    elif row is None:
        status = "not-held"
    elif row.originator != change.originator:
        raise InvalidInputError(f"item {change.item} here was not originated by {change.originator}")
    elif row.state != "held":
        status = row.state
    elif change.version <= row.label_version:
        status = "already-applied"
    else:
        new_label = None
        if change.kind is ChangeKind.RECLASSIFY:
            new_label = _signed_label(change, origin, exchange, now)
            if new_label[1] != kernel.cipher.open(row.id, row.label, row.payload):
                raise InvalidInputError("the signed item's payload differs from the one held here")
        ops, touched, withdrawn, after = duties._apply(
            row, change, None if new_label is None else new_label[0], origin
        )
        resealed, _ = duties._pending_releases(after, change.item, now)
        copies = len(touched) - 1
        status = "withdrawn" if withdrawn else "applied"
        accepted.ops += ops + resealed
        # in flight first, then delivered: an entry settled in between is seen in one or the other
        in_flight = {e.recipient for e in duties.db.pending_releases(change.item)}
        onward = in_flight | {hop for hop, _ in duties.db.sent_to(change.item)}
    if status in ("applied", "withdrawn"):
        accepted.ops.append(
            duties.db.put(
                "label_changes",
                LabelChangeRow(
                    change.item,
                    change.version,
                    change.kind.value,
                    change.classification,
                    change.reason,
                    epoch_us(change.at),
                    jws,
                    epoch_us(now),
                ),
            )
        )
        for hop in sorted(onward - {opened.sender}):
            peer = exchange.peer(hop)
            if peer is not None:
                accepted.outbox.append(
                    exchange.queue(
                        peer, {"kind": DUTY_KIND, "to": hop, "duty": jws}, DUTY_KIND, change.item, now
                    )
                )
    upstream = upstream or opened.sender
    peer = exchange.peer(upstream)
    if peer is None:
        raise AgreementError(f"no registered link with {upstream} to acknowledge the change")
    ack = sign_origin(
        exchange.ring, ack_content(change.item, change.version, exchange.party, status, copies, now), now
    )
    body = {"kind": DUTY_KIND, "to": change.originator, "duty": ack}
    accepted.outbox.append(
        exchange.queue(peer, body, DUTY_KIND, change.item, now, final_recipient=change.originator)
    )
    return status


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
) -> str:
    """The change applies to an item stored by the same batch: rewrite it before it is written."""
    kernel = duties.kernel
    index = next(i for i, n in enumerate(accepted.items) if n.id == change.item)
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
        held = kernel.items.received_label(label, arriving.received_from, arriving.agreement)
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
    item, version, holder, status, copies, at = parse_ack(data)
    if signer != holder:
        raise InvalidInputError(f"an acknowledgement signed by {signer} speaks for {holder}")
    detail = canonical({"status": status, "copies": copies, "at": at.isoformat()})
    accepted.ops.append(duties.db.ack(item, version, holder, status, epoch_us(now), detail))
    return status


def _destruction(duties: Duties, signer: str, data: dict[str, Any], jws: str, accepted: Batch) -> str:
    record = parse_destruction(data)
    if signer != record.holder:
        raise InvalidInputError(f"a destruction record signed by {signer} speaks for {record.holder}")
    if record.originator != duties.party:
        raise InvalidInputError(f"a destruction record of a {record.originator} item sent to {duties.party}")
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
    row = duties.kernel.store.get_item(item)
    if row is None or row.originator != originator:
        return "not-held"
    saved = duties.db.destruction(item, duties.party)
    if saved is None:
        return "not-destroyed"
    hop = row.received_from or originator
    peer = exchange.peer(hop)
    if peer is None:
        raise AgreementError(f"no registered link with {hop} to send the destruction record")
    body = {"kind": DUTY_KIND, "to": originator, "duty": saved.jws}
    accepted.outbox.append(exchange.queue(peer, body, DUTY_KIND, item, now, final_recipient=originator))
    accepted.ops.append(duties.db.mark_sent(item, duties.party, epoch_us(now)))
    return "record-sent"


def _incident(
    duties: Duties, signer: str, data: dict[str, Any], jws: str, now: datetime, accepted: Batch
) -> str:
    investigation = parse_incident(data)
    if signer != investigation.holder:
        raise InvalidInputError(f"an incident report signed by {signer} speaks for {investigation.holder}")
    if investigation.originator != duties.party:
        raise InvalidInputError(f"an incident about a {investigation.originator} item sent to {duties.party}")
    known = duties.db.incident(investigation.id)
    if known is not None:
        if known.holder != investigation.holder:
            raise InvalidInputError(f"incident {investigation.id} belongs to {known.holder}")
        if len(json.loads(known.steps)) >= len(investigation.steps):
            return "already-recorded"
    row = _incident_row(investigation, jws, now)
    accepted.ops.append(duties.db.put("incidents", row, replace_keys=("id",)))
    return investigation.state.value
