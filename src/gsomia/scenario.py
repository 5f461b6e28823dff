"""The 2014–2023 story as data: which flows were allowed at each event and probe instant.

Used by ``gsomia demo`` and by the scenario tests. It only asks the release engine;
all instants are fixed dates of the public record (domain.md §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from gsomia.core.catalogue import Catalogue
from gsomia.core.lifecycle import AgreementState
from gsomia.core.policy import Consent, ConsentKind, ReleaseDecision, ReleaseEngine, ReleaseRequest

__all__ = ["FLOWS", "WHAT_IF_EVENT", "Flow", "Step", "replay_history"]

KST = ZoneInfo("Asia/Seoul")
GSOMIA = "kor-jpn-gsomia-2016"
WHAT_IF_EVENT = "2019-11-22-notice-suspended"
_START = datetime(2014, 12, 1, tzinfo=KST)


@dataclass(frozen=True, slots=True)
class Flow:
    """A release the demo asks about at every step."""

    name: str
    sender: str
    recipient: str
    originator: str
    classification: str
    via: tuple[str, ...] = ()
    topics: tuple[str, ...] = ("dprk-missile",)
    purpose: str = "threat-assessment"
    authorised: bool = False  # the originator authorised the hub relay to the recipient

    def request(self, catalogue: Catalogue, at: datetime) -> ReleaseRequest:
        label = catalogue.label(
            originator=self.originator,
            classification=self.classification,
            releasable_to=(*self.via, self.recipient),
            purpose=self.purpose,
            topics=self.topics,
            created=at,
        )
        consents: tuple[Consent, ...] = ()
        if self.authorised:
            consents = (
                Consent(ConsentKind.HUB_RELAY, self.originator, self.recipient, at, "demo authorisation"),
            )
        return ReleaseRequest(label, self.sender, self.recipient, self.purpose, self.via, consents=consents)


FLOWS: tuple[Flow, ...] = (
    Flow("KOR→JPN direct, 군사II급비밀", "KOR", "JPN", "KOR", "군사II급비밀"),
    Flow("JPN→KOR direct, 極秘", "JPN", "KOR", "JPN", "極秘"),
    Flow(
        "KOR→USA→JPN, missile data, authorised",
        "KOR",
        "JPN",
        "KOR",
        "군사II급비밀",
        ("USA",),
        authorised=True,
    ),
    Flow(
        "KOR→USA→JPN, naval data, authorised",
        "KOR",
        "JPN",
        "KOR",
        "군사II급비밀",
        ("USA",),
        topics=("prc-navy",),
        authorised=True,
    ),
    Flow("KOR→JPN direct, 군사I급비밀", "KOR", "JPN", "KOR", "군사I급비밀"),
)


def _merge_titles(titles: list[str]) -> str:
    """'A: signed', 'A: entered into force' -> 'A: signed, entered into force'."""
    merged: dict[str, list[str]] = {}
    for title in titles:
        head, _, what = title.partition(": ")
        merged.setdefault(head, []).append(what)
    return "; ".join(
        f"{head}: {', '.join(w for w in whats if w)}".rstrip(": ") for head, whats in merged.items()
    )


@dataclass(frozen=True, slots=True)
class Step:
    """One instant of the story: what happened, the GSOMIA state, and each flow's decision."""

    at: datetime
    title: str
    detail: str
    gsomia: AgreementState
    decisions: tuple[tuple[Flow, ReleaseDecision], ...]
    what_if: bool = False


_PROBES: tuple[tuple[datetime, str, str], ...] = (
    (
        datetime(2019, 8, 24, 7, 0, tzinfo=KST),
        "North Korea launches two short-range missiles",
        "The notice is pending but the agreement is still in force: Japan and Korea share data under it.",
    ),
    (
        datetime(2019, 11, 23, 0, 0, 1, tzinfo=KST),
        "One second after the anniversary",
        "Without the suspension the agreement would have ended at 00:00 KST.",
    ),
)


def replay_history(catalogue: Catalogue) -> list[Step]:
    """Every event since December 2014 and the probe instants, in order, with decisions."""
    engine = ReleaseEngine(catalogue)
    marks: list[tuple[datetime, str, str]] = []
    for agreement in catalogue.agreements.values():
        for event in agreement.events:
            if event.at >= _START:
                by = f" by {event.party}" if event.party else ""
                title = f"{agreement.title}: {event.kind.value.replace('_', ' ')}{by}"
                marks.append((event.at, title, event.reference + (f" — {event.note}" if event.note else "")))
    marks.extend(_PROBES)
    marks.sort(key=lambda m: m[0])
    grouped: dict[datetime, list[tuple[str, str]]] = {}
    for at, title, detail in marks:  # events at one instant form one step
        grouped.setdefault(at, []).append((title, detail))
    gsomia = catalogue.agreement(GSOMIA)
    steps = [
        Step(
            at,
            _merge_titles([t for t, _ in items]),
            "; ".join(d for _, d in items),
            gsomia.state_at(at),
            tuple((f, engine.decide(f.request(catalogue, at), at=at)) for f in FLOWS),
        )
        for at, items in grouped.items()
    ]
    # The counterfactual: the same second without the November 2019 suspension.
    what_if = catalogue.replacing(gsomia.what_if(without=[WHAT_IF_EVENT]))
    at = _PROBES[1][0]
    alt_engine = ReleaseEngine(what_if)
    steps.append(
        Step(
            at,
            "What if Seoul had not suspended its notice?",
            f"The same second, evaluated with event {WHAT_IF_EVENT!r} removed.",
            what_if.agreement(GSOMIA).state_at(at),
            tuple((f, alt_engine.decide(f.request(what_if, at), at=at)) for f in FLOWS),
            what_if=True,
        )
    )
    return steps
