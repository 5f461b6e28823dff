"""The read routes' answers are their response models' JSON, field for field (issue 18: ``GET /items``
and ``GET /items/{id}`` write their presenter's dict straight out, without FastAPI validating it
against the model first). Each answer is a fixed point of its model: it validates, and the model
writes back exactly it (no field missing, none extra, no value changed); for a plain item, a binary
one, an item in portions read whole and in part, a partner's item, and a page of all of them. And
nothing a reader may not read gets into them on the way (the portions a reader may not see)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.node_fixtures import app_caller, jpn_label, kor_label

from gsomia.api import _models as m
from gsomia.core.access import Person
from gsomia.node import Node


@pytest.fixture
def tokens(jpn_node: Node, people: dict[str, Person]) -> dict[str, str]:
    jpn_node.items.ingest(
        None, label=jpn_label(), payload=b'{"n": 1, "x": [1.5, "\\u79d8", null]}', item_id="plain"
    )
    jpn_node.items.ingest(
        None, label=jpn_label(), payload=b"\x00\xffbytes", payload_type="bytes", item_id="bin"
    )
    jpn_node.items.ingest(
        None,
        label=kor_label(),
        payload=b'{"track": 1}',
        item_id="theirs",
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
    )
    return {pid: jpn_node.credentials.issue(None, pid)[1] for pid in people}


def _fixed_point(model: type[Any], body: dict[str, Any]) -> None:
    assert set(body) == set(model.model_fields)
    assert model.model_validate(body).model_dump(mode="json") == body


def test_a_read_is_its_models_json(jpn_node: Node, tokens: dict[str, str]) -> None:
    call = app_caller(jpn_node)
    created = call(
        "POST",
        "/items",
        tokens["tanaka"],
        json={
            "id": "rep",
            "portions": [
                {"id": "body", "label": jpn_label(classification="極秘"), "payload": {"a": 1}},
                {"id": "tearline", "label": jpn_label(classification="秘"), "payload": {"b": 2}},
            ],
        },
    )
    assert created.status_code == 201, created.text
    for who, ref in (
        ("tanaka", "plain"),
        ("tanaka", "bin"),
        ("tanaka", "theirs"),
        ("tanaka", "rep"),
        ("sato", "rep"),
    ):
        answer = call("GET", f"/items/{ref}", tokens[who])
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["cache-control"] == "no-store"
        _fixed_point(m.ItemContentOut, answer.json())
    assert call("GET", "/items/plain", tokens["tanaka"]).json()["payload"] == {"n": 1, "x": [1.5, "秘", None]}
    assert call("GET", "/items/bin", tokens["tanaka"]).json()["payload_base64"] == "AP9ieXRlcw=="
    part = call("GET", "/items/rep", tokens["sato"]).json()  # cleared 秘: the tearline only
    assert [p["id"] for p in part["portions"]] == ["tearline"]
    assert "body" not in str(part["payload"])
    assert part["payload"]["portions"][0]["payload"] == {"b": 2}

    page = call("GET", "/items?limit=2", tokens["tanaka"])
    assert page.status_code == 200, page.text
    _fixed_point(m.PageOut, page.json())
    assert page.json()["next_cursor"] is not None
    rest = call("GET", f"/items?cursor={page.json()['next_cursor']}", tokens["tanaka"]).json()
    _fixed_point(m.PageOut, rest)
    assert [i["id"] for i in page.json()["items"] + rest["items"]] == ["plain", "bin", "theirs", "rep"]
    assert rest["next_cursor"] is None
    seen = call("GET", "/items", tokens["sato"]).json()  # 秘: only the item in portions, its tearline
    assert [(i["id"], [p["id"] for p in i["portions"]]) for i in seen["items"]] == [("rep", ["tearline"])]


def test_a_reads_payload_is_written_as_json_writes_it(jpn_node: Node, tokens: dict[str, str]) -> None:
    """A payload's float that orjson writes in another form (``9.999999999999999e-05``, ``1e+16``):
    the read's bytes are the standard encoder's, as the model's would be (only the payload is looked
    at for it: the views around it hold no float)."""
    jpn_node.items.ingest(
        None, label=jpn_label(), payload=b'{"small": 9.999999999999999e-05, "big": 1e16}', item_id="odd"
    )
    call = app_caller(jpn_node)
    read = call("GET", "/items/odd", tokens["tanaka"])
    assert read.status_code == 200, read.text
    assert b'{"small":9.999999999999999e-05,"big":1e+16}' in read.content
    _fixed_point(m.ItemContentOut, read.json())
