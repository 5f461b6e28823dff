"""Reviews that fall due (issue 20 §3): the originator's queue of its items whose label review
instant has come, and downgrades the originator declares ahead of time that apply themselves when
due, here and at every holder, exactly as a reclassification does.

A scheduled downgrade is claimed once (compare-and-set ``pending`` -> ``applying``) by the one
process that runs the node's background work, then applied as its author: if the author may no
longer reclassify the item (disabled, no longer cleared, the item recalled or destroyed), it fails
and says why, and nothing changes.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime

from gsomia.core.access import Person
from gsomia.core.instants import epoch_us
from gsomia.core.recall import check_originator
from gsomia.duties._base import HANDLERS
from gsomia.duties._labels import _Labels
from gsomia.errors import GsomiaError, InvalidInputError, NotFoundError
from gsomia.kernel import Item
from gsomia.store import ItemFilter, ScheduledRow, ScheduleStore

__all__ = ["MAX_DUE"]

MAX_DUE = 1000  # items of a review queue, at most
_SCAN = 500  # rows read per page of the originator's items


class _Reviews(_Labels):
    """The originator's reviews and scheduled downgrades."""

    @property
    def _schedule(self) -> ScheduleStore:
        return ScheduleStore(self.kernel.store)

    def may_review(self, actor: Person) -> bool:
        """Whether ``actor`` works the duties' queues (reviews due, disposal): nothing is recorded."""
        return self.kernel.holds_any(actor, HANDLERS)

    def reviews_due(self, actor: Person, at: datetime | None = None, *, limit: int = 100) -> list[Item]:
        """This node's own items whose label review instant is ``at`` (default: now) or earlier,
        soonest due first, that ``actor`` may read."""
        self.kernel.require_any(actor, HANDLERS, "item.reviews")
        when = (at or self.kernel.clock()).timestamp()
        due: list[Item] = []
        after = 0
        where = ItemFilter(originator=self.party)
        while True:
            rows = self.kernel.store.list_items(where, after, _SCAN)
            for row in rows:
                if row.state != "held":
                    continue
                item = self.kernel.items.item(row)
                review = item.label.review
                if review is not None and review.timestamp() <= when and self._may_read(actor, row):
                    due.append(item)
            if len(rows) < _SCAN or len(due) >= MAX_DUE:
                break
            after = rows[-1].seq
        due.sort(key=lambda i: (i.label.review.timestamp() if i.label.review else 0.0, i.id))
        return due[: min(limit, MAX_DUE)]

    def schedule_downgrade(
        self, actor: Person, item_id: str, classification: str, at: datetime, reason: str
    ) -> ScheduledRow:
        """Declare that the item becomes ``classification`` (lower than now) at ``at``."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, HANDLERS, "item.schedule-downgrade")
            row = self._held(item_id)
            label = kernel.items.item(row).label
            check_originator(self.party, label, "schedule a downgrade of")
            kernel.decide_read(actor, label).raise_if_refused()
            scheme = kernel.catalogue.party(self.party).scheme
            target = scheme.level(classification)
            if target.rank >= scheme.level(label.classification).rank:
                raise InvalidInputError(
                    f"{target.name} is not below {label.classification}: a scheduled change only downgrades"
                )
            now = kernel.clock()
            if at <= now:
                raise InvalidInputError(f"{at.isoformat()} is not in the future: reclassify now instead")
            if not reason.strip():
                raise InvalidInputError("a scheduled downgrade needs a reason the holders can read")
        except GsomiaError as exc:
            raise kernel.refuse("item.schedule-downgrade", actor.id, item_id, exc) from None
        entry = ScheduledRow(
            uuid.uuid4().hex,
            item_id,
            target.name,
            epoch_us(at),
            reason,
            actor.id,
            epoch_us(now),
            "pending",
        )
        audit = kernel.audit_row(
            "item.schedule-downgrade",
            actor.id,
            item_id,
            "allowed",
            schedule=entry.id,
            classification=target.name,
            at=at.isoformat(),
        )
        self._schedule.add(entry, [audit])
        return entry

    def scheduled(self, actor: Person, item_id: str) -> list[ScheduledRow]:
        """The downgrades scheduled for an item (to a person who may read it)."""
        self.kernel.require_any(actor, HANDLERS, "item.scheduled")
        if not self._may_read(actor, self.kernel.store.get_item(item_id)):
            raise NotFoundError(f"no item {item_id!r} at this node")
        return self._schedule.rows(item_id=item_id)

    def apply_due_downgrades(self) -> list[ScheduledRow]:
        """Apply every scheduled downgrade that is due (the node's background work calls this);
        each is claimed once, then applied as a reclassification by its author."""
        now = self.kernel.clock()
        done: list[ScheduledRow] = []
        for entry in self._schedule.due(epoch_us(now)):
            if not self._schedule.move(entry.id, "pending", "applying", epoch_us(now)):
                continue  # another round claimed it
            try:
                author = self.kernel.person(entry.scheduled_by)
                why = f"{entry.reason} (scheduled on {self._instant(entry.created_us)})"
                self.reclassify(author, entry.item_id, entry.classification, why)
            except GsomiaError as exc:
                self._schedule.move(entry.id, "applying", "failed", epoch_us(now), note=str(exc)[:500])
                done.append(replace(entry, state="failed", note=str(exc)[:500]))
                continue
            self._schedule.move(entry.id, "applying", "applied", epoch_us(now))
            done.append(replace(entry, state="applied"))
        return done

    @staticmethod
    def _instant(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")
