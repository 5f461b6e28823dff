"""The live feed of what changed: items arriving, label changes, recalls, destructions, each
decided for the reader who follows it (issue 20 §5).

The store is the source: every such change is an audit record written in the transaction that made
it, so any process of the node serves the same feed, and a reader resumes after the last event id
it saw (the record's sequence number). Each event is decided with the node's one read decision
(the item's label as it is now, the reader's clearance, need-to-know, nationality and visit
window), exactly as a read of the item would be: an event about an item the reader may not read is
skipped without a trace. The cursor still moves past what was skipped, so a page never stalls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gsomia.core.access import Person
from gsomia.errors import AuthenticationError, InvalidInputError
from gsomia.kernel import NodeContext, ReadGate
from gsomia.store import AuditRow

__all__ = ["FEED_KINDS", "Feed", "FeedEvent", "FeedFilter"]

# The audit record kinds the feed follows, and the event each one is to a reader.
FEED_KINDS: dict[str, str] = {
    "item.ingest": "ingested",  # entered at this node by one of its people
    "envelope.received": "arrived",  # arrived from a partner node
    "item.derive": "derived",  # a copy, translation or derivative made here
    "item.reclassify": "label-changed",  # the originator's new level, applied here
    "duty.label-change": "label-changed",  # a partner's (the originator's) label change, applied here
    "duty.label-change.applied-on-arrival": "label-changed",
    "item.recall": "recalled",
    "item.destroy": "destroyed",
    "item.destroy-portion": "portion-destroyed",  # one portion of an item in portions, the rest held
}
SCAN = 1000  # audit records read per page, at most
MAX_FILTER = 50  # values per filter


@dataclass(frozen=True, slots=True)
class FeedFilter:
    """What a reader follows: empty means any."""

    topics: frozenset[str] = frozenset()
    originators: frozenset[str] = frozenset()
    agreements: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("topics", "originators", "agreements"):
            if len(getattr(self, name)) > MAX_FILTER:
                raise InvalidInputError(f"{name}: at most {MAX_FILTER} values")


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


class Feed:
    """Pages of the feed for one reader at a time, over the node's kernel."""

    def __init__(self, kernel: NodeContext) -> None:
        self.kernel = kernel

    def head(self) -> int:
        """The newest audit record's sequence number: a reader starting now follows from here."""
        return self.kernel.store.last_audit_seq()

    def page(
        self, actor: Person, after: int, only: FeedFilter = FeedFilter(), *, limit: int = 100
    ) -> tuple[list[FeedEvent], int]:
        """The events after ``after`` that ``actor`` may see (at most ``limit``), and the cursor to
        ask from next (past what was skipped)."""
        if after < 0:
            raise InvalidInputError("after: a sequence number, 0 or more")
        person = self.kernel.person(actor.id)  # as the store has them now: a disabled person stops
        if not person.active:
            raise AuthenticationError(f"{actor.id} is disabled")
        gate = self.kernel.reader(person)
        rows = self.kernel.store.audit_of_kinds(tuple(FEED_KINDS), after_seq=after, limit=SCAN)
        events: list[FeedEvent] = []
        cursor = after
        for row in rows:
            event = self._event(row, gate, only)
            if event is not None:
                if len(events) == limit:
                    break
                events.append(event)
            cursor = row.seq
        return events, cursor

    def _event(self, row: AuditRow, gate: ReadGate, only: FeedFilter) -> FeedEvent | None:
        if row.outcome != "allowed" or not row.subject:
            return None
        stored = self.kernel.store.get_item(row.subject)
        if stored is None:
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
            _type(row),
            item.id,
            datetime.fromtimestamp(row.at_us / 1e6, UTC),
            label.originator,
            label.classification,
            tuple(sorted(label.topics)),
            item.agreement,
            stored.state,
        )


def _type(row: AuditRow) -> str:
    """The change's type; a partner's label change that withdrew the item here is a recall."""
    kind = FEED_KINDS[row.kind]
    if row.kind.startswith("duty.label-change") and json.loads(row.detail).get("result") == "withdrawn":
        return "recalled"
    return kind
