"""Feedback to the originator between real node processes (issue 20 §4): JPN's analyst, reading
KOR's item over JPN's API, sends KOR a sighting; it crosses in an envelope and KOR's officer reads
it on the item over KOR's API. A person without the item's clearance gets what an unknown item gets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tests.security._live import Processes, audit, post, tokens, until

from gsomia.demo.network import NetNode, build


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NetNode]]:
    members = {m.party: m for m in build(tmp_path_factory.mktemp("feedback") / "net")}
    with Processes(members["KOR"], members["JPN"], sender=True):
        yield members


def _get(member: NetNode, path: str, who: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tokens(member)[who]}"}
    return httpx.get(f"{member.endpoint}{path}", headers=headers, timeout=10)


def test_a_sighting_crosses_between_node_processes(network: dict[str, NetNode]) -> None:
    kor, jpn = network["KOR"], network["JPN"]
    label = {
        "originator": "KOR",
        "classification": "군사III급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    stored = post(kor, "/items", {"id": "launch-report", "label": label, "payload": {"apogee_km": 550}})
    assert stored.status_code == 201, stored.text
    assert post(kor, "/items/launch-report/release", {"recipient": "JPN"}).status_code == 202
    until(lambda: _get(jpn, "/items/launch-report", "analyst").status_code == 200, "JPN holds the report")

    # JPN's administrator handles no items; an unknown item and KOR's look alike to a wrong reader
    refused = post(jpn, "/items/launch-report/feedback", {"kind": "seen"}, who="admin")
    assert refused.status_code == 403
    bad = post(jpn, "/items/launch-report/feedback", {"kind": "question", "text": " "}, who="analyst")
    assert bad.status_code == 422
    assert "a question needs a text" in bad.json()["detail"]

    body = {"kind": "corroborated", "text": "our radar held the same track"}
    sent = post(jpn, "/items/launch-report/feedback", body, who="analyst")
    assert sent.status_code == 201, sent.text
    (seen,) = until(
        lambda: _get(kor, "/items/launch-report/feedback", "officer").json(), "KOR sees JPN's feedback"
    )
    assert (seen["id"], seen["holder"], seen["kind"], seen["text"]) == (
        sent.json()["id"],
        "JPN",
        "corroborated",
        "our radar held the same track",
    )
    assert _get(kor, "/items/nothing-here/feedback", "officer").status_code == 404
    assert [r["outcome"] for r in audit(jpn, "authz.feedback.send")] == ["refused"]
    outcomes = [r["outcome"] for r in audit(jpn, "feedback.send") if r["subject"] == "launch-report"]
    assert sorted(outcomes) == ["allowed", "refused"]
    assert [r["outcome"] for r in audit(kor, "duty.feedback")] == ["allowed"]
