"""The STIX 2.1 mapping: items and labels out, labelled items back in, TLP honoured."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.node_fixtures import jpn_label, kor_label
from tests.taxii.stix_checks import assert_valid_bundle

from gsomia._codec import label_from_dict
from gsomia.core.catalogue import Catalogue
from gsomia.core.labels import AlternativeLabel, SecurityLabel
from gsomia.errors import InvalidInputError
from gsomia.taxii._stix import (
    EXTENSION_ID,
    ITEM_TYPE,
    from_bundle,
    is_tlp_red,
    marking_for,
    to_bundle,
    to_stix,
)

AT = datetime(2024, 2, 2, tzinfo=UTC)
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
TLP_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
INDICATOR_ID = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"


def indicator(**kw: Any) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": INDICATOR_ID,
        "created": "2024-02-01T00:00:00.000Z",
        "modified": "2024-02-01T00:00:00.000Z",
        "name": "launch site telemetry host",
        "description": "seen before the February launch",
        "pattern": "[ipv4-addr:value = '198.51.100.7']",
        "pattern_type": "stix",
        "valid_from": "2024-02-01T00:00:00Z",
        **kw,
    }


@pytest.fixture
def received(catalogue: Catalogue) -> SecurityLabel:
    label = label_from_dict(kor_label(caveats=["G2G-ONLY"]), catalogue)
    return label.with_alternative(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016"))


def test_every_kind_of_item_maps_to_a_bundle_the_oasis_validator_accepts(
    catalogue: Catalogue, received: SecurityLabel
) -> None:
    own = label_from_dict(jpn_label(), catalogue)
    payload = json.dumps(indicator(object_marking_refs=[TLP_AMBER])).encode()
    bundle = to_bundle(
        [
            (received, to_stix("kor-1", received, "json", b'{"track": 7}', AT)),
            (own, to_stix("blob", own, "bytes", b"\x00\xff", AT)),
            (own, to_stix(INDICATOR_ID, own, "json", payload, AT)),
        ]
    )
    assert_valid_bundle(bundle)
    types = [o["type"] for o in bundle["objects"]]
    assert types.count("marking-definition") == 2  # one per distinct label
    assert types.count(ITEM_TYPE) == 2
    native = next(o for o in bundle["objects"] if o["type"] == "indicator")
    assert native["object_marking_refs"] == [marking_for(own)["id"], TLP_AMBER]  # TLP kept beside the label


def test_the_marking_carries_the_whole_label_in_the_originators_scheme(received: SecurityLabel) -> None:
    content = marking_for(received)["extensions"][EXTENSION_ID]
    assert content["originator"] == "KOR"
    assert content["classification"] == "군사II급비밀"
    assert content["releasable_to"] == ["JPN"]
    assert content["caveats"] == ["G2G-ONLY"]
    assert content["purpose"] == "threat-assessment"
    assert content["topics"] == ["dprk-missile"]
    assert content["alternatives"] == [
        {"party": "JPN", "classification": "極秘", "agreement": "kor-jpn-gsomia-2016"}
    ]
    assert marking_for(received)["id"] == marking_for(received)["id"]  # same label, same marking


def test_a_bundle_round_trips_to_the_same_items_and_labels(
    catalogue: Catalogue, received: SecurityLabel
) -> None:
    own = label_from_dict(jpn_label(), catalogue)
    payload = json.dumps(indicator(object_marking_refs=[TLP_AMBER])).encode()
    bundle = to_bundle(
        [
            (received, to_stix("kor-1", received, "json", b'{"track": 7}', AT)),
            (own, to_stix("blob", own, "bytes", b"\x00\xff", AT)),
            (own, to_stix(INDICATOR_ID, own, "json", payload, AT)),
        ]
    )
    back = {o.item_id: o for o in from_bundle(json.loads(json.dumps(bundle)))}
    assert set(back) == {"kor-1", "blob", INDICATOR_ID}
    assert json.loads(back["kor-1"].payload) == {"track": 7}
    assert back["blob"].payload_type == "bytes"
    assert back["blob"].payload == b"\x00\xff"
    assert json.loads(back[INDICATOR_ID].payload) == json.loads(payload)  # TLP kept, gsomia ref dropped
    assert label_from_dict(back[INDICATOR_ID].label, catalogue) == own
    assert "alternatives" not in back["kor-1"].label  # a receiver computes its own equivalents


def test_an_object_without_a_gsomia_marking_is_refused_unless_a_default_label_is_given() -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1f9e7f3c-8d8e-4a5b-9c3d-2e1f0a9b8c7d",
        "objects": [indicator()],
    }
    with pytest.raises(InvalidInputError, match="no gsomia label"):
        from_bundle(bundle)
    [imported] = from_bundle(bundle, default_label=jpn_label())
    assert imported.label == jpn_label()


def test_two_gsomia_labels_or_an_unknown_marking_are_refused(
    catalogue: Catalogue, received: SecurityLabel
) -> None:
    own = label_from_dict(jpn_label(), catalogue)
    two = indicator(object_marking_refs=[marking_for(own)["id"], marking_for(received)["id"]])
    objects = [marking_for(own), marking_for(received), two]
    with pytest.raises(InvalidInputError, match="exactly one"):
        from_bundle(
            {"type": "bundle", "id": "bundle--1f9e7f3c-8d8e-4a5b-9c3d-2e1f0a9b8c7d", "objects": objects}
        )
    stray = indicator(object_marking_refs=["marking-definition--1f9e7f3c-8d8e-4a5b-9c3d-2e1f0a9b8c7d"])
    with pytest.raises(InvalidInputError, match="not in the bundle"):
        from_bundle(
            {"type": "bundle", "id": "bundle--1f9e7f3c-8d8e-4a5b-9c3d-2e1f0a9b8c7d", "objects": [stray]}
        )


def test_tlp_red_never_leaves_in_a_bundle(catalogue: Catalogue) -> None:
    own = label_from_dict(jpn_label(), catalogue)
    obj = to_stix(
        INDICATOR_ID, own, "json", json.dumps(indicator(object_marking_refs=[TLP_RED])).encode(), AT
    )
    assert is_tlp_red(obj)
    with pytest.raises(InvalidInputError, match="TLP:RED"):
        to_bundle([(own, obj)])


def test_a_wrapped_uuid_item_keeps_its_uuid_as_the_stix_id(catalogue: Catalogue) -> None:
    own = label_from_dict(jpn_label(), catalogue)
    obj = to_stix("0b9f4f4e-4ad8-4d1b-9b61-4f7f7c2d5e11", own, "json", b"1", AT)
    assert obj["id"] == f"{ITEM_TYPE}--0b9f4f4e-4ad8-4d1b-9b61-4f7f7c2d5e11"


def test_the_acs_and_tlp_markings_say_what_the_gsomia_label_says(catalogue: Catalogue) -> None:
    """Readers that know nothing of gsomia: ISA ACS 3.0 (US equivalent, nationalities, further sharing)
    and TLP 2.0 (AMBER, or AMBER+STRICT when a caveat forbids onward release)."""
    from gsomia.taxii._stix import ACS_EXTENSION_ID, acs_marking_for, tlp_for

    plain = label_from_dict(kor_label(releasable_to=["JPN", "USA"]), catalogue)
    acs = acs_marking_for(plain, catalogue)
    assert acs is not None
    content = acs["extensions"][ACS_EXTENSION_ID]
    assert content["control_set"] == {"classification": "S"}  # 군사II급비밀 = SECRET (US-ROK 1987)
    assert content["access_privilege"][0]["privilege_scope"]["permitted_nationalities"] == [
        "JPN",
        "KOR",
        "USA",
    ]
    assert content["further_sharing"][0]["rule_effect"] == "permit"
    assert tlp_for(plain) == "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"  # AMBER
    strict = label_from_dict(kor_label(caveats=["IP-RESTRICTED"]), catalogue)
    assert tlp_for(strict) == "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"  # AMBER+STRICT
    strict_acs = acs_marking_for(strict, catalogue)
    assert strict_acs is not None
    assert strict_acs["extensions"][ACS_EXTENSION_ID]["further_sharing"][0]["rule_effect"] == "deny"
    class_one = label_from_dict(kor_label(classification="군사I급비밀"), catalogue)
    assert acs_marking_for(class_one, catalogue) is None  # no US equivalent: the gsomia marking alone
    handling = label_from_dict(kor_label(caveats=["G2G-ONLY"]), catalogue)
    assert tlp_for(handling) == "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
