"""Labels, schemes and equivalence tables."""

from __future__ import annotations

import copy
import pickle
from dataclasses import fields, replace
from datetime import UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import kst

from gsomia import (
    AlternativeLabel,
    Catalogue,
    Equivalence,
    EquivalenceRow,
    LabelError,
    SecurityLabel,
    UnknownNameError,
)
from gsomia.core.policy import assumed_assurances
from gsomia.errors import AgreementError


def test_levels_are_found_by_name_or_romanised_alias(catalogue: Catalogue) -> None:
    jpn = catalogue.party("JPN").scheme
    assert jpn.level("gokuhi") is jpn.level("極秘")
    assert jpn.level("GOKUHI").gloss
    kor = catalogue.party("KOR").scheme
    assert kor.level("군사I급비밀").rank > kor.level("군사II급비밀").rank > kor.level("군사III급비밀").rank


def test_unknown_level_lists_the_known_ones(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownNameError, match="極秘"):
        catalogue.level("JPN", "cho-gokuhi")  # no such level (機密 is kimitsu)


def test_label_is_canonicalised_to_the_national_name(catalogue: Catalogue) -> None:
    label = catalogue.label(
        originator="jpn",
        classification="gokuhi",
        releasable_to=["kor"],
        purpose="p",
        topics=[],
        created=kst(2020, 1, 1),
    )
    assert label.originator == "JPN"
    assert label.classification == "極秘"
    assert label.releasable_to == frozenset({"KOR"})


def test_label_rejects_a_level_outside_the_originators_scheme(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownNameError, match="KOR has no classification"):
        catalogue.label(
            originator="KOR",
            classification="極秘",
            releasable_to=[],
            purpose="p",
            topics=[],
            created=kst(2020, 1, 1),
        )


def test_label_needs_an_aware_creation_instant_and_a_purpose(catalogue: Catalogue) -> None:
    with pytest.raises(LabelError, match="purpose"):
        catalogue.label(
            originator="KOR",
            classification="군사II급비밀",
            releasable_to=[],
            purpose="",
            topics=[],
            created=kst(2020, 1, 1),
        )
    with pytest.raises(Exception, match="UTC offset"):
        catalogue.label(
            originator="KOR",
            classification="군사II급비밀",
            releasable_to=[],
            purpose="p",
            topics=[],
            created=kst(2020, 1, 1).replace(tzinfo=None),
        )


def test_alternative_label_is_added_beside_never_replacing(catalogue: Catalogue) -> None:
    label = catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN"],
        purpose="p",
        topics=[],
        created=kst(2020, 1, 1),
    )
    marked = label.with_alternative(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016"))
    assert marked.classification == "군사II급비밀"
    assert marked.alternative_for("JPN") == AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016")
    assert marked.with_alternative(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016")) is marked
    with pytest.raises(LabelError, match="conflicting"):
        marked.with_alternative(AlternativeLabel("JPN", "秘", "kor-jpn-gsomia-2016"))
    with pytest.raises(LabelError, match="originator"):
        marked.with_alternative(AlternativeLabel("KOR", "군사II급비밀", "x"))


def test_an_alternative_keeps_every_other_field_as_replace_would(catalogue: Catalogue) -> None:
    # with_alternative names each field (not dataclasses.replace, issue 18): one added to SecurityLabel
    # must be added there too, and the label's own checks still run
    assert [f.name for f in fields(SecurityLabel) if f.init] == [
        "originator",
        "classification",
        "releasable_to",
        "purpose",
        "topics",
        "created",
        "caveats",
        "review",
        "policy",
        "alternatives",
    ]
    label = catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN", "USA"],
        purpose="p",
        topics=["dprk-missile"],
        created=kst(2020, 1, 1),
        caveats=["G2G-ONLY"],
        review=kst(2030, 1, 1),
    )
    alternative = AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016")
    made = label.with_alternative(alternative)
    expected = replace(label, alternatives=(alternative,))
    assert made == expected
    assert all(getattr(made, f.name) == getattr(expected, f.name) for f in fields(SecurityLabel))


def test_conflicting_equivalence_rows_are_refused() -> None:
    rows = (EquivalenceRow({"AAA": "a", "BBB": "b"}), EquivalenceRow({"AAA": "a", "BBB": "c"}))
    with pytest.raises(AgreementError, match="already maps"):
        Equivalence(rows)


def test_decision_marking_becomes_an_alternative_label(catalogue: Catalogue) -> None:
    from gsomia import ReleaseEngine, ReleaseRequest

    label = catalogue.label(
        originator="KOR",
        classification="군사III급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=[],
        created=kst(2020, 1, 1),
    )
    d = ReleaseEngine(catalogue).decide(
        ReleaseRequest(label, "KOR", "JPN", "threat-assessment", assurances=assumed_assurances(catalogue)),
        at=kst(2024, 1, 1),
    )
    assert d.marking is not None
    received = label.with_alternative(d.marking.alternative_label())
    assert received.alternative_for("JPN") == AlternativeLabel("JPN", "秘", "kor-jpn-gsomia-2016")


@given(data=st.data())
def test_two_way_equivalence_round_trips(catalogue: Catalogue, data: st.DataObject) -> None:
    agreement = data.draw(st.sampled_from(sorted(catalogue.agreements.values(), key=lambda a: a.id)))
    table = agreement.equivalence
    two_way = [row for row in table.rows if row.one_way_from is None]
    if not two_way:
        return
    row = data.draw(st.sampled_from(two_way))
    src = data.draw(st.sampled_from(sorted(row.levels)))
    dst = data.draw(st.sampled_from(sorted(p for p in row.levels if p != src)))
    if row.alternative:  # a choice the receiver may make (Art. 4.2), beside the default
        assert row.levels[dst] in table.choices(src, row.levels[src], dst)
        assert row.levels[src] in table.choices(dst, row.levels[dst], src)
        return
    there = table.map(src, row.levels[src], dst)
    assert there == row.levels[dst]
    assert table.map(dst, there, src) == row.levels[src]


def test_an_alternative_row_offers_a_second_level_and_an_ordinary_conflict_is_refused() -> None:
    """ROK–Japan GSOMIA Art. 4.2: Korean Class II is "極秘/特定秘密" in Japan: the first row is the
    default, an alternative row adds a choice; without ``alternative`` the same rows conflict."""
    rows = (EquivalenceRow({"JPN": "極秘", "KOR": "II"}), EquivalenceRow({"JPN": "特定秘密", "KOR": "II"}))
    table = Equivalence((rows[0], replace(rows[1], alternative=True)))
    assert table.choices("KOR", "II", "JPN") == ("極秘", "特定秘密")
    assert table.map("KOR", "II", "JPN") == "極秘"
    assert table.map("JPN", "特定秘密", "KOR") == "II"
    with pytest.raises(AgreementError, match="already maps"):
        Equivalence(rows)


def test_one_way_rows_do_not_map_back() -> None:
    table = Equivalence((EquivalenceRow({"JPN": "特定秘密", "KOR": "II"}, one_way_from="JPN"),))
    assert table.map("JPN", "特定秘密", "KOR") == "II"
    assert table.map("KOR", "II", "JPN") is None


def test_a_label_keeps_the_dataclass_hash_and_never_carries_it_out_of_the_process(
    catalogue: Catalogue,
) -> None:
    """Issue 18: a label's hash is computed when first asked and kept (a batch's memo and the label
    caches hash one label many times). It is the value the generated ``__hash__`` gives (every
    compared field, in order: a field added and left out of ``__hash__`` fails here), equal labels
    hash alike whatever offset their instant is written in, a label made from another starts
    without one, and a pickled or copied label computes its own (a string's hash differs between
    processes)."""

    def generated(label: SecurityLabel) -> int:
        return hash(tuple(getattr(label, f.name) for f in fields(SecurityLabel) if f.compare))

    label = catalogue.label(
        originator="KOR", classification="군사II급비밀", releasable_to=["JPN"], purpose="p",
        topics=["dprk-missile"], created=kst(2020, 1, 1), caveats=["G2G-ONLY"], review=kst(2030, 1, 1),
    )  # fmt: skip
    assert label.hash_ == -1
    assert hash(label) == generated(label) == label.hash_ == hash(label)
    utc = label.copied(created=label.created.astimezone(UTC))
    assert utc == label
    assert hash(utc) == hash(label)
    marked = label.with_alternative(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016"))
    other = replace(label, classification="군사III급비밀")
    for made in (marked, other):
        assert made.hash_ == -1
        assert hash(made) == generated(made) != hash(label)
    thawed = pickle.loads(pickle.dumps(label))  # noqa: S301 -- our own object
    for copied in (thawed, copy.copy(label), copy.deepcopy(label)):
        assert copied.hash_ == -1
        assert copied == label
        assert hash(copied) == hash(label)
    assert {label: 1, other: 2}[replace(label)] == 1
