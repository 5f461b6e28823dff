"""A JSON body whose object names a key twice is refused before any route reads it.

Starlette's ``Request.json`` (and so every FastAPI route) keeps the last of two values given under
one key, while a signer, an auditor or a proxy may read the first: a release or an ingest that names
``classification`` twice would be decided on a label its sender's tools never showed. The stream's
routes refused such a body already; the API took it. ``TextGate`` now refuses it for every route
(422 naming the problem, audited as the edge's refusals are: a record for an authenticated caller,
the bounded tally per source for an unauthenticated one), on both stores.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from tests.api._through_app import Call, caller, chief_token, jpn_per_store
from tests.api.test_bad_input import INTERNALS, last_refusal, refused
from tests.node_fixtures import jpn_label

from gsomia.api import create_app
from gsomia.node import Node
from gsomia.store import ItemFilter

NEEDLE = "names a key twice"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def jpn_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_status: str | None
) -> Iterator[Node]:
    yield from jpn_per_store(request, tmp_path_factory, postgres_status)


@pytest.fixture(scope="module")
def token(jpn_node: Node) -> str:
    return chief_token(jpn_node)


@pytest.fixture(scope="module")
def call(jpn_node: Node) -> Call:
    return caller(jpn_node)


def _twice(label: dict[str, Any], second: str, spelt: str = "classification") -> str:
    """An ingest body whose label gives ``classification`` a second time (as ``spelt``), last."""
    text = json.dumps({"label": label, "payload": {"track": 1}}, ensure_ascii=False)
    return text.replace('"releasable_to"', f'"{spelt}": "{second}", "releasable_to"', 1)


def _held(node: Node) -> int:
    return len(node.store.list_items(ItemFilter(), None, 1000))


def _refusals(node: Node) -> int:
    return sum(1 for r in node.store.audit(limit=100_000) if r.outcome == "refused" and NEEDLE in r.detail)


@pytest.mark.parametrize(
    "spelt",
    [
        "classification",  # as the first
        "classific\\u0061tion",  # spelt otherwise: the same key once read
    ],
)
def test_an_ingest_naming_the_classification_twice_is_refused_and_audited(
    call: Call, token: str, jpn_node: Node, spelt: str
) -> None:
    """Two ``classification`` keys in an ingest's label: before, stored at the last one's level (201)."""
    body = _twice(jpn_label(classification="秘"), "極秘", spelt)
    held, audited = _held(jpn_node), _refusals(jpn_node)
    problem = refused(
        call("POST", "/items", token, content=body.encode(), headers={"content-type": "application/json"}),
        422,
        NEEDLE,
    )
    assert "'classification'" in problem["detail"]  # names the key, as JSON reads it
    assert problem["errors"] == [{"field": "body", "problem": problem["detail"].partition(": ")[2]}]
    assert _held(jpn_node) == held  # nothing stored
    assert _refusals(jpn_node) == audited + 1
    assert last_refusal(jpn_node)["kind"] == "api.refused"
    # the same body with the key once is taken: the refusal is the key given twice, nothing else
    once = json.dumps({"label": jpn_label(classification="秘"), "payload": {"track": 1}}, ensure_ascii=False)
    taken = call("POST", "/items", token, content=once.encode(), headers={"content-type": "application/json"})
    assert taken.status_code == 201, taken.text


def test_a_release_naming_a_key_twice_is_refused_and_audited(call: Call, token: str, jpn_node: Node) -> None:
    """A release whose body names ``to`` twice (a decoy partner first): refused before any decision."""
    body = b'{"to": "USA", "agreement": "kor-jpn-gsomia-2016", "to": "KOR"}'
    audited = _refusals(jpn_node)
    response = call(
        "POST", "/items/any-item/release", token, content=body, headers={"content-type": "application/json"}
    )
    refused(response, 422, NEEDLE)
    assert _refusals(jpn_node) == audited + 1


def _json_routes(node: Node) -> list[tuple[str, str]]:
    """Every route of the app whose request body is JSON, by its OpenAPI document (the method, the
    path with each parameter filled in)."""
    found = []
    for path, operations in create_app(node).openapi()["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if any(kind == "application/json" or kind.endswith("+json") for kind in content):
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return found


def test_every_route_taking_a_json_body_refuses_a_key_given_twice(
    call: Call, token: str, jpn_node: Node
) -> None:
    """Each route of the OpenAPI document that takes a JSON body (the API, TAXII, the stream), a key
    given twice nested in an array: 422 naming it, no internals, each refusal audited once."""
    routes = _json_routes(jpn_node)
    assert len(routes) > 30  # the whole API, not a few routes
    assert ("POST", "/items") in routes
    assert ("POST", "/items/x/release") in routes
    body = b'{"items": [{"id": "a", "id": "b"}], "label": {}}'
    for method, path in routes:
        audited = _refusals(jpn_node)
        headers = {"content-type": "application/json", "accept": "application/taxii+json;version=2.1"}
        response = call(method, path, token, content=body, headers=headers)
        assert response.status_code == 422, f"{method} {path}: {response.status_code} {response.text[:200]}"
        assert NEEDLE in response.text, f"{method} {path}: {response.text[:200]}"
        for word in INTERNALS:
            assert word.lower() not in response.text.lower(), f"{method} {path}: {word!r} leaked"
        assert _refusals(jpn_node) == audited + 1, f"{method} {path}: not audited once"


def test_an_unauthenticated_caller_naming_a_key_twice_is_refused_in_the_tally(
    call: Call, jpn_node: Node
) -> None:
    """Nobody authenticated: the same 422, the refusal audited in the source's bounded tally."""
    body = b'{"label": {"classification": "\xe7\xa7\x98", "classification": "x"}, "payload": 1}'
    response = call("POST", "/items", None, content=body, headers={"content-type": "application/json"})
    refused(response, 422, NEEDLE)
    refusal = last_refusal(jpn_node)
    assert refusal["kind"] == "api.refused"
    assert NEEDLE in refusal["detail"]


@pytest.mark.parametrize(
    "body",
    [
        '{"a": "{\\"a\\": 1, \\"a\\": 2}", "b": 1}',  # a key twice inside a string is no key
        '{"a": {"b": 1}, "b": {"a": 1}}',  # the same name in two objects
        '[{"a": 1}, {"a": 2}]',
    ],
)
def test_a_body_naming_each_key_once_is_not_refused_for_it(call: Call, token: str, body: str) -> None:
    response = call(
        "POST", "/items", token, content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422  # not an item; refused by the route's model, for that
    assert NEEDLE not in response.text


def test_json_in_utf16_naming_a_key_twice_is_refused(call: Call, token: str) -> None:
    """``json.loads`` reads UTF-16 too (Starlette's route would take it): the count of quote bytes
    does not stand for the strings there, so the keys are read one by one."""
    text = '{"label": {"classification": "秘", "classification": "極秘"}, "payload": 1}'
    response = call(
        "POST", "/items", token, content=text.encode("utf-16"), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert NEEDLE in response.text
