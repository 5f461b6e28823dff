"""Where a live stream may go, decided before its first emission and valid until the next event.

A stream of one originator's tracks is released per recipient by the same
:class:`~gsomia.core.policy.ReleaseEngine` as any item: directly when an agreement
allows it, else through a hub when the originator has authorised the relay, else not
at all. The answer can only change when an agreement's status or equivalence table changes or
a consent starts or ends, so :func:`plan_relay` returns a :class:`RelayPlan` that holds until
:func:`next_event_after` — per message, checking the plan is one comparison.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import require_aware
from gsomia.core.labels import SecurityLabel
from gsomia.core.policy import Assurance, Consent, ReleaseDecision, ReleaseEngine, ReleaseRequest

__all__ = ["MISSILE_TOPIC", "MISSILE_WARNING", "RelayPlan", "Route", "next_event_after", "plan_relay"]

MISSILE_WARNING = "missile-warning"
MISSILE_TOPIC = "dprk-missile"


@dataclass(frozen=True, slots=True)
class Route:
    """One recipient's route: allowed or not, through which hub, and the decision(s) that say why."""

    recipient: str
    allowed: bool
    via: str | None
    decision: ReleaseDecision
    refused: tuple[ReleaseDecision, ...] = ()

    @property
    def name(self) -> str:
        """``direct`` or ``via USA`` (the dashboard's route field)."""
        return f"via {self.via}" if self.via else "direct"


@dataclass(frozen=True, slots=True)
class RelayPlan:
    """Every recipient's route decided at ``at``, valid until ``valid_until`` (exclusive)."""

    at: datetime
    valid_until: datetime | None
    routes: tuple[Route, ...]
    valid_until_ts: float

    def holds_at(self, ts: float) -> bool:
        """Whether the plan still decides for POSIX instant ``ts`` (no event since it was made)."""
        return self.at.timestamp() <= ts < self.valid_until_ts

    def allowed(self) -> tuple[Route, ...]:
        return tuple(r for r in self.routes if r.allowed)


def next_event_after(
    catalogue: Catalogue,
    parties: Iterable[str],
    consents: Sequence[Consent],
    at: datetime,
    assurances: Sequence[Assurance] = (),
) -> datetime | None:
    """The first instant after ``at`` when an agreement of ``parties`` changes status or its
    equivalence table, a consent starts or ends, or an assurance is given, revoked or stops verifying
    (``Assurance.verified_until``); ``None`` if nothing is recorded after ``at``."""
    require_aware(at, "plan instant")
    members = set(parties)
    instants = [
        t.at
        for agreement in catalogue.agreements.values()
        if members & set(agreement.parties)
        for t in agreement.transitions
        if t.at > at
    ]
    instants.extend(  # a party's equivalence change starts or ends a row: the markings may differ
        bound
        for agreement in catalogue.agreements.values()
        if members & set(agreement.parties)
        for bound in agreement.equivalence.bounds()
        if bound > at
    )
    for consent in consents:
        instants.extend(x for x in (consent.given_at, consent.expires) if x is not None and x > at)
    for assurance in assurances:
        instants.extend(x for x in (assurance.given_at, assurance.ends_at) if x is not None and x > at)
    return min(instants, default=None)


def plan_relay(
    engine: ReleaseEngine,
    catalogue: Catalogue,
    label: SecurityLabel,
    sender: str,
    recipients: Iterable[str],
    *,
    at: datetime,
    consents: Sequence[Consent] = (),
    assurances: Sequence[Assurance] = (),
    hubs: Sequence[str],
    purpose: str = MISSILE_WARNING,
    item: str | None = None,
) -> RelayPlan:
    """Each recipient's route at ``at``: direct if allowed, else through a hub if allowed, else refused.

    A hub that is itself the recipient is never a relay for it; a refused route keeps every
    decision that refused it, so a person can read why.
    """
    require_aware(at, "plan instant")
    routes = []
    for recipient in recipients:
        direct = engine.decide(
            ReleaseRequest(
                label, sender, recipient, purpose, (), item, tuple(consents), assurances=tuple(assurances)
            ),
            at=at,
        )
        if direct.allowed:
            routes.append(Route(recipient, True, None, direct))
            continue
        refused = [direct]
        for hub in hubs:
            if hub in (sender, recipient):
                continue
            relayed = engine.decide(
                ReleaseRequest(
                    label,
                    sender,
                    recipient,
                    purpose,
                    (hub,),
                    item,
                    tuple(consents),
                    assurances=tuple(assurances),
                ),
                at=at,
            )
            if relayed.allowed:
                routes.append(Route(recipient, True, hub, relayed, tuple(refused)))
                break
            refused.append(relayed)
        else:
            routes.append(Route(recipient, False, None, refused[-1], tuple(refused)))
    parties = {sender, *recipients, *hubs}
    until = next_event_after(catalogue, parties, consents, at, assurances)
    return RelayPlan(at, until, tuple(routes), float("inf") if until is None else until.timestamp())
