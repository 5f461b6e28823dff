"""The engine's kept outcomes (label rules per key and cut, assurances per tuple and stretch, an
originator's own release) decide exactly what the plain evaluation decides: every check, its
sentence and its outcome, for every request; and a kept outcome never applies beyond what the
request carries (another instant, a revocation, a terminated agreement, another recipient)."""

from __future__ import annotations

import hashlib
import inspect
import random
from collections.abc import Iterable, Iterator
from dataclasses import FrozenInstanceError, fields, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import kst, make_request

from gsomia import (
    AllOf,
    Catalogue,
    Consent,
    ConsentKind,
    LabelRules,
    ReleaseDecision,
    ReleaseEngine,
    ReleaseRequest,
    standard_rules,
)
from gsomia.core.approvals import TwoPersonPolicy
from gsomia.core.labels import CAVEATS
from gsomia.core.policy import Assurance, Check, _Building, _decision, assumed_assurances
from gsomia.errors import InstantError

GSOMIA = "kor-jpn-gsomia-2016"
TOPICS = ("dprk-missile", "dprk-nuclear", "prc-navy")
PURPOSES = ("threat-assessment", "missile-warning", "defence-cooperation", "training-exchange")
CAVEAT_SETS = ((), ("G2G-ONLY",), ("IP-RESTRICTED",), ("NOFORN",), ("IP-RESTRICTED", "G2G-ONLY"), ("ORCON",))
ROUTES = (
    *((s, (), r) for s in ("KOR", "JPN", "USA") for r in ("KOR", "JPN", "USA") if s != r),
    *((s, ("USA",), r) for s, r in (("KOR", "JPN"), ("JPN", "KOR"), ("KOR", "USA"), ("USA", "KOR"))),
    ("KOR", ("JPN",), "USA"),
    ("KOR", ("JPN", "USA"), "USA"),
    ("KOR", (), "GBR"),
)


def _what_if(catalogue: Catalogue) -> Catalogue:
    """GSOMIA ends on 2019-11-23: the end of an in-force interval, and returns after it."""
    return catalogue.replacing(catalogue.agreement(GSOMIA).what_if(without=["2019-11-22-notice-suspended"]))


def _instants(catalogue: Catalogue) -> list[datetime]:
    """Every instant at which an outcome may change (transitions, equivalence rows, levels), a second
    either side of each, and a few ordinary ones."""
    bounds: set[datetime] = set()
    for agreement in catalogue.agreements.values():
        bounds |= {t.at for t in agreement.transitions}
        bounds |= set(agreement.equivalence.bounds())
    for party in catalogue.parties.values():
        for level in party.scheme.levels:
            bounds |= {b for b in (level.valid_from, level.valid_until) if b is not None}
    second = timedelta(seconds=1)
    out = {b + d for b in bounds for d in (-second, timedelta(0), second)}
    return sorted(out | {kst(2015, 6, 1), kst(2017, 1, 1), kst(2020, 6, 1), kst(2024, 3, 1)})


def _assurances(rng: random.Random, assured: tuple[Assurance, ...], at: datetime) -> tuple[Assurance, ...]:
    """Those the record implies, or one of them missing, revoked before or after ``at``, given late."""
    variant = rng.choice(["as-filed", "as-filed", "missing", "revoked", "revoked-later", "late"])
    if variant == "as-filed":
        return assured
    target = rng.choice(assured)
    rest = tuple(a for a in assured if a is not target)
    if variant == "missing":
        return rest
    if variant == "late":
        return (*rest, Assurance(target.agreement, target.party, at + timedelta(hours=1), "given late"))
    revoked = at + (timedelta(days=3) if variant == "revoked-later" else -timedelta(days=3))
    if revoked <= target.given_at:
        return rest
    return (*rest, Assurance(target.agreement, target.party, target.given_at, target.reference, revoked))


def _consents(
    rng: random.Random, originator: str, sender: str, recipient: str, item: str | None, at: datetime
) -> tuple[Consent, ...]:
    out = []
    for _ in range(rng.choice([0, 0, 1, 2])):
        kind = rng.choice([ConsentKind.THIRD_PARTY, ConsentKind.HUB_RELAY, ConsentKind.TRACK_RELAY])
        given = at + timedelta(days=rng.choice([-30, -1, 1]))
        expires = rng.choice([None, None, at - timedelta(days=1), at + timedelta(days=1)])
        if expires is not None and expires <= given:
            expires = None
        out.append(
            Consent(
                kind,
                originator,
                rng.choice([recipient, recipient, "USA", "JPN"]),
                given,
                f"consent {rng.randrange(1000)}",
                item=rng.choice([None, item, "other-item"]),
                holder=rng.choice([None, sender, "USA"]) if kind is ConsentKind.THIRD_PARTY else None,
                hub=rng.choice([None, "USA", "JPN"]) if kind is not ConsentKind.THIRD_PARTY else None,
                expires=expires,
                purpose=rng.choice([None, None, *PURPOSES[:2]]),
            )
        )
    return tuple(out)


def _requests(catalogue: Catalogue, count: int, seed: int) -> Iterator[tuple[ReleaseRequest, datetime]]:
    """``count`` requests drawn over every route, level, caveat, topic, purpose and boundary instant."""
    rng = random.Random(seed)  # noqa: S311 - a fixed mix of requests, not a secret
    instants = _instants(catalogue)
    assured = assumed_assurances(catalogue)
    known = sorted(catalogue.parties)
    for n in range(count):
        sender, via, recipient = rng.choice(ROUTES)
        originator = rng.choice([p for p in (sender, sender, recipient, *known) if p in catalogue.parties])
        at = rng.choice(instants)
        if rng.random() < 0.2:  # returns and onward transfers after the what-if's end of GSOMIA
            sender, via, recipient = rng.choice([("JPN", (), "KOR"), ("KOR", (), "JPN")])
            originator, at = rng.choice([recipient, sender]), rng.choice([kst(2020, 1, 31), kst(2021, 5, 1)])
        created = at + timedelta(days=rng.choice([-800, -30, 0, 1]), seconds=rng.choice([0, 1]))
        if rng.random() < 0.1:  # the same instant written with another offset
            created = created.astimezone(UTC)
        levels = [lv.name for lv in catalogue.parties[originator].scheme.levels]
        item = rng.choice([None, f"item-{n}"])
        request = make_request(
            catalogue,
            sender=sender,
            recipient=recipient,
            originator=originator,
            classification=rng.choice(levels),
            via=via,
            releasable_to=[p for p in known if p != originator and rng.random() < 0.7],
            purpose=rng.choice(PURPOSES[:3]) if rng.random() < 0.9 else "training-exchange",
            label_purpose=rng.choice(PURPOSES[:3]),
            topics=[t for t in TOPICS if rng.random() < 0.4],
            caveats=rng.choice(CAVEAT_SETS),
            consents=_consents(rng, originator, sender, recipient, item, at),
            item=item,
            created=created,
            assurances=_assurances(rng, assured, at),
        )
        if rng.random() < 0.1:
            request = replace(request, two_person=TwoPersonPolicy(frozenset({(originator, levels[1])})))
        yield request, at


def _said(decision: ReleaseDecision) -> bytes:
    """Every field of a decision, every check's rule, outcome and sentence, as bytes."""
    return repr(
        (
            decision.allowed,
            decision.at.isoformat(),
            decision.route,
            decision.agreement,
            decision.checks,
            decision.marking,
            decision.considered,
        )
    ).encode()


def _digest(decisions: Iterable[ReleaseDecision]) -> str:
    h = hashlib.sha256()
    for decision in decisions:
        h.update(_said(decision))
    return h.hexdigest()


@pytest.mark.parametrize("what_if", [False, True], ids=["shipped", "what-if"])
def test_the_kept_outcomes_decide_what_the_plain_evaluation_decides(
    catalogue: Catalogue, what_if: bool
) -> None:
    """3,000 requests over the catalogue, decided by one engine three times (cold, then from what it
    kept) and by the plain evaluation: the same digest of every check of every decision."""
    cat = _what_if(catalogue) if what_if else catalogue
    cases = list(_requests(cat, 3000, seed=18))
    engine = ReleaseEngine(cat)
    plain = _digest(engine.decide_plainly(r, at=at) for r, at in cases)
    for _ in range(3):
        kept = [engine.decide(r, at=at) for r, at in cases]
        if _digest(kept) != plain:  # name the first request that differs
            for (r, at), d in zip(cases, kept, strict=True):
                assert _said(d) == _said(engine.decide_plainly(r, at=at)), (r, at)
        assert _digest(kept) == plain
    assert len({d.allowed for d in kept}) == 2  # the sample holds both outcomes
    assert {c.rule for d in kept for c in d.failed()} >= {
        "agreement_in_force",
        "label",
        "equivalence",
        "level_validity",
        "releasability",
        "caveats",
        "purpose",
        "scope",
        "assurance",
        "third_party",
        "hub_authorisation",
        "two_person",
    }  # and a refusal by every rule


_WARM: dict[bool, ReleaseEngine] = {}


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), what_if=st.booleans())
def test_a_warm_engine_decides_any_request_as_the_plain_evaluation_does(
    catalogue: Catalogue, seed: int, what_if: bool
) -> None:
    """One engine per catalogue kept warm across examples (what it kept from earlier ones in play)."""
    engine = _WARM.get(what_if)
    if engine is None:
        engine = _WARM[what_if] = ReleaseEngine(_what_if(catalogue) if what_if else catalogue)
    for request, at in _requests(engine.catalogue, 5, seed):
        assert _said(engine.decide(request, at=at)) == _said(engine.decide_plainly(request, at=at))


# --- an adversary tries to make a kept outcome apply beyond what the request carries ---

AT = kst(2024, 3, 1)


def test_a_later_instant_is_decided_at_that_instant(catalogue: Catalogue) -> None:
    """The same request object, decided warm at an allowed instant, then after an assurance in
    the same tuple is revoked, and before the agreement entered into force."""
    revoked_at = AT + timedelta(days=1)
    filed = tuple(
        replace(a, revoked_at=revoked_at) if (a.agreement, a.party) == (GSOMIA, "JPN") else a
        for a in assumed_assurances(catalogue)
    )
    engine = ReleaseEngine(catalogue)
    request = make_request(catalogue, topics=("prc-navy",), assurances=filed)  # only GSOMIA carries it
    for _ in range(2):
        assert engine.decide(request, at=AT).allowed
    after = engine.decide(request, at=revoked_at)
    assert not after.allowed
    assert "was revoked at" in next(c.reason for c in after.checks if c.rule == "assurance")
    assert engine.decide(request, at=revoked_at - timedelta(microseconds=1)).allowed
    before = engine.decide(request, at=kst(2016, 11, 22, 23, 59, 59))
    assert not before.allowed
    assert {c.rule for c in before.failed()} >= {"agreement_in_force", "assurance"}


def test_a_revocation_or_a_missing_consent_in_a_new_tuple_is_decided_on_that_tuple(
    catalogue: Catalogue,
) -> None:
    """A tuple equal but for a revocation, and a tuple equal in every field but another object: each
    is decided on what it holds, never on the outcome kept for an earlier tuple."""
    engine = ReleaseEngine(catalogue)
    filed = assumed_assurances(catalogue)
    allowed = make_request(catalogue, topics=("prc-navy",), assurances=filed)
    assert engine.decide(allowed, at=AT).allowed
    revoked = tuple(
        replace(a, revoked_at=AT - timedelta(days=1)) if (a.agreement, a.party) == (GSOMIA, "JPN") else a
        for a in filed
    )
    assert not engine.decide(replace(allowed, assurances=revoked), at=AT).allowed
    assert engine.decide(replace(allowed, assurances=tuple(list(filed))), at=AT).allowed
    # a holder's onward release: the consent carried decides, a warm engine notwithstanding
    consent = Consent(ConsentKind.THIRD_PARTY, "USA", "JPN", kst(2024, 1, 1), "USA consent 1", expires=AT)
    onward = make_request(
        catalogue,
        sender="KOR",
        originator="USA",
        classification="SECRET",
        purpose="missile-warning",  # under the 2023 trilateral arrangement
        releasable_to=["JPN", "KOR"],
        consents=[consent],
    )
    early = AT - timedelta(days=1)
    assert engine.decide(onward, at=early).allowed
    assert not engine.decide(onward, at=AT).allowed  # the consent expired
    assert not engine.decide(replace(onward, consents=()), at=early).allowed


def test_a_terminated_agreement_passes_only_a_return_made_before_its_end(catalogue: Catalogue) -> None:
    """After the what-if's end of GSOMIA, items of the same label fields differ only by their
    creation instant: the one made before the end goes back, the one made after does not, and
    a new transfer of the same fields is refused, whichever was decided first."""
    what_if = _what_if(catalogue)
    after = kst(2020, 6, 1)
    navy = ("prc-navy",)

    def back(created: datetime) -> ReleaseRequest:
        return make_request(
            what_if, sender="JPN", recipient="KOR", originator="KOR", topics=navy, created=created
        )

    for order in ((kst(2019, 9, 1), after), (after, kst(2019, 9, 1))):
        engine = ReleaseEngine(what_if)
        decided = {c: engine.decide(back(c), at=after).allowed for c in order}
        assert decided == {kst(2019, 9, 1): True, after: False}
        assert not engine.decide(make_request(what_if, topics=navy), at=after).allowed


def test_another_recipient_is_decided_on_its_own_route(catalogue: Catalogue) -> None:
    engine = ReleaseEngine(catalogue)
    request = make_request(catalogue, releasable_to=["JPN", "USA"])
    assert engine.decide(request, at=AT).route == ("KOR", "JPN")
    usa = engine.decide(replace(request, recipient="USA"), at=AT)
    assert usa.allowed
    assert usa.route == ("KOR", "USA")
    assert usa.agreement != GSOMIA
    gbr = engine.decide(replace(request, recipient="GBR"), at=AT)
    assert not gbr.allowed
    assert gbr.route == ("KOR", "GBR")
    relayed = engine.decide(replace(request, via=("USA",)), at=AT)
    assert not relayed.allowed  # a relay needs the originator's authorisation naming the item and hub


def test_a_label_created_after_the_instant_is_refused_in_its_own_words(catalogue: Catalogue) -> None:
    """Two labels of the same fields created after the instant (one at the same instant in another
    offset): each refusal names that label's own creation instant."""
    engine = ReleaseEngine(catalogue)
    created = AT + timedelta(hours=1)
    for when in (created, created.astimezone(UTC), created + timedelta(seconds=1)):
        decision = engine.decide(make_request(catalogue, created=when), at=AT)
        assert not decision.allowed
        assert [c.reason for c in decision.failed()] == [
            f"the label says the item was created at {when.isoformat()}, after this instant"
        ]


def test_caveats_of_the_table_are_all_exercised() -> None:
    """The generated requests carry every caveat gsomia knows and one it does not."""
    assert {c for s in CAVEAT_SETS for c in s} == {*CAVEATS, "ORCON"}


def test_the_engine_makes_its_decisions_as_the_dataclass_does(catalogue: Catalogue) -> None:
    """The engine sets a decision's slots itself: every field of the dataclass, in its order, and
    the decision equal to the one its constructor makes."""
    assert list(inspect.signature(_decision).parameters) == [f.name for f in fields(ReleaseDecision)]
    engine = ReleaseEngine(catalogue)
    plain = make_request(catalogue)
    for request in (
        plain,
        replace(plain, recipient="GBR"),
        make_request(catalogue, created=AT + AT.resolution),
    ):
        decision = engine.decide(request, at=AT)
        rebuilt = ReleaseDecision(**{f.name: getattr(decision, f.name) for f in fields(ReleaseDecision)})
        assert rebuilt == decision
        assert repr(rebuilt) == repr(decision)
        assert hash(rebuilt.checks) == hash(decision.checks)
        assert type(decision) is ReleaseDecision
        with pytest.raises(FrozenInstanceError):
            decision.allowed = not decision.allowed  # type: ignore[misc]
    # the builder has the decision's slots, all of them and no more (no __dict__, no __weakref__)
    assert sorted(_Building.__slots__) == sorted(ReleaseDecision.__slots__)
    assert not hasattr(_decision(True, AT, (), None, (), None, ()), "__dict__")


class _Fails:
    """A rule that fails for the candidates named (and counts every time it is asked)."""

    def __init__(self, name: str, *ids: str) -> None:
        self.name, self.ids, self.asked = name, ids, 0

    def check(self, request: ReleaseRequest, candidate: object, ts: float) -> Check:
        self.asked += 1
        cid = candidate.id  # type: ignore[attr-defined]
        return Check(self.name, cid not in self.ids, f"{self.name} asked of {cid}")


USA_TRI, USA_TISA = "trilateral-missile-warning-2023", "tisa-2014"
USA_KOR = "usa-kor-gsomia-1987"  # the candidates of USA -> KOR, in order: USA_KOR, USA_TRI, USA_TISA


@pytest.mark.parametrize("grouped", [False, True], ids=["single-rules", "a-group-then-rules"])
@pytest.mark.parametrize(
    ("failing", "reported"),
    [
        # (the candidates each rule fails for), the refusal reported
        (((USA_KOR,), (USA_KOR,), (USA_TRI,), (USA_TISA,)), USA_TRI),  # later, fewer: the later
        (((USA_KOR,), (USA_TRI,), (USA_TISA,)), USA_KOR),  # a tie: the first of the fewest
        (((USA_KOR, USA_TRI), (USA_TRI,), (USA_KOR, USA_TISA)), USA_TISA),
        (((USA_KOR, USA_TRI, USA_TISA), (USA_TISA,), (USA_KOR,)), USA_TRI),
    ],
)
def test_a_candidate_cut_short_is_never_the_one_reported(
    catalogue: Catalogue, grouped: bool, failing: tuple[tuple[str, ...], ...], reported: str
) -> None:
    """A later candidate is asked only until it fails as many rules as the refusal held: the refusal
    reported is still the first of the fewest failures, with every one of its checks, and it is
    what the plain evaluation (every rule of every candidate) reports."""
    rules = [_Fails(f"r{n}", *ids) for n, ids in enumerate(failing)]
    passing = [_Fails("always"), _Fails("also")]
    every = [*rules, *passing]
    shape = AllOf(LabelRules(*every[:2]), *every[2:]) if grouped else AllOf(*every)
    engine = ReleaseEngine(catalogue, shape)
    request = make_request(catalogue, sender="USA", recipient="KOR", classification="SECRET")
    decision = engine.decide(request, at=AT)
    assert decision.considered == (USA_KOR, USA_TRI, USA_TISA)
    assert not decision.allowed
    assert decision.agreement == reported
    assert [c.rule for c in decision.checks] == [r.name for r in every]
    assert all(c.reason.endswith(f"asked of {reported}") for c in decision.checks)
    assert sum(not c.passed for c in decision.checks) == sum(reported in ids for ids in failing)
    assert _said(decision) == _said(engine.decide_plainly(request, at=AT))


def test_a_candidate_that_can_no_longer_be_reported_is_not_asked_further(catalogue: Catalogue) -> None:
    """The first candidate fails one rule; the next fails the first rule asked: the rules after it
    are not asked of that candidate (nothing it could say would be reported), and the third, which
    passes everything, allows with every check."""
    first = _Fails("first", USA_TRI)
    second = _Fails("second", USA_KOR)
    rest = _Fails("rest")
    engine = ReleaseEngine(catalogue, AllOf(first, second, rest))
    request = make_request(catalogue, sender="USA", recipient="KOR", classification="SECRET")
    plain = engine.decide_plainly(request, at=AT)
    asked = (first.asked, second.asked, rest.asked)
    assert plain.allowed
    assert plain.agreement == USA_TISA
    decision = engine.decide(request, at=AT)
    assert _said(decision) == _said(plain)
    # USA_KOR: all three; USA_TRI: cut after ``first``; USA_TISA: all three
    assert (first.asked - asked[0], second.asked - asked[1], rest.asked - asked[2]) == (3, 2, 2)


class _Unsure(tzinfo):
    """A time zone that does not know its offset: an instant in it is naive."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None

    def dst(self, dt: datetime | None) -> None:
        return None

    def tzname(self, dt: datetime | None) -> str:
        return "unsure"


def test_an_instant_whose_zone_gives_no_offset_is_refused(catalogue: Catalogue) -> None:
    with pytest.raises(InstantError):
        ReleaseEngine(catalogue).decide(make_request(catalogue), at=datetime(2024, 3, 1, tzinfo=_Unsure()))


def test_a_refusal_kept_for_a_release_without_consent_does_not_answer_one_that_carries_one(
    catalogue: Catalogue,
) -> None:
    """The third-party and hub refusals of a request carrying no consent are kept per route and
    originator; the same route and originator with a consent is decided on that consent."""
    engine = ReleaseEngine(catalogue)
    consent = Consent(ConsentKind.THIRD_PARTY, "USA", "JPN", kst(2024, 1, 1), "USA consent 2")
    onward = make_request(
        catalogue,
        sender="KOR",
        originator="USA",
        classification="SECRET",
        purpose="missile-warning",
        releasable_to=["JPN", "KOR"],
    )
    for _ in range(2):
        assert not engine.decide(onward, at=AT).allowed
    assert engine.decide(replace(onward, consents=(consent,)), at=AT).allowed
    relay = Consent(ConsentKind.HUB_RELAY, "KOR", "JPN", kst(2015, 1, 1), "relay 1", item="i-1", hub="USA")
    relayed = make_request(catalogue, via=("USA",), item="i-1", created=kst(2015, 2, 1))
    before_gsomia = kst(2015, 6, 1)
    for _ in range(2):
        decision = engine.decide(relayed, at=before_gsomia)
        assert not decision.allowed
        assert "none is on file" in next(c.reason for c in decision.checks if c.rule == "hub_authorisation")
    assert engine.decide(replace(relayed, consents=(relay,)), at=before_gsomia).allowed


def test_the_rules_ungrouped_or_regrouped_decide_as_the_standard_set(catalogue: Catalogue) -> None:
    """The standard shape (one group, then single rules) is evaluated without the general loop's
    questions: the same rules each on its own, or the last ones grouped, give every check alike."""
    standard = standard_rules()
    group, *singles = standard.rules
    assert isinstance(group, LabelRules)
    alone = AllOf(*group.rules, *singles)
    regrouped = AllOf(*group.rules[:2], LabelRules(*group.rules[2:]), *singles)
    engines = [ReleaseEngine(catalogue, rules) for rules in (standard, alone, regrouped)]
    for request, at in _requests(catalogue, 600, seed=7):
        said = {_said(engine.decide(request, at=at)) for engine in engines}
        assert len(said) == 1, (request, at)


def test_the_route_checks_kept_for_a_plain_request_answer_only_plain_requests(catalogue: Catalogue) -> None:
    """Issue 18: for a request carrying no consent, no approval and no two-person policy asking
    anything, the third-party, hub and two-person checks are kept per candidate and originator (one
    look-up for the three). The adversary warms them with the originator's own release, then asks
    on the same route with a policy asking a second officer, another originator (a holder's onward
    release), a consent: each is decided on what it carries, never granted from what was kept."""
    engine = ReleaseEngine(catalogue)
    own = make_request(catalogue, topics=("prc-navy",))  # KOR's own item to JPN, GSOMIA only
    for _ in range(2):
        assert engine.decide(own, at=AT).allowed
    policy = TwoPersonPolicy(frozenset({("KOR", own.label.classification)}))
    asked = engine.decide(replace(own, two_person=policy), at=AT)
    assert [c.rule for c in asked.failed()] == ["two_person"]
    assert engine.decide(replace(own, two_person=TwoPersonPolicy()), at=AT) == engine.decide(own, at=AT)
    onward = make_request(
        catalogue, sender="KOR", recipient="JPN", originator="USA", classification="SECRET",
        purpose="missile-warning", releasable_to=["JPN", "KOR"],
    )  # fmt: skip
    warm = make_request(
        catalogue, sender="KOR", recipient="JPN", originator="KOR", purpose="missile-warning",
    )  # fmt: skip
    assert engine.decide(warm, at=AT).allowed  # KOR's own: third_party passes, kept for KOR
    refused = engine.decide(onward, at=AT)
    assert [c.rule for c in refused.failed()] == ["third_party"]
    consent = Consent(ConsentKind.THIRD_PARTY, "USA", "JPN", kst(2024, 1, 1), "USA consent 3")
    assert engine.decide(replace(onward, consents=(consent,)), at=AT).allowed
    assert engine.decide(onward, at=AT) == refused  # and the kept refusal still stands after it
    for request in (own, replace(own, two_person=policy), warm, onward):
        assert _said(engine.decide(request, at=AT)) == _said(engine.decide_plainly(request, at=AT))


class _Counted:
    """A rule that passes and counts how often it is asked; ``route_only`` as given."""

    def __init__(self, name: str, route_only: bool) -> None:
        self.name, self.route_only, self.asked = name, route_only, 0

    def check(self, request: ReleaseRequest, candidate: object, ts: float) -> Check:
        self.asked += 1
        return Check(self.name, True, f"{self.name} asked")


def test_a_route_only_rule_is_kept_only_after_every_rule_asked_each_time(catalogue: Catalogue) -> None:
    """A rule saying ``route_only`` is asked once per candidate and originator for plain requests,
    when it comes after every rule that is not; one placed before such a rule is asked every time
    (the checks stay in the rules' order), and a request carrying a consent asks it every time."""
    group, *singles = standard_rules().rules
    assert isinstance(group, LabelRules)
    kept, live = _Counted("kept", True), _Counted("live", False)
    request = make_request(catalogue, topics=("prc-navy",))
    engine = ReleaseEngine(catalogue, AllOf(group, live, *singles, kept))
    for _ in range(3):
        decision = engine.decide(request, at=AT)
    assert decision.allowed
    assert decision.checks[-1] == Check("kept", True, "kept asked")
    assert (live.asked, kept.asked) == (3, 1)
    consent = Consent(ConsentKind.THIRD_PARTY, "KOR", "USA", kst(2024, 1, 1), "KOR consent 4")
    for _ in range(2):
        engine.decide(replace(request, consents=(consent,)), at=AT)
    assert kept.asked == 3
    before, after = _Counted("before", True), _Counted("after", False)
    engine = ReleaseEngine(catalogue, AllOf(group, before, after, *singles))
    for _ in range(3):
        assert [c.rule for c in engine.decide(request, at=AT).checks][8:10] == ["before", "after"]
    assert (before.asked, after.asked) == (3, 3)


class _Asked:
    """A rule asked afresh every time: the same check, without ``route_only`` (nothing kept by AllOf)."""

    def __init__(self, rule: Any) -> None:
        self.name, self.rule = rule.name, rule

    def check(self, request: ReleaseRequest, candidate: object, ts: float) -> Check:
        return (
            self.rule.explain(request, candidate, ts)
            if hasattr(self.rule, "explain")
            else (self.rule.check(request, candidate, ts))
        )


def _shapes() -> dict[str, list[Any]]:
    """The standard rules, and the same rules in other orders: the route-only rules last in another
    order (kept), and interleaved with the assurance rule or first (not kept: AllOf asks each)."""
    head, assured, third, hub, two = standard_rules().rules
    return {
        "standard": [head, assured, third, hub, two],
        "kept-reordered": [head, assured, two, hub, third],
        "interleaved": [head, third, assured, hub, two],
        "route-first": [head, two, hub, third, assured],
    }


@pytest.mark.parametrize("shape", ["standard", "kept-reordered", "interleaved", "route-first"])
@pytest.mark.parametrize("what_if", [False, True], ids=["shipped", "what-if"])
def test_the_route_only_checks_kept_decide_what_the_rules_asked_afresh_decide(
    catalogue: Catalogue, shape: str, what_if: bool
) -> None:
    """Differential: 2,000 requests, most of them plain (no consent, no approval, no two-person policy
    asking anything: the kept route checks apply), the rest carrying consents or a policy, over every
    route (hubs included), originator and boundary instant, in a shuffled order and each decided twice
    by one warm engine; against an engine whose rules are each asked afresh (each rule's own
    ``explain``: nothing kept per candidate and originator) and the plain evaluation. Every field and
    every check's sentence the same."""
    cat = _what_if(catalogue) if what_if else catalogue
    rng = random.Random(7)  # noqa: S311 - a fixed mix of requests, not a secret
    cases = []
    for request, at in _requests(cat, 2000, seed=1446):
        if rng.random() < 0.7:
            request = replace(request, consents=(), approval=None)
            if rng.random() < 0.5:
                request = replace(request, two_person=TwoPersonPolicy(frozenset()))  # asks nothing
        cases.append((request, at))
    rules = _shapes()[shape]
    kept = ReleaseEngine(cat, AllOf(*rules))
    afresh = ReleaseEngine(cat, AllOf(rules[0], *(_Asked(r) for r in rules[1:])))
    plain = sum(1 for r, _ in cases if not r.consents and r.approval is None)
    assert plain > 1000
    for order in range(2):
        rng.shuffle(cases)
        for request, at in cases:
            decided = kept.decide(request, at=at)
            assert _said(decided) == _said(afresh.decide(request, at=at)), (shape, order, request, at)
            assert _said(decided) == _said(kept.decide_plainly(request, at=at)), (shape, order, request, at)
    refused = {c.rule for r, at in cases for c in kept.decide(r, at=at).failed()}
    assert {"third_party", "hub_authorisation", "two_person"} <= refused  # the kept rules refuse too
