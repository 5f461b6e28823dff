"""Issue 14 §8: an insider cannot make an item of their own pass as a partner's.

The attacker is a cleared JPN analyst with a valid token. They write an item, label it as
KOR's (originator KOR, ``received_from: KOR``, the GSOMIA agreement) and enter it through every
door a person has: ``POST /items``, a TAXII POST to the agreement's collection, the command line.
A partner's item is that partner's only under its signature over label and payload, and that
arrives through the exchange; so every door refuses, audits the attempt, and nothing is served
as KOR's anywhere (not in ``GET /items?originator=KOR``, not in TAXII's ``party:KOR``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.node_fixtures import app_caller, kor_label
from tests.taxii.test_stix import indicator
from typer.testing import CliRunner

from gsomia.cli import app as cli
from gsomia.core.access import Person
from gsomia.node import Node
from gsomia.taxii._stix import extension_objects, marking_for

GSOMIA = "kor-jpn-gsomia-2016"
TAXII = "application/taxii+json;version=2.1"
Call = Callable[..., httpx.Response]


@pytest.fixture
def call(jpn_node: Node) -> Call:
    return app_caller(jpn_node)


@pytest.fixture
def token(jpn_node: Node, people: dict[str, Person]) -> str:
    return jpn_node.credentials.issue(None, people["tanaka"].id)[1]  # cleared 極秘, dprk-missile


def _nothing_served_as_kors(call: Call, token: str, jpn_node: Node) -> None:
    assert jpn_node.store.count_items() == 0
    listed = call("GET", "/items", token, params={"originator": "KOR"}).json()
    assert listed["items"] == []
    collections = call("GET", "/taxii2/api/collections/", token).json()["collections"]
    kor = next(c["id"] for c in collections if c["title"] == "party:KOR")
    assert call("GET", f"/taxii2/api/collections/{kor}/objects/", token).json().get("objects", []) == []


def test_an_analyst_posting_an_item_as_kors_is_refused(call: Call, token: str, jpn_node: Node) -> None:
    body = {
        "id": "fabricated",
        "label": kor_label(),
        "payload": {"launch": "invented"},
        "received_from": "KOR",
        "agreement": GSOMIA,
    }
    refused = call("POST", "/items", token, json=body)
    assert refused.status_code == 422, refused.text
    assert "only with KOR's signature" in refused.json()["detail"]
    assert any(
        (r.kind, r.outcome, r.subject, r.actor) == ("item.ingest", "refused", "fabricated", "tanaka")
        for r in jpn_node.store.audit()
    )
    _nothing_served_as_kors(call, token, jpn_node)


def test_an_analyst_posting_a_kor_labelled_stix_object_is_refused(
    call: Call, token: str, jpn_node: Node
) -> None:
    collections = call("GET", "/taxii2/api/collections/", token).json()["collections"]
    cid = next(c["id"] for c in collections if c["title"] == f"agreement:{GSOMIA}")
    label = jpn_node.catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=jpn_node.clock(),
    )
    forged = indicator(object_marking_refs=[marking_for(label)["id"]])
    posted = call(
        "POST",
        f"/taxii2/api/collections/{cid}/objects/",
        token,
        json={"objects": [*extension_objects(), marking_for(label), forged]},
        headers={"Content-Type": TAXII},
    )
    assert posted.status_code == 202, posted.text
    assert (posted.json()["success_count"], posted.json()["failure_count"]) == (0, 1)
    assert "only with KOR's signature" in posted.json()["failures"][0]["message"]
    _nothing_served_as_kors(call, token, jpn_node)


def test_an_analyst_entering_a_kor_item_from_the_command_line_is_refused(
    call: Call, token: str, jpn_node: Node, tmp_path: Path, store_url: str
) -> None:
    if not store_url.startswith("sqlite"):
        pytest.skip("each command opens the node's store for its own process; once is enough")
    label, payload = tmp_path / "label.json", tmp_path / "payload.json"
    label.write_text(json.dumps(kor_label()), encoding="utf-8")
    payload.write_text('{"launch": "invented"}', encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["item", "ingest", "--dir", str(tmp_path / "jpn"), "--as", "tanaka", "--label", str(label),
         "--payload", str(payload), "--received-from", "KOR", "--agreement", GSOMIA],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "only with KOR's signature" in result.stderr
    _nothing_served_as_kors(call, token, jpn_node)
