"""The release engine: every rule in both outcomes, the 2016 hub scenario, monotonicity."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import kst, make_request

from gsomia import (
    AllOf,
    Catalogue,
    Consent,
    ConsentKind,
    ReleaseDecision,
    ReleaseEngine,
    ReleaseRefused,
    ReleaseRequest,
)
from gsomia.core.approvals import TwoPersonPolicy
from gsomia.core.policy import Assurance
from gsomia.errors import InstantError, LabelError

NOV_2016_EVE = kst(2016, 11, 22, 12)
AUG_2019 = kst(2019, 8, 24, 7)
NORMAL_2024 = kst(2024, 3, 1)


def check(decision: ReleaseDecision, rule: str) -> tuple[bool, str]:
    found = [c for c in decision.checks if c.rule == rule]
    assert len(found) == 1, decision.checks
    return found[0].passed, found[0].reason


def relay_consent(originator: str = "KOR", recipient: str = "JPN", **kw: object) -> Consent:
    given = kw.pop("given_at", kst(2015, 1, 1))
    return Consent(
        ConsentKind.HUB_RELAY, originator, recipient, given, "KOR MND authorisation 2015-001", **kw
    )  # type: ignore[arg-type]


# --- agreement in force ---


def test_direct_korea_to_japan_refused_before_gsomia(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue), at=NOV_2016_EVE)
    assert not d.allowed
    passed, reason = check(d, "agreement_in_force")
    assert not passed
    assert "kor-jpn-gsomia-2016 is not in force" in reason
    assert d.marking is None


def test_direct_korea_to_japan_allowed_once_gsomia_is_in_force(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    d = engine.decide(make_request(catalogue), at=kst(2016, 11, 23))
    assert d.allowed
    assert d.agreement == "kor-jpn-gsomia-2016"
    assert d.marking is not None
    assert d.marking.text == "KOR 極秘"
    assert d.marking.gloss
    assert d.marking.alias == "gokuhi"


def test_release_during_the_2019_notice_period_is_allowed(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    d = engine.decide(
        make_request(catalogue, sender="JPN", recipient="KOR", classification="gokuhi"), at=AUG_2019
    )
    assert d.allowed
    assert d.marking is not None
    assert d.marking.text == "JPN 군사II급비밀"
    passed, reason = check(d, "agreement_in_force")
    assert passed
    assert "termination notice" in reason


def test_release_after_termination_is_refused_in_the_what_if(catalogue: Catalogue) -> None:
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016").what_if(without=["2019-11-22-notice-suspended"])
    engine = ReleaseEngine(catalogue.replacing(gsomia))
    d = engine.decide(make_request(catalogue), at=kst(2019, 11, 23, 0, 0, 1))
    assert not d.allowed
    passed, reason = check(d, "agreement_in_force")
    assert not passed
    assert "terminated" in reason


def test_no_agreement_at_all_between_parties_refuses_and_says_so(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    d = engine.decide(make_request(catalogue, via=("JPN",), recipient="USA"), at=NORMAL_2024)
    assert not d.allowed
    assert d.checks[0].rule == "agreement_in_force"
    assert "through JPN" in d.checks[0].reason


def test_unknown_party_is_refused(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    request = replace(make_request(catalogue), recipient="PRK")
    d = engine.decide(request, at=NORMAL_2024)
    assert not d.allowed
    assert "unknown party PRK" in d.checks[0].reason


# --- equivalence (classification ceiling) ---


def test_korean_class_one_is_never_released(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    for recipient, via in (("JPN", ()), ("USA", ()), ("JPN", ("USA",))):
        d = engine.decide(
            make_request(
                catalogue,
                classification="군사I급비밀",
                recipient=recipient,
                via=via,
                consents=[relay_consent()],
            ),
            at=NORMAL_2024,
        )
        assert not d.allowed, (recipient, via)
        passed, reason = check(d, "equivalence")
        assert not passed
        assert "no equivalent" in reason


def test_one_way_mapping_releases_only_in_its_direction(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(
        make_request(catalogue, sender="JPN", recipient="KOR", classification="特定秘密"), at=NORMAL_2024
    )
    assert d.allowed
    assert d.marking is not None
    assert d.marking.classification == "군사II급비밀"
    table = catalogue.agreement("kor-jpn-gsomia-2016").equivalence
    assert table.map("KOR", "군사II급비밀", "JPN") == "極秘"  # never back to 特定秘密


def test_hub_relay_needs_an_equivalent_for_the_hub_too(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(
        make_request(catalogue, via=("USA",), classification="군사III급비밀", consents=[relay_consent()]),
        at=NORMAL_2024,
    )
    assert d.allowed
    passed, reason = check(d, "equivalence")
    assert passed
    assert "USA CONFIDENTIAL" in reason
    assert "JPN 秘" in reason


# --- releasability ---


def test_recipient_missing_from_releasable_to_is_refused(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue, releasable_to=["USA"]), at=NORMAL_2024)
    assert not d.allowed
    passed, reason = check(d, "releasability")
    assert not passed
    assert "JPN" in reason


def test_hub_must_also_be_releasable(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(
        make_request(catalogue, via=("USA",), releasable_to=["JPN"], consents=[relay_consent()]),
        at=NORMAL_2024,
    )
    assert not d.allowed
    passed, reason = check(d, "releasability")
    assert not passed
    assert "USA" in reason


# --- caveats ---


@pytest.mark.parametrize(("caveat", "allowed"), [("NOFORN", False), ("G2G-ONLY", True), ("MYSTERY", False)])
def test_caveats(catalogue: Catalogue, engine: ReleaseEngine, caveat: str, allowed: bool) -> None:
    d = engine.decide(make_request(catalogue, caveats=[caveat]), at=NORMAL_2024)
    assert d.allowed is allowed
    passed, _ = check(d, "caveats")
    assert passed is allowed


def test_ip_restriction_blocks_onward_release_but_not_the_originator(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    own = engine.decide(make_request(catalogue, caveats=["IP-RESTRICTED"]), at=NORMAL_2024)
    assert own.allowed
    consent = Consent(ConsentKind.THIRD_PARTY, "KOR", "USA", kst(2024, 1, 1), "KOR consent 7")
    onward = engine.decide(
        make_request(
            catalogue,
            sender="JPN",
            recipient="USA",
            originator="KOR",
            caveats=["IP-RESTRICTED"],
            consents=[consent],
        ),
        at=NORMAL_2024,
    )
    assert not onward.allowed
    passed, reason = check(onward, "caveats")
    assert not passed
    assert "intellectual property" in reason


# --- purpose ---


def test_purpose_must_match_the_items_purpose(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue, label_purpose="missile-warning"), at=NORMAL_2024)
    assert not d.allowed
    passed, reason = check(d, "purpose")
    assert not passed
    assert "only for its purpose" in reason


def test_purpose_must_be_permitted_by_the_agreement(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue, purpose="commercial-espionage"), at=NORMAL_2024)
    assert not d.allowed
    passed, reason = check(d, "purpose")
    assert not passed
    assert "does not permit" in reason
    ok = engine.decide(make_request(catalogue, purpose="defence-cooperation"), at=NORMAL_2024)
    assert ok.allowed
    assert check(ok, "purpose")[0]


# --- scope and the 2016 hub route ---


def test_before_gsomia_korea_reaches_japan_through_the_us_within_tisa_scope(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    d = engine.decide(make_request(catalogue, via=("USA",), consents=[relay_consent()]), at=NOV_2016_EVE)
    assert d.allowed
    assert d.agreement == "tisa-2014"
    assert d.route == ("KOR", "USA", "JPN")
    assert d.marking is not None
    assert d.marking.text == "KOR 極秘"


def test_hub_route_outside_tisa_scope_is_refused(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(
        make_request(catalogue, via=("USA",), topics=["prc-navy"], consents=[relay_consent()]),
        at=NOV_2016_EVE,
    )
    assert not d.allowed
    passed, reason = check(d, "scope")
    assert not passed
    assert "prc-navy" in reason


def test_item_without_topics_cannot_show_it_is_in_a_limited_scope(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    d = engine.decide(
        make_request(catalogue, via=("USA",), topics=[], consents=[relay_consent()]), at=NOV_2016_EVE
    )
    assert not d.allowed
    assert not check(d, "scope")[0]


def test_bilateral_gsomia_covers_every_topic(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue, topics=["prc-navy"]), at=NORMAL_2024)
    assert d.allowed
    assert "all classified military information" in check(d, "scope")[1]


# --- hub authorisation ---


def test_hub_relay_without_authorisation_is_refused(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue, via=("USA",)), at=NOV_2016_EVE)
    assert not d.allowed
    passed, reason = check(d, "hub_authorisation")
    assert not passed
    assert "naming JPN" in reason


def test_hub_authorisation_must_name_the_final_recipient(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(
        make_request(catalogue, via=("USA",), consents=[relay_consent(recipient="USA")]), at=NOV_2016_EVE
    )
    assert not d.allowed
    assert not check(d, "hub_authorisation")[0]


def test_hub_authorisation_must_be_prior(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    late = relay_consent(given_at=kst(2016, 12, 1))
    d = engine.decide(make_request(catalogue, via=("USA",), consents=[late]), at=NOV_2016_EVE)
    assert not d.allowed
    assert "must be prior" in check(d, "hub_authorisation")[1]


def test_korea_and_japan_cannot_go_direct_under_tisa(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue), at=NOV_2016_EVE)
    assert d.considered == ("kor-jpn-gsomia-2016", "trilateral-missile-warning-2023")
    assert "tisa-2014" not in d.considered


# --- the third-party rule ---


def test_holder_needs_originators_consent_to_pass_item_on(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    request = make_request(
        catalogue, sender="JPN", recipient="USA", originator="KOR", releasable_to=["JPN", "USA"]
    )
    d = engine.decide(request, at=NORMAL_2024)
    assert not d.allowed
    passed, reason = check(d, "third_party")
    assert not passed
    assert "third party" in reason
    assert "KOR" in reason


def test_consent_naming_the_recipient_allows_it(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    consent = Consent(
        ConsentKind.THIRD_PARTY, "KOR", "USA", kst(2024, 1, 1), "KOR note 2024-17", item="item-1"
    )
    request = make_request(
        catalogue,
        sender="JPN",
        recipient="USA",
        originator="KOR",
        releasable_to=["JPN", "USA"],
        consents=[consent],
        item="item-1",
    )
    d = engine.decide(request, at=NORMAL_2024)
    assert d.allowed, d.failed()
    assert "KOR note 2024-17" in check(d, "third_party")[1]
    other_item = engine.decide(replace(request, item="item-2"), at=NORMAL_2024)
    assert not other_item.allowed
    assert "another item" in check(other_item, "third_party")[1]


def test_consent_for_another_recipient_or_expired_does_not_count(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    wrong = Consent(ConsentKind.THIRD_PARTY, "KOR", "GBR", kst(2024, 1, 1), "to GBR")
    expired = Consent(ConsentKind.THIRD_PARTY, "KOR", "USA", kst(2023, 1, 1), "old", expires=kst(2024, 1, 1))
    for consent in (wrong, expired):
        request = make_request(
            catalogue,
            sender="JPN",
            recipient="USA",
            originator="KOR",
            releasable_to=["JPN", "USA"],
            consents=[consent],
        )
        assert not engine.decide(request, at=NORMAL_2024).allowed


def test_returning_an_item_to_its_originator_needs_no_consent(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    request = make_request(catalogue, sender="JPN", recipient="KOR", originator="KOR", releasable_to=["JPN"])
    d = engine.decide(request, at=NORMAL_2024)
    assert d.allowed
    assert d.marking is not None
    assert d.marking.text == "KOR 군사II급비밀"


# --- engine shape ---


def test_authorise_raises_with_the_decision(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    with pytest.raises(ReleaseRefused) as caught:
        engine.authorise(make_request(catalogue), at=NOV_2016_EVE)
    assert not caught.value.decision.allowed
    assert "agreement_in_force" in str(caught.value)
    assert engine.authorise(make_request(catalogue), at=NORMAL_2024).allowed


def test_an_empty_rule_set_denies(catalogue: Catalogue) -> None:
    d = ReleaseEngine(catalogue, AllOf()).decide(make_request(catalogue), at=NORMAL_2024)
    assert not d.allowed
    assert d.checks[0].rule == "rules"


def test_every_check_is_reported_even_when_one_fails(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(make_request(catalogue, classification="군사I급비밀"), at=NORMAL_2024)
    assert [c.rule for c in d.checks] == [
        "agreement_in_force",
        "label",
        "equivalence",
        "releasability",
        "caveats",
        "purpose",
        "scope",
        "level_validity",
        "assurance",
        "third_party",
        "hub_authorisation",
        "two_person",
    ]
    assert all(c.reason for c in d.checks)


def test_naive_decision_instant_is_refused(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    with pytest.raises(InstantError):
        engine.decide(make_request(catalogue), at=NORMAL_2024.replace(tzinfo=None))


def test_consent_without_reference_is_refused() -> None:
    with pytest.raises(LabelError, match="reference"):
        Consent(ConsentKind.THIRD_PARTY, "KOR", "USA", kst(2024, 1, 1), "")


def test_memoised_checks_do_not_leak_between_labels(catalogue: Catalogue) -> None:
    """A fresh and a warm engine decide identically across many distinct labels."""
    warm = ReleaseEngine(catalogue)
    for level in ("군사I급비밀", "군사II급비밀", "군사III급비밀", "대외비"):
        for rel in (["JPN"], ["USA"], []):
            request = make_request(catalogue, classification=level, releasable_to=rel)
            fresh = ReleaseEngine(catalogue).decide(request, at=NORMAL_2024)
            assert warm.decide(request, at=NORMAL_2024) == fresh


# --- monotonicity: adding a restriction never turns a refusal into a release ---

parties = st.sampled_from(["KOR", "JPN", "USA"])
instants = st.sampled_from(
    [kst(2014, 12, 1), NOV_2016_EVE, kst(2016, 11, 23), AUG_2019, kst(2019, 11, 23, 0, 0, 1), NORMAL_2024]
)
levels = {
    "KOR": ["군사I급비밀", "군사II급비밀", "군사III급비밀", "대외비"],
    "JPN": ["機密", "特定秘密", "極秘", "秘", "取扱厳重注意"],
    "USA": ["TOP SECRET", "SECRET", "CONFIDENTIAL"],
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, object], ReleaseRequest]:
    from tests.conftest import make_request as build

    sender = draw(parties)
    recipient = draw(parties.filter(lambda p: p != sender))
    originator = draw(st.sampled_from([sender, recipient, "KOR", "JPN", "USA"]))
    spec: dict[str, object] = {
        "sender": sender,
        "recipient": recipient,
        "originator": originator,
        "classification": draw(st.sampled_from(levels[originator])),
        "via": draw(st.sampled_from([(), ("USA",)])),
        "releasable_to": draw(st.sets(parties, max_size=3)),
        "purpose": draw(st.sampled_from(["threat-assessment", "missile-warning", "defence-cooperation"])),
        "topics": draw(st.sets(st.sampled_from(["dprk-missile", "dprk-nuclear", "prc-navy"]), max_size=2)),
        "caveats": draw(st.sets(st.sampled_from(["G2G-ONLY", "IP-RESTRICTED"]), max_size=1)),
        "consents": draw(
            st.lists(
                st.builds(
                    Consent,
                    # the release kinds (new_purpose is a consent about reads, Art. 6(b))
                    kind=st.sampled_from([k for k in ConsentKind if k is not ConsentKind.NEW_PURPOSE]),
                    originator=st.just(originator),
                    recipient=st.just(recipient),
                    given_at=st.just(kst(2014, 1, 1)),
                    reference=st.just("consent"),
                ),
                max_size=2,
            )
        ),
    }
    return spec, build(_CATALOGUE, **spec)  # type: ignore[arg-type]


_CATALOGUE: Catalogue


@pytest.fixture(autouse=True)
def _bind_catalogue(catalogue: Catalogue) -> None:
    global _CATALOGUE
    _CATALOGUE = catalogue


restrictions = st.sampled_from(
    ["drop_releasable", "add_caveat", "add_topic", "drop_consent", "change_purpose"]
)


@settings(max_examples=300, deadline=None)
@given(data=requests(), restriction=restrictions, at=instants)
def test_adding_a_restriction_never_turns_a_refusal_into_a_release(
    data: tuple[dict[str, object], ReleaseRequest], restriction: str, at: object
) -> None:
    spec, request = data
    engine = ReleaseEngine(_CATALOGUE)
    before = engine.decide(request, at=at)  # type: ignore[arg-type]
    label = request.label
    if restriction == "drop_releasable" and label.releasable_to:
        tighter = replace(
            request, label=replace(label, releasable_to=frozenset(sorted(label.releasable_to)[1:]))
        )
    elif restriction == "add_caveat":
        tighter = replace(request, label=replace(label, caveats=label.caveats | {"NOFORN"}))
    elif restriction == "add_topic":
        tighter = replace(request, label=replace(label, topics=label.topics | {"prc-navy"}))
    elif restriction == "drop_consent" and request.consents:
        tighter = replace(request, consents=request.consents[1:])
    elif restriction == "change_purpose":
        tighter = replace(request, purpose="commercial")
    else:
        tighter = request
    after = engine.decide(tighter, at=at)  # type: ignore[arg-type]
    if not before.allowed:
        assert not after.allowed, (spec, restriction, after.checks)


# --- regressions found by the PyCasbin cross-check ---


def test_bilateral_agreement_governs_before_a_wider_arrangement(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """The marking of JPN 特定秘密 sent to the USA does not depend on the item's topic."""
    for topics in (["dprk-missile"], ["prc-navy"]):
        d = engine.decide(
            make_request(catalogue, sender="JPN", recipient="USA", classification="特定秘密", topics=topics),
            at=NORMAL_2024,
        )
        assert d.allowed
        assert d.agreement == "usa-jpn-gsomia-2007"
        assert d.marking is not None
        assert d.marking.classification == "TOP SECRET"


def test_ip_restriction_blocks_a_hub_relay(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    d = engine.decide(
        make_request(catalogue, via=("USA",), caveats=["IP-RESTRICTED"], consents=[relay_consent()]),
        at=NOV_2016_EVE,
    )
    assert not d.allowed
    passed, reason = check(d, "caveats")
    assert not passed
    assert "intellectual property" in reason


def test_an_item_cannot_be_released_before_it_was_created(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    d = engine.decide(make_request(catalogue, created=kst(2024, 4, 1)), at=NORMAL_2024)
    assert not d.allowed
    passed, reason = check(d, "label")
    assert not passed
    assert "after this instant" in reason


def test_relay_back_to_the_originator_still_needs_consent_for_the_hub(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    request = make_request(
        catalogue,
        sender="JPN",
        recipient="KOR",
        originator="KOR",
        via=("USA",),
        releasable_to=["JPN", "USA"],
        consents=[relay_consent(originator="KOR", recipient="KOR")],
    )
    d = engine.decide(request, at=NORMAL_2024)
    assert not d.allowed
    passed, reason = check(d, "third_party")
    assert not passed
    assert "USA is a third party" in reason


def test_unknown_parties_do_not_grow_the_route_cache(catalogue: Catalogue) -> None:
    engine = ReleaseEngine(catalogue)
    for n in range(50):
        engine.decide(replace(make_request(catalogue), recipient=f"Z{n:02d}"), at=NORMAL_2024)
    assert len(engine._routes) == 0


def test_an_item_goes_back_to_its_originator_after_the_agreement_ended(catalogue: Catalogue) -> None:
    """ROK–Japan GSOMIA Art. 6(h) (return or destroy when no longer needed) and Art. 21.4 (what was
    provided stays protected after termination): returning an item to its originator stays
    possible when no agreement is in force any more; any other transfer does not."""
    what_if = catalogue.replacing(
        catalogue.agreement("kor-jpn-gsomia-2016").what_if(without=["2019-11-22-notice-suspended"])
    )
    engine = ReleaseEngine(what_if)
    after = kst(2020, 6, 1)
    provided = kst(2019, 9, 1)  # provided while the agreement was in force
    navy = ("prc-navy",)  # outside TISA: only the bilateral agreement could carry it
    back = engine.decide(
        make_request(what_if, sender="JPN", recipient="KOR", originator="KOR", topics=navy, created=provided),
        at=after,
    )
    assert back.allowed
    assert "back to its originator (Art. 6(h), 21.4)" in check(back, "agreement_in_force")[1]
    onward = engine.decide(make_request(what_if, sender="KOR", recipient="JPN", topics=navy), at=after)
    assert not onward.allowed
    jpn_own = engine.decide(
        make_request(
            what_if,
            sender="JPN",
            recipient="KOR",
            originator="JPN",
            classification="極秘",
            topics=navy,
            created=provided,
        ),
        at=after,
    )
    assert not jpn_own.allowed  # JPN's own item is a new transfer, not a return
    later = engine.decide(
        make_request(what_if, sender="JPN", recipient="KOR", originator="KOR", topics=navy, created=after),
        at=after,
    )
    assert not later.allowed  # made after the end: it was never provided under the agreement


def test_a_batch_memo_shares_a_decision_only_where_nothing_but_the_item_differs(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """Issue 18: a batch decides once per (label, route, purpose, ... , instant) through the one
    engine. The adversary's side: an item-bound consent, another label, another instant and another
    recipient are never answered from the memo."""
    memo: dict[object, ReleaseDecision] = {}
    plain = make_request(catalogue, item="a")
    first = engine.decide(plain, at=NORMAL_2024, memo=memo)
    assert first.allowed
    assert engine.decide(replace(plain, item="b"), at=NORMAL_2024, memo=memo) is first  # shared
    assert len(memo) == 1
    assert engine.decide(plain, at=NORMAL_2024) == first  # the same as deciding it alone
    # another label (class I never leaves), another recipient, another instant: each its own
    top = make_request(catalogue, classification="군사I급비밀", item="c")
    assert not engine.decide(top, at=NORMAL_2024, memo=memo).allowed
    assert engine.decide(replace(plain, recipient="GBR"), at=NORMAL_2024, memo=memo).route[-1] == "GBR"
    before = engine.decide(plain, at=kst(2016, 1, 1), memo=memo)  # before GSOMIA: refused
    assert not before.allowed
    assert len(memo) == 4
    # a consent binds its item: a request carrying one is decided on its own, never from the memo
    consent = Consent(ConsentKind.THIRD_PARTY, "KOR", "USA", kst(2024, 1, 1), "KOR note", item="item-1")
    onward = make_request(
        catalogue, sender="JPN", recipient="USA", originator="KOR", releasable_to=["JPN", "USA"],
        consents=[consent], item="item-1",
    )  # fmt: skip
    assert engine.decide(onward, at=NORMAL_2024, memo=memo).allowed
    assert not engine.decide(replace(onward, item="item-2"), at=NORMAL_2024, memo=memo).allowed
    assert len(memo) == 4


def test_a_batch_memo_keys_a_decision_by_every_field_of_the_request_but_the_item(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    """The memo's key is read from the request's fields (all but the item's id), not listed by hand:
    a request that differs from a decided one in any other field, the ones a rule reads rarely
    included, is decided on its own, never answered with the first one's decision."""
    plain = make_request(catalogue, item="a")
    changed = {
        "label": make_request(catalogue, classification="군사I급비밀").label,
        "sender": "USA",
        "recipient": "GBR",
        "purpose": "another-purpose",
        "via": ("USA",),
        "two_person": TwoPersonPolicy(frozenset({("KOR", "군사II급비밀")})),
        "grants_relay": True,
        "assurances": (Assurance("kor-jpn-gsomia-2016", "JPN", kst(2024, 1, 1), "note verbale 1"),),
        "portions": ("p1",),
        "portion": "p1",
    }
    # consents and an approval bind the item: such a request never goes through the memo at all
    assert {f.name for f in fields(ReleaseRequest)} == {*changed, "item", "consents", "approval"}
    memo: dict[object, ReleaseDecision] = {}
    first = engine.decide(plain, at=NORMAL_2024, memo=memo)
    for name, value in changed.items():
        before = len(memo)
        other = replace(plain, **{name: value})
        decided = engine.decide(other, at=NORMAL_2024, memo=memo)
        assert len(memo) == before + 1, name  # a key of its own
        assert decided is not first, name
        assert decided == engine.decide(other, at=NORMAL_2024), name  # as if decided alone
