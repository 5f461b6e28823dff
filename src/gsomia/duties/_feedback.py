"""Feedback to the originator (issue 20 §4): a holder's sighting, question or proposed correction.

The holder's node signs it and sends it to the originator the way the item came (through the
hub where the item came through one), in the ordinary envelopes; both ends keep it with the
signature and audit it. It is as classified as the item: only readers of the item send it or
see it. It cites only the holder's items that were released to the originator
(:func:`gsomia.core.feedback.check_citations`), and is bounded per item and holder.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gsomia.core.access import Person, Role
from gsomia.core.feedback import MAX_PER_ITEM, Feedback, check_citations, make_feedback
from gsomia.core.instants import epoch_us
from gsomia.crypto.envelope import sign_origin
from gsomia.duties._base import DutyBase
from gsomia.duties._messages import feedback_content
from gsomia.errors import GsomiaError, InvalidInputError, NotFoundError
from gsomia.kernel import from_us, unknown_item
from gsomia.store import FeedbackRow

__all__ = ["_Feedback", "feedback_row"]

SENDERS = (Role.ANALYST, Role.RELEASE_OFFICER, Role.SECURITY_OFFICER)


class _Feedback(DutyBase):
    """Feedback to the originator. Part of :class:`gsomia.duties.Duties`."""

    def send_feedback(
        self, actor: Person, item_id: str, kind: str, text: str, cites: Sequence[str] = ()
    ) -> dict[str, Any]:
        """``actor``, a reader of a partner's item held here, tells its originator about it."""
        kernel = self.kernel
        try:
            kernel.require_any(actor, SENDERS, "feedback.send")
            row, _, _ = kernel.readable(actor, item_id, "feedback.send")
            if row.originator == self.party:
                raise InvalidInputError(
                    f"item {item_id} is this node's own: feedback goes to a partner's item"
                )
            if self.db.feedback_count(item_id, self.party) >= MAX_PER_ITEM:
                raise InvalidInputError(f"at most {MAX_PER_ITEM} feedback about one item")
            now = kernel.clock()
            # named as its originator named it (issue 22 §4); kept here under this node's reference
            feedback = make_feedback(
                uuid.uuid4().hex, row.name, row.originator, self.party, kind, text, cites, by=actor.id, at=now
            )
            for cited in feedback.cites:  # the citer must be able to read what it cites
                if cited not in kernel.readable_ids(actor, [cited]):
                    raise NotFoundError(unknown_item(cited))
            released = {c for c in feedback.cites if any(row.originator in p for p in self.db.sent_to(c))}
            check_citations(feedback, released)
            content = feedback_content(feedback)
            jws = sign_origin(kernel.ring, content, now)
            saved = replace(feedback_row(feedback, jws, epoch_us(now)), item_id=row.id)
            self.db.commit(
                ops=[self.db.put("feedback", saved)],
                outbox=[self._upstream(row, content, now)],
                audit=[
                    kernel.audit_row(
                        "feedback.send",
                        actor.id,
                        item_id,
                        "allowed",
                        feedback=feedback.id,
                        feedback_kind=feedback.kind.value,
                        to=row.originator,
                        cites=list(feedback.cites),
                    )
                ],
            )
        except GsomiaError as exc:
            raise kernel.refuse("feedback.send", actor.id, item_id, exc) from None
        return feedback_out(saved)

    def feedback(self, actor: Person, item_id: str) -> list[dict[str, Any]]:
        """The feedback about ``item_id`` kept here (received, at its originator; sent, at a holder),
        for a reader of the item only: to anyone else the item is unknown."""
        self.kernel.readable(actor, item_id, "feedback.list")
        return [feedback_out(r) for r in self.db.feedback(item_id)]


def feedback_row(feedback: Feedback, jws: str, recorded_us: int) -> FeedbackRow:
    return FeedbackRow(
        feedback.holder,
        feedback.id,
        feedback.item,
        feedback.originator,
        feedback.kind.value,
        feedback.text,
        json.dumps(list(feedback.cites)),
        feedback.by,
        epoch_us(feedback.at),
        jws,
        recorded_us,
    )


def feedback_out(row: FeedbackRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "item": row.item_id,
        "originator": row.originator,
        "holder": row.holder,
        "kind": row.kind,
        "text": row.text,
        "cites": json.loads(row.cites),
        "by": row.actor,
        "at": from_us(row.at_us).isoformat(),
        "recorded": from_us(row.recorded_us).isoformat(),
    }
