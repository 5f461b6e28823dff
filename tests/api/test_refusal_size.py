"""Attack: a refusal decided at the edge (a malformed body, an unknown route) must not let the
caller choose how much the node writes or answers. A body's field name and a request's path are the
caller's text: a 100 kB field name sent to ``/inbox`` (no credentials needed) or to
``PUT /peers/envelopes/{party}`` (an administrator's), or a 20 kB path nobody serves, is refused as
before (422, 404), naming the problem, but what the answer echoes and what the audit record keeps of
that text is cut to a bounded length: the tally bounds how many records a source makes, this bounds
each one's size."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from tests.node_fixtures import add, app_caller, problem_detail

from gsomia.node import Node

Call = Callable[..., httpx.Response]
HUGE = "k" * 100_000
# far above what a person needs to read, far below what the caller sent
BOUND = 4_096


@pytest.fixture
def call(jpn_node: Node) -> Call:
    return app_caller(jpn_node)


def _refusals(jpn: Node) -> list[tuple[str | None, str | None, str]]:
    return [
        (r.actor, r.subject, r.detail)
        for r in jpn.store.audit(kind="api.refused", limit=1000)
        if r.outcome == "refused"
    ]


def _bounded(jpn: Node, response: httpx.Response) -> None:
    assert len(response.content) < BOUND, len(response.content)
    (refusal,) = _refusals(jpn)
    _, subject, detail = refusal
    assert len(subject or "") < BOUND, len(subject or "")
    assert len(detail) < BOUND, len(detail)


def test_an_anonymous_inbox_body_with_a_huge_field_name_is_refused_in_bounded_space(
    call: Call, jpn_node: Node
) -> None:
    response = call("POST", "/inbox", json={"envelopes": ["x"], HUGE: 1})
    detail = problem_detail(response, 422)
    assert "body.kkkk" in detail, detail[:200]  # still names the field
    assert "not permitted" in detail, detail[:200]
    _bounded(jpn_node, response)


def test_an_administrators_huge_field_name_is_refused_in_bounded_space(call: Call, jpn_node: Node) -> None:
    add(jpn_node, "ito", "JPN", None, [], ["administrator"])
    token = jpn_node.credentials.issue(None, "ito")[1]
    response = call("PUT", "/peers/envelopes/all", token, json={"lowest": 2, HUGE: 1})
    assert "not permitted" in problem_detail(response, 422)
    _bounded(jpn_node, response)
    (refusal,) = _refusals(jpn_node)
    assert refusal[0] == "ito"  # the caller is named: a record of its own, still bounded
    assert json.loads(refusal[2])["status"] == 422
    assert jpn_node.exchange.envelope_versions() == {}  # nothing set


def test_a_huge_path_nobody_serves_is_refused_in_bounded_space(call: Call, jpn_node: Node) -> None:
    response = call("GET", "/" + "p" * 20_000)
    assert "nothing is served at /ppp" in problem_detail(response, 404)
    _bounded(jpn_node, response)
