"""Caller text holding a NUL or a lone surrogate (which PostgreSQL's text type and UTF-8 cannot
hold) on the way into the audit records: refused with a 4xx on SQLite and PostgreSQL alike, the
refusal audited with the text escaped so it still shows what was sent, the chain still verifying.
Before, PostgreSQL raised inside the app (a 500) recording ``GET /healthz%00``'s refusal."""

from __future__ import annotations

import json

import pytest
from tests.node_fixtures import app_caller

from gsomia._codec import canonical, storable
from gsomia.node import Node

pytest_plugins = ["tests.node_fixtures"]

REQUESTS = [
    ("GET", "/healthz%00", {}),
    ("GET", "/items/a%00b", {}),
    ("GET", "/items/a%ED%A0%80b", {}),
    ("GET", "/items?cursor=%00", {}),
    ("GET", "/agreements", {"headers": {"Authorization": "Bearer to\x01ken"}}),
    ("GET", "/taxii2/%00/", {}),
    ("GET", "/ui/%00", {}),
    ("GET", "/stream/%00", {}),
    ("POST", "/items", {"content": '{"label": {"x": "a\\u0000b"}, "payload": "\\ud800"}'}),
    ("POST", "/federation/%00", {"content": '{"a": "\\ud800\\u0000"}'}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), REQUESTS)
def test_unstorable_text_is_refused_and_audited(
    jpn_node: Node, method: str, path: str, kwargs: dict[str, object]
) -> None:
    do = app_caller(jpn_node)
    before = len(jpn_node.store.audit())
    response = do(method, path, **kwargs)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    rows = jpn_node.store.audit()[before:]
    assert any(row.outcome == "refused" for row in rows), rows
    for row in rows:
        assert "\x00" not in (row.subject or "") + row.detail
        json.loads(row.detail)
    assert jpn_node.audit.verify().ok


def test_the_healthz_refusal_shows_what_was_sent(jpn_node: Node) -> None:
    """The record of ``GET /healthz%00`` names the path with the NUL escaped, not dropped (refused
    as text no store holds before any route is matched: 422, tests/security/test_unstorable_input.py)."""
    assert app_caller(jpn_node)("GET", "/healthz%00").status_code == 422
    subjects = [row.subject for row in jpn_node.store.audit() if row.outcome == "refused"]
    assert any(subject and "healthz\\u0000" in subject for subject in subjects), subjects


def test_storable_escapes_only_what_no_store_holds() -> None:
    assert storable("plain 極秘") == "plain 極秘"
    assert storable("a\x00b\ud800c\U0001f600") == "a\\u0000b\\ud800c\U0001f600"
    assert json.loads(storable(canonical({"x": "\ud800\x00"}))) == {"x": "\ud800\x00"}
