"""ADatP-4774 labels: the round trip on every scenario label and on generated ones, the schema,
and parsing that fails closed naming what it cannot map."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from tests.standards.labels import scenario_labels

from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.errors import InvalidInputError, LabelError
from gsomia.standards import (
    NS_4774,
    from_labels,
    labels_from_json,
    labels_from_xml,
    labels_to_json,
    labels_to_xml,
    to_labels,
)
from gsomia.standards._xml import validate

AT = datetime(2019, 8, 24, 7, 0, tzinfo=UTC)


def kor(catalogue: Catalogue, **kw: object) -> SecurityLabel:
    args: dict[str, object] = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": AT,
    }
    args.update(kw)
    return catalogue.label(**args)  # type: ignore[arg-type]


def test_every_label_of_the_shipped_scenario_round_trips_through_xml_and_json(catalogue: Catalogue) -> None:
    labels = scenario_labels(catalogue)
    assert len(labels) > 10
    assert any(label.alternatives for label in labels)
    for label in labels:
        standard = to_labels(label, catalogue)
        xml = labels_to_xml(standard, item="scenario")
        for element in etree.fromstring(xml):  # each label is a plain 4774 element, valid on its own
            validate(element, "adatp-4774.xsd", "test")
        assert from_labels(labels_from_xml(xml), catalogue) == label
        text = json.dumps(labels_to_json(standard), ensure_ascii=False)
        assert from_labels(labels_from_json(text), catalogue) == label


_PARTIES = ("KOR", "JPN", "USA")
_LEVELS = {
    "KOR": ["군사I급비밀", "군사II급비밀", "군사III급비밀", "대외비"],
    "JPN": ["機密", "特定秘密", "極秘", "秘", "取扱厳重注意"],
}
_LEVELS["USA"] = ["TOP SECRET", "SECRET", "CONFIDENTIAL"]


@st.composite
def generated_labels(draw: st.DrawFn, catalogue: Catalogue) -> SecurityLabel:
    originator = draw(st.sampled_from(_PARTIES))
    created = draw(
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))
    )
    offset = draw(st.sampled_from([0, 9, -10]))
    created = created.astimezone(__import__("datetime").timezone(timedelta(hours=offset)))
    review = draw(st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650)))
    label = catalogue.label(
        originator=originator,
        classification=draw(st.sampled_from(_LEVELS[originator])),
        releasable_to=draw(st.sets(st.sampled_from([p for p in _PARTIES if p != originator]))),
        purpose=draw(st.sampled_from(["threat-assessment", "missile-warning", "defence-cooperation"])),
        topics=draw(st.sets(st.sampled_from(sorted(catalogue.topics)), max_size=3)),  # the declared ones
        caveats=draw(st.sets(st.sampled_from(["NOFORN", "IP-RESTRICTED", "G2G-ONLY", "ORCON"]))),
        created=created,
        review=None if review is None else created + review,
    )
    for party in sorted(label.releasable_to):
        for agreement in catalogue.agreements_of(originator):
            level = agreement.equivalence.map(originator, label.classification, party)
            if party in agreement.parties and level is not None and draw(st.booleans()):
                label = label.with_alternative(AlternativeLabel(party, level, agreement.id))
                break
    return label


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_generated_labels_round_trip_through_4774(catalogue: Catalogue, data: st.DataObject) -> None:
    """Property: gsomia label -> 4774 (XML and JSON) -> gsomia label is the identity."""
    label = data.draw(generated_labels(catalogue))
    standard = to_labels(label, catalogue)
    back = from_labels(labels_from_xml(labels_to_xml(standard)), catalogue)
    assert back == label
    assert back.created.utcoffset() == label.created.utcoffset()
    assert from_labels(labels_from_json(json.dumps(labels_to_json(standard))), catalogue) == label


def test_at_an_instant_every_recipient_gets_its_equivalent_under_the_agreement_in_force(
    catalogue: Catalogue,
) -> None:
    label = kor(catalogue, releasable_to=["JPN", "USA"])
    alternatives = {
        (a.party, a.classification)
        for a in from_labels(
            labels_from_xml(labels_to_xml(to_labels(label, catalogue, at=AT))), catalogue
        ).alternatives
    }
    assert alternatives == {("JPN", "極秘"), ("USA", "SECRET")}
    before = datetime(2014, 6, 1, tzinfo=UTC)  # neither TISA nor the GSOMIA yet: no JPN equivalent
    assert [a.policy for a in to_labels(label, catalogue, at=before).alternatives] == ["GSOMIA-USA"]


def _xml_of(catalogue: Catalogue, **kw: object) -> str:
    return labels_to_xml(to_labels(kor(catalogue, **kw), catalogue)).decode()


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        (">GSOMIA-KOR<", ">NATO<", "policy 'NATO' names the OID of GSOMIA-KOR"),
        ('URI="urn:oid:2.25.2878', 'URI="urn:oid:1.3.26.1.3.1.2878', "unknown security policy"),
        (">군사II급비밀<", ">NATO SECRET<", "no classification 'NATO SECRET'"),
        ('TagName="Need To Know"', 'TagName="Context"', "category 'Context'"),
        (
            'TagName="Caveats" Type="RESTRICTIVE"',
            'TagName="Caveats" Type="PERMISSIVE"',
            "is RESTRICTIVE, not PERMISSIVE",
        ),
        ("<slab:GenericValue>JPN<", "<slab:GenericValue>GBR<", "'Releasable To' names 'GBR'"),
        ("urn:gsomia:party:KOR", "urn:gsomia:party:JPN", "OriginatorID names JPN"),
        ('Type="INFORMATIVE"', 'Type="informative"', "value must be one of"),
    ],
)
def test_parsing_names_what_it_cannot_map_and_refuses(
    catalogue: Catalogue, old: str, new: str, named: str
) -> None:
    text = _xml_of(catalogue, caveats=["NOFORN"])
    assert old in text
    with pytest.raises((LabelError, InvalidInputError), match=named):
        from_labels(labels_from_xml(text.replace(old, new, 1)), catalogue)


def test_a_missing_releasability_or_an_integer_value_is_refused(catalogue: Catalogue) -> None:
    text = _xml_of(catalogue)
    start = text.index('<slab:Category TagName="Releasable To"')
    end = text.index("</slab:Category>", start) + len("</slab:Category>")
    with pytest.raises(LabelError, match="'Releasable To' is missing"):
        from_labels(labels_from_xml(text[:start] + text[end:]), catalogue)
    integer = text.replace(
        "<slab:GenericValue>JPN</slab:GenericValue>", "<slab:IntegerValue>3</slab:IntegerValue>"
    )
    with pytest.raises(LabelError, match="only GenericValue"):
        from_labels(labels_from_xml(integer), catalogue)


def test_an_alternative_label_the_agreement_contradicts_is_refused(catalogue: Catalogue) -> None:
    label = kor(catalogue).with_alternative(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016"))
    text = labels_to_xml(to_labels(label, catalogue)).decode()
    downgraded = text.replace(">極秘<", ">秘<")  # a relabelling that claims a lower equivalent
    with pytest.raises(LabelError, match="kor-jpn-gsomia-2016 maps it to 極秘"):
        from_labels(labels_from_xml(downgraded), catalogue)
    widened = text.replace(
        "<slab:GenericValue>JPN</slab:GenericValue>", "<slab:GenericValue>USA</slab:GenericValue>", 2
    )
    widened = widened.replace(
        "<slab:GenericValue>USA</slab:GenericValue>", "<slab:GenericValue>JPN</slab:GenericValue>", 1
    )
    with pytest.raises(LabelError, match="disagrees with the originator"):
        from_labels(labels_from_xml(widened), catalogue)


def test_a_bare_originator_label_from_another_tool_is_read(catalogue: Catalogue) -> None:
    text = _xml_of(catalogue)
    root = etree.fromstring(text.encode())
    bare = etree.tostring(root[0])
    assert etree.QName(root[0]).namespace == NS_4774
    assert from_labels(labels_from_xml(bare), catalogue) == kor(catalogue)


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE l [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<slab:originatorConfidentialityLabel xmlns:slab="urn:nato:stanag:4774:confidentialitymetadatalabel:1:0">
<slab:ConfidentialityInformation><slab:PolicyIdentifier>&x;</slab:PolicyIdentifier>
<slab:Classification>S</slab:Classification></slab:ConfidentialityInformation>
<slab:CreationDateTime>2019-08-24T00:00:00Z</slab:CreationDateTime></slab:originatorConfidentialityLabel>"""

_ENTITIES = "".join(f'<!ENTITY l{n} "{("&l" + str(n - 1) + ";") * 10}">' for n in range(1, 10)).replace(
    "&l0;", "lol"
)
LAUGHS = f'<?xml version="1.0"?>\n<!DOCTYPE lolz [{_ENTITIES}]>\n<lolz>&l9;</lolz>'.encode()

NETWORK = b"""<?xml version="1.0"?>
<!DOCTYPE l SYSTEM "http://127.0.0.1:9/evil.dtd">
<l>x</l>"""


@pytest.mark.parametrize("document", [XXE, LAUGHS, NETWORK], ids=["xxe", "billion-laughs", "external-dtd"])
def test_xxe_entity_bombs_and_external_dtds_are_refused(document: bytes) -> None:
    with pytest.raises(InvalidInputError, match="document type declaration is refused") as caught:
        labels_from_xml(document)
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd leaks into the message


def test_oversized_or_broken_xml_is_refused_with_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="not well-formed"):
        labels_from_xml(b"<slab:originatorConfidentialityLabel")
    with pytest.raises(InvalidInputError, match="at most"):
        labels_from_xml(b"<a>" + b" " * (17 * 1024 * 1024) + b"</a>")
    with pytest.raises(InvalidInputError, match="not an ADatP-4774 label"):
        labels_from_xml(b"<a/>")


def test_json_members_gsomia_cannot_map_are_refused(catalogue: Catalogue) -> None:
    data = labels_to_json(to_labels(kor(catalogue), catalogue))
    data["originatorConfidentialityLabel"]["SuccessionHandling"] = {}
    with pytest.raises(LabelError, match="SuccessionHandling"):
        labels_from_json(data)
    with pytest.raises(LabelError, match="originatorConfidentialityLabel is required"):
        labels_from_json({})


def test_the_labels_page_shows_one_label_that_reads_back_the_same_in_every_4774_form(
    catalogue: Catalogue,
) -> None:
    """docs/LABELS.md stays true: its 4774 XML and JSON read back into its gsomia JSON."""
    from pathlib import Path

    from gsomia._codec import label_from_dict

    page = (Path(__file__).resolve().parents[2] / "docs" / "LABELS.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in page.split("```json\n")[1:]]
    xml_blocks = [b.split("```", 1)[0] for b in page.split("```xml\n")[1:]]
    label = label_from_dict(json.loads(blocks[0]), catalogue)
    assert from_labels(labels_from_xml(xml_blocks[0].encode()), catalogue) == label
    assert from_labels(labels_from_json(blocks[1]), catalogue) == label
