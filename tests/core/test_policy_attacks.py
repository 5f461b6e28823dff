"""Adversarial review of the engine's kept outcomes (issue 18): an outcome kept for one request must
not answer a later one that differs in what the treaty reads: a consent withdrawn, an assurance
revoked, an agreement that ended in the catalogue another engine compiled over the same rules
(the kernel recompiles the engine on an equivalence change and hands it the same rule objects), a
batch's memo handed to another engine or asked at another instant."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.conftest import kst, make_request

from gsomia import Catalogue, Consent, ConsentKind, ReleaseEngine, standard_rules
from gsomia.core.policy import Assurance, ReleaseDecision, assumed_assurances

GSOMIA = "kor-jpn-gsomia-2016"
AT = kst(2024, 3, 1)


def _what_if(catalogue: Catalogue) -> Catalogue:
    """GSOMIA ends on 2019-11-23 (its suspension's notice withdrawn from the record)."""
    return catalogue.replacing(catalogue.agreement(GSOMIA).what_if(without=["2019-11-22-notice-suspended"]))


def _plain(engine: ReleaseEngine, decision: ReleaseDecision, request: object) -> None:
    assert decision == engine.decide_plainly(request, at=decision.at)  # type: ignore[arg-type]


def test_a_consent_withdrawn_after_an_allowed_onward_release_refuses_the_next(catalogue: Catalogue) -> None:
    """USA's item held by KOR goes on to JPN only under USA's consent: allowed with it, refused once
    it expired (withdrawn) or is no longer on file, allowed again when given again, in every order."""
    engine = ReleaseEngine(catalogue)
    onward = make_request(
        catalogue,
        sender="KOR",
        originator="USA",
        classification="SECRET",
        purpose="missile-warning",
        releasable_to=["JPN", "KOR"],
    )
    given = Consent(ConsentKind.THIRD_PARTY, "USA", "JPN", kst(2024, 1, 1), "USA consent 7")
    withdrawn = replace(given, expires=AT - timedelta(seconds=1))
    sequence = [
        ((given,), True),
        ((withdrawn,), False),
        ((), False),
        ((given,), True),
        ((), False),
        ((withdrawn, given), True),
        ((withdrawn,), False),
    ]
    for _ in range(2):
        for consents, allowed in sequence:
            request = replace(onward, consents=consents)
            decision = engine.decide(request, at=AT)
            assert decision.allowed is allowed, consents
            _plain(engine, decision, request)
    # the consent was valid until a second before: an instant earlier the same request passes
    assert engine.decide(replace(onward, consents=(withdrawn,)), at=AT - timedelta(seconds=2)).allowed


def test_an_assurance_revoked_refuses_from_its_revocation_whichever_tuple_was_asked_first(
    catalogue: Catalogue,
) -> None:
    """The assurance table is kept per tuple of assurances (a node's cached copy of the store): a new
    tuple with JPN's assurance revoked refuses from the revocation, never answered from the tuple
    asked before; the tuple asked before still answers as it did."""
    engine = ReleaseEngine(catalogue)
    filed = assumed_assurances(catalogue)
    jpn = next(a for a in filed if a.party == "JPN" and a.agreement == GSOMIA)
    revoked_at = AT - timedelta(hours=1)
    revoked = tuple(
        Assurance(a.agreement, a.party, a.given_at, a.reference, revoked_at) if a is jpn else a for a in filed
    )
    request = make_request(catalogue, assurances=filed)
    later = replace(request, assurances=revoked)
    for first, second in ((request, later), (later, request)):
        engine = ReleaseEngine(catalogue)
        for at in (AT, revoked_at - timedelta(seconds=1), revoked_at, AT + timedelta(days=400)):
            for r in (first, second):
                decision = engine.decide(r, at=at)
                expected = r is request or at < revoked_at
                assert decision.allowed is expected, (at, r is request)
                _plain(engine, decision, r)
    # the same tuple's object asked again after its revocation was decided: still the new answer
    assert not engine.decide(later, at=AT).allowed
    again = tuple(revoked)  # an equal tuple, another object: decided on its own, the same way
    assert not engine.decide(replace(request, assurances=again), at=AT).allowed


def test_engines_compiled_over_the_same_rules_keep_nothing_of_each_other(catalogue: Catalogue) -> None:
    """The kernel compiles a new engine over the changed catalogue with the SAME rule objects: what one
    engine kept (a return allowed, an onward refusal) never answers in the other, in either order."""
    what_if = _what_if(catalogue)
    rules = standard_rules()
    after = kst(2020, 6, 1)  # GSOMIA in force in the shipped record, terminated in the what-if
    navy = ("prc-navy",)
    transfer = make_request(catalogue, topics=navy)  # KOR -> JPN, a new transfer
    back = make_request(
        catalogue, sender="JPN", recipient="KOR", originator="KOR", topics=navy, created=kst(2020, 1, 1)
    )
    for order in ((catalogue, what_if), (what_if, catalogue)):
        engines = {id(c): ReleaseEngine(c, rules) for c in order}
        for cat in order:
            engine = engines[id(cat)]
            shipped = cat is catalogue
            assert engine.decide(transfer, at=after).allowed is shipped
            # created after the what-if's end: not provided under GSOMIA, so no return after it ended
            assert engine.decide(back, at=after).allowed is shipped
            for r in (transfer, back):
                _plain(engine, engine.decide(r, at=after), r)


def test_a_batch_memo_answers_only_its_own_engine_and_instant(catalogue: Catalogue) -> None:
    """``decide``'s batch memo (one dict the caller keeps for a batch) handed to another engine, or
    asked at another instant, or for another recipient, decides anew."""
    what_if = _what_if(catalogue)
    after = kst(2020, 6, 1)
    memo: dict[object, ReleaseDecision] = {}
    shipped, ended = ReleaseEngine(catalogue), ReleaseEngine(what_if)
    request = make_request(catalogue, topics=("prc-navy",))
    assert shipped.decide(request, at=after, memo=memo).allowed
    assert not ended.decide(request, at=after, memo=memo).allowed
    assert ended.decide(request, at=kst(2019, 6, 1), memo=memo).allowed  # before the end
    assert not ended.decide(request, at=after, memo=memo).allowed
    gbr = replace(request, recipient="GBR")
    assert not shipped.decide(gbr, at=after, memo=memo).allowed
    revoked = tuple(
        Assurance(a.agreement, a.party, a.given_at, a.reference, after - timedelta(days=1))
        for a in request.assurances
    )
    assert not shipped.decide(replace(request, assurances=revoked), at=after, memo=memo).allowed
    assert shipped.decide(request, at=after, memo=memo).allowed
