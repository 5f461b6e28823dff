"""The read decision's key (issue 18): what of a label ``decide_read`` reads, so a page decides each
key once. Two labels with the same key must get the same decision, every check and reason included;
labels that differ in any part the key holds are told apart."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.conftest import kst

from gsomia import AlternativeLabel, Catalogue, load_catalogue
from gsomia.core.access import Employment, Person, Role, decide_read, read_key
from gsomia.core.labels import SecurityLabel
from gsomia.core.visits import VisitAuthorisation, VisitScope

_CATALOGUE = load_catalogue()
AT = kst(2024, 3, 1)
TOPICS = ("dprk-missile", "dprk-nuclear", "prc-navy")
PURPOSES = ("threat-assessment", "missile-warning", "training")
AGREEMENT = "kor-jpn-gsomia-2016"


@st.composite
def labels(draw: st.DrawFn) -> SecurityLabel:
    originator = draw(st.sampled_from(("KOR", "JPN")))
    levels = [lvl.name for lvl in _CATALOGUE.party(originator).scheme.levels]
    label = _CATALOGUE.label(
        originator=originator,
        classification=draw(st.sampled_from(levels)),
        releasable_to=draw(st.sets(st.sampled_from(("KOR", "JPN", "USA")))) - {originator},
        purpose=draw(st.sampled_from(PURPOSES[:2])),
        topics=draw(st.sets(st.sampled_from(TOPICS), max_size=3)),
        created=kst(2017, 1, 1) + timedelta(seconds=draw(st.integers(0, 8 * 365 * 86_400))),
        caveats=draw(st.sets(st.sampled_from(("NOFORN", "G2G-ONLY")), max_size=1)),
    )
    if originator == "KOR" and draw(st.booleans()):
        level = draw(st.sampled_from([lvl.name for lvl in _CATALOGUE.party("JPN").scheme.levels]))
        label = label.with_alternative(AlternativeLabel("JPN", level, AGREEMENT))
    return label


@st.composite
def people(draw: st.DrawFn) -> Person:
    nationality = draw(st.sampled_from(("KOR", "JPN", "USA")))
    levels = [lvl.name for lvl in _CATALOGUE.party(nationality).scheme.levels]
    contractor = draw(st.booleans())
    return Person(
        "reader",
        "Reader",
        nationality,
        draw(st.one_of(st.none(), st.sampled_from(levels))),
        frozenset(draw(st.sets(st.sampled_from(TOPICS)))),
        frozenset(draw(st.sets(st.sampled_from(list(Role)), min_size=1))),
        active=draw(st.booleans()),
        employment=Employment.CONTRACTOR if contractor else Employment.OFFICIAL,
        contractor_measures="measures-1" if contractor and draw(st.booleans()) else None,
        purpose=draw(st.one_of(st.none(), st.sampled_from(PURPOSES))),
    )


def _visit(draw: st.DrawFn) -> VisitScope | None:
    if not draw(st.booleans()):
        return None
    levels = [lvl.name for lvl in _CATALOGUE.party("JPN").scheme.levels]
    visit = VisitAuthorisation(
        "v1", "reader", "JPN", draw(st.sampled_from(levels)), kst(2024, 2, 1), kst(2024, 4, 1), "liaison"
    )
    return VisitScope((visit,), AT)


@settings(max_examples=300, deadline=None)
@given(labels(), people(), st.data())
def test_labels_with_one_key_get_one_decision(
    label: SecurityLabel, person: Person, data: st.DataObject
) -> None:
    """The key leaves out only what no check reads: the instants and the policy name."""
    other = replace(
        label,
        created=label.created + timedelta(days=data.draw(st.integers(-3000, 3000))),
        review=data.draw(st.one_of(st.none(), st.just(label.created + timedelta(days=4000)))),
        policy=data.draw(st.sampled_from(("gsomia", "tisa"))),
    )
    assert read_key(other) == read_key(label)
    visit = _visit(data.draw)
    holder = data.draw(st.sampled_from(("JPN", "KOR")))
    first = decide_read(person, label, _CATALOGUE, visit=visit, holder=holder, at=AT)
    second = decide_read(person, other, _CATALOGUE, visit=visit, holder=holder, at=AT)
    assert first == second


def test_every_part_a_check_reads_is_in_the_key(catalogue: Catalogue) -> None:
    """Changing what any check reads changes the key: a NOFORN item never shares a NOFORN-free
    item's decision, nor one for other topics, levels, purposes, parties or equivalents."""
    label = catalogue.label(
        originator="KOR",
        classification="군사III급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=kst(2024, 1, 1),
    )
    changed = [
        replace(label, caveats=frozenset({"NOFORN"})),
        replace(label, topics=frozenset({"prc-navy"})),
        replace(label, classification="군사II급비밀"),
        replace(label, purpose="missile-warning"),
        replace(label, releasable_to=frozenset({"JPN", "USA"})),
        label.with_alternative(AlternativeLabel("JPN", "秘", AGREEMENT)),
        replace(label, originator="JPN", classification="秘", releasable_to=frozenset({"KOR"})),
    ]
    keys = {read_key(label), *(read_key(c) for c in changed)}
    assert len(keys) == len(changed) + 1
