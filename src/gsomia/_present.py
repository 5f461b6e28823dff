"""The one presenter: how an item, a peer, an outbox entry, an audit record, a token, a
consent request, an equivalence change and a relay route look as JSON, the same in the API, the
CLI's ``--json``, the dashboard and the stream's records.

Each function turns one value the services return into a JSON-ready dict and decides nothing: who
may see it was decided by the service that returned it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gsomia._codec import label_to_dict
from gsomia.core.labels import SecurityLabel
from gsomia.core.relay import RelayPlan, Route
from gsomia.crypto.keys import PeerIdentity
from gsomia.kernel import Item
from gsomia.store import (
    EVERY_PARTNER,
    AuditRow,
    ConsentRequestRow,
    EnvelopeVersionRow,
    EquivalenceChangeRow,
    InventoryRow,
    OutboxRow,
    ReleaseRequestRow,
    ScheduledRow,
    TokenRow,
)

__all__ = [
    "audit_view",
    "envelope_versions_view",
    "equivalence_change_view",
    "flow_view",
    "inventory_view",
    "item_view",
    "outbox_view",
    "peer_view",
    "plan_view",
    "release_request_view",
    "request_view",
    "route_view",
    "scheduled_view",
    "token_view",
]


def _utc(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC).isoformat()


# A label's JSON, written once per label object: the store parses each stored label once
# (``ItemRules.stored_label``), so the items of a page that share a label share the object, and their
# views one dict (which nothing changes: views are written out as JSON or validated, never edited).
# Keyed by the object's id, the object kept beside its dict: an id reused after the label is gone
# does not match. Bounded: emptied when full, as the store's label cache is.
_LABEL_VIEWS: dict[int, tuple[SecurityLabel, dict[str, Any]]] = {}
_LABEL_VIEWS_LIMIT = 4096


def _label_view(label: SecurityLabel) -> dict[str, Any]:
    held = _LABEL_VIEWS.get(id(label))
    if held is not None and held[0] is label:
        return held[1]
    if len(_LABEL_VIEWS) >= _LABEL_VIEWS_LIMIT:
        _LABEL_VIEWS.clear()
    view = label_to_dict(label)
    _LABEL_VIEWS[id(label)] = (label, view)
    return view


def item_view(item: Item, payload: bytes | None = None) -> dict[str, Any]:
    """An item's metadata; with ``payload`` (what a read returned), the payload too: JSON as JSON,
    bytes as ``payload_base64``. An item in portions lists the portions the reader may read
    (``portions``: id and label each), and its payload is ``{"portions": [...]}`` of those alone."""
    out: dict[str, Any] = {
        "id": item.id,
        "label": _label_view(item.label),
        "received_from": item.received_from,
        "agreement": item.agreement,
        "ingested": item.ingested.isoformat(),
        "ingested_by": item.ingested_by,
        "payload_type": item.payload_type,
        "payload_size": item.payload_size,
    }
    if item.origin_id is not None:  # the originator's id, where this node's reference is not it
        out["origin_id"] = item.origin_id
    if item.portions:  # only the portions the reader may read: the service decided which
        out["portions"] = [{"id": m.id, "label": _label_view(m.label)} for m in item.portions]
    if payload is not None:
        if item.payload_type in ("json", "portions"):
            out["payload"] = json.loads(payload)
        else:
            out["payload_base64"] = base64.b64encode(payload).decode()
    return out


def inventory_view(row: InventoryRow) -> dict[str, Any]:
    """One line of an item's inventory: where it came from, a copy, where it went."""
    return {
        "at": _utc(row.at_us),
        "kind": row.kind,
        "party": row.party,
        "actor": row.actor,
        "detail": json.loads(row.detail),
    }


def peer_view(peer: PeerIdentity, agreements: Iterable[str]) -> dict[str, Any]:
    """A registered partner node and the agreements its link serves."""
    return {
        "party": peer.party,
        "node": peer.node,
        "endpoint": peer.endpoint,
        "agreements": sorted(agreements),
        "keys": [k.kid for k in peer.keys],
    }


def outbox_view(row: OutboxRow, decisions: dict[str, Any] | None = None) -> dict[str, Any]:
    """An outbox entry: where it goes, its state and attempts, why it failed, its receipt, and the
    decision it was released under. ``decisions``: the decisions read so far for a list of entries,
    by their text (a selection's items share one decision: read once, not once an entry)."""
    if decisions is None:
        decision = json.loads(row.decision)
    else:
        decision = decisions.get(row.decision)
        if decision is None:
            decision = decisions[row.decision] = json.loads(row.decision)
    return {
        "msg_id": row.msg_id,
        "kind": row.kind,
        "item_id": row.item_id,
        "recipient": row.recipient,
        "final_recipient": row.final_recipient,
        "state": row.state,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "receipt": row.receipt,
        "decision": decision,
    }


def audit_view(row: AuditRow) -> dict[str, Any]:
    """An audit record, its place in the log (entry id, leaf index once integrated) and its detail."""
    return {
        "seq": row.seq,
        "entry_id": row.entry_id,
        "leaf_index": row.leaf_index,
        "at": _utc(row.at_us),
        "at_us": row.at_us,
        "kind": row.kind,
        "actor": row.actor,
        "subject": row.subject,
        "outcome": row.outcome,
        "detail": json.loads(row.detail),
    }


def flow_view(row: AuditRow) -> dict[str, Any]:
    """An envelope's flow as the dashboard draws it, from its audit record: sent, received or
    refused, to or from which peer, and why (the reason recorded, or the checks that failed)."""
    detail = json.loads(row.detail)
    if row.outcome == "refused":
        direction = "refused"
    elif row.kind in ("envelope.received", "envelope.duplicate"):
        direction = "received"
    else:
        direction = "sent"
    reason = detail.get("reason") or detail.get("error") or ""
    decision = detail.get("decision")
    if isinstance(decision, dict):
        failed = [c["reason"] for c in decision.get("checks", []) if not c.get("passed")]
        reason = (
            reason
            or "; ".join(failed)
            or (f"under {decision.get('agreement')}" if decision.get("agreement") else "")
        )
    return {
        "seq": row.seq,
        "at": _utc(row.at_us),
        "kind": row.kind,
        "direction": direction,
        "actor": row.actor,
        "item": row.subject,
        "peer": detail.get("peer") or detail.get("recipient") or detail.get("to") or row.actor,
        "msg_id": detail.get("msg_id"),
        "status": detail.get("status"),
        "reason": reason,
    }


def token_view(row: TokenRow) -> dict[str, Any]:
    """A token or dashboard session, never its secret."""
    return {
        "id": row.id,
        "kind": row.kind,
        "created": _utc(row.created_us),
        "expires": _utc(row.expires_us),
        "revoked": _utc(row.revoked_us),
        "minted_by": row.parent_id,
    }


def request_view(row: ConsentRequestRow) -> dict[str, Any]:
    """A request for the originator's consent to pass an item on, and its answer."""
    return {
        "id": row.id,
        "item_id": row.item_id,
        "originator": row.originator,
        "holder": row.holder,
        "third_party": row.third_party,
        "purpose": row.purpose,
        "reason": row.reason,
        "state": row.state,
        "answer": row.answer,
    }


def route_view(route: Route) -> dict[str, Any]:
    """One recipient's route: allowed or not, direct or through a hub, the agreement, and every
    check that failed on the way to the answer."""
    return {
        "recipient": route.recipient,
        "allowed": route.allowed,
        "route": route.name if route.allowed else None,
        "agreement": route.decision.agreement,
        "failed": [f"{c.rule}: {c.reason}" for d in (route.refused or (route.decision,)) for c in d.failed()],
    }


def plan_view(plan: RelayPlan) -> dict[str, Any]:
    """Every recipient's route at an instant, and until when that decision holds."""
    return {
        "at": plan.at.isoformat(),
        "valid_until": None if plan.valid_until is None else plan.valid_until.isoformat(),
        "routes": [route_view(r) for r in plan.routes],
    }


def release_request_view(row: ReleaseRequestRow) -> dict[str, Any]:
    """A two-person release request: route, purpose, who asked, why two officers, its state."""
    spec = json.loads(row.spec)
    label = json.loads(row.label)
    return {
        "id": row.id,
        "item_id": row.item_id,
        "originator": label["originator"],
        "classification": label["classification"],
        "route": [spec["sender"], *spec["via"], spec["recipient"]],
        "purpose": spec["purpose"],
        "authorise_relay": bool(spec["authorise_relay"]),
        "requester": row.requester,
        "state": row.state,
        "needs": row.reason,
        "requested_at": _utc(row.requested_us),
        "expires_at": _utc(row.expires_us),
        "decided_by": row.decided_by,
        "decided_at": _utc(row.decided_us),
        "note": row.note,
        "msg_id": row.msg_id,
        # an item in portions: the portions the approval releases (and no other)
        "portions": [p["id"] for p in spec["portions"]] if spec.get("portions") else None,
    }


def scheduled_view(row: ScheduledRow) -> dict[str, Any]:
    """A scheduled downgrade: the item, the level, when, by whom, and what became of it."""
    return {
        "id": row.id,
        "item_id": row.item_id,
        "classification": row.classification,
        "at": _utc(row.at_us),
        "reason": row.reason,
        "scheduled_by": row.scheduled_by,
        "state": row.state,
        "done_at": _utc(row.done_us),
        "note": row.note,
    }


def equivalence_change_view(row: EquivalenceChangeRow) -> dict[str, Any]:
    """A party's equivalence change as this node holds it: what it remaps from when (``applies``:
    when it applies here, later than ``effective`` only if it arrived after that), and whose it is
    (``received_from`` is ``None`` for this node's own, proposed by ``proposed_by``)."""
    change = json.loads(row.change)
    return {
        "agreement": row.agreement,
        "party": row.party,
        "sequence": row.sequence,
        "effective": _utc(row.effective_us),
        "applies": _utc(row.applies_us),
        "remaps": change["remaps"],
        "reason": change["reason"],
        "proposed_at": change["proposed_at"],
        "proposed_by": row.proposed_by,
        "received_from": row.received_from,
        "recorded": _utc(row.recorded_us),
    }


def envelope_versions_view(
    rows: Iterable[EnvelopeVersionRow], floors: dict[str, int]
) -> list[dict[str, Any]]:
    """The envelope versions this node opens, one view a row by party (``all``: every partner):
    the stored ``lowest`` and, as ``effective``, the lowest the inbox in fact opens from that party now
    (``floors``, the exchange's ``envelope_floors``); ``since`` (``pending``: a cut-off still ahead),
    ``cause`` (``sent``: raised by the partner's own COSE; ``set``: by ``by``)."""
    return [
        {
            "party": "all" if row.party == EVERY_PARTNER else row.party,
            "lowest": row.lowest,
            "effective": floors[row.party],
            "since": _utc(row.since_us),
            "pending": row.pending,
            "cause": row.cause,
            "by": row.by,
        }
        for row in sorted(rows, key=lambda r: r.party)
    ]
