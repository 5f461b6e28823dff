"""A party's equivalence change in the pure core: applied from its instant, only to its own side,
never breaking the table's protection (issue 19 §3, the equivalence change)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tests.conftest import kst, make_request

from gsomia.core.agreements import Equivalence, EquivalenceRow
from gsomia.core.catalogue import Catalogue
from gsomia.core.equivalences import AppliedChange, EquivalenceChange, Remap, check_change, with_changes
from gsomia.core.policy import ReleaseEngine
from gsomia.errors import AgreementError, UnknownNameError

GSOMIA = "kor-jpn-gsomia-2016"
AT = kst(2024, 6, 1)
BEFORE = kst(2024, 5, 31, 23, 59)
AFTER = kst(2024, 6, 1, 0, 0, 1)


def change(
    *remaps: tuple[str, str, str, str | None],
    party: str = "KOR",
    agreement: str = GSOMIA,
    sequence: int = 1,
    effective: datetime = AT,
) -> EquivalenceChange:
    return EquivalenceChange(
        agreement,
        party,
        sequence,
        effective,
        tuple(Remap(*r) for r in remaps),
        "policy update",
        kst(2024, 5, 1),
    )


def applied(catalogue: Catalogue, *changes: EquivalenceChange) -> Catalogue:
    return with_changes(catalogue, [AppliedChange(c, c.effective) for c in changes])


def marking(engine: ReleaseEngine, at: datetime, **kw: object) -> str | None:
    decision = engine.decide(make_request(engine.catalogue, **kw), at=at)  # type: ignore[arg-type]
    return None if decision.marking is None else decision.marking.classification


def test_a_remap_takes_effect_at_its_instant_and_not_before(catalogue: Catalogue) -> None:
    """KOR asks JPN to protect Class II as 特定秘密 from 1 June: a release before is marked 極秘,
    one after 特定秘密; the reverse direction (JPN's side) is untouched."""
    engine = ReleaseEngine(applied(catalogue, change(("KOR", "군사II급비밀", "JPN", "特定秘密"))))
    assert marking(engine, BEFORE) == "極秘"
    assert marking(engine, AT) == "特定秘密"
    assert marking(engine, AFTER) == "特定秘密"
    table = engine.catalogue.agreement(GSOMIA).equivalence
    assert table.map("JPN", "極秘", "KOR", AFTER) == "군사II급비밀"  # JPN's own side goes on
    assert table.map("KOR", "군사III급비밀", "JPN", AFTER) == "秘"  # a level not named: unchanged
    assert table.map("KOR", "군사II급비밀", "JPN", BEFORE) == "極秘"


def test_a_level_remapped_to_nothing_is_no_longer_released_from_the_instant(catalogue: Catalogue) -> None:
    engine = ReleaseEngine(applied(catalogue, change(("KOR", "군사III급비밀", "JPN", None))))
    assert engine.decide(make_request(catalogue, classification="군사III급비밀"), at=BEFORE).allowed
    after = engine.decide(make_request(catalogue, classification="군사III급비밀"), at=AFTER)
    assert not after.allowed
    (failed,) = after.failed()
    assert failed.rule == "equivalence"
    assert "KOR's equivalence change 1 to kor-jpn-gsomia-2016" in failed.reason
    # the decision the data files alone make is what the catalogue without the change says
    assert (
        ReleaseEngine(catalogue)
        .decide(make_request(catalogue, classification="군사III급비밀"), at=AFTER)
        .allowed
    )


def test_a_later_change_overrides_an_earlier_one_from_its_own_instant(catalogue: Catalogue) -> None:
    first = change(("KOR", "군사II급비밀", "JPN", "特定秘密"))
    second = change(("KOR", "군사II급비밀", "JPN", "極秘"), sequence=2, effective=kst(2024, 9, 1))
    engine = ReleaseEngine(applied(catalogue, first, second))
    assert marking(engine, BEFORE) == "極秘"
    assert marking(engine, kst(2024, 7, 1)) == "特定秘密"
    assert marking(engine, kst(2024, 9, 1)) == "極秘"


def test_a_three_party_row_keeps_the_mappings_not_named(catalogue: Catalogue) -> None:
    """Under TISA KOR remaps Class III for JPN only: its mapping for the USA, and JPN's and the USA's
    own mappings of the row, go on."""
    tisa = "tisa-2014"
    table = (
        applied(catalogue, change(("KOR", "군사III급비밀", "JPN", None), agreement=tisa))
        .agreement(tisa)
        .equivalence
    )
    assert table.map("KOR", "군사III급비밀", "JPN", AFTER) is None
    assert table.map("KOR", "군사III급비밀", "JPN", BEFORE) == "秘"
    assert table.map("KOR", "군사III급비밀", "USA", AFTER) == "CONFIDENTIAL"
    assert table.map("JPN", "秘", "KOR", AFTER) == "군사III급비밀"
    assert table.map("USA", "CONFIDENTIAL", "JPN", AFTER) == "秘"


def test_a_classification_is_never_remapped_to_a_handling_caveat(catalogue: Catalogue) -> None:
    """SECRET (Class II) onto 取扱厳重注意, which is not a classification: refused by the check the data
    files go through, naming the instant."""
    with pytest.raises(AgreementError, match=r"handling caveat.*from 2024-06-01"):
        applied(catalogue, change(("KOR", "군사II급비밀", "JPN", "取扱厳重注意")))


def test_a_remap_that_breaks_monotonicity_is_refused(catalogue: Catalogue) -> None:
    """Class III onto 特定秘密 while Class II stays 極秘: a lower level above a higher one."""
    with pytest.raises(AgreementError, match="not monotonic from 2024-06-01"):
        applied(catalogue, change(("KOR", "군사III급비밀", "JPN", "特定秘密")))


def test_only_a_party_changes_only_its_own_side(catalogue: Catalogue) -> None:
    remap = ("KOR", "군사II급비밀", "JPN", "特定秘密")
    with pytest.raises(AgreementError, match="signed by JPN speaks for KOR"):
        check_change(catalogue, change(remap), "JPN")
    with pytest.raises(AgreementError, match="USA is not a party to kor-jpn-gsomia-2016"):
        check_change(catalogue, change(("USA", "SECRET", "JPN", "極秘"), party="USA"), "USA")
    with pytest.raises(AgreementError, match=r"only how its own levels map.*JPN's side"):
        check_change(catalogue, change(("JPN", "極秘", "KOR", "군사III급비밀")), "KOR")
    with pytest.raises(AgreementError, match="USA is not a partner"):
        check_change(catalogue, change(("KOR", "군사II급비밀", "USA", "SECRET")), "KOR")
    with pytest.raises(UnknownNameError):
        check_change(catalogue, change(("KOR", "군사II급비밀", "JPN", "TOP SECRET")), "KOR")
    named = check_change(catalogue, change(("KOR", "gunsa-2geup-bimil", "JPN", "tokutei-himitsu")), "KOR")
    assert named.remaps == (
        Remap("KOR", "군사II급비밀", "JPN", "特定秘密"),
    )  # aliases named as the schemes do


def test_a_change_must_say_something_and_why() -> None:
    with pytest.raises(AgreementError, match="between 1 and"):
        change()
    with pytest.raises(AgreementError, match="once"):
        change(("KOR", "군사II급비밀", "JPN", "極秘"), ("KOR", "군사II급비밀", "JPN", "特定秘密"))
    with pytest.raises(AgreementError, match="starts at 1"):
        change(("KOR", "군사II급비밀", "JPN", "極秘"), sequence=0)


def test_rows_for_one_mapping_may_follow_each_other_but_never_overlap() -> None:
    until = EquivalenceRow({"KOR": "A", "JPN": "B"}, valid_until=AT)
    then = EquivalenceRow({"KOR": "A", "JPN": "C"}, one_way_from="KOR", valid_from=AT)
    table = Equivalence((until, then))
    assert table.map("KOR", "A", "JPN", BEFORE) == "B"
    assert table.map("KOR", "A", "JPN", AT) == "C"
    assert table.map("KOR", "A", "JPN") == "C"  # without an instant: the latest row
    assert table.bounds() == (AT,)
    with pytest.raises(AgreementError, match="already maps"):
        Equivalence((EquivalenceRow({"KOR": "A", "JPN": "B"}), then))


KOR_LEVELS = ["군사I급비밀", "군사II급비밀", "군사III급비밀", "대외비"]
JPN_LEVELS = [None, "機密", "特定秘密", "極秘", "秘", "取扱厳重注意"]


@settings(max_examples=60, deadline=None)
@given(
    level=st.sampled_from(KOR_LEVELS),
    target=st.sampled_from(JPN_LEVELS),
    asked=st.sampled_from(KOR_LEVELS),
    hours=st.integers(min_value=-30 * 24, max_value=30 * 24),
)
def test_a_change_never_alters_a_decision_before_its_instant(
    catalogue: Catalogue, level: str, target: str | None, asked: str, hours: int
) -> None:
    """Whatever a change remaps, a decision at an instant before it is the data files' decision
    (allowed or not, the marking, the rules that failed); from its instant, an allowed release of
    the remapped level is marked as the change says."""
    try:
        changed = applied(catalogue, change(("KOR", level, "JPN", target)))
    except AgreementError:
        assume(False)  # a change the tables refuse applies nowhere (tested above)
    at = AT + timedelta(hours=hours)
    request = make_request(catalogue, classification=asked)
    before = ReleaseEngine(catalogue).decide(request, at=at)
    after = ReleaseEngine(changed).decide(request, at=at)
    if at < AT or asked != level:  # the same outcome (a reason may say when the new row starts)
        assert (after.allowed, after.marking, after.agreement) == (
            before.allowed,
            before.marking,
            before.agreement,
        )
        assert [c.rule for c in after.failed()] == [c.rule for c in before.failed()]
    elif after.allowed:
        assert after.marking is not None
        assert after.marking.classification == target
    else:
        assert target is None or not before.allowed
