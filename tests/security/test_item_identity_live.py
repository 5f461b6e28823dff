"""Attack: an item id taken first, and records about copies never received (issue 22 §4, §6), between
node processes.

The adversary is JPN's node operator (JPN's genuine keys, nothing of anyone else's): it learns the id
of an item KOR is about to send the USA and sends the USA its own item under that id first; it signs
records about "copies" of a KOR item it never received. KOR, JPN and the USA run as node processes
that deliver their outboxes; JPN's forged records are posted to KOR's inbox as JPN's node would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.security._live import Processes, audit, identity, post, ring, tokens, until
from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.core.destruction import DestructionMethod, DestructionRecord
from gsomia.core.investigation import IncidentNature, open_investigation
from gsomia.crypto.envelope import seal, sign_origin
from gsomia.demo.network import NetNode, build
from gsomia.duties._messages import destruction_content, incident_content


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NetNode]]:
    members = {m.party: m for m in build(tmp_path_factory.mktemp("identity") / "net")}
    with Processes(members["KOR"], members["JPN"], members["USA"], sender=True):
        yield members


def _get(member: NetNode, path: str, who: str = "officer", **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tokens(member)[who]}"}
    return httpx.get(f"{member.endpoint}{path}", headers=headers, params=params, timeout=10)


def _ingest(member: NetNode, item_id: str, classification: str, payload: dict[str, Any]) -> None:
    label = {
        "originator": member.party,
        "classification": classification,
        "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != member.party],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
    }
    stored = post(member, "/items", {"id": item_id, "label": label, "payload": payload})
    assert stored.status_code == 201, stored.text


def _release(member: NetNode, item_id: str, to: str) -> str:
    queued = post(member, f"/items/{item_id}/release", {"recipient": to})
    assert queued.status_code == 202, queued.text
    return str(queued.json()["msg_id"])


def _entry(member: NetNode, msg_id: str) -> dict[str, Any] | None:
    return next((e for e in _get(member, "/outbox", limit=1000).json() if e["msg_id"] == msg_id), None)


def _settled(member: NetNode, msg_id: str) -> dict[str, Any] | None:
    entry = _entry(member, msg_id)
    return entry if entry is not None and entry["state"] in ("delivered", "undeliverable") else None


def _item(member: NetNode, ref: str, **params: Any) -> dict[str, Any]:
    read = _get(member, f"/items/{ref}", **params)
    assert read.status_code == 200, read.text
    return dict(read.json())


def test_an_item_under_an_id_another_party_took_first_still_reaches_the_holder(
    network: dict[str, NetNode],
) -> None:
    """The squatter (issue 22 §4): JPN sends the USA its own item under the id KOR is about to use.
    An item is (originator, id): KOR's item is delivered all the same and reads as KOR's; the bare id
    is ambiguous at the USA (409 through the API, exit 2 through the CLI, asking whose); and each
    duty about each item goes to that item: KOR's reclassification, JPN's recall, the USA's feedback,
    consent request and destruction record."""
    kor, jpn, usa = network["KOR"], network["JPN"], network["USA"]
    _ingest(jpn, "report-001", "秘", {"from": "JPN"})
    first_id = _release(jpn, "report-001", "USA")
    first = until(lambda: _settled(jpn, first_id), "JPN's item reaches the USA", 60)
    assert first["state"] == "delivered"
    _ingest(kor, "report-001", "군사II급비밀", {"from": "KOR"})
    msg_id = _release(kor, "report-001", "USA")
    entry = until(lambda: _settled(kor, msg_id), "KOR's release is settled", 60)
    assert entry["state"] == "delivered", entry["last_error"]
    assert [r for r in audit(usa, "envelope.refused") if "report-001" in str(r)] == []

    # the bare id names two items at the USA: asked whose, never one picked
    ambiguous = _get(usa, "/items/report-001")
    assert ambiguous.status_code == 409
    assert "originator=" in ambiguous.text
    assert "JPN and KOR" in ambiguous.text
    kors = _item(usa, "report-001", originator="KOR")
    assert (kors["label"]["originator"], kors["payload"]) == ("KOR", {"from": "KOR"})
    assert (kors["id"], kors["origin_id"]) == ("KOR:report-001", "report-001")
    assert _item(usa, "KOR:report-001")["payload"] == {"from": "KOR"}
    assert _item(usa, "report-001", originator="JPN")["payload"] == {"from": "JPN"}
    assert _get(usa, "/items/report-001/inventory").status_code == 409
    assert _get(usa, "/items/report-001", originator="CHN").status_code in (404, 422)
    runner = CliRunner()
    show = ["item", "show", "--dir", str(usa.directory), "--as", "officer", "report-001", "--json"]
    refused = runner.invoke(app, show)
    assert refused.exit_code == 2
    assert "--originator" in refused.stderr
    shown = runner.invoke(app, [*show, "--originator", "KOR"])
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["payload"] == {"from": "KOR"}

    # KOR reclassifies its item: the USA's copy of KOR's item applies it, JPN's item there does not
    changed = post(kor, "/items/report-001/reclassify", {"classification": "군사III급비밀", "reason": "down"})
    assert changed.status_code == 202, changed.text
    status = until(
        lambda: _get(kor, "/items/report-001/label-status").json()["changes"][0]["applied"],
        "the USA applies KOR's change",
        60,
    )
    assert status == ["USA"]
    assert _item(usa, "KOR:report-001")["label"]["classification"] == "군사III급비밀"
    assert _item(usa, "JPN:report-001")["label"]["classification"] == "秘"

    # the USA's feedback, consent request and destruction record about KOR's item reach KOR for it
    told = post(usa, "/items/KOR:report-001/feedback", {"kind": "used-in-assessment", "text": "fused"})
    assert told.status_code == 201, told.text
    asked = post(
        usa,
        "/items/report-001/consent-requests?originator=KOR",
        {"third_party": "JPN", "purpose": "threat-assessment", "reason": "cell"},
    )
    assert asked.status_code == 202, asked.text
    feedback = until(lambda: _get(kor, "/items/report-001/feedback").json(), "KOR gets the feedback", 60)
    assert [(f["holder"], f["item"]) for f in feedback] == [("USA", "report-001")]
    requests = until(lambda: _get(kor, "/consent-requests").json(), "KOR gets the request", 60)
    assert [(r["item_id"], r["holder"]) for r in requests] == [("report-001", "USA")]
    assert _get(jpn, "/items/report-001/feedback").json() == []

    # JPN recalls its item: withdrawn at the USA; KOR's still reads there
    assert post(jpn, "/items/report-001/recall", {"reason": "withdrawn"}).status_code == 202
    until(
        lambda: _get(jpn, "/items/report-001/label-status").json()["changes"][0]["applied"],
        "the USA applies JPN's recall",
        60,
    )
    assert _get(usa, "/items/JPN:report-001").status_code == 410
    assert _item(usa, "KOR:report-001")["payload"] == {"from": "KOR"}

    gone = post(
        usa,
        "/items/KOR:report-001/destroy",
        {"method": "shredding", "witness": "analyst", "reason": "done", "notify_originator": True},
    )
    assert gone.status_code == 201, gone.text
    records = until(lambda: _get(kor, "/destructions").json(), "KOR gets the destruction record", 60)
    assert [(d["item"], d["holder"]) for d in records] == [("report-001", "USA")]
    assert _get(jpn, "/destructions").json() == []


def _forged(jpn: NetNode, kor: NetNode, content: bytes) -> dict[str, Any]:
    """JPN's node signs ``content`` and posts it to KOR's inbox, as its outbox would."""
    own, now = ring(jpn), datetime.now(UTC)
    body = {"kind": "duty", "to": "KOR", "duty": sign_origin(own, content, now)}
    envelope = seal(own, identity(kor), body, msg_id=uuid.uuid4().hex, at=now, ttl=timedelta(hours=1))
    answer = httpx.post(f"{kor.endpoint}/inbox", json={"envelopes": [envelope]}, timeout=30)
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    return dict(result)


def test_records_about_a_copy_of_an_item_never_received_are_refused(network: dict[str, NetNode]) -> None:
    """KOR gave JPN k1 and the USA k2. JPN's genuine incident about its copy of k1 is recorded at KOR
    and names k1; JPN's records about a "copy" of k2, or naming no source, are refused."""
    kor, jpn = network["KOR"], network["JPN"]
    _ingest(kor, "k1", "군사III급비밀", {"n": 1})
    _ingest(kor, "k2", "군사III급비밀", {"n": 2})
    for item_id, to in (("k1", "JPN"), ("k2", "USA")):
        msg_id = _release(kor, item_id, to)
        assert until(lambda m=msg_id: _settled(kor, m), f"{item_id} reaches {to}", 60)["state"] == "delivered"
    copy = post(jpn, "/items/k1/derive", {"kind": "copy", "id": "k1-copy"})
    assert copy.status_code == 201, copy.text
    reported = post(jpn, "/items/k1-copy/incidents", {"nature": "loss", "text": "the copy was mislaid"})
    assert reported.status_code == 201, reported.text
    (seen,) = until(lambda: _get(kor, "/incidents").json(), "KOR sees JPN's incident about its copy", 60)
    assert (seen["item"], seen["holder"], seen["sources"]) == ("k1-copy", "JPN", ["k1"])

    now = datetime.now(UTC)
    record = DestructionRecord(
        "k2-copy", "JPN", "KOR", "군사III급비밀", "officer", "analyst", DestructionMethod.SHREDDING,
        "made up", now,
    )  # fmt: skip
    incident = open_investigation(
        uuid.uuid4().hex, "k2-copy", "KOR", "JPN", IncidentNature.COMPROMISE, at=now, by="officer",
        text="leaked",
    )  # fmt: skip
    for content in (destruction_content(record, ["k2"]), incident_content(incident, ["k2"])):
        answer = _forged(jpn, kor, content)
        assert (answer["status"], answer["reason"]) == ("refused", "item k2 was never sent to JPN")
    answer = _forged(jpn, kor, destruction_content(record))
    assert answer["status"] == "refused"
    assert "names none of KOR's items it was made from" in answer["reason"]
    assert [d for d in _get(kor, "/destructions").json() if d["holder"] == "JPN"] == []  # none of JPN's
    assert [i["item"] for i in _get(kor, "/incidents").json() if i["holder"] == "JPN"] == ["k1-copy"]
