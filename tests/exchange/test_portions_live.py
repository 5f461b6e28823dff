"""Portions between real node processes (issue 20 §1, §2): a KOR report whose body is 군사II급비밀 for
the USA only and whose tearline is 군사III급비밀 for JPN and the USA, served by ``gsomia node serve``
processes that talk over HTTP. Two officers release the body to the USA (the approval names the
portions it releases); KOR reclassifies the tearline and both holders follow; the USA destroys the
body alone and KOR gets the signed record; JPN, not the originator, cannot change a portion. KOR
recalls the body of a second report: the USA drops it and keeps the tearline; JPN cannot recall."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.security._live import Processes, audit, post, tokens, until

from gsomia.demo.network import NetNode, build
from gsomia.node import Node


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NetNode]]:
    members = {m.party: m for m in build(tmp_path_factory.mktemp("portions") / "net")}
    kor = Node.open(members["KOR"].directory)
    try:
        kor.people.add_person(
            None,
            {
                "id": "officer2",
                "name": "second release officer",
                "nationality": "KOR",
                "clearance": "군사I급비밀",
                "need_to_know": ["dprk-missile"],
                "roles": ["release_officer"],
            },
        )
        saved = tokens(members["KOR"])
        saved["officer2"] = kor.credentials.issue(None, "officer2", days=1)[1]
        (members["KOR"].directory / "tokens.json").write_text(json.dumps(saved), encoding="utf-8")
        kor.exchange.set_two_person(
            kor.people.person("admin"),
            above={"KOR": "군사III급비밀"},
            hub_relay=False,
            relay_authorisations=False,
            validity=timedelta(hours=1),
        )
    finally:
        kor.close()
    usa = Node.open(members["USA"].directory)
    try:
        usa.people.add_person(
            None,
            {
                "id": "witness",
                "name": "witness",
                "nationality": "USA",
                "clearance": "TOP SECRET",
                "need_to_know": ["dprk-missile"],
                "roles": ["security_officer"],
            },
        )
    finally:
        usa.close()
    with Processes(members["KOR"], members["JPN"], members["USA"], sender=True):
        yield members


def _get(member: NetNode, path: str, who: str = "officer") -> httpx.Response:
    headers = {"Authorization": f"Bearer {tokens(member)[who]}"}
    return httpx.get(f"{member.endpoint}{path}", headers=headers, timeout=10)


def _marks(member: NetNode) -> list[tuple[str, str]]:
    answer = _get(member, "/items/r1")
    if answer.status_code != 200:
        return []
    return [(p["id"], p["label"]["classification"]) for p in answer.json()["portions"]]


def _label(classification: str, releasable_to: list[str]) -> dict[str, Any]:
    return {
        "originator": "KOR",
        "classification": classification,
        "releasable_to": releasable_to,
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }


def test_approval_reclassification_and_destruction_of_portions_cross_node_processes(
    network: dict[str, NetNode],
) -> None:
    kor, jpn, usa = network["KOR"], network["JPN"], network["USA"]
    report = {
        "id": "r1",
        "portions": [
            {"id": "body", "label": _label("군사II급비밀", ["USA"]), "payload": {"source": "USA only"}},
            {
                "id": "tearline",
                "label": _label("군사III급비밀", ["JPN", "USA"]),
                "payload": {"launch": "05:12"},
            },
        ],
    }
    assert post(kor, "/items", report).status_code == 201

    # two-person release of the portions: the request names them, the approval binds them
    asked = post(kor, "/items/r1/release-requests", {"recipient": "USA"})
    assert asked.status_code == 201, asked.text
    assert asked.json()["portions"] == ["body", "tearline"]
    approved = post(kor, f"/release-requests/{asked.json()['id']}/approve", {}, who="officer2")
    assert approved.status_code == 202, approved.text
    assert post(kor, "/items/r1/release", {"recipient": "JPN"}).status_code == 202  # the tearline alone
    until(
        lambda: _marks(usa) == [("body", "군사II급비밀"), ("tearline", "군사III급비밀")], "the USA holds both"
    )
    until(lambda: _marks(jpn) == [("tearline", "군사III급비밀")], "JPN holds the tearline")

    # JPN is not the originator: it changes no portion of KOR's report
    refused = post(
        jpn, "/items/r1/reclassify", {"classification": "군사II급비밀", "reason": "x", "portion": "tearline"}
    )
    assert refused.status_code in (403, 422), refused.text

    # KOR raises the tearline: both holders of it follow
    change = {"classification": "군사II급비밀", "reason": "the site is sensitive", "portion": "tearline"}
    assert post(kor, "/items/r1/reclassify", change).status_code == 202
    until(lambda: _marks(jpn) == [("tearline", "군사II급비밀")], "JPN applies the tearline's change")
    until(
        lambda: _marks(usa) == [("body", "군사II급비밀"), ("tearline", "군사II급비밀")], "the USA applies it"
    )
    status = until(
        lambda: (
            (s := _get(kor, "/items/r1/label-status").json())["changes"][0]["applied"] == ["JPN", "USA"] and s
        ),
        "KOR sees both acknowledgements",
    )
    assert status["changes"][0]["portion"] == "tearline"

    # the USA destroys the body alone; the tearline stays, and KOR gets the signed record
    destroy = {
        "method": "crypto-erase",
        "witness": "witness",
        "reason": "the body's purpose ended",
        "notify_originator": True,
        "portion": "body",
    }
    assert post(usa, "/items/r1/destroy", destroy).status_code == 201
    assert _marks(usa) == [("tearline", "군사II급비밀")]
    records = until(
        lambda: [r for r in _get(kor, "/destructions?item=r1").json() if r["portion"] == "body"],
        "KOR holds the USA's record of the body's destruction",
    )
    assert (records[0]["holder"], records[0]["method"]) == ("USA", "crypto-erase")


def _marks_of(member: NetNode, item: str) -> list[tuple[str, str]]:
    answer = _get(member, f"/items/{item}")
    if answer.status_code != 200:
        return []
    return [(p["id"], p["label"]["classification"]) for p in answer.json()["portions"]]


def test_a_portion_recall_crosses_node_processes(network: dict[str, NetNode]) -> None:
    """KOR recalls the body of a second report: the USA, holding both portions, drops the body and
    keeps the tearline, audited at both ends; only the USA was addressed (JPN holds the tearline
    alone and keeps it); JPN, not the originator, cannot recall a portion of KOR's report (refused
    and audited at JPN)."""
    kor, jpn, usa = network["KOR"], network["JPN"], network["USA"]
    report = {
        "id": "r2",
        "portions": [
            {"id": "body", "label": _label("군사II급비밀", ["USA"]), "payload": {"source": "USA only"}},
            {
                "id": "tearline",
                "label": _label("군사III급비밀", ["JPN", "USA"]),
                "payload": {"launch": "06:40"},
            },
        ],
    }
    assert post(kor, "/items", report).status_code == 201
    asked = post(kor, "/items/r2/release-requests", {"recipient": "USA"})
    assert asked.status_code == 201, asked.text
    assert post(kor, f"/release-requests/{asked.json()['id']}/approve", {}, who="officer2").status_code == 202
    assert post(kor, "/items/r2/release", {"recipient": "JPN"}).status_code == 202
    until(
        lambda: _marks_of(usa, "r2") == [("body", "군사II급비밀"), ("tearline", "군사III급비밀")],
        "USA holds r2",
    )
    until(lambda: _marks_of(jpn, "r2") == [("tearline", "군사III급비밀")], "JPN holds r2's tearline")

    refused = post(jpn, "/items/r2/recall", {"reason": "ours now", "portion": "tearline"})
    assert refused.status_code == 422, refused.text
    assert "only the originator" in refused.json()["detail"]
    assert [(r["subject"], r["outcome"]) for r in audit(jpn, "item.recall-portion")] == [("r2", "refused")]

    recalled = post(kor, "/items/r2/recall", {"reason": "the source is burned", "portion": "body"})
    assert recalled.status_code == 202, recalled.text
    (sent,) = [r for r in audit(kor, "item.recall-portion") if r["subject"] == "r2"]
    assert (sent["detail"]["portion"], sent["detail"]["holders"]) == ("body", ["USA"])
    until(lambda: _marks_of(usa, "r2") == [("tearline", "군사III급비밀")], "the USA drops the body")
    read = _get(usa, "/items/r2").json()
    assert read["label"]["classification"] == "군사III급비밀"  # the banner of what is left
    assert [p["id"] for p in read["payload"]["portions"]] == ["tearline"]
    applied = [r for r in audit(usa, "duty.label-change") if r["subject"] == "r2"]
    assert [r["detail"]["result"] for r in applied] == ["applied"]
    until(
        lambda: (
            next(c for c in _get(kor, "/items/r2/label-status").json()["changes"] if c["version"] == 2)[
                "applied"
            ]
            == ["USA"]
        ),
        "KOR sees the USA's acknowledgement",
    )
    assert _marks_of(jpn, "r2") == [("tearline", "군사III급비밀")]
    assert _marks_of(kor, "r2") == [("body", "군사II급비밀"), ("tearline", "군사III급비밀")]
