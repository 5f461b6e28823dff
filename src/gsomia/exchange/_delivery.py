"""Delivery: decide again at the instant of sending (a termination in between makes the
entry undeliverable, with the reason), push batches to each peer's ``/inbox`` over HTTP
and keep the signed receipts as proof of delivery; transport failures retry with
exponential backoff.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from gsomia._codec import canonical
from gsomia.core.instants import epoch_us
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.envelope import seal, verify_origin
from gsomia.errors import GsomiaError, InvalidInputError
from gsomia.exchange._release import Releases
from gsomia.store import InventoryEntry, OutboxRow

__all__ = ["Deliveries", "Delivery"]


_MAX_BACKOFF_S = 60.0
_BATCH = 100


@dataclass(frozen=True, slots=True)
class Delivery:
    """What one delivery attempt did with one outbox entry."""

    msg_id: str
    recipient: str
    state: str  # delivered | pending (retry) | undeliverable
    detail: str


class Deliveries(Releases):
    """The outbox sender."""

    def deliver_due(self, client: httpx.Client, limit: int = 1000) -> list[Delivery]:
        """Send what is due: decide again now, push batches per peer, keep the signed receipts."""
        now = self._now()
        due = self.fed.due(epoch_us(now), limit)
        results: list[Delivery] = []
        by_peer: dict[str, list[tuple[OutboxRow, str]]] = {}
        for entry in due:
            refusal, decision = self.recheck(entry, now)
            envelope = entry.envelope
            if refusal is None and self._expired(envelope, now):
                try:
                    envelope = self._reseal(entry, decision, now)
                except GsomiaError as exc:
                    refusal = f"the envelope expired before delivery and could not be resealed: {exc}"
            if refusal is not None:
                self.fed.settle(
                    entry.msg_id,
                    state="undeliverable",
                    now_us=epoch_us(now),
                    attempts=entry.attempts,
                    next_attempt_us=entry.next_attempt_us,
                    last_error=refusal,
                    audit=[
                        self.kernel.audit_row(
                            "envelope.undeliverable",
                            None,
                            entry.item_id,
                            "refused",
                            msg_id=entry.msg_id,
                            reason=refusal,
                        )
                    ],
                )
                results.append(Delivery(entry.msg_id, entry.recipient, "undeliverable", refusal))
                continue
            by_peer.setdefault(entry.recipient, []).append((entry, envelope))
        for party, batch in by_peer.items():
            for start in range(0, len(batch), _BATCH):
                results += self._push(client, party, batch[start : start + _BATCH], now)
        return results

    def _reseal(self, entry: OutboxRow, decision: ReleaseDecision | None, now: datetime) -> str:
        """A fresh envelope, same message id: the body is rebuilt from the store, never kept in clear."""
        if entry.kind != "item" or decision is None:
            raise InvalidInputError(f"a {entry.kind} message is not rebuilt")
        peer = self._link(entry.recipient, decision)
        body = self.item_body(json.loads(entry.request), decision)
        return seal(self.ring, peer, body, msg_id=entry.msg_id, at=now, ttl=self.ttl)

    def _expired(self, envelope: str, now: datetime) -> bool:
        return _envelope_exp(envelope) <= now.timestamp()

    def recheck(self, entry: OutboxRow, now: datetime) -> tuple[str | None, ReleaseDecision | None]:
        """The release decision again, at the instant of sending: (refusal or None, decision)."""
        if entry.kind != "item":
            return None, None
        try:
            decision = self.kernel.engine.decide(self._request(json.loads(entry.request)), at=now)
        except GsomiaError as exc:
            return str(exc), None
        if decision.allowed:
            return None, decision
        return "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed()), decision

    def _push(
        self, client: httpx.Client, party: str, batch: Sequence[tuple[OutboxRow, str]], now: datetime
    ) -> list[Delivery]:
        peer = self.peer(party)
        endpoint = peer.endpoint if peer else ""
        try:
            response = client.post(f"{endpoint.rstrip('/')}/inbox", json={"envelopes": [e for _, e in batch]})
            response.raise_for_status()
            answers = response.json()["results"]
            if len(answers) != len(batch):
                raise InvalidInputError(f"{party} answered {len(answers)} results for {len(batch)} envelopes")
        except (httpx.HTTPError, ValueError, KeyError, TypeError, GsomiaError) as exc:
            answers = None
            reason = f"{type(exc).__name__}: {exc}"
        sink: list[dict[str, Any]] = []
        if answers is None:
            done = [self._retry(entry, now, reason, sink) for entry, _ in batch]
        else:
            done = [
                self._settle(entry, envelope, answer, now, sink)
                for (entry, envelope), answer in zip(batch, answers, strict=True)
            ]
        self.fed.settle_many(sink, now_us=epoch_us(now))  # one transaction for the whole batch
        return done

    def _retry(self, entry: OutboxRow, now: datetime, reason: str, sink: list[dict[str, Any]]) -> Delivery:
        attempts = entry.attempts + 1
        delay = min(_MAX_BACKOFF_S, 0.2 * 2**attempts) * (1 + random.random() * 0.2)  # noqa: S311 - jitter
        sink.append(
            dict(
                msg_id=entry.msg_id,
                state="pending",
                now_us=epoch_us(now),
                attempts=attempts,
                next_attempt_us=epoch_us(now) + int(delay * 1_000_000),
                last_error=reason,
            )
        )
        return Delivery(entry.msg_id, entry.recipient, "pending", reason)

    def _settle(
        self, entry: OutboxRow, envelope: str, answer: Any, now: datetime, sink: list[dict[str, Any]]
    ) -> Delivery:
        status = answer.get("status") if isinstance(answer, dict) else None
        if status == "refused":
            reason = str(answer.get("reason") or "refused by the receiver")
            sink.append(
                dict(
                    msg_id=entry.msg_id,
                    state="undeliverable",
                    now_us=epoch_us(now),
                    attempts=entry.attempts + 1,
                    next_attempt_us=entry.next_attempt_us,
                    last_error=f"{entry.recipient} refused: {reason}",
                    envelope=envelope,
                    audit=[
                        self.kernel.audit_row(
                            "envelope.refused-by-peer",
                            None,
                            entry.item_id,
                            "refused",
                            msg_id=entry.msg_id,
                            peer=entry.recipient,
                            reason=reason,
                        )
                    ],
                )
            )
            return Delivery(entry.msg_id, entry.recipient, "undeliverable", reason)
        receipt = answer.get("receipt") if isinstance(answer, dict) else None
        try:
            if not isinstance(receipt, str):
                raise InvalidInputError("no receipt")
            signer, content = verify_origin(receipt, self._identities, now)
            data = json.loads(content)
            if (
                signer != entry.recipient
                or data.get("msg_id") != entry.msg_id
                or data.get("kind") != "receipt"
            ):
                raise InvalidInputError("the receipt does not acknowledge this message")
        except (GsomiaError, ValueError) as exc:
            return self._retry(entry, now, f"bad receipt from {entry.recipient}: {exc}", sink)
        inventory = []
        if entry.item_id is not None and entry.kind == "item":  # the item itself went: count the copy
            inventory.append(
                InventoryEntry(
                    entry.item_id,
                    epoch_us(now),
                    "sent",
                    entry.recipient,
                    None,
                    canonical(
                        {
                            "msg_id": entry.msg_id,
                            "final_recipient": entry.final_recipient,
                            "status": data.get("status"),
                        }
                    ),
                )
            )
        sink.append(
            dict(
                msg_id=entry.msg_id,
                state="delivered",
                now_us=epoch_us(now),
                attempts=entry.attempts + 1,
                next_attempt_us=entry.next_attempt_us,
                receipt=receipt,
                envelope=envelope,
                audit=[
                    self.kernel.audit_row(
                        "envelope.delivered",
                        None,
                        entry.item_id,
                        "allowed",
                        msg_id=entry.msg_id,
                        peer=entry.recipient,
                        status=data.get("status"),
                    )
                ],
                inventory=inventory,
            )
        )
        return Delivery(entry.msg_id, entry.recipient, "delivered", str(data.get("status")))


def _envelope_exp(envelope: str) -> float:
    """The expiry in the JWE protected header (read without decrypting; our own envelope)."""
    jwe = json.loads(envelope)["jwe"]
    header = jwe.split(".", 1)[0]
    data = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return float(data["exp"])
