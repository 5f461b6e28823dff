"""The TAXII server without deviations (issue 19 §5) and bounded uploads (issue 22 §8): each point
the OASIS client and validator found, and the attacks on it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import stix2
from stix2validator import ValidationOptions, validate_instance
from tests.node_fixtures import kor_label
from tests.taxii.test_stix import indicator
from tests.taxii.test_taxii import GSOMIA, TAXII, Call, collections, hold, items_of

from gsomia.api import create_app
from gsomia.node import NewIngest, Node
from gsomia.store._taxii import TaxiiStore
from gsomia.taxii._server import MAX_POST_OBJECTS
from gsomia.taxii._stix import EXTENSION_ID, IDENTITY_ID, TLP2, marking_for, us_of_timestamp

pytest_plugins = ["tests.taxii.test_taxii"]


def walk(
    call: Call, token: str, cid: str, **params: Any
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Every page of a collection's objects: (objects, each page's headers)."""
    url, out, heads, cursor = f"/taxii2/api/collections/{cid}/objects/", [], [], None
    while True:
        response = call("GET", url, token, params={**params, **({"next": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        out += response.json()["objects"]
        heads.append(dict(response.headers))
        cursor = response.json().get("next")
        if not response.json()["more"]:
            return out, heads


def unique(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a TAXII client keeps: one object per (id, version)."""
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        kept.setdefault((obj["id"], obj.get("modified") or obj.get("created", "")), obj)
    return list(kept.values())


def post(call: Call, token: str, cid: str, objects: list[Any]) -> httpx.Response:
    return call(
        "POST",
        f"/taxii2/api/collections/{cid}/objects/",
        token,
        json={"objects": objects},
        headers={"Content-Type": TAXII},
    )


def jpn_marking(node: Node) -> dict[str, Any]:
    label = node.catalogue.label(
        originator="JPN",
        classification="秘",
        releasable_to=["KOR"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=node.clock(),
    )
    return marking_for(label)


def test_the_definitions_objects_refer_to_are_served_and_what_was_served_posts_back(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    hold(jpn_node, 2)
    cid = collections(call, tokens["tanaka"])[f"agreement:{GSOMIA}"]
    served, _ = walk(call, tokens["tanaka"], cid)
    types = {o["type"] for o in served}
    assert {"identity", "extension-definition", "marking-definition", "x-gsomia-item"} <= types
    item = items_of(served)[0]
    base = f"/taxii2/api/collections/{cid}/objects"
    for ref in [*item["object_marking_refs"], IDENTITY_ID, EXTENSION_ID]:
        got = call("GET", f"{base}/{ref}/", tokens["tanaka"])
        assert got.status_code == 200, (ref, got.text)
        assert got.json()["objects"][0]["id"] == ref
        assert call("GET", f"{base}/{ref}/versions/", tokens["tanaka"]).json()["versions"]
    gsomia_marking = item["object_marking_refs"][0]
    assert call("GET", f"{base}/{gsomia_marking}/", tokens["sato"]).status_code == 404  # cannot read the item
    assert (
        TLP2["marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"] in served
    )  # TLP:AMBER as published
    again = post(call, tokens["tanaka"], cid, served)  # exactly what was served, back
    assert again.status_code == 202, again.text
    assert again.json()["failure_count"] == 0, again.json()["failures"]
    assert {s["id"] for s in again.json()["successes"]} == {o["id"] for o in items_of(served)}
    changed = {**item, "modified": "2030-01-01T00:00:00.000Z"}  # the same id, another version: a collision
    collision = post(call, tokens["tanaka"], cid, [*served[:-1], changed]).json()
    assert collision["failures"]  # another version of KOR's item: KOR's only under KOR's signature
    assert "only with KOR's signature" in collision["failures"][0]["message"]


def test_one_bad_object_fails_alone_and_the_status_names_each_object_with_its_version(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    cid = collections(call, tokens["tanaka"])[f"agreement:{GSOMIA}"]
    marking = jpn_marking(jpn_node)
    good = indicator(object_marking_refs=[marking["id"]])
    unlabelled = indicator(id="indicator--0f4c5a1e-2b9e-4c8f-9a55-6d3b1e7c9a11")
    bare = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": "indicator--0f4c5a1e-2b9e-4c8f-9a55-6d3b1e7c9a12",
    }
    bare["object_marking_refs"] = [marking["id"]]
    response = post(call, tokens["tanaka"], cid, [marking, good, unlabelled, bare, "not an object"])
    assert response.status_code == 202
    status = response.json()
    assert (status["total_count"], status["success_count"], status["failure_count"]) == (4, 1, 3)
    assert status["successes"] == [{"id": good["id"], "version": good["modified"]}]
    failures = {f["id"]: f for f in status["failures"]}
    assert "no gsomia label" in failures[unlabelled["id"]]["message"]
    assert "not a valid STIX 2.1 object" in failures[bare["id"]]["message"]  # native payloads are checked
    assert all(f["version"] for f in status["failures"])
    fetched = call("GET", f"/taxii2/api/status/{status['id']}/", tokens["tanaka"]).json()
    assert fetched == status
    assert call("GET", f"/taxii2/api/status/{status['id']}/", tokens["sato"]).status_code == 404


def test_polling_with_the_last_date_added_never_repeats_or_skips(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    """A received batch shares one instant: date-added still differs per item, to the microsecond."""
    batch = [
        NewIngest(kor_label(), json.dumps({"n": n}).encode(), "json", f"kor-{n}", "KOR", GSOMIA)
        for n in range(5)
    ]
    jpn_node.items.ingest_many(None, batch)
    cid = collections(call, tokens["tanaka"])["party:KOR"]
    seen: list[str] = []
    first, heads = walk(call, tokens["tanaka"], cid, limit=100)
    seen += [o["item_id"] for o in items_of(first)]
    last = heads[-1]["x-taxii-date-added-last"]
    assert len(last) == len("2024-03-01T00:00:00.000004Z")  # microseconds
    assert walk(call, tokens["tanaka"], cid, added_after=last)[0] == []
    jpn_node.items.ingest_many(
        None, [NewIngest(kor_label(), b"{}", "json", f"kor-late-{n}", "KOR", GSOMIA) for n in range(3)]
    )
    later, _ = walk(call, tokens["tanaka"], cid, added_after=last)
    seen += [o["item_id"] for o in items_of(later)]
    assert seen == [f"kor-{n}" for n in range(5)] + [f"kor-late-{n}" for n in range(3)]


@pytest.mark.parametrize("limit", [0, -3, 1, 1001, 10**6])
def test_a_limit_out_of_range_is_clamped_not_refused(
    call: Call, jpn_node: Node, tokens: dict[str, str], limit: int
) -> None:
    hold(jpn_node, 2)
    cid = collections(call, tokens["tanaka"])["party:KOR"]
    response = call(
        "GET", f"/taxii2/api/collections/{cid}/objects/", tokens["tanaka"], params={"limit": limit}
    )
    assert response.status_code == 200, response.text
    assert 1 <= len(response.json()["objects"]) <= max(1, min(limit, 1000))


def test_error_codes_and_statuses_follow_the_spec(call: Call, jpn_node: Node, tokens: dict[str, str]) -> None:
    found = collections(call, tokens["tanaka"])
    objects = f"/taxii2/api/collections/{found[f'agreement:{GSOMIA}']}/objects/"
    for params in (
        {"next": "x"},
        {"added_after": "yesterday"},
        {"match[version]": "soon"},
        {"limit": "many"},
    ):
        bad = call("GET", objects, tokens["tanaka"], params=params)
        assert (bad.status_code, bad.json()["error_code"]) == (422, "invalid-input"), params
    party = post(call, tokens["tanaka"], found["party:KOR"], [indicator()])
    assert party.status_code == 403
    not_json = call("POST", objects, tokens["tanaka"], content=b"{oops", headers={"Content-Type": TAXII})
    assert (not_json.status_code, not_json.json()["error_code"]) == (400, "bad-request")
    shapeless = call("POST", objects, tokens["tanaka"], json=[1, 2], headers={"Content-Type": TAXII})
    assert shapeless.status_code == 400
    refused = jpn_node.store.audit(after_seq=0, kind="api.refused", limit=100)
    assert any("not JSON" in json.loads(r.detail)["reason"] for r in refused)


def test_an_oversized_bundle_is_refused_before_any_work(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    cid = collections(call, tokens["tanaka"])[f"agreement:{GSOMIA}"]
    many = [indicator(id=f"indicator--0f4c5a1e-2b9e-4c8f-9a55-{n:012d}") for n in range(MAX_POST_OBJECTS + 1)]
    response = post(call, tokens["tanaka"], cid, many)
    assert response.status_code == 413
    assert str(MAX_POST_OBJECTS) in response.json()["description"]
    root = call("GET", "/taxii2/api/", tokens["tanaka"]).json()
    huge = {"objects": [], "padding": "x" * root["max_content_length"]}
    too_big = call(
        "POST",
        f"/taxii2/api/collections/{cid}/objects/",
        tokens["tanaka"],
        json=huge,
        headers={"Content-Type": TAXII},
    )
    assert too_big.status_code == 413
    assert jpn_node.store.count_items() == 0


def test_versions_are_valid_stix_a_late_label_or_a_bare_payload_included(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    future = kor_label(created="2030-01-01T00:00:00+00:00")  # created after ingestion
    jpn_node.items.ingest(
        None, label=future, payload=b"{}", item_id="late", received_from="KOR", agreement=GSOMIA
    )
    native_id = "indicator--0f4c5a1e-2b9e-4c8f-9a55-6d3b1e7c9a13"
    bare = json.dumps({"type": "indicator", "spec_version": "2.1", "id": native_id}).encode()
    jpn_node.items.ingest(
        None, label=kor_label(), payload=bare, item_id=native_id, received_from="KOR", agreement=GSOMIA
    )
    cid = collections(call, tokens["tanaka"])["party:KOR"]
    served, _ = walk(call, tokens["tanaka"], cid)
    for obj in items_of(served):
        assert us_of_timestamp(obj["modified"], "m") >= us_of_timestamp(obj["created"], "c"), obj
    assert {o["type"] for o in items_of(served)} == {"x-gsomia-item"}  # the bare payload is wrapped, valid
    manifest = call("GET", f"/taxii2/api/collections/{cid}/manifest/", tokens["tanaka"]).json()["objects"]
    assert all(e["version"] for e in manifest)
    version = items_of(served)[0]["modified"]
    one = walk(call, tokens["tanaka"], cid, **{"match[version]": version})[0]
    assert [o["item_id"] for o in items_of(one)] == ["late"]


def test_a_reclassification_is_a_new_version_polling_readers_see(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    owner = jpn_node.people.add_person(
        None,
        {
            "id": "officer",
            "name": "Officer",
            "nationality": "JPN",
            "clearance": "特定秘密",
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst", "release_officer"],
        },
    )
    jpn_node.items.ingest(
        owner,
        label=kor_label(originator="JPN", classification="極秘", releasable_to=["KOR"]),
        payload=b"{}",
        item_id="own",
    )
    cid = collections(call, tokens["tanaka"])[f"agreement:{GSOMIA}"]
    before, heads = walk(call, tokens["tanaka"], cid)
    [old] = items_of(before)
    jpn_node.duties.reclassify(owner, "own", "秘", "downgraded after review")
    after, _ = walk(call, tokens["tanaka"], cid, added_after=heads[-1]["x-taxii-date-added-last"])
    [new] = items_of(after)
    assert new["id"] == old["id"]
    assert us_of_timestamp(new["modified"], "m") > us_of_timestamp(old["modified"], "m")
    assert new["object_marking_refs"][0] != old["object_marking_refs"][0]  # the new label, a new marking
    versions = call("GET", f"/taxii2/api/collections/{cid}/objects/{new['id']}/versions/", tokens["tanaka"])
    assert versions.json()["versions"] == [new["modified"]]


def test_the_served_collection_passes_the_oasis_validator_strictly_and_stix2_parse(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    hold(jpn_node, 3)
    hold_native = indicator(id="indicator--0f4c5a1e-2b9e-4c8f-9a55-6d3b1e7c9a14")
    jpn_node.items.ingest(
        None,
        label=kor_label(),
        payload=json.dumps(hold_native).encode(),
        item_id=hold_native["id"],
        received_from="KOR",
        agreement=GSOMIA,
    )
    cid = collections(call, tokens["tanaka"])["party:KOR"]
    served, _ = walk(call, tokens["tanaka"], cid, limit=2)
    everything = unique(served + walk(call, tokens["tanaka"], cid)[0])
    bundle = {"type": "bundle", "id": "bundle--6a0d8c55-4b6e-4f43-8d8a-2a4f3c1b9e78", "objects": everything}
    results = validate_instance(bundle, ValidationOptions(version="2.1", strict=True))
    assert results.is_valid, [str(e) for e in results.errors]
    referenced = {r for o in everything for r in o.get("object_marking_refs", [])} | {IDENTITY_ID}
    assert referenced <= {o["id"] for o in everything}  # nothing points at what the collection does not serve
    for obj in everything:
        if obj["type"] != "x-gsomia-item":  # the one gsomia type, declared by the extension-definition served
            stix2.parse(obj, allow_custom=False)


def test_status_resources_survive_a_restart_and_are_the_same_on_another_process_of_the_node(
    call: Call, jpn_node: Node, tokens: dict[str, str]
) -> None:
    cid = collections(call, tokens["tanaka"])[f"agreement:{GSOMIA}"]
    marking = jpn_marking(jpn_node)
    status = post(
        call, tokens["tanaka"], cid, [marking, indicator(object_marking_refs=[marking["id"]])]
    ).json()
    other = Node(jpn_node.config, store=None, clock=jpn_node.clock)  # a second process of the same node
    try:
        app = create_app(other)

        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                headers = {"Accept": TAXII, "Authorization": f"Bearer {tokens['tanaka']}"}
                return await client.get(f"/taxii2/api/status/{status['id']}/", headers=headers)

        assert asyncio.run(fetch()).json() == status
        assert TaxiiStore(other.store).status(status["id"]) is not None
    finally:
        other.close()


def test_a_status_stays_small_for_a_large_post(call: Call, jpn_node: Node, tokens: dict[str, str]) -> None:
    cid = collections(call, tokens["tanaka"])[f"agreement:{GSOMIA}"]
    many = [indicator(id=f"indicator--0f4c5a1e-2b9e-4c8f-9a55-{n:012d}") for n in range(300)]
    status = post(call, tokens["tanaka"], cid, many).json()
    assert status["failure_count"] == 300
    with jpn_node.store.engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT length(details) FROM taxii_statuses").scalar_one()
    assert size < len(json.dumps(status)) / 4
