"""Two-person release: when a second release officer must approve, and what an approval binds.

A node's policy (data, kept in its store) names the releases that need a second officer: items
classified above a stated level of their originator's scheme, releases routed through a hub, and
releases that grant a hub-relay authorisation. An :class:`Approval` is bound to the exact item,
label, route and purpose it was given for, names an approver other than the requester, and
expires. The release engine's ``two_person`` rule (:mod:`gsomia.core.policy`) reads both.

>>> from datetime import UTC, datetime
>>> from gsomia.core.labels import SecurityLabel
>>> created = datetime(2019, 11, 23, tzinfo=UTC)
>>> label = SecurityLabel("KOR", "군사II급비밀", frozenset({"JPN"}), "missile-warning", frozenset(), created)
>>> policy = TwoPersonPolicy(frozenset({("KOR", "군사II급비밀")}), thresholds=(("KOR", "군사III급비밀"),))
>>> policy.needs(label, via=("USA",), grants_relay=False)
('KOR 군사II급비밀 is above KOR 군사III급비밀',)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import require_aware
from gsomia.core.labels import SecurityLabel
from gsomia.errors import InvalidInputError, LabelError

__all__ = ["MAX_VALIDITY", "Approval", "TwoPersonPolicy", "two_person_policy"]

MAX_VALIDITY = timedelta(days=7)  # an approval older than a week is a stale judgement, not an approval


@dataclass(frozen=True, slots=True)
class TwoPersonPolicy:
    """Which releases need a second release officer's approval, and how long an approval lasts.

    ``levels`` holds every (originator, level) that is above the stated threshold of that
    originator's scheme (worked out once from the catalogue by :func:`two_person_policy`);
    ``thresholds`` keeps the stated levels, for the reasons a person reads."""

    levels: frozenset[tuple[str, str]] = frozenset()
    hub_relay: bool = False
    relay_authorisations: bool = False
    validity: timedelta = timedelta(hours=24)
    thresholds: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.validity <= MAX_VALIDITY:
            raise InvalidInputError(
                f"an approval's validity must be more than 0 and at most {MAX_VALIDITY.days} days"
            )

    @property
    def empty(self) -> bool:
        return not (self.levels or self.hub_relay or self.relay_authorisations)

    def needs(self, label: SecurityLabel, *, via: tuple[str, ...], grants_relay: bool) -> tuple[str, ...]:
        """Why this release needs a second officer (empty: it does not)."""
        why: list[str] = []
        if (label.originator, label.classification) in self.levels:
            stated = dict(self.thresholds).get(label.originator, "its stated level")
            why.append(f"{label.originator} {label.classification} is above {label.originator} {stated}")
        if self.hub_relay and via:
            why.append(f"it is relayed through {via[0]}")
        if self.relay_authorisations and grants_relay:
            why.append("it authorises a hub to pass the item on")
        return tuple(why)

    def as_data(self) -> dict[str, Any]:
        """The policy as the store keeps it (and ``gsomia release policy`` shows it)."""
        return {
            "above": dict(self.thresholds),
            "hub_relay": self.hub_relay,
            "relay_authorisations": self.relay_authorisations,
            "validity_seconds": int(self.validity.total_seconds()),
        }


def two_person_policy(
    catalogue: Catalogue,
    *,
    above: Mapping[str, str] | None = None,
    hub_relay: bool = False,
    relay_authorisations: bool = False,
    validity: timedelta = timedelta(hours=24),
) -> TwoPersonPolicy:
    """A policy from its data: ``above`` maps a party to a level of its own scheme; every level
    of that scheme ranked above it needs a second officer. Unknown parties or levels are refused."""
    levels: set[tuple[str, str]] = set()
    stated: list[tuple[str, str]] = []
    for code, level_name in sorted((above or {}).items()):
        party = catalogue.parties.get(code)
        if party is None:
            raise LabelError(f"two-person policy: unknown party {code!r}")
        threshold = party.scheme.level(level_name)  # raises LabelError for an unknown level
        levels.update((code, lv.name) for lv in party.scheme.levels if lv.rank > threshold.rank)
        stated.append((code, threshold.name))
    return TwoPersonPolicy(frozenset(levels), hub_relay, relay_authorisations, validity, tuple(stated))


@dataclass(frozen=True, slots=True)
class Approval:
    """A second release officer's approval of one release request, bound to what it approves."""

    request: str
    requester: str
    approver: str
    item: str
    label: SecurityLabel
    sender: str
    via: tuple[str, ...]
    recipient: str
    purpose: str
    approved_at: datetime
    expires_at: datetime
    portions: tuple[tuple[str, SecurityLabel], ...] = ()
    """Of an item in portions: the portions it releases, each with the originator's label it was
    given for (``label`` is the highest of theirs). Empty: an item signed whole."""

    def __post_init__(self) -> None:
        require_aware(self.approved_at, "approval instant")
        require_aware(self.expires_at, "approval expiry")
        ids = [p for p, _ in self.portions]
        if len(set(ids)) != len(ids):
            raise InvalidInputError("an approval names each portion once")

    def mismatch(
        self,
        *,
        item: str | None,
        label: SecurityLabel,
        sender: str,
        via: tuple[str, ...],
        recipient: str,
        purpose: str,
        ts: float,
        portions: tuple[str, ...] = (),
        portion: str | None = None,
    ) -> str | None:
        """Why this approval does not cover the release described (``None``: it does).

        Of an item in portions, ``portions`` are those the release sends (``label`` the highest of
        theirs): exactly the approved set, never another; ``portion`` names one portion decided on
        its own ``label`` before the set is known: approved only if it is in the set, under the
        label the approval was given for."""
        if self.approver == self.requester:
            return f"{self.approver} requested the release and cannot approve it too"
        if item != self.item:
            return f"approval {self.request} is for item {self.item}, not {item}"
        problem = self._portions_mismatch(label, portions, portion)
        if problem is not None:
            return problem
        if (sender, via, recipient) != (self.sender, self.via, self.recipient):
            route = " -> ".join((self.sender, *self.via, self.recipient))
            return f"approval {self.request} is for the route {route}"
        if purpose != self.purpose:
            return f"approval {self.request} is for the purpose {self.purpose}, not {purpose}"
        if ts < self.approved_at.timestamp():
            return f"approval {self.request} was given at {self.approved_at.isoformat()}, after this instant"
        if ts >= self.expires_at.timestamp():
            return f"approval {self.request} expired at {self.expires_at.isoformat()}"
        return None

    def _portions_mismatch(
        self, label: SecurityLabel, portions: tuple[str, ...], portion: str | None
    ) -> str | None:
        approved = dict(self.portions)
        if portion is not None:
            held = approved.get(portion)
            if held is None:
                return f"approval {self.request} does not release portion {portion} of item {self.item}"
            if held != label:
                return (
                    f"approval {self.request} was given for another version of the label of portion {portion}"
                )
            return None
        if sorted(portions) != sorted(approved):
            given = ", ".join(sorted(approved)) or "the whole item"
            asked = ", ".join(sorted(portions)) or "the whole item"
            return f"approval {self.request} releases {given} of item {self.item}, not {asked}"
        if label != self.label:
            return f"approval {self.request} was given for another version of the label of item {self.item}"
        return None

    def content(self) -> dict[str, Any]:
        """What the approver's signature covers (JSON-ready; the label as its fields; of an item in
        portions, each portion released with its label)."""
        out: dict[str, Any] = {
            "type": "gsomia-approval/1",
            "request": self.request,
            "requester": self.requester,
            "approver": self.approver,
            "item": self.item,
            "label": _label_fields(self.label),
            "route": [self.sender, *self.via, self.recipient],
            "purpose": self.purpose,
            "approved_at": self.approved_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }
        if self.portions:
            out["portions"] = [{"id": p, "label": _label_fields(lb)} for p, lb in self.portions]
        return out


def _label_fields(label: SecurityLabel) -> dict[str, Any]:
    return {
        "originator": label.originator,
        "classification": label.classification,
        "releasable_to": sorted(label.releasable_to),
        "topics": sorted(label.topics),
        "purpose": label.purpose,
        "caveats": sorted(label.caveats),
        "created": label.created.isoformat(),
    }
