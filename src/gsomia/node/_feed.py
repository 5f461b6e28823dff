"""The live feed of what changed: items arriving, label changes, recalls, destructions, each
decided for the reader who follows it (issue 20 §5).

The store is the source: every such change is an audit record written in the transaction that made
it, so any process of the node serves the same feed, and a reader resumes after the last event id
it saw (the record's sequence number). The dashboard's flows follow it too: an envelope sent,
received or refused is a ``flow`` event, the record as the flows page draws it, for a reader who
may read the audit records (security officers, administrators) and for no one else, so a refusal's
detail never reaches an analyst; a signed tree head is a ``tree-head`` event (public, as
``GET /audit/head`` is), resumed after the last head's size.

Each item's event is decided with the node's one read decision (the item's label as it is now, the
reader's clearance, need-to-know, nationality and visit window), exactly as a read of the item
would be: an event about an item the reader may not read is skipped without a trace. The cursor
still moves past what was skipped, so a page never stalls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gsomia._present import flow_view
from gsomia.audit import FLOW_KINDS, AuditLog
from gsomia.core.access import Person
from gsomia.errors import AuthenticationError, InvalidInputError
from gsomia.kernel import NodeContext, ReadGate
from gsomia.store import AuditRow, HeadRow

__all__ = ["EVENT_TYPES", "FEED_KINDS", "Feed", "FeedEvent", "FeedFilter", "FlowEvent", "HeadEvent"]

# The audit record kinds the feed follows, and the event each one is to a reader.
FEED_KINDS: dict[str, str] = {
    "item.ingest": "ingested",  # entered at this node by one of its people
    "envelope.received": "arrived",  # arrived from a partner node
    "item.derive": "derived",  # a copy, translation or derivative made here
    "item.reclassify": "label-changed",  # the originator's new level, applied here
    "duty.label-change": "label-changed",  # a partner's (the originator's) label change, applied here
    "duty.label-change.applied-on-arrival": "label-changed",
    "item.recall": "recalled",
    "item.recall-portion": "portion-recalled",  # the originator recalled one portion from its holders
    "item.destroy": "destroyed",
    "item.destroy-portion": "portion-destroyed",  # one portion of an item in portions, the rest held
    "item.rederive": "label-changed",  # a copy that lost a portion its source lost: its label re-derived
}
FLOW = "flow"  # an envelope sent, received or refused (audit readers only)
TREE_HEAD = "tree-head"  # a signed tree head of this node's audit log
PORTION_RECALLED = "portion-recalled"  # one portion recalled, the rest still held
EVENT_TYPES = frozenset({*FEED_KINDS.values(), "recalled", PORTION_RECALLED, FLOW, TREE_HEAD})
SCAN = 1000  # audit records read per page, at most
MAX_FILTER = 50  # values per filter


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """What a reader follows: empty means any. Topics, originators and agreements select items: a
    reader who names any follows those items' events alone (no flows, no tree heads)."""

    topics: frozenset[str] = frozenset()
    originators: frozenset[str] = frozenset()
    agreements: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("topics", "originators", "agreements", "types"):
            if len(getattr(self, name)) > MAX_FILTER:
                raise InvalidInputError(f"{name}: at most {MAX_FILTER} values")
        unknown = sorted(self.types - EVENT_TYPES)
        if unknown:
            raise InvalidInputError(
                f"type: no event type {unknown[0]!r} (one of {', '.join(sorted(EVENT_TYPES))})"
            )

    def wants(self, kind: str) -> bool:
        """Whether events of type ``kind`` are followed."""
        return not self.types or kind in self.types

    @property
    def items_only(self) -> bool:
        return bool(self.topics or self.originators or self.agreements)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One change, as the reader it was decided for may see it."""

    id: int  # the audit record's sequence number: resume after it
    type: str
    item: str
    at: datetime
    originator: str
    classification: str
    topics: tuple[str, ...]
    agreement: str | None
    state: str  # the item's state now: held, recalled or destroyed

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "item": self.item,
            "at": self.at.isoformat(),
            "originator": self.originator,
            "classification": self.classification,
            "topics": list(self.topics),
            "agreement": self.agreement,
            "state": self.state,
        }


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """An envelope sent, received or refused, as the dashboard's flows page draws it (the reason
    included): for readers of the audit records alone."""

    id: int  # the audit record's sequence number: resume after it
    at: datetime
    flow: dict[str, Any]

    type = FLOW

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": FLOW, "at": self.at.isoformat(), "flow": self.flow}


@dataclass(frozen=True, slots=True)
class HeadEvent:
    """A signed tree head of the node's audit log (resume after its ``size``)."""

    size: int
    root: str
    at: datetime
    jws: str

    type = TREE_HEAD

    @classmethod
    def of(cls, head: HeadRow) -> HeadEvent:
        return cls(head.size, head.root.hex(), datetime.fromtimestamp(head.at_us / 1e6, UTC), head.jws)

    def as_json(self) -> dict[str, Any]:
        return {
            "type": TREE_HEAD,
            "size": self.size,
            "root": self.root,
            "at": self.at.isoformat(),
            "jws": self.jws,
        }


class Feed:
    """Pages of the feed for one reader at a time, over the node's kernel and audit log."""

    def __init__(self, kernel: NodeContext, audit: AuditLog) -> None:
        self.kernel = kernel
        self.audit = audit

    def head(self) -> int:
        """The newest audit record's sequence number: a reader starting now follows from here."""
        return self.kernel.store.last_audit_seq()

    def head_size(self) -> int:
        """The size of the latest signed tree head (0: none yet): tree heads from now on follow it."""
        latest = self.audit.latest_head()
        return 0 if latest is None else latest.size

    def _reader(self, actor: Person) -> Person:
        person = self.kernel.person(actor.id)  # as the store has them now: a disabled person stops
        if not person.active:
            raise AuthenticationError(f"{actor.id} is disabled")
        return person

    def page(
        self, actor: Person, after: int, only: FeedFilter = FeedFilter(), *, limit: int = 100
    ) -> tuple[list[FeedEvent | FlowEvent], int]:
        """The events after ``after`` that ``actor`` may see (at most ``limit``), and the cursor to
        ask from next (past what was skipped). Flows only to a reader of the audit records, asked
        afresh on every page (a security officer who loses the role stops receiving them)."""
        if after < 0:
            raise InvalidInputError("after: a sequence number, 0 or more")
        person = self._reader(actor)
        items = any(only.wants(t) for t in EVENT_TYPES - {FLOW, TREE_HEAD})
        flows = only.wants(FLOW) and not only.items_only and self.audit.may_read(person)
        kinds = (*(FEED_KINDS if items else ()), *(FLOW_KINDS if flows else ()))
        if not kinds:
            return [], max(after, self.head())
        gate = self.kernel.reader(person)
        rows = self.kernel.store.audit_of_kinds(tuple(dict.fromkeys(kinds)), after_seq=after, limit=SCAN)
        events: list[FeedEvent | FlowEvent] = []
        cursor = after
        for row in rows:
            found: list[FeedEvent | FlowEvent] = []
            if items and row.kind in FEED_KINDS:
                event = self._event(row, gate, only)
                if event is not None and only.wants(event.type):
                    found.append(event)
            if flows and row.kind in FLOW_KINDS:
                found.append(FlowEvent(row.seq, datetime.fromtimestamp(row.at_us / 1e6, UTC), flow_view(row)))
            if found and events and len(events) + len(found) > limit:
                break  # a record's events go together: the next page starts at it
            events += found
            cursor = row.seq
            if len(events) >= limit:
                break
        return events, cursor

    def heads(
        self, actor: Person, after: int, only: FeedFilter = FeedFilter(), *, limit: int = 100
    ) -> list[HeadEvent]:
        """The signed tree heads over more than ``after`` records (any active reader: a head is
        public), smallest first."""
        if after < 0:
            raise InvalidInputError("head: a tree size, 0 or more")
        self._reader(actor)
        if not only.wants(TREE_HEAD) or only.items_only:
            return []
        return [HeadEvent.of(h) for h in self.audit.heads_after(after, limit)]

    def _event(self, row: AuditRow, gate: ReadGate, only: FeedFilter) -> FeedEvent | None:
        if row.outcome != "allowed" or not row.subject:
            return None
        stored = self.kernel.store.get_item(row.subject)
        kind = _type(row)
        if stored is None or kind is None:
            return None
        # the reader's view (of an item in portions: the portions they may read, under their label)
        item = gate.view(self.kernel.items.item(stored)).item
        if item is None:
            return None
        label = item.label
        if only.originators and label.originator not in only.originators:
            return None
        if only.topics and not (label.topics & only.topics):
            return None
        if only.agreements and item.agreement not in only.agreements:
            return None
        return FeedEvent(
            row.seq,
            kind,
            item.id,
            datetime.fromtimestamp(row.at_us / 1e6, UTC),
            label.originator,
            label.classification,
            tuple(sorted(label.topics)),
            item.agreement,
            stored.state,
        )


def _type(row: AuditRow) -> str | None:
    """The change's type: a partner's label change that withdrew the item here is a recall; one that
    recalled one portion and left the rest held is a portion's recall (not a label change, though the
    banner may follow what is left); one that changed nothing here (kept for an item not yet held,
    or for a portion the item did not carry) is no event."""
    kind = FEED_KINDS[row.kind]
    if row.kind == "item.rederive":  # withdrawn with its source's portion, or relabelled without it
        state = json.loads(row.detail).get("state")
        return state if state in ("recalled", "destroyed") else kind
    if row.kind.startswith("duty.label-change"):
        detail = json.loads(row.detail)
        if detail.get("result") == "withdrawn":
            return "recalled"
        if detail.get("result") == "not-held":
            return None
        if detail.get("change") == "recall" and detail.get("portion") is not None:
            return PORTION_RECALLED
    return kind
