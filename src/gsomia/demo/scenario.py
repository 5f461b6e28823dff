"""The 2014–2023 story: which flows were allowed at each event and probe instant.

``replay_history`` asks the release engine alone; ``replay_on_nodes`` (what
``gsomia demo`` runs) plays the same story over three real nodes on loopback that
seal, send, open, decide, store and receipt real envelopes, with a replay clock
passed in. All instants are fixed dates of the public record (domain.md §2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gsomia._datafiles import load_catalogue
from gsomia.core.catalogue import Catalogue
from gsomia.core.instants import parse_instant
from gsomia.core.lifecycle import AgreementState
from gsomia.core.policy import (
    Consent,
    ConsentKind,
    ReleaseDecision,
    ReleaseEngine,
    ReleaseRequest,
    assumed_assurances,
)
from gsomia.core.relay import RelayPlan, plan_relay
from gsomia.demo import network
from gsomia.errors import ReleaseRefused
from gsomia.exchange import HttpTransport, PeerTransport
from gsomia.kernel import ManualClock, node_hubs
from gsomia.node import Item, Node, PortionIngest

__all__ = [
    "FLOWS",
    "GSOMIA",
    "KST",
    "STREAM_STORY",
    "WHAT_IF_EVENT",
    "Flow",
    "NetStep",
    "Outcome",
    "Step",
    "StreamMoment",
    "duties_on_nodes",
    "kor_plan",
    "replay_history",
    "replay_on_nodes",
    "stream_story",
]

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
        return ReleaseRequest(
            label,
            self.sender,
            self.recipient,
            self.purpose,
            self.via,
            consents=consents,
            assurances=assumed_assurances(catalogue),
        )


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
    grouped = _grouped(_marks(catalogue))
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


# --- the same story over real nodes exchanging real envelopes ---


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one flow at one step: delivered, refused before leaving, or undeliverable."""

    flow: Flow
    outcome: str  # delivered | refused | undeliverable
    reason: str
    marking: str | None  # at the recipient: the originator's label and the recipient's equivalent


@dataclass(frozen=True, slots=True)
class NetStep:
    at: datetime
    title: str
    detail: str
    gsomia: AgreementState
    outcomes: tuple[Outcome, ...]
    what_if: bool = False


def _marks(catalogue: Catalogue) -> list[tuple[datetime, str, str]]:
    marks: list[tuple[datetime, str, str]] = []
    for agreement in catalogue.agreements.values():
        for event in agreement.events:
            if event.at >= _START:
                by = f" by {event.party}" if event.party else ""
                title = f"{agreement.title}: {event.kind.value.replace('_', ' ')}{by}"
                marks.append((event.at, title, event.reference + (f" — {event.note}" if event.note else "")))
    marks.extend(_PROBES)
    marks.sort(key=lambda m: m[0])
    return marks


def _grouped(marks: list[tuple[datetime, str, str]]) -> dict[datetime, list[tuple[str, str]]]:
    """Events at one instant form one step."""
    grouped: dict[datetime, list[tuple[str, str]]] = {}
    for at, title, detail in marks:
        grouped.setdefault(at, []).append((title, detail))
    return grouped


def _run_step(
    nodes: dict[str, Node], client: PeerTransport, clock: ManualClock, at: datetime, tag: str
) -> tuple[Outcome, ...]:
    """Release every flow at ``at`` through real nodes, deliver, and see what arrived."""
    clock.now = at
    queued: list[tuple[Flow, str]] = []
    outcomes: dict[str, Outcome] = {}
    for n, flow in enumerate(FLOWS):
        sender = nodes[flow.sender]
        officer = sender.people.person("officer")
        item_id = f"{tag}-{n}-{flow.originator.lower()}"
        label = {
            "originator": flow.originator,
            "classification": flow.classification,
            "releasable_to": [*flow.via, flow.recipient],
            "purpose": flow.purpose,
            "topics": list(flow.topics),
            "created": at.isoformat(),
        }
        sender.items.ingest(
            officer,
            label=label,
            payload=json.dumps({"flow": flow.name, "at": at.isoformat()}).encode(),
            item_id=item_id,
        )
        try:
            sender.exchange.release(
                officer,
                item_id,
                flow.recipient,
                via=flow.via[0] if flow.via else None,
                authorise_relay=flow.authorised,
            )
            queued.append((flow, item_id))
        except ReleaseRefused as exc:
            failed = exc.decision.failed()
            outcomes[flow.name] = Outcome(flow, "refused", failed[0].reason if failed else str(exc), None)
    for _ in range(3):  # sender, then hub, then nothing left
        moved = [d for party in ("KOR", "JPN", "USA") for d in nodes[party].exchange.deliver_due(client)]
        if not moved:
            break
    for flow, item_id in queued:
        item = nodes[flow.recipient].items.held(item_id)
        if item is not None:
            held = item.label
            alt = held.alternative_for(flow.recipient)
            theirs = alt.classification if alt else "?"
            mark = f"{held.originator} {held.classification} / {flow.recipient} {theirs}"
            outcomes[flow.name] = Outcome(
                flow, "delivered", f"stored at {flow.recipient} under {item.agreement}", mark
            )
            continue
        entries = [
            e for p in ("KOR", "JPN", "USA") for e in nodes[p].exchange.outbox(None) if e.item_id == item_id
        ]
        reason = next((e.last_error for e in entries if e.last_error), "not delivered")
        outcomes[flow.name] = Outcome(flow, "undeliverable", reason or "not delivered", None)
    return tuple(outcomes[f.name] for f in FLOWS)


IN_FLIGHT = Flow("KOR→JPN queued 23:59:58, sent 00:00:01", "KOR", "JPN", "KOR", "군사II급비밀")


def _queued_before_midnight(
    nodes: dict[str, Node], client: PeerTransport, clock: ManualClock, at: datetime
) -> Outcome:
    """Released while the agreement was in force, sent after it ended: decided again, never sent."""
    kor = nodes["KOR"]
    officer = kor.people.person("officer")
    clock.now = at - timedelta(seconds=3)
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": clock.now.isoformat(),
    }
    kor.items.ingest(officer, label=label, payload=b'{"in_flight": true}', item_id="what-if-in-flight")
    entry = kor.exchange.release(officer, "what-if-in-flight", "JPN")
    clock.now = at
    kor.exchange.deliver_due(client)
    settled = kor.exchange.outbox_entry(entry.msg_id)
    reason = settled.last_error if settled is not None and settled.last_error else "not delivered"
    return Outcome(IN_FLIGHT, "undeliverable", f"queued while in force; at sending: {reason}", None)


def replay_on_nodes(workdir: Path) -> list[NetStep]:
    """2014–2023 over three real nodes on loopback, with a replay clock passed in (never patched)."""
    catalogue = load_catalogue()
    marks = _marks(catalogue)
    clock = ManualClock(marks[0][0])
    members = network.build(workdir, clock=clock)
    grouped = _grouped(marks)
    gsomia = catalogue.agreement(GSOMIA)
    steps: list[NetStep] = []
    with HttpTransport() as client:
        nodes = network.open_nodes(members, clock)
        with network.serve_in_threads(nodes, members):
            for n, (at, items) in enumerate(grouped.items()):
                outcomes = _run_step(nodes, client, clock, at, f"s{n:02d}")
                steps.append(
                    NetStep(
                        at,
                        _merge_titles([t for t, _ in items]),
                        "; ".join(d for _, d in items),
                        gsomia.state_at(at),
                        outcomes,
                    )
                )
        for node in nodes.values():
            node.close()
        what_if = catalogue.replacing(gsomia.what_if(without=[WHAT_IF_EVENT]))
        at = _PROBES[1][0]
        nodes = network.open_nodes(members, clock, what_if)
        with network.serve_in_threads(nodes, members):
            in_flight = _queued_before_midnight(nodes, client, clock, at)
            outcomes = (*_run_step(nodes, client, clock, at, "what-if"), in_flight)
        for node in nodes.values():
            node.close()
    steps.append(
        NetStep(
            at,
            "What if Seoul had not suspended its notice?",
            f"The same second, on the same nodes, with event {WHAT_IF_EVENT!r} removed.",
            what_if.agreement(GSOMIA).state_at(at),
            outcomes,
            what_if=True,
        )
    )
    return steps


_AFTER = datetime(2024, 3, 1, 10, tzinfo=KST)  # every agreement in force; the duties after delivery


def duties_on_nodes(workdir: Path) -> list[tuple[str, str]]:
    """What the agreements ask after delivery, on three real nodes: (duty, what happened) lines.

    KOR's track reaches JPN, and a report whose tearline alone may go to JPN (its USA-only body
    stays); JPN translates the track; KOR downgrades it and the change reaches the original and
    the translation at JPN; JPN reports a possible compromise and sends KOR a sighting; a report
    crosses only once a second KOR officer approves it, and a downgrade KOR scheduled applies
    itself; JPN destroys the translation before a witness and sends KOR the signed record; KOR's
    termination report lists what JPN holds.
    """
    clock = ManualClock(_START)  # keys made before the story starts, like the replay's
    members = network.build(workdir, clock=clock)
    clock.now = _AFTER
    nodes = network.open_nodes(members, clock)
    kor, jpn = nodes["KOR"], nodes["JPN"]
    lines: list[tuple[str, str]] = []
    with HttpTransport() as client, network.serve_in_threads(nodes, members):

        def deliver() -> None:
            for _ in range(4):
                if not [d for n in nodes.values() for d in n.exchange.deliver_due(client)]:
                    return

        k_officer, j_officer = kor.people.person("officer"), jpn.people.person("officer")
        label = {
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN", "USA"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (_AFTER - timedelta(hours=1)).isoformat(),
        }
        kor.items.ingest(k_officer, label=label, payload=b'{"track": "KN-23"}', item_id="kor-track")
        kor.exchange.release(k_officer, "kor-track", "JPN")
        deliver()
        held, _ = jpn.items.read(j_officer, "kor-track")
        lines.append(("delivered (Art. 4)", f"JPN holds kor-track marked {_marking(held)}"))
        lines.append(_tearline(kor, jpn, label, deliver))
        translated = jpn.duties.derive(
            j_officer,
            "translation",
            ["kor-track"],
            payload='{"航跡": "KN-23"}'.encode(),
            item_id="jpn-translation",
        )
        count = [r.kind for r in jpn.items.inventory(j_officer, "kor-track")]
        lines.append(
            (
                "translation (Art. 14, 15)",
                f"jpn-translation inherits {_marking(translated)}; "
                f"kor-track's inventory at JPN: {', '.join(count)}",
            )
        )
        change = kor.duties.reclassify(k_officer, "kor-track", "군사III급비밀", "downgraded after review")
        deliver()
        status = kor.duties.label_status(k_officer, "kor-track")["changes"][-1]
        original, _ = jpn.items.read(j_officer, "kor-track")
        translation, _ = jpn.items.read(j_officer, "jpn-translation")
        lines.append(
            (
                "reclassification (Art. 6(g))",
                f"KOR's label version {change.version} reached JPN: kor-track {_marking(original)}, "
                f"jpn-translation {_marking(translation)}; applied by "
                f"{', '.join(status['applied']) or 'nobody yet'}",
            )
        )
        incident = jpn.duties.report_incident(
            j_officer, "kor-track", "possible-compromise", "a laptop with a copy was left unattended"
        )
        deliver()
        seen = [i for i in kor.duties.incidents(k_officer) if i["id"] == incident["id"]]
        lines.append(
            (
                "possible compromise (Art. 17)",
                f"JPN opened investigation {incident['id'][:8]}; KOR sees it as "
                f"{seen[0]['state'] if seen else 'NOT RECEIVED'} ({incident['nature']})",
            )
        )
        sighting = jpn.duties.send_feedback(
            j_officer, "kor-track", "corroborated", "JPN's radar held the same track"
        )
        deliver()
        heard = [f for f in kor.duties.feedback(k_officer, "kor-track") if f["id"] == sighting["id"]]
        lines.append(
            (
                "a sighting to the originator",
                f"JPN's signed feedback ({sighting['kind']}: {sighting['text']}) "
                + ("reached KOR" if heard else "did NOT reach KOR"),
            )
        )
        lines += _two_person_and_scheduled_downgrade(kor, jpn, clock, deliver, label)
        jpn.people.add_person(
            None,
            {"id": "witness", "name": "Witness", "nationality": "JPN", "clearance": "極秘",
             "need_to_know": ["dprk-missile"], "roles": ["security_officer"]},
        )  # fmt: skip
        record = jpn.duties.destroy(
            j_officer, "jpn-translation", method="crypto-erase", witness="witness", reason="purpose ended"
        )
        jpn.duties.send_destruction_record(j_officer, "jpn-translation")
        deliver()
        got = kor.duties.destructions(k_officer, "jpn-translation")
        lines.append(
            (
                "destruction (Art. 13)",
                f"jpn-translation destroyed ({record['method']}, witness {record['witness']}); "
                f"the signed record {'reached KOR' if got else 'did NOT reach KOR'}",
            )
        )
        report = kor.duties.termination_report(k_officer)
        at_jpn = next(p for p in report["partners"] if p["party"] == "JPN")["held_there"]
        lines.append(
            (
                "termination report (Art. 21.4)",
                "held at JPN: " + ", ".join(f"{i['item']} ({i['status']})" for i in at_jpn),
            )
        )
    for node in nodes.values():
        node.close()
    return lines


def _two_person_and_scheduled_downgrade(
    kor: Node, jpn: Node, clock: ManualClock, deliver: Callable[[], None], label: dict[str, Any]
) -> list[tuple[str, str]]:
    """KOR's policy asks a second officer for releases above 군사III급비밀: the officer's request waits,
    a second officer approves it, and only then does the report cross. KOR then declares that the
    report becomes 군사III급비밀 an hour later; when the hour has passed, the node's own work applies
    the downgrade, at KOR and at JPN, with nobody acting."""
    lines: list[tuple[str, str]] = []
    k_officer = kor.people.person("officer")
    kor.people.add_person(
        None,
        {"id": "park", "name": "Park", "nationality": "KOR", "clearance": "군사II급비밀",
         "need_to_know": ["dprk-missile"], "roles": ["release_officer"]},
    )  # fmt: skip
    kor.exchange.set_two_person(
        kor.people.person("admin"),
        above={"KOR": "군사III급비밀"},
        hub_relay=True,
        relay_authorisations=True,
        validity=timedelta(hours=4),
    )
    kor.items.ingest(
        k_officer, label=label, payload=b'{"report": "KN-23 assessment"}', item_id="kor-assessment"
    )
    asked = kor.exchange.request_release(k_officer, "kor-assessment", "JPN")
    deliver()
    waiting = jpn.items.held("kor-assessment") is None
    _, entry = kor.exchange.approve_release(kor.people.person("park"), asked.id)
    deliver()
    arrived = jpn.items.held("kor-assessment") is not None
    lines.append(
        (
            "two-person release",
            f"officer asked ({asked.reason}); nothing crossed while it waited"
            + ("" if waiting else " [BUT IT DID]")
            + f"; park approved; {'it reached JPN' if arrived else 'it did NOT reach JPN'} "
            f"(envelope {entry.msg_id[:8]})",
        )
    )
    at = clock.now + timedelta(hours=1)
    kor.duties.schedule_downgrade(
        k_officer, "kor-assessment", "군사III급비밀", at, "the assessment is published"
    )
    before, _ = jpn.items.read(jpn.people.person("officer"), "kor-assessment")
    clock.now = at + timedelta(minutes=1)
    kor.duties.apply_due_downgrades()  # what the node's background work does each round
    deliver()
    after, _ = jpn.items.read(jpn.people.person("officer"), "kor-assessment")
    lines.append(
        (
            "scheduled downgrade",
            f"declared for {at.isoformat()}; applied itself then: JPN's kor-assessment "
            f"{_marking(before)} → {_marking(after)}",
        )
    )
    return lines


def _tearline(kor: Node, jpn: Node, label: dict[str, Any], deliver: Callable[[], None]) -> tuple[str, str]:
    """A KOR report whose body is for the USA only and whose tearline may go to JPN: KOR releases it
    to JPN, and JPN holds the tearline alone, checked against KOR's signed root (issue 20 §2)."""
    k_officer, j_officer = kor.people.person("officer"), jpn.people.person("officer")
    kor.items.ingest(
        k_officer,
        label=None,
        payload=b"",
        item_id="kor-report",
        portions=[
            PortionIngest("body", {**label, "releasable_to": ["USA"]}, b'{"source": "HUMINT, USA only"}'),
            PortionIngest(
                "tearline", {**label, "classification": "군사III급비밀"}, b'{"launch": "KN-23, 05:12 KST"}'
            ),
        ],
    )
    entry = kor.exchange.release(k_officer, "kor-report", "JPN")
    withheld = [
        c["reason"].split(":")[0]
        for c in json.loads(entry.decision)["checks"]
        if c["rule"] == "portion" and not c["passed"]
    ]
    deliver()
    report, _ = jpn.items.read(j_officer, "kor-report")
    stored = jpn.items.held("kor-report")
    kept = [] if stored is None else [p.id for p in stored.portions]
    return (
        "tearline (portions)",
        f"kor-report reached JPN as its {', '.join(m.id for m in report.portions)} alone, marked "
        f"{_marking(report)}, each portion checked against KOR's signed Merkle root; JPN stores "
        f"{', '.join(kept)}; KOR's release withheld the {', '.join(withheld)} (USA only)",
    )


# The stream's part of the story: (instant, what-if without the 2019 suspension, what happened)
STREAM_STORY = (
    ("2016-08-03T07:50:00+09:00", False, "a Rodong falls in Japan's EEZ; GSOMIA not yet signed"),
    ("2019-08-24T06:45:00+09:00", False, "the day after Korea's termination notice"),
    ("2019-11-23T00:00:01+09:00", True, "WHAT-IF: no suspension, GSOMIA has ended"),
    ("2024-01-05T09:00:00+09:00", False, "after the 2023 arrangement"),
    (
        "2024-01-05T09:00:00+09:00",
        True,
        "WHAT-IF: no suspension; JPN is reached directly only because the 2023 arrangement is "
        "modelled as multilateral (an assumption: the record links the systems through the US)",
    ),
)


def kor_plan(catalogue: Catalogue, at: datetime, *, what_if: bool, authorised: bool) -> RelayPlan:
    """Where KOR's missile tracks go at ``at`` (``authorised``: KOR's standing TISA authorisation on file)."""
    if what_if:
        gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
        catalogue = catalogue.replacing(gsomia.what_if(without=[WHAT_IF_EVENT]))
    consents = (
        [
            Consent(
                ConsentKind.HUB_RELAY, "KOR", "JPN", datetime(2015, 1, 1, tzinfo=KST), "standing", hub="USA"
            )
        ]
        if authorised
        else []
    )
    label = catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN", "USA"],
        purpose="missile-warning",
        topics=["dprk-missile"],
        created=at,
    )
    return plan_relay(
        ReleaseEngine(catalogue),
        catalogue,
        label,
        "KOR",
        ["JPN", "USA"],
        at=at,
        consents=consents,
        assurances=assumed_assurances(catalogue),
        hubs=node_hubs(catalogue, "KOR"),  # the agreements' hubs (TISA: the USA relays)
    )


@dataclass(frozen=True, slots=True)
class StreamMoment:
    """Where KOR's missile tracks go at one instant of the story."""

    when: str
    what: str
    plan: RelayPlan


def stream_story(catalogue: Catalogue) -> list[StreamMoment]:
    """KOR's relay plan at each of the story's instants (its standing TISA authorisation on file)."""
    moments = []
    for when, what_if, what in STREAM_STORY:
        plan = kor_plan(catalogue, parse_instant(when, KST), what_if=what_if, authorised=True)
        moments.append(StreamMoment(when, what, plan))
    return moments


def _marking(item: Item) -> str:
    label = item.label
    mine = label.alternative_for("JPN")
    return f"KOR {label.classification}" + ("" if mine is None else f" / JPN {mine.classification}")
