"""The TAXII 2.1 server through the real app and store: collections, paging, per-object access, audit."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.node_fixtures import app_caller, jpn_label, kor_label
from tests.taxii.stix_checks import assert_valid_bundle
from tests.taxii.test_stix import TLP_RED, indicator

from gsomia.core.access import Person
from gsomia.node import Node, PortionIngest
from gsomia.taxii._stix import extension_objects, marking_for

Call = Callable[..., httpx.Response]
GSOMIA = "kor-jpn-gsomia-2016"
TAXII = "application/taxii+json;version=2.1"


@pytest.fixture
def call(jpn_node: Node) -> Call:
    return app_caller(jpn_node, Accept=TAXII)


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in people}


def hold(node: Node, n: int, **label: Any) -> list[str]:
    """``n`` KOR items received under the GSOMIA (JPN equivalent 極秘 unless the label says otherwise)."""
    ids = [f"kor-{i}" for i in range(n)]
    for item_id in ids:
        node.items.ingest(
            None,
            label=kor_label(**label),
            payload=json.dumps({"track": item_id}).encode(),
            item_id=item_id,
            received_from="KOR",
            agreement=GSOMIA,
        )
    return ids


def items_of(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items among served objects (the definitions they refer to ride along)."""
    defined = ("marking-definition", "identity", "extension-definition")
    return [o for o in objects if o["type"] not in defined]


def collections(call: Call, token: str) -> dict[str, str]:
    response = call("GET", "/taxii2/api/collections/", token)
    assert response.status_code == 200, response.text
    return {c["title"]: c["id"] for c in response.json()["collections"]}


def test_discovery_needs_the_same_bearer_token_and_speaks_taxii(call: Call, tokens: dict[str, str]) -> None:
    assert call("GET", "/taxii2/").status_code == 401
    response = call("GET", "/taxii2/", tokens["tanaka"])
    assert response.headers["content-type"] == TAXII
    assert response.json()["api_roots"] == ["http://node/taxii2/api/"]
    root = call("GET", "/taxii2/api/", tokens["tanaka"]).json()
    assert root["versions"] == [TAXII]


def test_one_collection_per_agreement_and_per_partner_party(call: Call, tokens: dict[str, str]) -> None:
    found = collections(call, tokens["tanaka"])
    assert {
        "agreement:kor-jpn-gsomia-2016",
        "agreement:usa-jpn-gsomia-2007",
        "party:KOR",
        "party:USA",
    } <= set(found)
    assert "party:JPN" not in found
    kor = call("GET", f"/taxii2/api/collections/{found['party:KOR']}/", tokens["tanaka"]).json()
    assert kor["can_write"] is False


def test_a_reader_without_clearance_sees_neither_the_object_nor_its_manifest_entry(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    hold(jpn_node, 1)
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    base = f"/taxii2/api/collections/{cid}"
    seen = call("GET", f"{base}/objects/", tokens["tanaka"])
    assert [o["item_id"] for o in items_of(seen.json()["objects"])] == ["kor-0"]
    assert seen.headers["X-TAXII-Date-Added-First"].endswith("Z")
    object_id = items_of(seen.json()["objects"])[0]["id"]
    assert call("GET", f"{base}/objects/", tokens["sato"]).json()["objects"] == []
    assert call("GET", f"{base}/manifest/", tokens["sato"]).json()["objects"] == []
    manifest = call("GET", f"{base}/manifest/", tokens["tanaka"]).json()["objects"]
    assert [e["id"] for e in manifest] == [o["id"] for o in seen.json()["objects"]]
    assert call("GET", f"{base}/objects/{object_id}/", tokens["sato"]).status_code == 404
    assert call("GET", f"{base}/objects/{object_id}/versions/", tokens["sato"]).status_code == 404
    assert (
        call("GET", f"{base}/objects/{object_id}/", tokens["tanaka"]).json()["objects"][0]["id"] == object_id
    )
    reads = [r for r in jpn_node.store.audit(after_seq=0, kind="item.read", limit=100)]
    assert {r.actor for r in reads if json.loads(r.detail).get("channel") == "taxii"} == {"tanaka"}
    lists = jpn_node.store.audit(after_seq=0, kind="item.list", limit=100)
    assert any(r.actor == "sato" and json.loads(r.detail)["withheld"] == 1 for r in lists)


def test_objects_page_by_keyset_and_filter_by_type_and_added_after(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    ids = hold(jpn_node, 7)
    cid = collections(call, tokens["tanaka"])["party:KOR"]
    url, seen, cursor = f"/taxii2/api/collections/{cid}/objects/", [], None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"next": cursor} if cursor else {})}
        body = call("GET", url, tokens["tanaka"], params=params).json()
        assert len(body["objects"]) <= 3  # the definitions count toward the limit too
        seen += [o["item_id"] for o in items_of(body["objects"])]
        cursor = body.get("next")
        assert body["more"] is (cursor is not None)
        if not body["more"]:
            break
    assert seen == ids
    assert call("GET", url, tokens["tanaka"], params={"match[type]": "indicator"}).json()["objects"] == []
    markings = call("GET", url, tokens["tanaka"], params={"match[type]": "marking-definition"}).json()
    assert markings["objects"]
    assert {o["type"] for o in markings["objects"]} == {"marking-definition"}
    assert call("GET", url, tokens["tanaka"], params={"match[spec_version]": "2.0"}).json()["objects"] == []
    manifest = call("GET", f"/taxii2/api/collections/{cid}/manifest/", tokens["tanaka"]).json()["objects"]
    later = call("GET", url, tokens["tanaka"], params={"added_after": manifest[-1]["date_added"]}).json()
    assert later["objects"] == []
    assert call("GET", url, tokens["tanaka"], params={"next": "garbage"}).status_code == 422
    assert (
        call("GET", url, tokens["tanaka"], params={"next": "garbage"}).json()["error_code"] == "invalid-input"
    )


def test_post_ingests_labelled_objects_refuses_unlabelled_ones_and_never_serves_tlp_red(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    label = jpn_node.catalogue.label(
        originator="JPN",
        classification="秘",
        releasable_to=["KOR"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=jpn_node.clock(),
    )
    red = indicator(id="indicator--0f4c5a1e-2b9e-4c8f-9a55-6d3b1e7c9a10", object_marking_refs=[TLP_RED])
    mine = indicator(object_marking_refs=[marking_for(label)["id"]])
    red["object_marking_refs"].insert(0, marking_for(label)["id"])
    objects = [*extension_objects(), marking_for(label), mine, red]
    posted = call("POST", url, tokens["tanaka"], json={"objects": objects}, headers={"Content-Type": TAXII})
    assert posted.status_code == 202, posted.text
    assert posted.json()["success_count"] == 2
    status = call("GET", f"/taxii2/api/status/{posted.json()['id']}/", tokens["tanaka"])
    assert status.json()["successes"][0]["id"] == mine["id"]
    assert call("GET", f"/taxii2/api/status/{posted.json()['id']}/", tokens["sato"]).status_code == 404
    served = call("GET", url, tokens["tanaka"]).json()["objects"]
    assert [o["id"] for o in items_of(served)] == [mine["id"]]  # the TLP:RED one is held but never served
    assert_valid_bundle({"type": "bundle", "id": "bundle--" + cid, "objects": served})
    bare = call(
        "POST", url, tokens["tanaka"], json={"objects": [indicator()]}, headers={"Content-Type": TAXII}
    )
    assert bare.status_code == 202  # one object refused, in the status, not the whole request
    assert bare.json()["failure_count"] == 1
    assert "no gsomia label" in bare.json()["failures"][0]["message"]


def test_posting_to_a_party_collection_is_refused(call: Call, tokens: dict[str, str]) -> None:
    cid = collections(call, tokens["tanaka"])["party:KOR"]
    body = {"objects": [indicator()]}
    response = call("POST", f"/taxii2/api/collections/{cid}/objects/", tokens["tanaka"], json=body)
    assert response.status_code == 403
    assert "read only" in response.json()["description"]


def test_own_items_appear_in_the_agreements_that_reach_their_releasability(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    jpn_node.items.ingest(None, label=jpn_label(), payload=b"{}", item_id="jpn-1")
    found = collections(call, tokens["tanaka"])
    with_kor = call(
        "GET", f"/taxii2/api/collections/{found['agreement:kor-jpn-gsomia-2016']}/objects/", tokens["tanaka"]
    )
    with_usa = call(
        "GET", f"/taxii2/api/collections/{found['agreement:usa-jpn-gsomia-2007']}/objects/", tokens["tanaka"]
    )
    assert [o["item_id"] for o in items_of(with_kor.json()["objects"])] == ["jpn-1"]
    assert with_usa.json()["objects"] == []


def test_errors_are_taxii_error_messages_and_audited(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    """Under /taxii2/ an error is a TAXII 2.1 error message (§3.6.1), not a problem document."""
    unknown = call("GET", "/taxii2/api/collections/no-such-collection/", tokens["tanaka"])
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == TAXII
    body = unknown.json()
    assert body["http_status"] == "404"
    assert body["error_code"] == "not-found"
    assert "no-such-collection" in body["description"]
    assert body["title"]
    assert body["error_id"] != call("GET", "/taxii2/api/collections/x/", tokens["tanaka"]).json()["error_id"]
    anonymous = call("GET", "/taxii2/")
    assert anonymous.status_code == 401
    assert anonymous.json()["http_status"] == "401"
    assert call("GET", "/items", tokens["tanaka"]).headers["content-type"] == "application/json"
    elsewhere = call("GET", "/items/no-such-item", tokens["tanaka"])
    assert elsewhere.headers["content-type"] == "application/problem+json"  # the REST API is unchanged
    refused = jpn_node.store.audit(after_seq=0, kind="api.refused", limit=100)
    assert any(r.subject == "/taxii2/api/collections/no-such-collection/" for r in refused)


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (TAXII, 200),
        ("application/taxii+json", 200),  # no version: the latest, 2.1
        ("application/json", 200),
        ("*/*", 200),
        ("text/html, application/*;q=0.5", 200),
        ("application/taxii+json;version=2.0", 406),  # TAXII 2.0 is not served
        ("text/html", 406),
        ("application/taxii+json;version=2.1;q=0", 406),  # explicitly refused
    ],
)
def test_content_negotiation_refuses_what_the_client_cannot_take(
    call: Call, tokens: dict[str, str], accept: str, status: int
) -> None:
    response = call("GET", "/taxii2/api/collections/", tokens["tanaka"], headers={"Accept": accept})
    assert response.status_code == status, response.text
    if status == 406:
        assert response.json()["error_code"] == "not-acceptable"
        assert accept in response.json()["description"]


def test_a_body_that_is_not_taxii_json_is_unsupported(call: Call, tokens: dict[str, str]) -> None:
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    for content_type in ("text/plain", "application/taxii+json;version=2.0", "application/xml"):
        response = call(
            "POST", url, tokens["tanaka"], content=b'{"objects": []}', headers={"Content-Type": content_type}
        )
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["error_code"] == "unsupported-media-type"


def test_an_item_in_portions_is_served_with_granular_markings_of_the_portions_the_reader_may_read(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    """Issue 20 §2: the object's marking is the highest label of the portions served, and each portion
    (``payload.portions.[i]``) carries its own label as a granular marking; a reader cleared for the
    tearline alone gets it alone, and nothing served names the body or its marking."""
    body_label, tearline_label = jpn_label(), jpn_label(classification="秘")
    jpn_node.items.ingest(
        jpn_node.people.person("tanaka"),
        label=None,
        payload=b"",
        item_id="jpn-report",
        portions=[
            PortionIngest("body", body_label, b'{"source": "the body"}'),
            PortionIngest("tearline", tearline_label, b'{"launch": "the tearline"}'),
        ],
    )
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    body_marking = marking_for(jpn_node.kernel.items.parse_label(body_label))["id"]
    tearline_marking = marking_for(jpn_node.kernel.items.parse_label(tearline_label))["id"]

    served = call("GET", url, tokens["tanaka"]).json()["objects"]
    (report,) = items_of(served)
    assert [p["id"] for p in report["payload"]["portions"]] == ["body", "tearline"]
    granular = {(g["marking_ref"], tuple(g["selectors"])) for g in report["granular_markings"]}
    assert (body_marking, ("payload.portions.[0]",)) in granular
    assert (tearline_marking, ("payload.portions.[1]",)) in granular
    assert body_marking in report["object_marking_refs"]  # the item's marking: the highest label
    defined = {o["id"] for o in served if o["type"] == "marking-definition"}
    assert {g["marking_ref"] for g in report["granular_markings"]} <= defined
    assert_valid_bundle({"type": "bundle", "id": "bundle--" + cid, "objects": served})

    response = call("GET", url, tokens["sato"])
    (partial,) = items_of(response.json()["objects"])
    assert [p["id"] for p in partial["payload"]["portions"]] == ["tearline"]
    assert [g["selectors"] for g in partial["granular_markings"] if g["marking_ref"] == tearline_marking] == [
        ["payload.portions.[0]"]
    ]
    assert tearline_marking in partial["object_marking_refs"]
    assert body_marking not in response.text
    assert "the body" not in response.text
    # the round trip: served, then posted back as a new item, it is an item in portions again, each
    # portion under the label its granular marking gives it, signed by this node under a new root
    again = dict(report, item_id="jpn-report-2")
    posted = call(
        "POST", url, tokens["tanaka"], json={"objects": [*served, again]}, headers={"Content-Type": TAXII}
    )
    assert posted.status_code == 202
    assert posted.json()["failures"] == []
    copy, payload = jpn_node.items.read(jpn_node.people.person("tanaka"), "jpn-report-2")
    original, original_payload = jpn_node.items.read(jpn_node.people.person("tanaka"), "jpn-report")
    assert [(m.id, m.label) for m in copy.portions] == [(m.id, m.label) for m in original.portions]
    assert copy.label == original.label
    assert json.loads(payload) == json.loads(original_payload)
    row = jpn_node.store.get_item("jpn-report-2")
    assert row is not None
    assert [p.id for p in jpn_node.kernel.items.signed(row)[1]] == ["body", "tearline"]
    # exported again, it is the same object (ids aside)
    served_again = items_of(call("GET", url, tokens["tanaka"]).json()["objects"])
    (second,) = [o for o in served_again if o["item_id"] == "jpn-report-2"]
    assert second["granular_markings"] == report["granular_markings"]
    assert second["object_marking_refs"] == report["object_marking_refs"]


def _portioned(call: Call, jpn_node: Node, tokens: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    jpn_node.items.ingest(
        jpn_node.people.person("tanaka"),
        label=None,
        payload=b"",
        item_id="jpn-report",
        portions=[
            PortionIngest("body", jpn_label(), b'{"source": "the body"}'),
            PortionIngest("tearline", jpn_label(classification="秘"), b'{"launch": "the tearline"}'),
        ],
    )
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    return url, call("GET", url, tokens["tanaka"]).json()["objects"]


def _marks_swapped(report: dict[str, Any], definitions: dict[str, str]) -> None:
    report["object_marking_refs"] = [definitions["秘"]]  # the object marked lower than its body


def _portion_unmarked(report: dict[str, Any], _definitions: dict[str, str]) -> None:
    report["granular_markings"] = [
        g for g in report["granular_markings"] if g["selectors"] != ["payload.portions.[1]"]
    ]


def _portion_marked_twice(report: dict[str, Any], definitions: dict[str, str]) -> None:
    report["granular_markings"].append(
        {"marking_ref": definitions["秘"], "selectors": ["payload.portions.[0]"]}
    )


def _selector_past_the_end(report: dict[str, Any], definitions: dict[str, str]) -> None:
    report["granular_markings"].append(
        {"marking_ref": definitions["秘"], "selectors": ["payload.portions.[7]"]}
    )


def _selector_inside_a_portion(report: dict[str, Any], definitions: dict[str, str]) -> None:
    report["granular_markings"].append(
        {"marking_ref": definitions["秘"], "selectors": ["payload.portions.[0].payload.source"]}
    )


def _payload_label_differs(report: dict[str, Any], _definitions: dict[str, str]) -> None:
    report["payload"]["portions"][0]["label"]["classification"] = "秘"


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_marks_swapped, "is not the highest of its portions' labels"),
        (_portion_unmarked, "portion 1 has 0 gsomia labels"),
        (_portion_marked_twice, "portion 0 has 2 gsomia labels"),
        (_selector_past_the_end, "names no portion"),
        (_selector_inside_a_portion, "marks whole portions"),
        (_payload_label_differs, "differs from its granular marking"),
    ],
)
def test_an_item_in_portions_with_inconsistent_markings_is_refused_with_the_reason(
    call: Call, jpn_node: Node, tokens: dict[str, str], tamper: Any, reason: str
) -> None:
    url, served = _portioned(call, jpn_node, tokens)
    (report,) = items_of(served)
    definitions = {"秘": marking_for(jpn_node.kernel.items.parse_label(jpn_label(classification="秘")))["id"]}
    changed = json.loads(json.dumps(dict(report, item_id="jpn-report-2")))
    tamper(changed, definitions)
    posted = call(
        "POST", url, tokens["tanaka"], json={"objects": [*served, changed]}, headers={"Content-Type": TAXII}
    )
    assert posted.status_code == 202
    (failure,) = posted.json()["failures"]
    assert reason in failure["message"]
    assert jpn_node.store.get_item("jpn-report-2") is None


class _Opened:
    """The node's payload cipher, noting the id of every payload opened."""

    def __init__(self, cipher: Any) -> None:
        self.cipher, self.ids = cipher, []

    def open(self, item_id: str, label: str, sealed: bytes) -> bytes:
        self.ids.append(item_id)
        return bytes(self.cipher.open(item_id, label, sealed))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cipher, name)


def test_a_page_decides_before_it_opens_anything(
    call: Call, jpn_node: Node, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decision, asked first: the TAXII scan opened each item's payload and built its STIX object
    (and matched the filters against it) before asking whether the reader may read it, so what an
    unreadable item holds took part in the reader's page (its cost, its failures). sato (秘) may read
    none of KOR's 極秘 items: not one of them is opened for him; tanaka's page opens them."""
    hold(jpn_node, 3)
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    opened = _Opened(jpn_node.kernel.cipher)
    monkeypatch.setattr(jpn_node.kernel, "cipher", opened)
    for params in ({}, {"match[type]": "indicator"}):
        got = call("GET", f"/taxii2/api/collections/{cid}/objects/", tokens["sato"], params=params)
        assert got.status_code == 200, got.text
        assert got.json()["objects"] == []
        assert opened.ids == [], opened.ids
    assert call("GET", f"/taxii2/api/collections/{cid}/objects/", tokens["tanaka"]).status_code == 200
    assert sorted(opened.ids) == ["kor-0", "kor-1", "kor-2"]


@pytest.mark.parametrize(
    "markings",
    [
        {"object_marking_refs": 5},
        {"object_marking_refs": [["marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"]]},
        {"granular_markings": 5},
        {"granular_markings": [{"marking_ref": ["x"], "selectors": ["name"]}]},
    ],
    ids=["refs-a-number", "a-ref-a-list", "granular-a-number", "granular-ref-a-list"],
)
def test_a_partners_payload_posing_as_stix_with_malformed_markings(
    call: Call, jpn_node: Node, tokens: dict[str, str], markings: dict[str, Any]
) -> None:
    """KOR sends an item whose payload claims to be a STIX object (its own id, 2.1, versioned) with
    markings of no STIX shape. The server read them as the object's markings, a TypeError: every page
    of the collection holding it was a 500, for readers who may not read the item too (telling them
    it is there). Now such a payload is served as any JSON payload is, wrapped in an x-gsomia-item;
    sato (who may not read it) sees an empty page."""
    stix_id = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f"
    posing = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id,
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        **markings,
    }
    jpn_node.items.ingest(
        None,
        label=kor_label(),
        payload=json.dumps(posing).encode(),
        item_id=stix_id,
        received_from="KOR",
        agreement=GSOMIA,
    )
    cid = collections(call, tokens["tanaka"])["agreement:kor-jpn-gsomia-2016"]
    url = f"/taxii2/api/collections/{cid}/objects/"
    assert call("GET", url, tokens["sato"]).json()["objects"] == []
    served = items_of(call("GET", url, tokens["tanaka"]).json()["objects"])
    assert [(o["type"], o["item_id"], o["payload"]) for o in served] == [("x-gsomia-item", stix_id, posing)]
