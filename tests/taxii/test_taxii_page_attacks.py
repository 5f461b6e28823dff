"""A TAXII page written object by object (issue 18), attacked: what a reader may not read is on no
page, neither as an object nor as a definition; a forged ``next`` cursor moves the scan, never past
the read decision or its audit record; the bytes are the ones Starlette's JSON encoder writes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.node_fixtures import app_caller, kor_label

from gsomia.core.access import Person
from gsomia.node import Node
from gsomia.taxii._stix import EXTENSION_ID, IDENTITY_ID, acs_marking_for, marking_for

TAXII = "application/taxii+json;version=2.1"
GSOMIA = "kor-jpn-gsomia-2016"
DEFINED = ("marking-definition", "identity", "extension-definition")
# orjson writes these otherwise than the standard encoder: the page must fall back for their object
ODD_NUMBERS = {"big": 1e20, "small": 1e-7, "huge_int": 2**70, "text": "북한 미사일 / 北朝鮮"}


@pytest.fixture
def held(jpn_node: Node) -> dict[str, bool]:
    """Twelve KOR items, each with its own creation instant (so its own markings), alternately at a
    level the under-cleared reader (sato, 秘) may read and one he may not; item id -> sato may read."""
    out = {}
    for n in range(12):
        readable = n % 2 == 0
        item_id = f"kor-{n}"
        payload: dict[str, Any] = {"n": n, **(ODD_NUMBERS if n in (2, 3) else {})}
        jpn_node.items.ingest(
            None,
            label=kor_label(
                classification="군사III급비밀" if readable else "군사II급비밀",
                created=f"2024-02-01T09:00:{n:02d}.{n:03d}+09:00",
            ),
            payload=json.dumps(payload).encode(),
            item_id=item_id,
            received_from="KOR",
            agreement=GSOMIA,
        )
        out[item_id] = readable
    return out


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in people}


def _url(call: Any, token: str, kind: str = "objects") -> str:
    found = call("GET", "/taxii2/api/collections/", token).json()["collections"]
    cid = next(c["id"] for c in found if c["title"] == "party:KOR")
    return f"/taxii2/api/collections/{cid}/{kind}/"


def _starlette(response: httpx.Response) -> bytes:
    """What Starlette's ``JSONResponse`` writes for the body's value."""
    value = json.loads(response.content)
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _hidden_definitions(node: Node, hidden: list[str]) -> set[str]:
    """The ids of the definitions only the items the reader may not read name (their own labels')."""
    out = set()
    for item_id in hidden:
        item = node.items.held(item_id)
        assert item is not None
        out.add(marking_for(item.label)["id"])
        acs = acs_marking_for(item.label, node.catalogue)
        if acs is not None:
            out.add(acs["id"])
    return out


def _walk(call: Any, url: str, token: str, limit: int) -> list[httpx.Response]:
    pages, params = [], {"limit": limit}
    while True:
        response = call("GET", url, token, params=params)
        assert response.status_code == 200, response.text
        pages.append(response)
        body = response.json()
        if not body["more"]:
            return pages
        params = {"limit": limit, "next": body["next"]}


def _refs(obj: dict[str, Any]) -> set[str]:
    refs = set(obj.get("object_marking_refs", []))
    refs |= {g["marking_ref"] for g in obj.get("granular_markings", [])}
    return refs | {obj[k] for k in ("created_by_ref",) if k in obj}


@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_an_item_the_reader_may_not_read_is_on_no_page_nor_any_definition_only_it_names(
    jpn_node: Node, held: dict[str, bool], tokens: dict[str, str], limit: int
) -> None:
    call = app_caller(jpn_node, Accept=TAXII)
    readable = [i for i, ok in held.items() if ok]
    hidden = [i for i, ok in held.items() if not ok]
    secret = _hidden_definitions(jpn_node, hidden)
    pages = _walk(call, _url(call, tokens["sato"]), tokens["sato"], limit)
    served = []
    for page in pages:
        assert page.content == _starlette(page)  # the bytes Starlette's encoder writes, odd numbers too
        objects = page.json()["objects"]
        ids = {o["id"] for o in objects}
        assert not ids & secret
        items = [o for o in objects if o["type"] not in DEFINED]
        served += [o["item_id"] for o in items]
        # every definition on a page is one an object on it names (or one a definition names)
        named = set().union(*(_refs(o) for o in objects)) | {IDENTITY_ID, EXTENSION_ID}
        assert {o["id"] for o in objects if o["type"] in DEFINED} <= named
        assert not any(f'"{h}"' in page.text for h in hidden)  # no hidden item's id, anywhere
    assert served == readable
    odd = next(o for p in pages for o in p.json()["objects"] if o.get("item_id") == "kor-2")
    assert odd["payload"] == {"n": 2, **ODD_NUMBERS}
    # the cleared reader gets every item, and (where a page has room for them) the hidden ones' definitions
    cleared = _walk(call, _url(call, tokens["tanaka"]), tokens["tanaka"], 1000)
    all_ids = {o["id"] for p in cleared for o in p.json()["objects"]}
    assert secret <= all_ids
    assert [o["item_id"] for p in cleared for o in p.json()["objects"] if o["type"] not in DEFINED] == list(
        held
    )


@pytest.mark.usefixtures("held")
def test_a_reader_who_may_read_nothing_gets_no_definition_either(
    jpn_node: Node, tokens: dict[str, str]
) -> None:
    call = app_caller(jpn_node, Accept=TAXII)
    for kind in ("objects", "manifest"):
        response = call("GET", _url(call, tokens["suzuki"], kind), tokens["suzuki"], params={"limit": 1000})
        assert response.status_code == 200
        assert response.json() == {"more": False, "objects": []}
        assert response.content == _starlette(response)


def _reads(node: Node, actor: str) -> list[str]:
    records = node.store.audit(after_seq=0, kind="item.read", limit=10_000)
    return [
        str(r.subject)
        for r in records
        if r.actor == actor and r.outcome == "allowed" and json.loads(r.detail).get("channel") == "taxii"
    ]


def test_a_forged_next_cursor_moves_the_scan_but_never_past_the_read_decision_or_its_record(
    jpn_node: Node, held: dict[str, bool], tokens: dict[str, str]
) -> None:
    call = app_caller(jpn_node, Accept=TAXII)
    url = _url(call, tokens["sato"])
    added = {}
    for item_id in held:
        item = jpn_node.items.held(item_id)
        assert item is not None
        assert item.added_us is not None
        added[item_id] = item.added_us
    hidden = [i for i, ok in held.items() if not ok]
    secret = _hidden_definitions(jpn_node, hidden)
    before = len(_reads(jpn_node, "sato"))
    served: list[str] = []
    # cursors a client never got: just before, at and after each hidden item, and far outside
    forged = [f"a{added[h] + d}" for h in hidden for d in (-1, 0, 1)] + ["a0", "a1", f"a{10**18}"]
    for cursor in forged:
        response = call("GET", url, tokens["sato"], params={"limit": 1000, "next": cursor})
        assert response.status_code == 200, response.text
        objects = response.json()["objects"]
        assert not {o["id"] for o in objects} & secret
        items = [o["item_id"] for o in objects if o["type"] not in DEFINED]
        after = int(cursor[1:])
        assert items == [i for i in held if held[i] and added[i] > after]  # the scan starts past it
        served += items
    # each object served was decided and recorded, one item.read record each; none of a hidden item
    reads = _reads(jpn_node, "sato")[before:]
    assert sorted(reads) == sorted(served)
    assert not set(reads) & set(hidden)
    # a cursor of another shape, or out of range, is refused (and the refusal audited), not read as 0
    for cursor in ("s3", f"a{10**19}", "a-1", "a 1", "a1a"):
        response = call("GET", url, tokens["sato"], params={"limit": 1000, "next": cursor})
        assert response.status_code == 422, cursor
        assert response.json()["error_code"] == "invalid-input"
    refused = jpn_node.store.audit(after_seq=0, kind="taxii.list", limit=1000)
    assert sum(r.outcome == "refused" and r.actor == "sato" for r in refused) == 5
