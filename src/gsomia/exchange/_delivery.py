"""Delivery: decide again at the instant of sending (a termination in between makes the
entry undeliverable, with the reason), push batches to each peer's inbox over a
:class:`PeerTransport` (as many batches on their way at once as the transport takes, ``in_flight``,
while the next is sealed; with ``follow``, what was queued meanwhile joins them) and keep the
signed receipts as proof of delivery (``_receipts``); transport failures retry with exponential
backoff.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from gsomia.core.access import Person, Role
from gsomia.core.instants import epoch_us
from gsomia.core.policy import ReleaseDecision
from gsomia.crypto.envelope import is_current, seal
from gsomia.crypto.keys import PeerIdentity
from gsomia.errors import BodyTooLargeError, GsomiaError, InvalidInputError, NotFoundError, TransportError
from gsomia.exchange._approvals import Approvals
from gsomia.exchange._inbox import BATCH_KIND
from gsomia.exchange._messages import envelope_routing, message_id
from gsomia.exchange._receipts import LONGEST_BACKOFF_US, Delivery, Settlement
from gsomia.exchange._release import Prefetched
from gsomia.exchange._transport import PeerTransport, inbox_body_limit, push_size
from gsomia.kernel import NodeContext
from gsomia.store import AuditRow, OutboxRow, RateCounters

__all__ = ["Deliveries", "Delivery"]


# items a batch envelope carries at most (issue 18: was 100; benchmarks/JOURNAL.md, bench_exchange)
_BATCH = 250
# a push's messages at most, as built (``_weight``): its request is about 1.3-1.5 times that, under a
# receiver's default body limit (``inbox_body_limit``: 2.5 times ``max_payload_bytes`` plus 64 KB,
# 2,686,976 bytes). A batch of
# 100 items of 10 KB was a request of 2.5 MB, refused whole (413) each time it was tried
_PUSH_BYTES = 1_000_000
# per peer, the smallest push (of several envelopes, or of one batch envelope) its inbox refused for
# its size, in the store's counters (``RateCounters.lower_within``: every process's, kept while
# refusals come, the least of them): a process, or a restart, learns it from the store, not from a
# refusal of its own. Forgotten a day after the last refusal, so a partner that raised its limit is
# sent larger pushes again (one refusal learns it again, if it did not)
_LIMIT_KEY = "inbox-limit:"
_LIMIT_HELD_S = 24 * 3600


class _Prepared:
    """A batch to one peer, sealed and ready to send: the envelopes, and per envelope the entries
    (indexes in ``batch``) it carries."""

    __slots__ = (
        "batch", "batches", "budget", "carries", "digests", "failed", "party", "peer", "resplit", "texts"
    )  # fmt: skip

    def __init__(
        self, party: str, batch: list[tuple[OutboxRow, str, ReleaseDecision | None]], budget: int
    ) -> None:
        self.party = party
        self.budget = budget  # the largest request body it goes in (the peer's inbox takes it)
        self.batch = batch
        self.peer: PeerIdentity | None = None
        self.texts: list[str] = []
        self.carries: list[list[int]] = []
        self.batches: set[int] = set()  # the positions of the batch envelopes among the texts
        self.digests: dict[int, str] = {}  # per entry sent in a batch, its originator signature's SHA-256
        self.failed: str | None = None  # why it cannot be sent (the peer is gone)
        # per batch envelope the peer refused alone for its size, why: its items go again, cut smaller
        self.resplit: dict[int, str] = {}


def _apart(prepared: _Prepared, flying: Iterable[_Prepared]) -> bool:
    """Whether ``prepared`` must wait until the batches on their way (``flying``) are answered
    before it goes: one of them, or ``prepared``, carries a message other than an item, or they
    carry an item in common."""
    if any(entry.kind != "item" for entry, _, _ in prepared.batch):
        return True
    items = {entry.item_id for entry, _, _ in prepared.batch}
    return any(
        entry.kind != "item" or entry.item_id in items for other in flying for entry, _, _ in other.batch
    )


def _weight(entry: OutboxRow, envelope: str, bodies: dict[str, dict[str, Any]]) -> int:
    """About the bytes ``entry`` adds to a push: its item message's signed item, consents and
    portions as built (the framing around them within 1 KB), or the envelope it was sealed in."""
    body = bodies.get(entry.msg_id)
    if body is None:
        return len(envelope)
    portions = body.get("portions")
    return (
        1024
        + len(str(body.get("origin") or ""))
        + sum(len(str(c)) for c in body.get("consents") or ())
        + (len(json.dumps(portions)) if portions else 0)
    )


def _by_size(
    batch: list[tuple[OutboxRow, str, ReleaseDecision | None]], bodies: dict[str, dict[str, Any]]
) -> list[list[tuple[OutboxRow, str, ReleaseDecision | None]]]:
    """``batch`` cut, in its order, into pushes of at most ``_PUSH_BYTES`` each (an entry larger than
    that goes alone)."""
    parts: list[list[tuple[OutboxRow, str, ReleaseDecision | None]]] = []
    part: list[tuple[OutboxRow, str, ReleaseDecision | None]] = []
    size = 0
    for one in batch:
        weight = _weight(one[0], one[1], bodies)
        if part and size + weight > _PUSH_BYTES:
            parts.append(part)
            part, size = [], 0
        part.append(one)
        size += weight
    if part:
        parts.append(part)
    return parts


class Deliveries(Approvals):
    """The outbox sender."""

    def __init__(
        self,
        kernel: NodeContext,
        *,
        ttl: timedelta = timedelta(hours=24),
        skew: timedelta = timedelta(minutes=5),
    ) -> None:
        super().__init__(kernel, ttl=ttl, skew=skew)
        self.settlement = Settlement(kernel, retry_for=ttl)
        # per peer, the smallest push of several envelopes, or of one batch envelope, its inbox refused
        # for its size (HTTP 413): pushes and batch envelopes to it are cut to half that from then on,
        # by every process of the node (the store's, ``_LIMIT_KEY``)
        self._limits = RateCounters(kernel.store, lambda: epoch_us(self._now()))

    def _budget(self, party: str) -> int:
        """The largest request body a push to ``party`` is built to: the inbox limit this node's own
        configuration gives (the one partners are configured alike to), or half the smallest push (of
        several envelopes, or of one batch envelope) that peer refused for its size, if less: as the
        store holds it now (one read of a row by its key, a batch's)."""
        own = inbox_body_limit(self.kernel.max_payload_bytes)
        refused = self._limits.get(_LIMIT_KEY + party)
        return own if not refused else min(own, refused // 2)

    def _refused_for_size(self, party: str, size: int) -> None:
        """``party``'s inbox refused a body of ``size`` bytes for its size: none that large again,
        from any process of the node."""
        self._limits.lower_within(_LIMIT_KEY + party, size, _LIMIT_HELD_S)

    def deliver_due(
        self,
        transport: PeerTransport,
        limit: int = 1000,
        *,
        peers: Collection[str] | None = None,
        keep: Callable[[str], bool] | None = None,
        follow: Callable[[str], bool] | None = None,
    ) -> list[Delivery]:
        """Send what is due over ``transport``: decide again now, push batches per peer, keep the
        signed receipts. What it answers is what this process settled (delivered, retried,
        undeliverable): an entry another process of the node settled first is not in it. With
        ``peers``, only what goes to those next hops (the peers whose delivery this process holds
        the lease of: ``deliver:PEER``); with ``keep``, asked before each batch to a peer, the
        batches to a peer stop when it answers no (that lease was lost meanwhile: another process
        delivers to that peer now). With ``follow``, asked whenever a run to a peer has sent all it
        read and waits for batches on their way: while it answers yes, the run reads again what was
        queued for that peer since (after the last entry it read, up to ``limit`` at a time),
        decided at that new instant, and those batches join the ones on their way, so the receiver
        is not left idle between two runs while the next selection is read, decided and sealed."""
        now = self._now()
        # a retry is never set further ahead than the longest back-off: one that is was set by a clock
        # that ran ahead and has been put right since, and is due now
        due = self.fed.due(
            epoch_us(now), limit, latest_us=epoch_us(now) + LONGEST_BACKOFF_US, recipients=peers
        )
        results: list[Delivery] = []
        bodies: dict[str, dict[str, Any]] = {}  # each item's message, built under the decision just taken
        by_peer: dict[str, list[OutboxRow]] = {}
        for entry in due:
            by_peer.setdefault(entry.recipient, []).append(entry)
        # the consents verified and the decisions taken, shared by the run's batches decided at its
        # one instant; each batch's rows and consents on file are read just before it is decided
        # (``_decided``), so the first batch leaves without waiting for the whole run's reads and the
        # next batch's overlap the one on the wire (issue 18)
        run = Prefetched({}, {}, {}, {})
        for party, entries in by_peer.items():
            if len(entries) <= _BATCH and follow is None:
                if keep is None or keep(party):
                    batch = self._decided(entries, now, run, bodies, results)
                    for part in _by_size(batch, bodies):
                        results += self._push(transport, party, part, now, bodies)
                continue
            results += self._pipeline(transport, party, entries, now, run, bodies, limit, keep, follow)
        return results

    def _pipeline(
        self,
        transport: PeerTransport,
        party: str,
        entries: list[OutboxRow],
        now: datetime,
        run: Prefetched,
        bodies: dict[str, dict[str, Any]],
        limit: int,
        keep: Callable[[str], bool] | None,
        follow: Callable[[str], bool] | None,
    ) -> list[Delivery]:
        """``entries`` to ``party`` in a pipeline: the next batch is decided again and sealed while
        those before are on the wire (and at the receiver), then the oldest is settled; each batch
        still settles on its own receipt, in the outbox's order, in its own transaction, by this one
        thread (issue 18: the decisions of a whole run, taken before its first batch left, kept the
        receiver idle meanwhile). With a transport that takes more than one push at once
        (``in_flight``), that many batches are on their way together, so the receiver works on the
        next while the last one's answer travels back; a batch carrying anything but items, or an
        item a batch on its way carries too, waits until nothing else is on its way (the receiver
        meets the outbox's order where it matters: a label change after the item, one item's copies
        one after the other). With ``follow`` (``deliver_due``), what was queued since is read again
        before the run waits for its batches: an entry on its way is never read again (the read
        starts after the last entry read), and each batch is decided at the instant it was read."""
        results: list[Delivery] = []
        chunks: deque[tuple[list[OutboxRow], datetime, Prefetched]] = deque(
            (entries[start : start + _BATCH], now, run) for start in range(0, len(entries), _BATCH)
        )
        last_seq = max(entry.seq for entry in entries)
        depth = max(1, transport.in_flight)
        flying: deque[tuple[_Prepared, Future[list[Any]], datetime]] = deque()
        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix=f"deliver-{party}") as wire:
            try:
                while True:
                    if not chunks and flying and follow is not None and follow(party):
                        at = self._now()
                        more = self.fed.due(
                            epoch_us(at),
                            limit,
                            latest_us=epoch_us(at) + LONGEST_BACKOFF_US,
                            recipients=(party,),
                            after_seq=last_seq,
                        )
                        if more:  # decided at this instant, with the decisions of this instant
                            last_seq = max(last_seq, *(entry.seq for entry in more))
                            fresh = Prefetched({}, {}, {}, {})
                            chunks.extend(
                                (more[start : start + _BATCH], at, fresh)
                                for start in range(0, len(more), _BATCH)
                            )
                    if not chunks:
                        if not flying:
                            break
                        results += self._finish(*flying.popleft())  # its answer, then read again
                        continue
                    if keep is not None and not keep(party):
                        break  # left pending, as read: the process holding that peer now sends them
                    chunk, at, shared = chunks.popleft()
                    batch = self._decided(chunk, at, shared, bodies, results)
                    for part in _by_size(batch, bodies):
                        prepared = self._prepare(party, part, at, bodies)
                        if depth > 1:
                            while flying and _apart(prepared, (p for p, _, _ in flying)):
                                results += self._finish(*flying.popleft())
                        flying.append((prepared, wire.submit(self._send, transport, prepared), at))
                        while len(flying) > depth:  # the next queued on the wire; the oldest settled
                            results += self._finish(*flying.popleft())
            finally:  # what is on the wire is settled, whatever stopped the next one
                while flying:
                    results += self._finish(*flying.popleft())
        return results

    def _decided(
        self,
        entries: Sequence[OutboxRow],
        now: datetime,
        run: Prefetched,
        bodies: dict[str, dict[str, Any]],
        results: list[Delivery],
    ) -> list[tuple[OutboxRow, str, ReleaseDecision | None]]:
        """``entries`` decided again now, just before their batch is sealed: those that may go, each
        with the envelope it goes in and its decision (an item's message built under it in
        ``bodies``); the others settled undeliverable with the reason (and audited) in ``results``.
        The items' rows and consents on file are read here for the batch, at once (``run``: what
        the run's batches share, the consents verified and the decisions taken)."""
        batch: list[tuple[OutboxRow, str, ReleaseDecision | None]] = []
        prefetched = self.prefetch([e.item_id for e in entries if e.kind == "item" and e.item_id], run)
        for entry in entries:
            # an item's release request, read once for its decision and its message (issue 18)
            spec = json.loads(entry.request) if entry.kind == "item" else None
            refusal, decision = self.recheck(entry, now, prefetched, spec)
            envelope = entry.envelope
            if refusal is None:
                body = self._batched(entry, decision, prefetched, spec)
                if body is not None:
                    bodies[entry.msg_id] = body
                elif not envelope:  # released unsealed (in a selection), and its message cannot be built
                    refusal = "the item message could not be built at the instant of sending"
            # an expired envelope, one sealed in an older format (a receiver that has opened this
            # node's COSE no longer opens its JOSE: exchange/_versions.py), or a message other than an
            # item tried before (a receiver refused it for its clock, say), goes in a fresh envelope;
            # the body and its inner signature are kept
            if refusal is None and (
                (envelope and (not is_current(envelope) or self._expired(envelope, now)))
                or (entry.kind != "item" and entry.attempts)
            ):
                try:
                    envelope = self._reseal(entry, decision, now)
                except GsomiaError as exc:
                    refusal = f"the envelope expired before delivery and could not be resealed: {exc}"
            if refusal is not None:
                settled = self.fed.settle(
                    entry.msg_id,
                    state="undeliverable",
                    now_us=epoch_us(now),
                    attempts=entry.attempts,
                    next_attempt_us=entry.next_attempt_us,
                    last_error=refusal,
                    expected=entry,
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
                if settled:  # not another process's meanwhile
                    results.append(Delivery(entry.msg_id, entry.recipient, "undeliverable", refusal))
                continue
            batch.append((entry, envelope, decision))
        return batch

    def _reseal(self, entry: OutboxRow, decision: ReleaseDecision | None, now: datetime) -> str:
        """A fresh envelope, same message id: an item's body is rebuilt from the store, never kept in
        clear; another message's body is the one sealed at rest when it was queued."""
        if entry.kind != "item":
            kept = self.stored_body(entry)
            peer = self.peer(entry.recipient)
            if kept is None or peer is None:
                raise InvalidInputError(f"this {entry.kind} message kept no body to send again")
            return seal(self.ring, peer, kept, msg_id=entry.msg_id, at=now, ttl=self.ttl)
        if decision is None:
            raise InvalidInputError("an item is sent only under a release decision")
        peer = self._link(entry.recipient, decision)
        body = self.item_body(json.loads(entry.request), decision)
        return seal(self.ring, peer, body, msg_id=entry.msg_id, at=now, ttl=self.ttl)

    def resend(self, actor: Person, msg_id: str) -> OutboxRow:
        """An officer sends an undeliverable message (a duty, a consent) again: a fresh envelope, the
        same body and inner signature, the same message id (the receiver still applies it once). An
        item is never resent: it is released again, decided anew."""
        who = actor.id
        try:
            self.kernel.require_any(actor, (Role.RELEASE_OFFICER, Role.SECURITY_OFFICER), "outbox.resend")
            entry = self.fed.outbox_entry(msg_id)
            if entry is None:
                raise NotFoundError(f"no message {msg_id!r} in this node's outbox")
            if entry.kind == "item":
                raise InvalidInputError("an item is not resent: release it again (decided anew)")
            if entry.state != "undeliverable":
                raise InvalidInputError(
                    f"message {msg_id} is {entry.state}: only an undeliverable one is resent"
                )
            now = self._now()
            envelope = self._reseal(entry, None, now)
            audit = self.kernel.audit_row(
                "outbox.resend", who, entry.item_id, "allowed", msg_id=msg_id, peer=entry.recipient,
                previous=entry.last_error,
            )  # fmt: skip
            if not self.fed.resend(entry, envelope, f"resent by {who}", epoch_us(now), audit):
                raise InvalidInputError(f"message {msg_id} changed meanwhile: look at it again")
        except GsomiaError as exc:
            raise self.kernel.refuse("outbox.resend", who, msg_id, exc) from None
        resent = self.fed.outbox_entry(msg_id)
        assert resent is not None  # noqa: S101 - written above, never deleted
        return resent

    def _expired(self, envelope: str, now: datetime) -> bool:
        return float(envelope_routing(envelope)["exp"]) <= now.timestamp()

    def recheck(
        self,
        entry: OutboxRow,
        now: datetime,
        prefetched: Prefetched | None = None,
        spec: dict[str, Any] | None = None,
    ) -> tuple[str | None, ReleaseDecision | None]:
        """The release decision again, at the instant of sending: (refusal or None, decision);
        ``spec``: the entry's release request, if the caller has read it already."""
        if entry.kind != "item":
            return None, None
        try:
            request = self._request(json.loads(entry.request) if spec is None else spec, prefetched)
            decision = self.kernel.engine.decide(
                request, at=now, memo=prefetched.decided if prefetched is not None else None
            )
        except GsomiaError as exc:
            return str(exc), None
        if decision.allowed:
            return None, decision
        return "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed()), decision

    def _batched(
        self,
        entry: OutboxRow,
        decision: ReleaseDecision | None,
        prefetched: Prefetched,
        spec: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The item message of ``entry``, built now under the decision just taken (as a fresh
        envelope's is), from what this node holds of the item now: a release of its own, or of an
        item it holds, or a hub's relay (the originator's signed item as held here now, so a label
        change applied since it came goes on with it); ``None`` for a message other than an item."""
        if entry.kind != "item" or decision is None or entry.item_id is None:
            return None
        if spec is None:
            spec = json.loads(entry.request)
        if spec.get("item") != entry.item_id:
            return None
        row = prefetched.rows.get(entry.item_id)
        # the originator's consents name its item as it named it (``row.name``)
        on_file = prefetched.on_file.get((row.originator, row.name)) if row is not None else None
        try:
            return self.item_body(
                spec, decision, row=row, on_file=None if on_file is None else [c.jws for c in on_file]
            )
        except GsomiaError:
            return None  # sent as it was sealed, and refused or settled as that envelope is

    def _push(
        self,
        transport: PeerTransport,
        party: str,
        batch: Sequence[tuple[OutboxRow, str, ReleaseDecision | None]],
        now: datetime,
        bodies: dict[str, dict[str, Any]],
    ) -> list[Delivery]:
        """One batch to ``party``: sealed, sent, settled."""
        prepared = self._prepare(party, batch, now, bodies)
        done: Future[list[Any]] = Future()
        try:
            done.set_result(self._send(transport, prepared))
        except TransportError as exc:
            done.set_exception(exc)
        return self._finish(prepared, done, now)

    def _prepare(
        self,
        party: str,
        batch: Sequence[tuple[OutboxRow, str, ReleaseDecision | None]],
        now: datetime,
        bodies: dict[str, dict[str, Any]],
    ) -> _Prepared:
        """The envelopes that carry ``batch`` to ``party``, in the outbox's order."""
        # an item released unsealed gets here the envelope it went in
        prepared = _Prepared(party, list(batch), self._budget(party))
        batch, budget = prepared.batch, prepared.budget
        texts, carries, batches, digests = (
            prepared.texts,
            prepared.carries,
            prepared.batches,
            prepared.digests,
        )
        peer = prepared.peer = self.peer(party)
        try:
            if peer is None:
                raise TransportError(f"AgreementError: {party} is no longer a registered peer")
            # consecutive items in one envelope (one hop signature, one encryption), each with its
            # own id and its originator's signature; the rest each in its own envelope, as sealed.
            # The outbox's order is kept: a message between two items (a label change queued after
            # the release it overtakes, say) closes the run, so the receiver meets it after the item
            messages: list[dict[str, Any]] = []
            run: list[int] = []

            def emit(indexes: list[int], carried: list[dict[str, Any]]) -> None:
                if len(indexes) == 1:  # an item alone goes in the envelope it was sealed in
                    entry, envelope, decision = batch[indexes[0]]
                    if not envelope:  # released in a selection, unsealed: its message built just now
                        envelope = seal(
                            self.ring, peer, carried[0]["body"], msg_id=entry.msg_id, at=now, ttl=self.ttl
                        )
                        batch[indexes[0]] = (entry, envelope, decision)
                    texts.append(envelope)
                    carries.append(indexes)
                    return
                body = {"kind": BATCH_KIND, "messages": carried}
                text = seal(self.ring, peer, body, msg_id=message_id(now), at=now, ttl=self.ttl)
                if push_size([text]) > budget:  # too large for the peer's inbox: the run cut in two
                    half = len(indexes) // 2
                    emit(indexes[:half], carried[:half])
                    emit(indexes[half:], carried[half:])
                    return
                batches.add(len(texts))
                texts.append(text)
                carries.append(indexes)

            def close_run() -> None:
                if run:
                    emit(list(run), list(messages))
                messages.clear()
                run.clear()

            for index, (entry, envelope, _) in enumerate(batch):
                body = bodies.get(entry.msg_id) if len(batch) > 1 or not envelope else None
                if body is None:
                    close_run()
                    texts.append(envelope)
                    carries.append([index])
                else:
                    messages.append({"msg_id": entry.msg_id, "body": body})
                    run.append(index)
                    digests[index] = hashlib.sha256(str(body.get("origin")).encode()).hexdigest()
            close_run()
        except TransportError as exc:
            prepared.failed = str(exc)
        return prepared

    def _send(self, transport: PeerTransport, prepared: _Prepared) -> list[Any]:
        """The prepared envelopes over ``transport``, in as many pushes, one after the other, as fit
        the peer's inbox (``prepared.budget``): the receiver's answers, one per envelope. A push the
        peer refuses for its size (HTTP 413, permanent for that body) is never sent again as it was:
        it goes again in two halves; an envelope refused alone for its size is answered refused (a
        message too large for that peer), or, a batch envelope, to be cut smaller (``resplit``)."""
        peer = prepared.peer
        if prepared.failed is not None or peer is None:
            raise TransportError(prepared.failed or f"AgreementError: {prepared.party} is not a peer")
        texts, budget = prepared.texts, prepared.budget
        answers: list[Any] = []

        def push(start: int, end: int) -> None:
            try:
                answers.extend(transport.push(peer, texts[start:end]))
                return
            except BodyTooLargeError:
                size = push_size(texts[start:end])
            if end - start > 1:
                self._refused_for_size(prepared.party, size)
                middle = (start + end) // 2
                push(start, middle)
                push(middle, end)
                return
            reason = f"{size} bytes are more than {prepared.party}'s inbox takes (HTTP 413)"
            if start in prepared.batches:  # its items go again, in batches cut to fit
                self._refused_for_size(prepared.party, size)  # else sealed again as large, for ever
                prepared.resplit[start] = f"{prepared.party} refused the batch for its size: {reason}"
                answers.append(None)
            else:
                answers.append({"status": "refused", "reason": f"the message is too large: {reason}"})

        start, grown = 0, push_size(())
        for end, text in enumerate(texts):
            grown += push_size((text,)) - push_size(())
            if end > start and grown > budget:  # what came before goes; this one opens the next push
                push(start, end)
                start, grown = end, push_size((text,))
        if start < len(texts):
            push(start, len(texts))
        return answers

    def _finish(self, prepared: _Prepared, sent: Future[list[Any]], now: datetime) -> list[Delivery]:
        """The receiver's answers to ``prepared`` (or the transport's failure) settled in one
        transaction: each entry delivered on a verified receipt, retried, or undeliverable."""
        party, batch, carries, batches, digests = (
            prepared.party, prepared.batch, prepared.carries, prepared.batches, prepared.digests
        )  # fmt: skip
        try:
            answers: list[Any] | None = sent.result()
        except TransportError as exc:
            answers = None
            reason = str(exc)
        sink: list[dict[str, Any]] = []
        settle = self.settlement
        if answers is None:
            done = [settle.retry(entry, now, reason, sink) for entry, _, _ in batch]
        else:
            each: list[Any] = [None] * len(batch)
            again: dict[int, str] = {}  # those a batch too large for the peer carried: why they go again
            shared: list[Any] = [None] * len(batch)  # the batch's one receipt, for each it carried
            cache: dict[Any, Any] = {}  # each receipt checked once, however many entries it settles
            unsent: list[AuditRow] = []
            for position, (carried, answer) in enumerate(zip(carries, answers, strict=True)):
                inner = answer.get("results") if isinstance(answer, dict) else None
                if (
                    position in batches
                    and isinstance(answer, dict)
                    and answer.get("status") == BATCH_KIND
                    and isinstance(inner, list)
                    and len(inner) == len(carried)
                ):  # the batch: one answer per message, in order, and one receipt naming those taken
                    receipt = answer.get("receipt")
                    # the receipts a resent batch's duplicates had the first time, each given once
                    kept = answer.get("receipts")
                    kept = kept if isinstance(kept, list) else []
                    for index, one in zip(carried, inner, strict=True):
                        each[index] = one
                        of = one.get("receipt_of") if isinstance(one, dict) else None
                        shared[index] = (
                            kept[of]
                            if isinstance(of, int) and not isinstance(of, bool) and 0 <= of < len(kept)
                            else receipt
                        )
                    if isinstance(receipt, str):
                        named = [batch[index][0].msg_id for index in carried]
                        unsent += settle.unsent(receipt, named, party, now, cache)
                elif position in prepared.resplit:
                    for index in carried:
                        again[index] = prepared.resplit[position]
                else:  # an envelope of its own, or a batch refused whole: the answer for each it carried
                    for index in carried:
                        each[index] = answer
            done = [
                settle.retry(entry, now, again[index], sink)
                if index in again
                else settle.answer(
                    entry, envelope, answer, now, sink, shared=shared[index], digest=digests.get(index),
                    cache=cache,
                )
                for index, ((entry, envelope, _), answer) in enumerate(zip(batch, each, strict=True))
            ]  # fmt: skip
            if unsent and sink:
                sink[-1]["heard"] = [*sink[-1].get("heard", ()), *unsent]
        self.relay_receipts(sink, now)  # a relay delivered: its receipt goes back to the originator
        written = set(self.fed.settle_many(sink, now_us=epoch_us(now)))  # one transaction for the batch
        # what this process settled: an entry whose compare-and-set another process won (it delivered
        # or settled it first) is that process's outcome, not one more of this one's
        return [d for d in done if d.msg_id in written]
