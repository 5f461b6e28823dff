"""The node kernel: what every service of one node shares, in one small object.

The exchange, the duties, the audit log, the stream and the shells all hold the same
:class:`NodeContext`: the store, the key ring, the clock, the catalogue and the release engine,
THE read decision (clearance, nationality, need-to-know and the visit window, Art. 8),
``record``/``refuse`` into the audit records, and the item view. They depend on it, never on
``Node`` (which only builds the parts and wires them) and never on one another's insides.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar

from gsomia._codec import (
    consent_from_content,
    equivalence_change_from_dict,
    person_from_dict,
    storable,
    storable_record,
)
from gsomia.core.access import AccessDecision, Person, ReadKey, Role, decide_read, read_key
from gsomia.core.catalogue import Catalogue
from gsomia.core.equivalences import AppliedChange, with_changes
from gsomia.core.instants import epoch_us
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Check, Consent, ConsentKind, ReleaseEngine
from gsomia.core.visits import VisitAuthorisation, VisitScope
from gsomia.crypto.atrest import PayloadCipher
from gsomia.crypto.envelope import EnvelopeError, verify_origin
from gsomia.crypto.keys import KeyRing
from gsomia.crypto.tls import TlsFiles
from gsomia.errors import (
    AccessDenied,
    ConflictError,
    GsomiaError,
    ItemGoneError,
    NotFoundError,
    RateLimitedError,
)
from gsomia.kernel._admission import Admission, parse_networks, parse_rates
from gsomia.kernel._grouped import GroupedAppend
from gsomia.kernel._items import PORTIONS, HoldAs, Item, Items, from_us, unknown_item
from gsomia.kernel._kept import Kept
from gsomia.kernel._peers import PeerDirectory
from gsomia.kernel._watch import ChangeWatch
from gsomia.store import (
    EQUIVALENCES,
    OVERFLOW_SOURCE,
    PEOPLE,
    VISITS,
    AuditRow,
    DutiesStore,
    EquivalenceStore,
    FederationStore,
    ItemRow,
    RateCounters,
    SharedState,
    Store,
    TallyRow,
    VisitRow,
)

__all__ = [
    "DEFAULT_PUBLIC_RATE",
    "Clock",
    "ManualClock",
    "NodeContext",
    "OneInstant",
    "ReadGate",
    "Seen",
    "checks_json",
    "node_hubs",
    "node_timezone",
    "system_clock",
]

Clock = Callable[[], datetime]

DEFAULT_PUBLIC_RATE = "1200/minute"
"""What one source may ask of a node without credentials, unless node.toml says otherwise."""
RATE_LIMITED = "rate.limited"


def system_clock() -> datetime:
    """The only clock read in a node (tests pass a fake one)."""
    return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told: ``clock()`` is the instant set, ``clock.now = t`` or
    ``clock.advance(days=31)`` moves it (the demo's replay of the record; tests' FakeClock)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2024, 3, 1, tzinfo=UTC)
        if self.now.utcoffset() is None:
            raise ValueError("a manual clock needs an aware start instant")

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward, e.g. ``clock.advance(days=31)``."""
        self.now += timedelta(**delta)
        return self.now


def checks_json(checks: Sequence[Check]) -> list[dict[str, Any]]:
    """A decision's checks as the audit records and the API show them."""
    return [{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in checks]


def node_timezone(catalogue: Catalogue, party: str) -> tzinfo:
    """The zone a node reads bare dates in: the one most of its party's agreements reckon their
    dates in (ties: the agreement first by id), UTC for a party in no agreement."""
    zones = Counter(a.timezone for a in catalogue.agreements_of(party))
    return zones.most_common(1)[0][0] if zones else UTC


def node_hubs(catalogue: Catalogue, party: str) -> tuple[str, ...]:
    """The hubs of the hub-topology agreements the party is in (TISA: the USA relays)."""
    return tuple(sorted({a.hub for a in catalogue.agreements_of(party) if a.hub is not None}))


def _kept(text: str, limit: int) -> str:
    """``text`` as an edge refusal's record keeps it: ``limit`` characters, ``…`` marking a cut."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


@dataclass(frozen=True, slots=True)
class Seen:
    """What the read decision lets one reader see of one item: ``item`` as they see it (``None``:
    nothing) and the decision. For an item in portions, ``item`` carries only the portions they may
    read and is labelled with the highest of those portions' labels."""

    item: Item | None
    decision: AccessDecision

    @property
    def allowed(self) -> bool:
        return self.item is not None


class Refusals:
    """How many refusals this process recorded, by the record's kind and the error's class (what
    ``/metrics`` reports; a process's counter, summed across processes by the monitoring).

    Kinds and error classes come from the code, never from a request; the table is bounded all the
    same, anything past ``limit`` distinct pairs counted under ``("other", "")``."""

    def __init__(self, limit: int = 512) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._limit = limit

    def count(self, kind: str, error: str) -> None:
        key = (kind, error)
        with self._lock:
            if key not in self._counts and len(self._counts) >= self._limit:
                key = ("other", "")
            self._counts[key] += 1

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class NodeContext:
    """One node's shared parts and the decisions every entry point must make the same way."""

    def __init__(
        self,
        *,
        party: str,
        catalogue: Catalogue,
        store: Store,
        ring: KeyRing,
        cipher: PayloadCipher,
        engine: ReleaseEngine,
        clock: Clock = system_clock,
        endpoint: str = "http://127.0.0.1:8443",
        max_payload_bytes: int = 1_048_576,
        max_clock_skew: timedelta = timedelta(minutes=5),
        watch: ChangeWatch | None = None,
        public_rate: str = DEFAULT_PUBLIC_RATE,
        rate_exempt: Sequence[str] = (),
        tls: TlsFiles | None = None,
        hold_as: HoldAs | None = None,
    ) -> None:
        self.party = party
        self.base_catalogue = catalogue  # the data files' agreements, before any equivalence change
        self.store = store
        self.ring = ring
        self.cipher = cipher
        self._base_engine = engine
        # (equivalences generation, catalogue, engine): the data files with the changes on file
        self._effective: tuple[int, Catalogue, ReleaseEngine] = (-1, catalogue, engine)
        self._effective_lock = threading.Lock()
        self._equivalences = EquivalenceStore(store)
        self.clock = clock
        self.endpoint = endpoint
        # TLS bound to the identity: served, presented to partners, partners' pins checked
        self.tls = tls
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew = max_clock_skew  # how far a partner's signed instants may be from ours
        self.timezone = node_timezone(catalogue, party)
        self.hubs = node_hubs(catalogue, party)
        self.fed = FederationStore(store)
        # the store's generation counters: the key ring and the peers are read again when they move
        self.watch = watch if watch is not None else ChangeWatch(SharedState(store))
        self.peers = PeerDirectory(self.fed, self.watch)
        self._grouped = GroupedAppend(store.append_audit)  # concurrent requests' records, one write
        store.on_bump(self.watch.stale)  # a write here that moved a counter: read them again at once
        # people's records and visits, read once and again when any process changes them
        self._people: Kept[str, Person] = Kept(self.watch, PEOPLE, self._load_person)
        self._visit_rows: Kept[str, tuple[VisitRow, ...]] = Kept(
            self.watch, VISITS, lambda person_id: tuple(self._visits.visits_of(person_id))
        )
        self.items = Items(party, lambda: self.catalogue, store, cipher, ring, hold_as)
        self._visits = DutiesStore(store)
        # refusals already in the audit records, so that an edge handler does not record them twice
        self._refused: weakref.WeakSet[BaseException] = weakref.WeakSet()
        self._refused_lock = threading.Lock()
        # this thread's refusals held back from a record each (:meth:`holding_refusals`), if any
        self._held = threading.local()
        self.refusals = Refusals()
        # what a source may ask without credentials, counted in the store (every process's)
        now_us = lambda: epoch_us(self.clock())  # noqa: E731 - the clock is read at each use
        self.admission = Admission(
            RateCounters(store, now_us), parse_rates(public_rate), parse_networks(rate_exempt), now_us=now_us
        )

    # --- the catalogue and the release engine: the data files with the equivalence changes on file ---

    @property
    def catalogue(self) -> Catalogue:
        """The parties and agreements, each agreement's equivalence table with the changes on file
        applied (rebuilt in every process when the store's ``equivalences`` counter moves)."""
        return self._current()[1]

    @property
    def engine(self) -> ReleaseEngine:
        """THE release engine over :attr:`catalogue` (the same rules, compiled again on a change)."""
        return self._current()[2]

    def _current(self) -> tuple[int, Catalogue, ReleaseEngine]:
        generation = self.watch.generation(EQUIVALENCES)
        current = self._effective
        if current[0] == generation:
            return current
        with self._effective_lock:
            current = self._effective
            if current[0] != generation:
                current = self._effective = self._rebuild(generation)
        return current

    def _rebuild(self, generation: int) -> tuple[int, Catalogue, ReleaseEngine]:
        applied = [
            AppliedChange(equivalence_change_from_dict(json.loads(row.change)), from_us(row.applies_us))
            for row in self._equivalences.changes()
        ]
        catalogue = with_changes(self.base_catalogue, applied)  # checked as a whole: fails closed
        if catalogue is self.base_catalogue:
            return generation, catalogue, self._base_engine
        return generation, catalogue, ReleaseEngine(catalogue, self._base_engine.rules)

    # --- the audit records ---

    def audit_row(
        self,
        kind: str,
        actor: str | None,
        subject: str | None,
        outcome: str,
        *,
        entry_id: str = "",
        **detail: Any,
    ) -> AuditRow:
        """An audit record stamped now, for the caller to write in its own transaction. The text a
        caller chose (the actor, the subject, the detail) is made :func:`storable` here, the one
        place every record is made: a NUL or a lone surrogate is kept as its escape on every store."""
        if outcome == "refused":
            self.refusals.count(kind, str(detail.get("error", "")))
        return AuditRow(
            epoch_us(self.clock()),
            kind,
            None if actor is None else storable(actor),
            None if subject is None else storable(subject),
            outcome,
            storable_record(detail),
            entry_id=entry_id,
        )

    def record(self, kind: str, actor: str | None, subject: str | None, outcome: str, **detail: Any) -> None:
        """Write one audit record now (grouped with other requests' records written at the same
        time into one transaction; this returns once it is committed)."""
        self._grouped.append([self.audit_row(kind, actor, subject, outcome, **detail)])

    def append_records(self, rows: Sequence[AuditRow]) -> None:
        """Write ``rows`` (:meth:`audit_row`) now, in one transaction with other requests' records
        written at the same time (the same group as :meth:`record`); returns once committed."""
        self._grouped.append(rows)

    def refuse(self, kind: str, actor: str | None, subject: str | None, error: GsomiaError) -> GsomiaError:
        """Record a refusal (once per error) and hand the error back to raise."""
        if self.recorded(error):
            return error
        detail: dict[str, Any] = {"error": type(error).__name__, "reason": str(error)}
        if isinstance(error, AccessDenied):
            detail["checks"] = checks_json(error.decision.checks)
        held: list[tuple[str, str, str | None, dict[str, Any]]] | None = getattr(self._held, "refusals", None)
        if held is not None and actor is not None:
            held.append((kind, actor, subject, detail))  # tallied when the holder is done
        else:
            self._grouped.append([self.audit_row(kind, actor, subject, "refused", **detail)])
        self.mark_recorded(error)
        return error

    @contextmanager
    def holding_refusals(self) -> Iterator[None]:
        """Many refusals of one caller's request (a TAXII POST of a thousand objects, each ingested
        on its own): while this holds, :meth:`refuse` in this thread keeps each refusal naming an
        actor, and on leaving they are audited in bounded space through :meth:`tally`, per actor,
        kind, error and window (the first :data:`REFUSALS_RECORDED` the records :meth:`refuse`
        writes, the rest counted; one ``refusal.tally`` record with the exact count). Without it, one
        request could write one permanent record per object it carried."""
        if getattr(self._held, "refusals", None) is not None:  # an outer holder tallies these
            yield
            return
        held: list[tuple[str, str, str | None, dict[str, Any]]] = []
        self._held.refusals = held
        try:
            yield
        finally:
            self._held.refusals = None
            self._tally_held(held)

    def _tally_held(self, held: list[tuple[str, str, str | None, dict[str, Any]]]) -> None:
        groups: dict[tuple[str, str, str], list[tuple[str | None, dict[str, Any]]]] = {}
        for kind, actor, subject, detail in held:
            groups.setdefault((kind, actor, detail["error"]), []).append((subject, detail))
        for (kind, actor, code), group in groups.items():

            def rows(
                counted_as: str,
                _actor: str,
                own: int,
                of: list[tuple[str | None, dict[str, Any]]] = group,
                kind: str = kind,
                actor: str = actor,
            ) -> list[AuditRow]:
                where = {} if counted_as == actor[:64] else {"counted_as": counted_as}
                return [
                    self.audit_row(kind, actor, subject, "refused", **detail, **where)
                    for subject, detail in of[:own]
                ]

            self.tally(kind, actor, code, str(group[0][1]["reason"]), rows, count=len(group))

    def mark_recorded(self, error: BaseException) -> None:
        """Note that ``error`` is in the audit records already (written by the caller)."""
        with self._refused_lock:
            self._refused.add(error)

    def recorded(self, error: BaseException) -> bool:
        """Whether this very error was recorded as a refusal (the API's handlers then do not)."""
        with self._refused_lock:
            return error in self._refused

    def record_refusal(
        self,
        kind: str,
        subject: str | None,
        status: int,
        reason: str,
        source: str | None = None,
        actor: str | None = None,
    ) -> int | None:
        """A refusal decided at the edge (a malformed request, an unknown route): audited all the same,
        in bounded space when it came from a network ``source`` (see :meth:`tally_refusal`); one
        record naming the ``actor`` when the caller is known. The seconds the source must wait if
        this refusal spent its budget (the edge then answers 429), else ``None``. The ``subject`` (a
        request's path) and ``reason`` are the caller's text in part: each kept to
        :data:`EDGE_SUBJECT_KEPT` (what the audit's subject column holds) and :data:`EDGE_REASON_KEPT`
        characters, so a source's records are bounded in size as the tally bounds them in number,
        and a path too long for the column is still recorded, cut."""
        subject = None if subject is None else _kept(subject, self.EDGE_SUBJECT_KEPT)
        reason = _kept(reason, self.EDGE_REASON_KEPT)
        if actor is not None:
            self.record(kind, actor, subject, "refused", status=status, reason=reason)
            return None
        return self.tally_refusal(kind, source, str(status), subject, reason, status=status)

    EDGE_SUBJECT_KEPT = 256
    """Of an edge refusal's subject (a request's path), the characters its audit record keeps."""
    EDGE_REASON_KEPT = 1024
    """Of an edge refusal's reason, the characters its audit record keeps."""

    # --- refusals of callers nobody has authenticated: audited in bounded space ---

    REFUSAL_WINDOW_S = 60
    """The window refusals are counted in, per kind, source and code."""
    REFUSALS_RECORDED = 10
    """Of one kind, source and code, the refusals of a window that are records of their own."""
    REFUSAL_SOURCES = 16
    """Sources of one kind and code per window with their own count; the rest are counted as ``*``."""
    GROUPS_RECORDED: ClassVar[dict[tuple[str, str], int]] = {
        ("stream.receive", "duplicate"): 16,
        ("stream.dropped", "behind"): 1,  # a consumer's first drop of a window: a record naming how many
    }
    """Kinds and codes counted in groups, each record of its own naming how many its group held (a
    stream partner's duplicates, counted in tracks, one record a group): a group has one while fewer
    than this many were counted before it in the window. Their window's ``refusal.tally`` record is
    written whenever the window counted any (the records of their own may have named them all)."""

    def tally_refusal(
        self,
        kind: str,
        source: str | None,
        code: str,
        subject: str | None,
        reason: str,
        *,
        count: int = 1,
        **detail: Any,
    ) -> int | None:
        """Audit ``count`` refusals of a caller nobody has authenticated (a bad token, an envelope
        that does not open, a malformed request), from the network address ``source``.

        What such a caller can make the node store is bounded: per kind, source and ``code`` (a
        finite vocabulary: an envelope's refusal code, an HTTP status) and per window of
        :data:`REFUSAL_WINDOW_S`, the first :data:`REFUSALS_RECORDED` are records of their own
        (each naming the source); the rest are counted in the store, and one ``refusal.tally``
        record says how many once the window has closed (:meth:`close_refusal_tallies`). At most
        :data:`REFUSAL_SOURCES` sources are told apart per kind, code and window. Without a
        ``source`` (an in-process caller, the operator's own files) each refusal is a record.

        Each refusal also spends one unit of the source's budget (:class:`Admission`): the seconds
        it must wait once that is spent, else ``None``.
        """
        if source is None:
            for _ in range(count):
                self.record(kind, None, subject, "refused", reason=reason, **detail)
            return None

        def rows(counted_as: str, address: str, n: int) -> list[AuditRow]:
            where = (
                {"source": counted_as}
                if counted_as == address
                else {"source": counted_as, "address": address}
            )
            return [
                self.audit_row(kind, None, subject, "refused", reason=reason, **where, **detail)
                for _ in range(n)
            ]

        self.tally(kind, source, code, reason, rows, count=count)
        return None if kind == RATE_LIMITED else self.admission.spend(storable(source[:64]), count)

    def tally(
        self,
        kind: str,
        source: str,
        code: str,
        reason: str,
        rows: Callable[[str, str, int], Sequence[AuditRow]],
        *,
        count: int = 1,
    ) -> int:
        """Count ``count`` refusals (or drops) of ``kind`` and ``code`` from ``source`` in the store's
        tally of the current window, in bounded space (:meth:`tally_refusal`'s, without spending the
        source's budget): ``rows(counted_as, source, n)`` makes the records of their own for ``n`` of
        them (``counted_as`` is ``*`` once a window's sources are too many to tell apart) while the
        window's budget for the kind and code lasts (:data:`REFUSALS_RECORDED`, or
        :data:`GROUPS_RECORDED`'s); the rest are only counted, and one ``refusal.tally`` record says
        how many once the window has closed. How many were recorded on their own."""
        now = epoch_us(self.clock())
        window = now - now % (self.REFUSAL_WINDOW_S * 1_000_000)
        source, code = storable(source[:64]), storable(code[:64])
        address = source
        return self.store.tally_refusals(
            (kind, source, code, window),
            now,
            count,
            storable(reason[:500]),
            sources=self.REFUSAL_SOURCES,
            recorded=self.GROUPS_RECORDED.get((kind, code), self.REFUSALS_RECORDED),
            rows=lambda counted_as, n: rows(counted_as, address, n),
        )

    def refuse_unauthenticated(
        self, kind: str, source: str | None, code: str, error: GsomiaError
    ) -> GsomiaError:
        """:meth:`refuse` for a caller nobody has authenticated: audited by :meth:`tally_refusal`;
        once the source's refusals have spent its budget, a :class:`RateLimitedError` instead."""
        if self.recorded(error):
            return error
        wait = self.tally_refusal(kind, source, code, None, str(error), error=type(error).__name__)
        self.mark_recorded(error)
        return error if wait is None else self.rate_limited(source, kind, wait)

    def rate_limited(self, source: str | None, subject: str | None, wait: int) -> RateLimitedError:
        """The refusal of a source that has spent its budget (``wait`` seconds until its window
        ends), audited in bounded space as ``rate.limited``, to raise."""
        error = RateLimitedError(wait)
        self.tally_refusal(RATE_LIMITED, source, "429", subject, str(error), error=type(error).__name__)
        self.mark_recorded(error)
        return error

    def close_refusal_tallies(self) -> int:
        """One ``refusal.tally`` record for each closed window whose refusals went beyond the ones
        recorded on their own (how many, from whom, when, a sample); the window's count is then
        forgotten. The node's background loop calls it; any process may. How many windows closed."""
        now = epoch_us(self.clock())
        current = now - now % (self.REFUSAL_WINDOW_S * 1_000_000)

        def rows(closed: list[TallyRow]) -> list[AuditRow]:
            return [
                self.audit_row(
                    "refusal.tally",
                    None,
                    tally.kind,
                    "refused",
                    source=tally.source,
                    code=tally.code,
                    count=tally.count,
                    **self._recorded_of(tally),
                    window=from_us(tally.window_us).isoformat(),
                    seconds=self.REFUSAL_WINDOW_S,
                    first=from_us(tally.first_us).isoformat(),
                    last=from_us(tally.last_us).isoformat(),
                    sample=tally.sample,
                )
                for tally in closed
                if tally.count > self.REFUSALS_RECORDED
                or tally.source == OVERFLOW_SOURCE
                or (tally.kind, tally.code) in self.GROUPS_RECORDED
            ]

        return len(self.store.close_tallies(current, rows))

    def _recorded_of(self, tally: TallyRow) -> dict[str, Any]:
        """How many of a closed window's refusals were records of their own (``recorded``); none
        said for a kind counted in groups, whose records each named their group's count."""
        if (tally.kind, tally.code) in self.GROUPS_RECORDED:
            return {}
        return {"recorded": min(tally.count, self.REFUSALS_RECORDED)}

    # --- people and the read decision ---

    def _load_person(self, person_id: str) -> Person | None:
        record = self.store.get_person(person_id)
        return None if record is None else person_from_dict(json.loads(record), self.catalogue)

    def person(self, person_id: str) -> Person:
        """A registered person; :class:`NotFoundError` if there is none. Kept read while no process
        changes anyone's record (the ``people`` generation)."""
        person = self._people.get(person_id)
        if person is None:
            raise NotFoundError(f"no person {person_id!r} at this node")
        return person

    def kept_person(self, person_id: str) -> Person | None:
        """The person's record if this process keeps it and no process changed anyone's since the
        counters were last read; ``None`` otherwise (then ask :meth:`person`). Never reads the store."""
        return self._people.peek(person_id)

    def visit_scope(self, person_id: str, at: datetime) -> VisitScope | None:
        """The reader's visits at ``at`` (Art. 8); ``None`` for someone who is not a visitor. The
        visits are kept read while no process authorises one (the ``visits`` generation)."""
        rows = self._visit_rows.get(person_id)
        if not rows:
            return None
        return VisitScope(
            tuple(
                VisitAuthorisation(
                    r.id,
                    r.person_id,
                    self.party,
                    r.highest,
                    from_us(r.starts_us),
                    from_us(r.ends_us),
                    r.purpose,
                )
                for r in rows
            ),
            at,
        )

    def decide_read(self, actor: Person, label: SecurityLabel, item: str | None = None) -> AccessDecision:
        """THE read decision: ``decide_read`` with the reader's visit authorisations now and, for a
        reader who states another purpose than the item's, the originator's consents to new
        purposes on file for ``item`` (or standing; none counts without ``item`` but a standing one)."""
        now = self.clock()
        return decide_read(
            actor,
            label,
            self.catalogue,
            visit=self.visit_scope(actor.id, now),
            holder=self.party,
            consents=self.purpose_consents(actor, label, item, now),
            item=item,
            at=now,
        )

    def purpose_consents(
        self, actor: Person, label: SecurityLabel, item: str | None, now: datetime
    ) -> tuple[Consent, ...]:
        """The originator's consents to new purposes (Art. 6(b)) on file for ``item`` (and its
        standing ones), each verified against its signer's key; read only when ``actor`` states a
        purpose other than the item's, for a partner's item (one that does not verify is left out)."""
        if not self.consents_matter(actor, label):
            return ()
        found = []
        for row in self.fed.consents_for(label.originator, item or ""):
            if row.kind != ConsentKind.NEW_PURPOSE.value or (row.item_id is not None and row.item_id != item):
                continue
            try:
                signer, raw = verify_origin(row.jws, self.peers.peer, now, own=self.ring)
                found.append(consent_from_content(raw, signer)[1])
            except (EnvelopeError, GsomiaError):
                continue
        return tuple(found)

    def consents_matter(self, actor: Person, label: SecurityLabel) -> bool:
        """Whether the originator's consents to new purposes count in ``actor``'s decision on ``label``
        (they state another purpose than the item's, of a partner's item): only then does the
        decision depend on the item, not on its label alone."""
        return actor.purpose is not None and actor.purpose != label.purpose and label.originator != self.party

    def view(self, actor: Person, item: Item) -> Seen:
        """THE read decision of an item: what ``actor`` may see of it (:meth:`ReadGate.view`)."""
        return self.reader(actor).view(item)

    def resolve(self, actor: Person | None, ref: str, originator: str | None = None) -> str:
        """This node's reference for the item a person names by ``ref`` (issue 22 §4: an item is
        (originator, id), and two originators' items may share an id here): the item ``ref`` is the
        reference of, or whose originator gave it that id, or ``ORIGINATOR:id``; with ``originator``,
        only that originator's. Of several, only those ``actor`` may read count (so the answer says
        nothing of an item they may not read); more than one of those is a :class:`ConflictError`
        asking which. None: the reference as given (the service it goes to says it is unknown), or,
        with ``originator``, unknown here."""
        return self.resolve_row(actor, ref, originator)[0]

    def resolve_row(
        self, actor: Person | None, ref: str, originator: str | None = None
    ) -> tuple[str, ItemRow | None]:
        """:meth:`resolve`, with the stored row it found (``None`` where the reference is given back
        as is): a read that follows hands it to :meth:`read_item` instead of reading it again."""
        rows = self.store.items_named(ref, originator)
        if len(rows) > 1 and actor is not None:
            gate = self.reader(actor)
            rows = [r for r in rows if gate.view(self.items.item(r)).item is not None]
        if len(rows) == 1:
            return rows[0].id, rows[0]
        if not rows:
            if originator is None:
                return ref, None
            who = actor.id if actor is not None else "operator"
            raise self.refuse("item.resolve", who, ref, NotFoundError(unknown_item(ref)))
        names = sorted({r.originator for r in rows})
        raise ConflictError(
            f"item id {ref} names {len(rows)} items here (of {' and '.join(names)}): say whose, with "
            f"originator={names[-1]} (--originator {names[-1]}) or as {names[-1]}:{rows[0].name}"
        )

    def readable(
        self, actor: Person, item_id: str, kind: str, row: ItemRow | None = None
    ) -> tuple[ItemRow, Item, AccessDecision]:
        """The row, the item as ``actor`` sees it and the decision, if ``actor`` may read ``item_id``
        (of an item in portions, the portions they may read: :meth:`view`); ``row``: its stored row,
        where the caller has just read it (:meth:`resolve_row`).

        To the reader, an item they may not read and an item this node does not hold are the
        same: both raise :class:`NotFoundError` with the same words, so neither the status, the
        message nor the checks say that the item exists or what its label is. Why it was refused
        is in the audit records (``kind``, with every check), for the security officer.
        """
        try:
            row = row if row is not None and row.id == item_id else self.items.row(item_id)
            seen = self.view(actor, self.items.item(row))
            if seen.item is None:
                raise AccessDenied(seen.decision)
            item, decision = seen.item, seen.decision
        except AccessDenied as exc:
            self.refuse(kind, actor.id, item_id, exc)
            hidden = NotFoundError(unknown_item(item_id))
            self.mark_recorded(hidden)
            raise hidden from None
        except GsomiaError as exc:
            raise self.refuse(kind, actor.id, item_id, exc) from None
        return row, item, decision

    def read_item(self, actor: Person, item_id: str, row: ItemRow | None = None) -> tuple[Item, bytes]:
        """The item and its payload, if ``actor`` may read it (the read is recorded either way);
        one they may not read is refused as an unknown one (:meth:`readable`). ``row``: its stored
        row, where the caller has just read it (:meth:`resolve_row`)."""
        row, item, decision = self.readable(actor, item_id, "item.read", row)
        try:
            if row.state != "held":
                raise ItemGoneError(
                    f"item {item_id} was {row.state}: its record remains, its payload is gone"
                )
            if item.payload_type == PORTIONS:
                payload = self.items.portions_payload(row, item.portions)
            else:
                payload = self.items.payload(row)
        except GsomiaError as exc:
            raise self.refuse("item.read", actor.id, item_id, exc) from None
        shown = {"portions": [m.id for m in item.portions]} if item.portions else {}
        self.record("item.read", actor.id, item_id, "allowed", checks=checks_json(decision.checks), **shown)
        return item, payload

    def readable_ids(self, actor: Person, item_ids: Iterable[str], *, whole: bool = False) -> set[str]:
        """Of ``item_ids``, those ``actor`` may read (one this node does not hold is not): for views
        that list entries about items (the outbox, consent requests), which show only these. With
        ``whole``, an item in portions counts only if they may read every portion held: an entry
        about the whole item (a release's per-portion explanation) would speak of the others."""
        gate = self.reader(actor)
        found: set[str] = set()
        for item_id in item_ids:
            row = self.store.get_item(item_id)
            if row is None:
                continue
            item = self.items.item(row)
            seen = gate.view(item).item
            if seen is not None and (not whole or seen.portions == item.portions):
                found.add(item_id)
        return found

    def reader(self, actor: Person) -> ReadGate:
        """The same decision for a run of reads by one person (a page, a subscription)."""
        return ReadGate(self, actor)

    @staticmethod
    def holds_any(actor: Person | None, roles: Sequence[Role]) -> bool:
        """Whether ``actor`` is the local operator or, active, holds one of ``roles`` (nothing recorded:
        for a shell choosing what to show; :meth:`require_any` is the check that refuses)."""
        return actor is None or (actor.active and bool(actor.roles.intersection(roles)))

    def require_any(self, actor: Person | None, roles: Sequence[Role], what: str) -> None:
        """Refuse (and record) unless ``actor`` is the local operator or holds one of ``roles``."""
        if actor is None or self.holds_any(actor, roles):
            return
        names = " or ".join(r.value for r in roles)
        decision = AccessDecision(False, actor.id, (Check("role", False, f"{what} needs the {names} role"),))
        raise self.refuse(f"authz.{what}", actor.id, None, AccessDenied(decision))


class ReadGate:
    """:meth:`NodeContext.decide_read` for one person over many reads: the visits are read once
    and again only when the clock passes a visit's start or end (the window of Art. 8).

    ``generation`` changes whenever the visits were read again, so a caller that keeps
    decisions per label (a stream consumer) knows to forget them.
    """

    def __init__(self, context: NodeContext, person: Person) -> None:
        self.context = context
        self.person = person
        self.generation = 0
        self._scope: VisitScope | None = None
        self._until: float | None = None
        self._refresh()

    def _refresh(self) -> None:
        now = self.context.clock()
        self._scope = self.context.visit_scope(self.person.id, now)
        self._until = None
        if self._scope is not None:
            edges = [t.timestamp() for v in self._scope.visits for t in (v.starts, v.ends) if t > now]
            self._until = min(edges) if edges else None
        self.generation += 1

    def current(self) -> int:
        """The generation of the visits the next decision uses (read again if a window edge passed)."""
        if self._until is not None and self.context.clock().timestamp() >= self._until:
            self._refresh()
        return self.generation

    def decide(self, label: SecurityLabel, item: str | None = None) -> AccessDecision:
        """The read decision for ``label`` (of ``item``: its consents to new purposes count)."""
        self.current()
        return self._decide(label, item, self.context.clock(), self.context.catalogue)

    def _decide(
        self, label: SecurityLabel, item: str | None, now: datetime, catalogue: Catalogue
    ) -> AccessDecision:
        context = self.context
        return decide_read(
            self.person,
            label,
            catalogue,
            visit=self._scope,
            holder=context.party,
            consents=context.purpose_consents(self.person, label, item, now),
            item=item,
            at=now,
        )

    def at_one_instant(self) -> ReadGate:
        """This reader's decisions for one run of reads taken together (a page): all at one instant,
        under one catalogue and one reading of the visits, and each label's decided once
        (:class:`OneInstant`). Ask for a new one for the next run."""
        return OneInstant(self)

    def view(self, item: Item) -> Seen:
        """What this reader may see of ``item``: all of it or nothing for an item signed whole; of an
        item in portions, each portion decided on its own label and the item shown with those they
        may read, labelled with the highest of theirs (decided again: it must pass too). A reader
        who may read no portion is refused with the checks on the whole item's label."""
        if not item.portions:
            decision = self.decide(item.label, item.name)
            return Seen(item if decision.allowed else None, decision)
        visible = [m for m in item.portions if self.decide(m.label, item.name).allowed]
        if not visible:
            whole = self.decide(item.label, item.name)
            if whole.allowed:  # cannot be (every portion is within the whole); fail closed all the same
                refused = Check("portions", False, "no portion of the item may be read")
                whole = AccessDecision(False, whole.person, (*whole.checks, refused))
            return Seen(None, whole)
        shown = self.context.items.shown(item, visible)
        decision = self.decide(shown.label, item.name)
        return Seen(shown if decision.allowed else None, decision)


class OneInstant(ReadGate):
    """:class:`ReadGate`'s decision for a run of reads taken together (one page): the instant, the
    catalogue and the visits read once at the start, and the decision memoised by what it reads of
    the label (:func:`~gsomia.core.access.read_key`): a page of 1,000 items holds few distinct keys,
    and for one person at one instant the decision is a pure function of the key (issue 18).

    The decision itself is :meth:`ReadGate._decide`, the one :meth:`ReadGate.decide` makes; nothing
    is decided here on a side path. Where the item's own consents count (a reader stating another
    purpose, :meth:`NodeContext.consents_matter`) each item is decided on its own, never from the
    memo. The memo lives as long as this object: a change to the person, a label, a visit or a
    consent is seen by the next run."""

    _MEMO_LIMIT = 4096

    def __init__(self, gate: ReadGate) -> None:
        gate.current()  # the visits as they are now (read again if a window edge passed)
        self.context = gate.context
        self.person = gate.person
        self.generation = gate.generation
        self._scope = gate._scope
        self._until = None
        self._now = gate.context.clock()
        self._catalogue = gate.context.catalogue
        self._memo: dict[ReadKey, AccessDecision] = {}

    def current(self) -> int:
        return self.generation

    def decide(self, label: SecurityLabel, item: str | None = None) -> AccessDecision:
        if self.context.consents_matter(self.person, label):
            return self._decide(label, item, self._now, self._catalogue)
        key = read_key(label)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= self._MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[key] = self._decide(label, item, self._now, self._catalogue)
        return found
