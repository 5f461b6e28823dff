"""Who may share what with whom at an instant: the release engine asked, pair by pair, level by level.

Pure: the instant, the purpose and the topic are arguments; the answers are the real
:class:`~gsomia.core.policy.ReleaseEngine`'s decisions, never a table of our own. For each
ordered pair of parties and each level of the sender's scheme (highest first), a
representative item (originated by the sender, releasable to the route's receivers, for
the chosen purpose and topic, created at that instant) is decided on the direct route and
through each hub that could relay it. The cell is the highest level that may go, by the
route that carries it (direct before a hub at the same level), or "none", with the
reasons a person can read.

A relay through a hub needs the originator's authorisation naming the recipient (TISA);
the matrix asks what *could* flow, so it assumes the originator gives it (and says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gsomia.core.catalogue import Catalogue
from gsomia.core.policy import (
    Consent,
    ConsentKind,
    ReleaseDecision,
    ReleaseEngine,
    ReleaseRequest,
    assumed_assurances,
)
from gsomia.errors import InvalidInputError

__all__ = ["ASSUMED_RELAY", "Cell", "share_matrix", "what_if_catalogue"]

ASSUMED_RELAY = "the originator's authorisation of the relay, assumed for the matrix"


@dataclass(frozen=True, slots=True)
class Cell:
    """The highest level ``sender`` may give ``recipient``, by which route, and why."""

    sender: str
    recipient: str
    route: str  # "direct", "via USA", or "none"
    level: str | None  # the sender's level
    marking: str | None  # what the recipient marks it (Art. 4): originator and the recipient's level
    agreement: str | None
    explanation: tuple[str, ...]


def what_if_catalogue(catalogue: Catalogue, without: Iterable[str]) -> Catalogue:
    """The catalogue with the named events struck from the agreements that record them."""
    remaining = list(dict.fromkeys(without))
    result = catalogue
    for agreement in catalogue.agreements.values():
        mine = [e for e in remaining if any(ev.id == e for ev in agreement.events)]
        if mine:
            result = result.replacing(agreement.what_if(without=mine))
            remaining = [e for e in remaining if e not in mine]
    if remaining:
        raise InvalidInputError(f"no agreement records the event(s) {', '.join(remaining)}")
    return result


def _hubs(catalogue: Catalogue, sender: str, recipient: str) -> list[str]:
    return sorted(
        {
            a.hub
            for a in catalogue.agreements_of(sender)
            if a.hub is not None and a.relays(sender, a.hub, recipient)
        }
    )


def _decide(
    engine: ReleaseEngine,
    catalogue: Catalogue,
    sender: str,
    recipient: str,
    level: str,
    hub: str | None,
    *,
    at: datetime,
    purpose: str,
    topic: str,
) -> ReleaseDecision:
    via = () if hub is None else (hub,)
    label = catalogue.label(
        originator=sender,
        classification=level,
        releasable_to=[*via, recipient],
        purpose=purpose,
        topics=[topic],
        created=at,
    )
    consents: tuple[Consent, ...] = ()
    if hub is not None:
        consents = (Consent(ConsentKind.HUB_RELAY, sender, recipient, at, ASSUMED_RELAY, hub=hub),)
    request = ReleaseRequest(
        label, sender, recipient, purpose, via, None, consents, assurances=assumed_assurances(catalogue)
    )
    return engine.decide(request, at=at)


def _why_not(route: str, decision: ReleaseDecision) -> str:
    failed = decision.failed()
    return f"{route}: {failed[0].reason if failed else 'refused'}"


def _cell(
    engine: ReleaseEngine,
    catalogue: Catalogue,
    sender: str,
    recipient: str,
    *,
    at: datetime,
    purpose: str,
    topic: str,
) -> Cell:
    hubs = _hubs(catalogue, sender, recipient)
    levels = sorted(catalogue.party(sender).scheme.levels, key=lambda lv: -lv.rank)
    refused: list[str] = []
    for level in levels:
        routes: list[tuple[str, ReleaseDecision]] = [
            (
                "direct",
                _decide(
                    engine,
                    catalogue,
                    sender,
                    recipient,
                    level.name,
                    None,
                    at=at,
                    purpose=purpose,
                    topic=topic,
                ),
            )
        ]
        for hub in hubs:
            decision = _decide(
                engine, catalogue, sender, recipient, level.name, hub, at=at, purpose=purpose, topic=topic
            )
            routes.append((f"via {hub}", decision))
        allowed = [(route, d) for route, d in routes if d.allowed]
        if not allowed:
            refused.append(f"{level.name}: " + "; ".join(_why_not(route, d) for route, d in routes))
            continue
        route, decision = allowed[0]
        passed = [
            c.reason for c in decision.checks if c.rule in ("agreement_in_force", "equivalence", "scope")
        ]
        if route != "direct":
            passed.append(f"hub_authorisation: {ASSUMED_RELAY}")
        also = [f"also {r} under {d.agreement}" for r, d in allowed[1:]]
        also += [f"not {_why_not(r, d)}" for r, d in routes if not d.allowed]
        higher = [f"refused above: {line}" for line in refused]
        marking = decision.marking
        return Cell(
            sender,
            recipient,
            route,
            level.name,
            None if marking is None else f"{marking.originator} {marking.classification}",
            decision.agreement,
            (f"{level.name} {route} under {decision.agreement}", *passed, *also, *higher),
        )
    return Cell(sender, recipient, "none", None, None, None, tuple(refused))


def share_matrix(
    engine: ReleaseEngine,
    *,
    at: datetime,
    purpose: str,
    topic: str,
    parties: Sequence[str] | None = None,
) -> list[Cell]:
    """Every ordered pair of ``parties`` (default: all in the engine's catalogue), decided at ``at``.

    >>> from datetime import datetime
    >>> from zoneinfo import ZoneInfo
    >>> from gsomia import ReleaseEngine, load_catalogue
    >>> engine = ReleaseEngine(load_catalogue())
    >>> at = datetime(2016, 11, 22, tzinfo=ZoneInfo("Asia/Seoul"))
    >>> cell = next(c for c in share_matrix(engine, at=at, purpose="threat-assessment",
    ...     topic="dprk-missile") if (c.sender, c.recipient) == ("KOR", "JPN"))
    >>> cell.route, cell.level, cell.marking
    ('via USA', '군사II급비밀', 'KOR 極秘')
    """
    catalogue = engine.catalogue
    codes = sorted(catalogue.parties) if parties is None else list(parties)
    for code in codes:
        catalogue.party(code)
    return [
        _cell(engine, catalogue, sender, recipient, at=at, purpose=purpose, topic=topic)
        for sender in codes
        for recipient in codes
        if sender != recipient
    ]
