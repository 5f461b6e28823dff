"""Release decisions per second: gsomia's engine against PyCasbin holding the same rules.

What is measured
----------------
A fixed-seed workload of a few hundred distinct release requests over the shipped
catalogue (``gsomia.load_catalogue()``) is decided by two engines in one process:

* gsomia: ``ReleaseEngine(catalogue).decide(request, at=instant)``, engine built once
  and warmed by a full pass over the workload;
* PyCasbin: one ``casbin.Enforcer`` built once from a model text and policy rows
  generated from the catalogue data, called as ``enforcer.enforce(req)``.

Before anything is timed, every request is decided by both engines and the answers
must be equal (casbin's allow/deny against gsomia's ``decision.allowed``); if any
differ, they are printed and the script exits with status 1. The shipped history never
takes an agreement out of force, so the same check is repeated on the counterfactual
catalogue of ``gsomia.demo.scenario`` (no 2019 suspension: GSOMIA ends on 2019-11-23), which
exercises the end of an in-force interval; that check is not timed. Each engine is then timed
with ``time.perf_counter`` over whole passes of the workload (garbage collector off
during a pass, the process pinned to one CPU where the OS allows it), and the best
pass gives decisions per second. The targets (gsomia at least 20 times PyCasbin, and at
least 200,000 decisions per second on one core) are printed as met or NOT met; nothing
about timing is asserted.

The workload mixes direct KOR<->JPN, JPN<->USA and KOR<->USA routes, hub relays
KOR->USA->JPN and JPN->USA->KOR with and without a HUB_RELAY consent (or the stream's
TRACK_RELAY, which never carries an item), third-party releases (sender is not the originator)
with and without a THIRD_PARTY consent (standing, per item, naming the holder or hub, naming both
item and holder or hub, for another item, dated after the instant, expired, naming another holder,
hub or recipient; some naming the purpose they authorise, the request's or another), the
recipients' Art. 7(5) assurances (as the record implies them; sometimes one missing, revoked
before or after the instant, or given after it), items going back to their originator after the
counterfactual's end of GSOMIA, every level of each scheme (Korea's 군사I급비밀 and Japan's 特定秘密
among them), topics inside and outside TISA's and the missile-warning arrangement's scope
(and none), permitted and refused purposes (and a requested use that differs from the
label's purpose), releasable_to lists that do and do not cover the receivers, caveats
(none, NOFORN, IP-RESTRICTED, G2G-ONLY, and ORCON, which gsomia does not know) and
instants from 2014 to 2024, with extra weight on the boundaries: TISA's and GSOMIA's
entry into force, the 2019 notice period, the suspension, and 2023-12-19.

How the PyCasbin encoding mirrors each rule
-------------------------------------------
The model is ABAC: ``r = req`` (one request object with raw attributes only: sender,
hub, recipient, originator, level, purpose requested, purpose on the label, topics,
releasable_to, caveats, item, consents, and the instant as a fixed-width UTC ISO string),
``p = agreement, sender, hub, recipient, receivers, start, end, levels, purposes, scope``
and ``e = some(where (p.eft == allow))``: a request is allowed when one policy row
matches, as gsomia allows when one candidate agreement passes every rule. The rows are
generated from the catalogue data, never by asking gsomia's engine: one row per
agreement, per route its topology carries (``agreement.routes_directly`` for each
ordered pair of parties, hub empty; ``agreement.relays`` through one hub), and per
maximal in-force interval of ``agreement.transitions``. The matcher is a conjunction:

* route: ``r.req.sender == p.sender && r.req.recipient == p.recipient && r.req.hub ==
  p.hub``; a request on a route no agreement carries matches no row and is denied.
* agreement_in_force: ``p.start <= r.req.at && r.req.at < p.end``; consecutive
  transitions whose status is in force (in force, notice given, notice suspended) are
  merged into one interval, and an interval still open ends in year 9999. A terminated
  interval has its own rows with ``p.returns_only`` set: they match only an item going
  straight back to its originator from a holder, created before the termination (Art. 6(h),
  21.4).
* equivalence and level_validity: each interval is cut at every instant a row of the
  agreement's equivalence table or a level of its parties starts or ends; per piece,
  ``p.levels`` lists every ``originator/level`` of every party's scheme for which
  ``agreement.equivalence.map(originator, level, receiver, at=piece start)`` names a level for
  each receiver of the route (the recipient, and the hub on a relay) other than the
  originator itself, both levels existing then; ``has_equivalent`` looks the pair up. A level
  absent from the table, such as 군사I급비밀, is in no row's list.
* releasability: ``releasable(r.req.releasable_to, p.receivers, r.req.originator)``:
  every receiver but the originator is named on the label.
* caveats: the table of caveats gsomia ships (``gsomia.core.labels.CAVEATS``, data) is
  split by effect into literal lists in the matcher: every caveat must be known
  (``subset``), none may block all release (``disjoint``), and one that blocks onward
  release passes only when the originator sends it directly (no holder, no hub).
* purpose: ``r.req.purpose == r.req.label_purpose && member(r.req.purpose,
  p.purposes)``, with ``p.purposes`` from ``agreement.purposes``.
* scope: ``in_scope(r.req.topics, p.scope)``: ``*`` when ``agreement.scope_topics`` is
  None (all military information); otherwise the topics must be non-empty and all listed.
* label: ``r.req.created <= r.req.at``: an item is not released before its label says
  it was created.
* third_party: ``r.req.sender == r.req.originator || third_party_consents(...)``: when a
  holder passes the item on, every receiver of the route (hub included) other than the
  originator is named by a THIRD_PARTY consent of the originator, for any holder or this
  sender, standing or for this item, for any purpose or the request's, given at or before the
  instant and not yet expired.
* assurance: ``assured(...)``: every receiver of the route other than the originator gave its
  Art. 7(5) assurance under the row's agreement at or before the instant, not revoked by then.
* hub_authorisation: ``p.hub == '' || hub_consent(...)``: on a relay row, a consent by the
  originator naming the recipient. For an item (issue 14 §3) a HUB_RELAY naming that very item
  and that hub; for what is not an item a HUB_RELAY or TRACK_RELAY for any hub or this one;
  with the same purpose and time conditions.

Run: ``python benchmarks/bench_policy.py`` (add ``--json`` for a JSON object).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from itertools import pairwise
from typing import Any, NamedTuple, TextIO
from zoneinfo import ZoneInfo

import casbin  # type: ignore[import-untyped]
from casbin.model import Model  # type: ignore[import-untyped]

from _machine import cpu_model, pin_one_core  # benchmarks/ is on sys.path when run as a script
from _rows import row
from _timing import best_pass
from gsomia import (
    Catalogue,
    Consent,
    ConsentKind,
    ReleaseDecision,
    ReleaseEngine,
    ReleaseRequest,
    load_catalogue,
)
from gsomia.core.agreements import Agreement, Status
from gsomia.core.labels import CAVEATS, CaveatEffect
from gsomia.core.policy import Assurance, assumed_assurances
from gsomia.demo.scenario import GSOMIA, WHAT_IF_EVENT

SEED = 20191122
REQUESTS = 400
RATIO_TARGET = 20.0
THROUGHPUT_TARGET = 200_000.0
BUDGET_S = 6.0  # per engine, after the first five passes (_timing.best_pass)

KST = ZoneInfo("Asia/Seoul")
FOREVER = "9999-12-31T23:59:59.999999Z"
ITEM_TOPICS = ("dprk-missile", "dprk-nuclear")
OTHER_TOPICS = ("prc-navy",)  # the only declared topic outside the agreements' missile scope
PURPOSES = ("threat-assessment", "missile-warning", "defence-cooperation", "training-exchange")
UNKNOWN_CAVEAT = "ORCON"  # not in gsomia's caveat table: fails closed in both engines


def utc(at: datetime) -> str:
    """A fixed-width UTC ISO string: these compare in time order as plain strings."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --------------------------------------------------------------------------- casbin side


class CasbinConsent(NamedTuple):
    """A consent as raw attributes (instants as UTC strings, None where absent)."""

    kind: str
    originator: str
    recipient: str
    holder: str | None
    hub: str | None
    item: str | None
    given: str
    expires: str | None
    purpose: str | None


class CasbinAssurance(NamedTuple):
    """An Art. 7(5) assurance as raw attributes (instants as UTC strings, None where absent)."""

    agreement: str
    party: str
    given: str
    revoked: str | None


class CasbinRequest:
    """The ``r.req`` object: raw request attributes only, no decision material."""

    __slots__ = (
        "assurances",
        "at",
        "caveats",
        "consents",
        "created",
        "hub",
        "item",
        "label_purpose",
        "level",
        "originator",
        "purpose",
        "recipient",
        "releasable_to",
        "sender",
        "topics",
    )

    def __init__(self, request: ReleaseRequest, at: datetime) -> None:
        label = request.label
        self.sender = request.sender
        self.hub = request.via[0] if request.via else ""
        self.recipient = request.recipient
        self.originator = label.originator
        self.level = label.classification
        self.purpose = request.purpose
        self.label_purpose = label.purpose
        self.topics = label.topics
        self.releasable_to = label.releasable_to
        self.caveats = label.caveats
        self.item = request.item
        self.at = utc(at)
        self.created = utc(label.created)
        self.consents = tuple(
            CasbinConsent(
                c.kind.value,
                c.originator,
                c.recipient,
                c.holder,
                c.hub,
                c.item,
                utc(c.given_at),
                None if c.expires is None else utc(c.expires),
                c.purpose,
            )
            for c in request.consents
        )
        self.assurances = tuple(
            CasbinAssurance(
                a.agreement, a.party, utc(a.given_at), None if a.revoked_at is None else utc(a.revoked_at)
            )
            for a in request.assurances
        )

    def describe(self) -> str:
        route = (
            f"{self.sender}->{self.hub}->{self.recipient}" if self.hub else f"{self.sender}->{self.recipient}"
        )
        return (
            f"{route} at {self.at}: {self.originator} {self.level}, purpose {self.purpose} "
            f"(label {self.label_purpose}), topics {sorted(self.topics)}, releasable to "
            f"{sorted(self.releasable_to)}, caveats {sorted(self.caveats)}, item {self.item}, "
            f"consents {list(self.consents)}, assurances {list(self.assurances)}"
        )


_TOKENS: dict[str, frozenset[str]] = {}


def tokens(text: str) -> frozenset[str]:
    """A ';'-separated policy or matcher list as a set (split once, then cached)."""
    found = _TOKENS.get(text)
    if found is None:
        found = _TOKENS[text] = frozenset(text.split(";")) if text else frozenset()
    return found


def has_equivalent(levels: str, originator: str, level: str) -> bool:
    return f"{originator}/{level}" in tokens(levels)


def releasable(releasable_to: frozenset[str], receivers: str, originator: str) -> bool:
    return all(r == originator or r in releasable_to for r in tokens(receivers))


def member(value: str, listed: str) -> bool:
    return value in tokens(listed)


def subset(values: frozenset[str], listed: str) -> bool:
    return tokens(listed).issuperset(values)


def disjoint(values: frozenset[str], listed: str) -> bool:
    return tokens(listed).isdisjoint(values)


def in_scope(topics: frozenset[str], scope: str) -> bool:
    return scope == "*" or (bool(topics) and tokens(scope).issuperset(topics))


def _in_time(consent: CasbinConsent, item: str | None, purpose: str, at: str) -> bool:
    """On file at ``at``, for this item (or standing) and this purpose (or any)."""
    return (
        (consent.item is None or consent.item == item)
        and (consent.purpose is None or consent.purpose == purpose)
        and consent.given <= at
        and (consent.expires is None or at < consent.expires)
    )


def third_party_consent(
    consents: Sequence[CasbinConsent],
    originator: str,
    recipient: str,
    holder: str,
    item: str | None,
    purpose: str,
    at: str,
) -> bool:
    return any(
        c.kind == ConsentKind.THIRD_PARTY.value
        and c.originator == originator
        and c.recipient == recipient
        and c.holder in (None, holder)
        and _in_time(c, item, purpose, at)
        for c in consents
    )


def third_party_consents(
    consents: Sequence[CasbinConsent],
    originator: str,
    receivers: str,
    holder: str,
    item: str | None,
    purpose: str,
    at: str,
) -> bool:
    """Every receiver of the route but the originator is named by a THIRD_PARTY consent."""
    return all(
        r == originator or third_party_consent(consents, originator, r, holder, item, purpose, at)
        for r in tokens(receivers)
    )


def hub_consent(
    consents: Sequence[CasbinConsent],
    originator: str,
    recipient: str,
    hub: str,
    item: str | None,
    purpose: str,
    at: str,
) -> bool:
    """A relay consent naming the recipient. For an item: a HUB_RELAY naming this very item and this
    hub (issue 14 §3: a standing or hub-less one does not let a hub pass an item on). For what is
    not an item: a HUB_RELAY or TRACK_RELAY for any hub or this one."""
    if item is not None:
        return any(
            c.kind == ConsentKind.HUB_RELAY.value
            and c.originator == originator
            and c.recipient == recipient
            and c.hub == hub
            and c.item == item
            and _in_time(c, item, purpose, at)
            for c in consents
        )
    return any(
        c.kind in (ConsentKind.HUB_RELAY.value, ConsentKind.TRACK_RELAY.value)
        and c.originator == originator
        and c.recipient == recipient
        and c.hub in (None, hub)
        and _in_time(c, item, purpose, at)
        for c in consents
    )


def assured(
    assurances: Sequence[CasbinAssurance], agreement: str, receivers: str, originator: str, at: str
) -> bool:
    """Art. 7(5): every receiver but the originator gave its assurance under the agreement before
    ``at`` and has not revoked it."""
    return all(
        r == originator
        or any(
            a.agreement == agreement
            and a.party == r
            and a.given <= at
            and (a.revoked is None or at < a.revoked)
            for a in assurances
        )
        for r in tokens(receivers)
    )


FUNCTIONS: dict[str, Callable[..., bool]] = {
    "has_equivalent": has_equivalent,
    "releasable": releasable,
    "member": member,
    "subset": subset,
    "disjoint": disjoint,
    "in_scope": in_scope,
    "third_party_consents": third_party_consents,
    "hub_consent": hub_consent,
    "assured": assured,
}

POLICY_FIELDS = (
    "agreement",
    "sender",
    "hub",
    "recipient",
    "receivers",
    "start",
    "end",
    "levels",
    "purposes",
    "scope",
    "returns_only",
)


def caveat_lists() -> tuple[str, str, str]:
    """(known, blocking every release, blocking onward release) as matcher literals."""

    def names(effects: Iterable[CaveatEffect]) -> str:
        wanted = set(effects)
        return ";".join(sorted(c.name for c in CAVEATS.values() if c.effect in wanted))

    return (
        names(CaveatEffect),
        names([CaveatEffect.BLOCKS_ALL_RELEASE]),
        names([CaveatEffect.BLOCKS_ONWARD_RELEASE]),
    )


def matcher() -> str:
    known, block_all, block_onward = caveat_lists()
    consent_args = "r.req.originator, r.req.recipient, {who}, r.req.item, r.req.purpose, r.req.at"
    clauses = [
        # label: the item existed at the instant
        "r.req.created <= r.req.at",
        # route
        "r.req.sender == p.sender",
        "r.req.recipient == p.recipient",
        "r.req.hub == p.hub",
        # agreement_in_force (a terminated agreement's row lets an item provided under it go back
        # to its originator: Art. 6(h), 21.4)
        "p.start <= r.req.at",
        "r.req.at < p.end",
        "(p.returns_only == '' || (r.req.hub == '' && r.req.recipient == r.req.originator"
        " && r.req.sender != r.req.recipient && r.req.created < p.start))",
        # equivalence
        "has_equivalent(p.levels, r.req.originator, r.req.level)",
        # releasability
        "releasable(r.req.releasable_to, p.receivers, r.req.originator)",
        # caveats
        f"subset(r.req.caveats, '{known}')",
        f"disjoint(r.req.caveats, '{block_all}')",
        f"((r.req.sender == r.req.originator && p.hub == '') || disjoint(r.req.caveats, '{block_onward}'))",
        # purpose
        "r.req.purpose == r.req.label_purpose",
        "member(r.req.purpose, p.purposes)",
        # scope
        "in_scope(r.req.topics, p.scope)",
        # third_party
        "(r.req.sender == r.req.originator || third_party_consents(r.req.consents, r.req.originator,"
        " p.receivers, r.req.sender, r.req.item, r.req.purpose, r.req.at))",
        # assurance (Art. 7(5))
        "assured(r.req.assurances, p.agreement, p.receivers, r.req.originator, r.req.at)",
        # hub_authorisation
        f"(p.hub == '' || hub_consent(r.req.consents, {consent_args.format(who='p.hub')}))",
    ]
    return " && ".join(clauses)


def model_text() -> str:
    return "\n".join(
        [
            "[request_definition]",
            "r = req",
            "",
            "[policy_definition]",
            f"p = {', '.join(POLICY_FIELDS)}",
            "",
            "[policy_effect]",
            "e = some(where (p.eft == allow))",
            "",
            "[matchers]",
            f"m = {matcher()}",
            "",
        ]
    )


def in_force_intervals(agreement: Agreement) -> list[tuple[datetime, datetime | None, bool]]:
    """Maximal [start, end) intervals in which the agreement is in force (``False``), and those in
    which it is terminated (``True``: only a return to the originator passes); end None: open."""
    intervals: list[tuple[datetime, datetime | None, bool]] = []
    start: datetime | None = None
    terminated: datetime | None = None
    for transition in agreement.transitions:
        if terminated is not None:
            intervals.append((terminated, transition.at, True))
            terminated = None
        if transition.status.in_force and start is None:
            start = transition.at
        elif not transition.status.in_force and start is not None:
            intervals.append((start, transition.at, False))
            start = None
        if transition.status is Status.TERMINATED:
            terminated = transition.at
    if start is not None:
        intervals.append((start, None, False))
    if terminated is not None:
        intervals.append((terminated, None, True))
    return intervals


def _epochs(
    agreement: Agreement, catalogue: Catalogue, start: datetime, end: datetime | None
) -> list[tuple[datetime, datetime | None]]:
    """[start, end) cut at every instant a row of the equivalence table or a level of a party
    starts or stops: within one piece the levels that map are the same."""
    bounds = set(agreement.equivalence.bounds()) | {
        b
        for code in agreement.parties
        for level in catalogue.parties[code].scheme.levels
        for b in (level.valid_from, level.valid_until)
        if b is not None
    }
    cuts = sorted(b for b in bounds if start < b and (end is None or b < end))
    edges: list[datetime | None] = [start, *cuts, end]
    return [(a, b) for a, b in pairwise(edges) if a is not None]


def _exists(catalogue: Catalogue, code: str, level: str, at: datetime) -> bool:
    found = catalogue.parties[code].scheme.level(level)
    return (found.valid_from is None or found.valid_from <= at) and (
        found.valid_until is None or at < found.valid_until
    )


def policy_rows(catalogue: Catalogue) -> list[list[str]]:
    """One row per agreement, route its topology carries, and in-force interval."""
    parties = sorted(catalogue.parties)
    levels = [(code, level.name) for code in parties for level in catalogue.parties[code].scheme.levels]
    rows: list[list[str]] = []
    for agreement in sorted(catalogue.agreements.values(), key=lambda a: a.id):
        routes: list[tuple[str, str, str, tuple[str, ...]]] = []
        for sender in parties:
            for recipient in parties:
                if agreement.routes_directly(sender, recipient):
                    routes.append((sender, "", recipient, (recipient,)))
                for hub in parties:
                    if agreement.relays(sender, hub, recipient):
                        routes.append((sender, hub, recipient, (hub, recipient)))
        purposes = ";".join(sorted(agreement.purposes))
        scope = "*" if agreement.scope_topics is None else ";".join(sorted(agreement.scope_topics))
        table = agreement.equivalence
        for sender, hub, recipient, receivers in routes:
            for start, end, returns_only in in_force_intervals(agreement):
                for piece_start, piece_end in _epochs(agreement, catalogue, start, end):
                    at = piece_start
                    mapped = ";".join(
                        f"{code}/{level}"
                        for code, level in levels
                        if all(
                            (target := table.map(code, level, r, at)) is not None
                            and _exists(catalogue, code, level, at)
                            and _exists(catalogue, r, target, at)
                            for r in receivers
                            if r != code
                        )
                    )
                    rows.append(
                        [
                            agreement.id,
                            sender,
                            hub,
                            recipient,
                            ";".join(receivers),
                            utc(piece_start),
                            FOREVER if piece_end is None else utc(piece_end),
                            mapped,
                            purposes,
                            scope,
                            "yes" if returns_only else "",
                        ]
                    )
    return rows


def build_enforcer(catalogue: Catalogue) -> tuple[casbin.Enforcer, int]:
    model = Model()
    model.load_model_from_text(model_text())
    enforcer = casbin.Enforcer(model)
    for name, function in FUNCTIONS.items():
        enforcer.add_function(name, function)
    rows = policy_rows(catalogue)
    enforcer.add_policies(rows)
    return enforcer, len(rows)


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True, slots=True)
class Case:
    request: ReleaseRequest
    at: datetime
    casbin: CasbinRequest


ROUTES: tuple[tuple[str, tuple[str, ...], str, int], ...] = (
    ("KOR", (), "JPN", 3),
    ("JPN", (), "KOR", 3),
    ("JPN", (), "USA", 2),
    ("USA", (), "JPN", 2),
    ("KOR", (), "USA", 2),
    ("USA", (), "KOR", 2),
    ("KOR", ("USA",), "JPN", 3),
    ("JPN", ("USA",), "KOR", 3),
)

PINNED = tuple(
    datetime(*fields, tzinfo=KST)
    for fields in (
        (2014, 12, 28, 23, 59, 59),  # the day before TISA takes effect
        (2014, 12, 29, 0, 0, 0),  # TISA in effect
        (2016, 11, 22, 23, 59, 59),
        (2016, 11, 23, 0, 0, 0),  # GSOMIA in force
        (2019, 8, 23, 15, 29, 59),
        (2019, 8, 23, 15, 30, 0),  # written termination notice
        (2019, 8, 24, 7, 0, 0),  # missile launches during the notice period
        (2019, 10, 15, 12, 0, 0),
        (2019, 11, 22, 18, 0, 0),  # notice suspended
        (2019, 11, 23, 0, 0, 1),  # one second after the anniversary
        (2023, 3, 21, 0, 0, 0),  # notes withdrawn
        (2023, 12, 18, 23, 59, 59),
        (2023, 12, 19, 0, 0, 0),  # real-time missile warning operational
        (2024, 6, 1, 9, 0, 0),
    )
)
# after the counterfactual's termination of GSOMIA (2019-11-23), before the 2023 arrangement
RETURNS = tuple(datetime(*fields, tzinfo=KST) for fields in ((2019, 12, 20, 10), (2020, 1, 31, 10)))
_EPOCH = datetime(2014, 1, 1, tzinfo=KST)
_SPAN_S = int((datetime(2025, 1, 1, tzinfo=KST) - _EPOCH).total_seconds())


def _instant(rng: random.Random) -> datetime:
    if rng.random() < 0.3:
        return rng.choice(PINNED)
    return _EPOCH + timedelta(seconds=rng.randrange(_SPAN_S))


def _level(rng: random.Random, catalogue: Catalogue, originator: str) -> str:
    levels = catalogue.parties[originator].scheme.levels  # ordered by rank, highest first
    roll = rng.random()
    if roll < 0.15:
        return levels[0].name  # 군사I급비밀, 特定秘密, TOP SECRET
    if roll < 0.85 and len(levels) > 2:
        return rng.choice(levels[1:3]).name  # the levels most tables map
    return rng.choice(levels).name


def _topics(rng: random.Random) -> tuple[str, ...]:
    roll = rng.random()
    if roll < 0.08:
        return ()
    inside = rng.sample(ITEM_TOPICS, rng.randint(1, 2))
    if roll < 0.75:
        return tuple(inside)
    outside = rng.sample(OTHER_TOPICS, rng.randint(1, len(OTHER_TOPICS)))
    return tuple(outside if rng.random() < 0.5 else inside + outside)


def _releasable(
    rng: random.Random, parties: list[str], originator: str, receivers: tuple[str, ...]
) -> set[str]:
    needed = {r for r in receivers if r != originator}
    others = [p for p in parties if p != originator]
    if rng.random() < 0.8:
        extra = {p for p in others if rng.random() < 0.3}
        return needed | extra
    if needed and rng.random() < 0.7:
        return needed - {rng.choice(sorted(needed))}
    return {p for p in others if rng.random() < 0.5}


def _caveats(rng: random.Random) -> tuple[str, ...]:
    return rng.choices(
        [
            (),
            ("G2G-ONLY",),
            ("IP-RESTRICTED",),
            ("NOFORN",),
            ("IP-RESTRICTED", "G2G-ONLY"),
            (UNKNOWN_CAVEAT,),
        ],
        weights=[60, 12, 10, 8, 6, 4],
    )[0]


def _consent(
    rng: random.Random,
    kind: ConsentKind,
    request: tuple[str, str, str, str | None, str],
    at: datetime,
    parties: list[str],
    n: int,
) -> Consent:
    """A consent that covers the request, or one of the ways a consent can fail to.

    ``request`` is (originator, sender, recipient, item, purpose).
    """
    originator, sender, recipient, item, used_for = request
    variant = rng.choices(
        [
            "standing",
            "item",
            "scoped",
            "exact",
            "other-item",
            "late",
            "expired",
            "wrong-recipient",
            "wrong-scope",
        ],
        weights=[20, 12, 12, 25, 8, 8, 8, 8, 8],
    )[0]
    given = at - timedelta(days=rng.randint(0, 400), seconds=rng.randint(0, 86_399))
    expires = at + timedelta(days=rng.randint(1, 365)) if rng.random() < 0.3 else None
    consent_item: str | None = None
    scope: str | None = None  # the holder (third party) or hub (relay) the consent names
    if variant == "item":
        consent_item = item if item is not None else f"item-{n}-x"
    elif variant == "other-item":
        consent_item = f"item-{n}-other"
    elif variant == "late":
        given = at + timedelta(days=rng.randint(0, 30), seconds=rng.randint(1, 86_399))
    elif variant == "expired":
        expires = at - timedelta(seconds=rng.randint(0, 86_400 * 60))
        given = expires - timedelta(days=rng.randint(1, 300))
    elif variant == "wrong-recipient":
        recipient = rng.choice([p for p in parties if p not in (originator, recipient)])
    elif variant == "scoped":
        scope = sender if kind is ConsentKind.THIRD_PARTY else "USA"
    elif variant == "exact":  # names this item (if it is one) and this holder or hub
        consent_item = item
        scope = sender if kind is ConsentKind.THIRD_PARTY else "USA"
    elif variant == "wrong-scope":
        scope = rng.choice(
            [p for p in parties if p != (sender if kind is ConsentKind.THIRD_PARTY else "USA")]
        )
    if kind is ConsentKind.HUB_RELAY and item is None and rng.random() < 0.3:
        kind = ConsentKind.TRACK_RELAY  # the stream's relay consent: good for what is not an item
    # a consent may name the purpose it authorises (then it counts for that purpose only)
    roll = rng.random()
    purpose = used_for if roll < 0.15 else rng.choice(PURPOSES) if roll < 0.3 else None
    return Consent(
        kind,
        originator,
        recipient,
        given,
        f"benchmark consent {n}-{variant}",
        item=consent_item,
        holder=scope if kind is ConsentKind.THIRD_PARTY else None,
        hub=scope if kind in (ConsentKind.HUB_RELAY, ConsentKind.TRACK_RELAY) else None,
        expires=expires,
        purpose=purpose,
    )


def _assurances(
    rng: random.Random, assured: tuple[Assurance, ...], receivers: tuple[str, ...], at: datetime
) -> tuple[Assurance, ...]:
    """The assurances on file: mostly those the record implies; sometimes one receiver's is missing,
    revoked before the instant, given after it, or revoked only after it."""
    roll = rng.random()
    if roll >= 0.25:
        return assured
    party = rng.choice(receivers)
    mine = [a for a in assured if a.party == party]
    if not mine:
        return assured
    target = rng.choice(mine)
    rest = tuple(a for a in assured if a is not target)
    variant = rng.choice(["missing", "revoked", "late", "revoked-later"])
    if variant == "missing":
        return rest
    if variant == "revoked":
        revoked = at - timedelta(days=rng.randint(0, 300), seconds=rng.randint(0, 86_399))
        if revoked <= target.given_at:
            return rest
        changed = Assurance(target.agreement, party, target.given_at, target.reference, revoked_at=revoked)
    elif variant == "late":
        given = at + timedelta(seconds=rng.randint(1, 86_400 * 30))
        changed = Assurance(target.agreement, party, given, "benchmark: given late")
    else:
        revoked = at + timedelta(seconds=rng.randint(1, 86_400 * 30))
        if revoked <= target.given_at:
            return rest
        changed = Assurance(target.agreement, party, target.given_at, target.reference, revoked_at=revoked)
    return (*rest, changed)


def build_workload(catalogue: Catalogue, count: int = REQUESTS, seed: int = SEED) -> list[Case]:
    rng = random.Random(seed)
    assured = assumed_assurances(catalogue)  # Art. 7(5): given at entry into force, as the data assumes
    parties = sorted(catalogue.parties)
    weights = [w for *_, w in ROUTES]
    cases: list[Case] = []
    seen: set[tuple[object, ...]] = set()
    n = 0
    while len(cases) < count:
        n += 1
        sender, via, recipient, _ = rng.choices(ROUTES, weights=weights)[0]
        receivers = (*via, recipient)
        third = [p for p in parties if p not in (sender, recipient)]
        roll = rng.random()
        originator = sender if roll < 0.6 else recipient if roll < 0.72 else rng.choice(third)
        at = _instant(rng)
        if rng.random() < 0.04:  # an item going back to its originator after the counterfactual's end
            sender, via, recipient = rng.choice([("KOR", (), "JPN"), ("JPN", (), "KOR")])
            receivers, originator, at = (recipient,), recipient, rng.choice(RETURNS)
        purpose = rng.choices(PURPOSES, weights=[4, 4, 2, 1])[0]
        used_for = purpose if rng.random() < 0.88 else rng.choice([p for p in PURPOSES if p != purpose])
        label = catalogue.label(
            originator=originator,
            classification=_level(rng, catalogue, originator),
            releasable_to=sorted(_releasable(rng, parties, originator, receivers)),
            purpose=purpose,
            topics=_topics(rng),
            created=at - timedelta(days=rng.randint(0, 120)),
            caveats=_caveats(rng),
        )
        item = f"item-{n}" if rng.random() < 0.5 else None
        consents: list[Consent] = []
        facts = (originator, sender, recipient, item, used_for)
        if sender != originator and recipient != originator and rng.random() < 0.6:
            consents.append(_consent(rng, ConsentKind.THIRD_PARTY, facts, at, parties, n))
        if via and rng.random() < 0.65:
            consents.append(_consent(rng, ConsentKind.HUB_RELAY, facts, at, parties, n))
        if rng.random() < 0.1:  # noise: an extra standing consent of the other kind
            kind = ConsentKind.HUB_RELAY if not via else ConsentKind.THIRD_PARTY
            consents.append(Consent(kind, originator, recipient, at - timedelta(days=1), f"noise {n}"))
        if via and item is not None and rng.random() < 0.1:  # a track relay never carries an item
            consents.append(
                Consent(ConsentKind.TRACK_RELAY, originator, recipient, at - timedelta(days=1), f"track {n}")
            )
        rng.shuffle(consents)
        on_file = _assurances(rng, assured, receivers, at)
        request = ReleaseRequest(
            label, sender, recipient, used_for, via, item=item, consents=tuple(consents), assurances=on_file
        )
        key = (
            request.sender,
            request.via,
            request.recipient,
            request.purpose,
            request.item,
            label,
            at,
            *consents,
            *on_file,
        )
        if key in seen:
            continue
        seen.add(key)
        cases.append(Case(request, at, CasbinRequest(request, at)))
    return cases


# --------------------------------------------------------------------------- timing and report


Outcome = tuple[Case, ReleaseDecision, bool]


def compare(cases: Sequence[Case], engine: ReleaseEngine, enforcer: casbin.Enforcer) -> list[Outcome]:
    """Each case with gsomia's decision and casbin's allow/deny."""
    return [
        (case, engine.decide(case.request, at=case.at), bool(enforcer.enforce(case.casbin))) for case in cases
    ]


def report_differences(what: str, outcomes: Sequence[Outcome], out: TextIO) -> bool:
    """Print the requests on which the engines differ; whether there were any."""
    differing = [(case, d, theirs) for case, d, theirs in outcomes if d.allowed != theirs]
    if not differing:
        return False
    print(f"{what}: the engines disagree on {len(differing)} of {len(outcomes)} requests", file=out)
    for case, decision, theirs in differing:
        failed = "; ".join(f"{c.rule}: {c.reason}" for c in decision.failed()) or "every rule passed"
        print(
            f"- gsomia {'allows' if decision.allowed else 'refuses'}, "
            f"casbin {'allows' if theirs else 'denies'}: {case.casbin.describe()}",
            file=out,
        )
        print(f"    gsomia ({decision.agreement or 'no agreement'}): {failed}", file=out)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)

    pinned = pin_one_core()
    catalogue = load_catalogue()
    cases = build_workload(catalogue)
    engine = ReleaseEngine(catalogue)
    enforcer, rows = build_enforcer(catalogue)
    decide = engine.decide
    enforce = enforcer.enforce

    # Correctness first (this pass also warms both engines).
    out = sys.stderr if args.json else sys.stdout

    def disagree() -> int:
        if args.json:
            print(json.dumps({"benchmark": "policy", "engines_agree": False, "requests": len(cases)}))
        return 1

    outcomes = compare(cases, engine, enforcer)
    if report_differences("shipped catalogue", outcomes, out):
        return disagree()
    # The shipped history never takes an agreement out of force, so the end of an in-force
    # interval is also checked on the counterfactual in which GSOMIA ends on 2019-11-23.
    counterfactual = catalogue.replacing(catalogue.agreement(GSOMIA).what_if(without=[WHAT_IF_EVENT]))
    alt_enforcer, _ = build_enforcer(counterfactual)
    if report_differences(
        f"counterfactual catalogue without {WHAT_IF_EVENT}",
        compare(cases, ReleaseEngine(counterfactual), alt_enforcer),
        out,
    ):
        return disagree()
    allowed = sum(1 for _, decision, _ in outcomes if decision.allowed)
    refused_by = Counter(c.rule for _, decision, _ in outcomes for c in decision.failed())

    pairs = [(case.request, case.at) for case in cases]
    requests = [case.casbin for case in cases]

    def run_gsomia() -> None:
        for request, at in pairs:
            decide(request, at=at)

    def run_casbin() -> None:
        for request in requests:
            enforce(request)

    run_gsomia()
    run_casbin()
    gsomia_s, gsomia_passes = best_pass(run_gsomia, budget_s=BUDGET_S)
    casbin_s, casbin_passes = best_pass(run_casbin, budget_s=BUDGET_S)
    gsomia_per_s = len(cases) / gsomia_s
    casbin_per_s = len(cases) / casbin_s
    ratio = gsomia_per_s / casbin_per_s
    ratio_met = ratio >= RATIO_TARGET
    throughput_met = gsomia_per_s >= THROUGHPUT_TARGET
    refused = len(cases) - allowed

    if args.json:
        figures: dict[str, Any] = {
            "benchmark": "policy",
            "gsomia_per_s": round(gsomia_per_s, 1),
            "casbin_per_s": round(casbin_per_s, 1),
            "ratio": round(ratio, 2),
            "ratio_target": RATIO_TARGET,
            "ratio_target_met": ratio_met,
            "throughput_target_per_s": THROUGHPUT_TARGET,
            "throughput_target_met": throughput_met,
            "requests": len(cases),
            "allowed": allowed,
            "refused": refused,
            "refused_by_rule": dict(sorted(refused_by.items())),
            "engines_agree": True,
            "casbin_policy_rows": rows,
            "passes": {"gsomia": gsomia_passes, "casbin": casbin_passes},
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "cpu": cpu_model(),
            "casbin_version": version("casbin"),
            "seed": SEED,
            "pinned": pinned,
            "rows": [
                row(
                    "release decisions/s, warm engine, one core",
                    gsomia_per_s,
                    "decisions/s",
                    peer=f"PyCasbin {version('casbin')}",
                    peer_value=casbin_per_s,
                    ratio=ratio,
                    target=f">= {RATIO_TARGET:.0f}x PyCasbin",
                    met=ratio_met,
                ),
                row(
                    "release decisions/s, warm engine, one core",
                    gsomia_per_s,
                    "decisions/s",
                    target=f">= {THROUGHPUT_TARGET:,.0f}/s",
                    met=throughput_met,
                ),
            ],
        }
        print(json.dumps(figures, ensure_ascii=False))
        return 0

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print("gsomia release engine vs PyCasbin holding the same rules")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"Python: {python}; CPU: {cpu_model()}; {pinned}")
    print(f"casbin {version('casbin')}: {rows} policy rows generated from the catalogue")
    print(f"workload: {len(cases)} distinct requests (seed {SEED}): {allowed} allowed, {refused} refused")
    print(
        "refusals by failing rule (one refusal may fail several): "
        + ", ".join(f"{rule} {n}" for rule, n in refused_by.most_common())
    )
    print(
        f"agreement: casbin and gsomia give the same answer on all {len(cases)} requests "
        f"(and on all of them again with the counterfactual catalogue without {WHAT_IF_EVENT})"
    )
    print()
    print(f"{'engine':<10} {'decisions/s':>14} {'µs/decision':>13} {'passes':>8}")
    for name, per_s, passes in (
        ("gsomia", gsomia_per_s, gsomia_passes),
        ("pycasbin", casbin_per_s, casbin_passes),
    ):
        print(f"{name:<10} {per_s:>14,.0f} {1e6 / per_s:>13.2f} {passes:>8}")
    print()
    print(f"ratio gsomia / PyCasbin: {ratio:,.1f}x (best pass of each)")
    print(f"target gsomia >= {RATIO_TARGET:.0f}x PyCasbin: {met(ratio_met)} ({ratio:,.1f}x)")
    print(
        f"target gsomia >= {THROUGHPUT_TARGET:,.0f} decisions/s on one core: "
        f"{met(throughput_met)} ({gsomia_per_s:,.0f}/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
