"""The pure rules of the duties after release: derivation, the investigation, label changes, visits,
registers. Properties by Hypothesis where there is an algebra (a derivative is never less strict)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.catalogue import Catalogue
from gsomia.core.derivation import DerivationKind, derive_label
from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.investigation import IncidentNature, InvestigationState, open_investigation
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.core.recall import ChangeKind, LabelChange, check_originator, reclassified
from gsomia.core.registers import RulesVersion, affected_by
from gsomia.core.visits import VisitAuthorisation, VisitScope, visit_check
from gsomia.errors import InvalidInputError, LabelError, UnknownNameError

T0 = datetime(2024, 3, 1, tzinfo=UTC)
KOR_LEVELS = ["군사II급비밀", "군사III급비밀"]
PARTIES = ["JPN", "USA"]


def kor(classification: str = "군사II급비밀", **kw: object) -> SecurityLabel:
    values: dict[str, object] = {
        "originator": "KOR",
        "classification": classification,
        "releasable_to": frozenset({"JPN", "USA"}),
        "purpose": "threat-assessment",
        "topics": frozenset({"dprk-missile"}),
        "created": T0,
    }
    values.update(kw)
    return SecurityLabel(**values)  # type: ignore[arg-type]


def schemes(catalogue: Catalogue) -> dict[str, object]:
    return {code: p.scheme for code, p in catalogue.parties.items()}


labels = st.builds(
    kor,
    classification=st.sampled_from(KOR_LEVELS),
    releasable_to=st.frozensets(st.sampled_from(PARTIES)),
    caveats=st.frozensets(st.sampled_from(["G2G-ONLY", "IP-RESTRICTED"])),
    topics=st.frozensets(st.sampled_from(["dprk-missile", "prc-navy"]), min_size=1),
)


@given(st.lists(labels, min_size=1, max_size=4))
def test_a_derivative_is_never_less_strict_than_any_source(
    catalogue: Catalogue, sources: list[SecurityLabel]
) -> None:
    scheme = catalogue.party("KOR").scheme
    derived = derive_label(DerivationKind.DERIVATIVE, sources, schemes(catalogue))  # type: ignore[arg-type]
    for source in sources:
        assert scheme.level(derived.classification).rank >= scheme.level(source.classification).rank
        assert derived.caveats >= source.caveats
        assert derived.releasable_to <= source.releasable_to
        assert derived.topics >= source.topics


def test_derivation_keeps_the_strictest_receivers_equivalent(catalogue: Catalogue) -> None:
    low = kor("군사III급비밀", alternatives=(AlternativeLabel("JPN", "秘", "g"),))
    high = kor("군사II급비밀", alternatives=(AlternativeLabel("JPN", "極秘", "g"),))
    derived = derive_label(DerivationKind.DERIVATIVE, [low, high], schemes(catalogue))  # type: ignore[arg-type]
    assert derived.alternatives == (AlternativeLabel("JPN", "極秘", "g"),)
    with pytest.raises(LabelError, match="at least one source"):
        derive_label(DerivationKind.DERIVATIVE, [], schemes(catalogue))  # type: ignore[arg-type]
    with pytest.raises(LabelError, match="different purposes"):
        derive_label(
            DerivationKind.DERIVATIVE,
            [low, kor(purpose="training")],
            schemes(catalogue),  # type: ignore[arg-type]
        )


def test_the_investigation_moves_only_forward_one_step_at_a_time() -> None:
    case = open_investigation(
        "i1", "k1", "KOR", "JPN", IncidentNature.LOSS, at=T0, by="officer", text="a file is missing"
    )
    assert case.state is InvestigationState.OPENED
    with pytest.raises(InvalidInputError, match="next step is findings, not measures"):
        case.advance(InvestigationState.MEASURES, at=T0, by="o", text="x")
    with pytest.raises(InvalidInputError, match="needs a text"):
        case.advance(InvestigationState.FINDINGS, at=T0, by="o", text=" ")
    with pytest.raises(InvalidInputError, match="precedes"):
        case.advance(InvestigationState.FINDINGS, at=T0 - timedelta(seconds=1), by="o", text="x")
    for step in (InvestigationState.FINDINGS, InvestigationState.MEASURES, InvestigationState.CLOSED):
        case = case.advance(step, at=T0, by="o", text=step.value)
    assert [s.state for s in case.steps] == list(InvestigationState)
    with pytest.raises(InvalidInputError, match="closed"):
        case.advance(InvestigationState.CLOSED, at=T0, by="o", text="x")
    with pytest.raises(InvalidInputError, match="describe"):
        open_investigation("i2", "k1", "KOR", "JPN", IncidentNature.LOSS, at=T0, by="o", text="")


def test_only_the_originator_changes_a_label_and_versions_start_above_one(catalogue: Catalogue) -> None:
    label = kor()
    check_originator("KOR", label, "reclassify")
    with pytest.raises(InvalidInputError, match="only the originator KOR may recall"):
        check_originator("JPN", label, "recall")
    lower = reclassified(label, "군사III급비밀", catalogue.party("KOR").scheme)
    assert (lower.classification, lower.alternatives) == ("군사III급비밀", ())
    with pytest.raises(InvalidInputError, match="already"):
        reclassified(label, "군사II급비밀", catalogue.party("KOR").scheme)
    with pytest.raises(UnknownNameError):
        reclassified(label, "SECRET", catalogue.party("KOR").scheme)
    with pytest.raises(InvalidInputError, match="version 2"):
        LabelChange("k1", "KOR", 1, ChangeKind.RECALL, None, "r", T0)
    with pytest.raises(InvalidInputError, match="names the new level"):
        LabelChange("k1", "KOR", 2, ChangeKind.RECALL, "군사III급비밀", "r", T0)


def test_a_destruction_needs_a_different_witness_and_a_reason() -> None:
    with pytest.raises(InvalidInputError, match="cannot witness their own"):
        DestructionRecord("k1", "JPN", "KOR", "c", "a", "a", DestructionMethod.SHREDDING, "done", T0)
    with pytest.raises(InvalidInputError, match="reason"):
        DestructionRecord("k1", "JPN", "KOR", "c", "a", "b", DestructionMethod.SHREDDING, "", T0)


def test_a_visit_caps_the_level_and_ends_with_the_visit(catalogue: Catalogue) -> None:
    visit = VisitAuthorisation("v1", "kim", "JPN", "秘", T0, T0 + timedelta(hours=1), "liaison")
    secret = kor(alternatives=(AlternativeLabel("JPN", "極秘", "g"),))
    confidential = kor("군사III급비밀", alternatives=(AlternativeLabel("JPN", "秘", "g"),))
    assert visit_check(VisitScope((), T0), secret, catalogue).passed  # not a visitor
    assert visit_check(VisitScope((visit,), T0), confidential, catalogue).passed
    assert not visit_check(VisitScope((visit,), T0), secret, catalogue).passed
    assert not visit_check(VisitScope((visit,), T0 + timedelta(hours=1)), confidential, catalogue).passed
    assert not visit_check(VisitScope((visit,), T0), kor(), catalogue).passed  # no JPN level at all


def test_a_rules_change_affects_the_items_with_a_level_in_that_scheme() -> None:
    confidential = kor("군사III급비밀", alternatives=(AlternativeLabel("JPN", "秘", "g"),))
    jpn_hi = RulesVersion("JPN", 1, "rules", "", frozenset({"秘"}), T0)
    assert affected_by(jpn_hi, confidential)
    assert not affected_by(jpn_hi, kor(alternatives=(AlternativeLabel("JPN", "極秘", "g"),)))
    assert not affected_by(RulesVersion("USA", 1, "rules", "", frozenset(), T0), confidential)
    assert affected_by(RulesVersion("KOR", 2, "rules", "", frozenset(), T0), confidential)
