"""The tamper-evident audit log: integration, signed heads, proofs, verification, partners' forks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from tests.audit._proofs import check_proof
from tests.node_fixtures import kor_label
from typer.testing import CliRunner

from gsomia.audit._log import head_content
from gsomia.cli import app
from gsomia.core.merkle import leaf_hash, verify_consistency
from gsomia.crypto.envelope import sign_origin
from gsomia.demo import network
from gsomia.exchange import MemoryTransport, PeerTransport
from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.testing import FakeClock, make_node


@pytest.fixture
def node(tmp_path: Path, store_url: str) -> Iterator[Node]:
    n = make_node(tmp_path / "kor", "KOR", database_url=store_url)
    yield n
    n.close()


def record(node: Node, count: int) -> None:
    node.store.append_audit(
        [AuditRow(n, "test.event", "tester", f"s{n}", "allowed", json.dumps({"n": n})) for n in range(count)]
    )


def test_integration_signed_heads_and_proofs(node: Node) -> None:
    record(node, 37)
    head = node.audit.sign_head()
    assert head.size == 37
    assert node.audit.sign_head() == head  # nothing new: the same head
    for row in node.store.audit(limit=1000)[::5]:
        proof = node.audit.inclusion(row.entry_id)
        check_proof(proof, head.root)
    record(node, 20)
    bigger = node.audit.sign_head()
    assert bigger.size == 57
    proof = [bytes.fromhex(h) for h in node.audit.consistency(37, 57)]
    verify_consistency(37, 57, head.root, bigger.root, proof)
    report = node.audit.verify()
    assert report.ok
    assert (report.entries, report.heads_checked) == (57, 2)


def test_changing_one_byte_of_one_entry_is_caught_and_named(node: Node) -> None:
    record(node, 30)
    node.audit.sign_head()
    victim = node.store.audit(limit=1000)[17]
    with node.store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE audit_records SET detail = :d WHERE seq = :s"),
            {"d": victim.detail.replace("17", "71"), "s": victim.seq},
        )
    report = node.audit.verify()
    assert not report.ok
    assert report.entry_id == victim.entry_id
    assert victim.entry_id in (report.problem or "")
    assert report.entries == 17  # every entry before it still verifies


def test_rewriting_an_entry_and_its_leaf_hash_breaks_the_signed_head(node: Node) -> None:
    record(node, 12)
    node.audit.sign_head()
    victim = node.store.audit(limit=100)[3]
    forged = AuditRow(
        victim.at_us,
        victim.kind,
        "mallory",
        victim.subject,
        victim.outcome,
        victim.detail,
        victim.seq,
        victim.entry_id,
    )
    from gsomia.audit import leaf_data

    with node.store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE audit_records SET actor = 'mallory', leaf = :l WHERE seq = :s"),
            {"l": leaf_hash(leaf_data(forged)), "s": victim.seq},
        )
    report = node.audit.verify()
    assert not report.ok
    assert "no longer produce the root signed at size 12" in (report.problem or "")


def test_every_refusal_and_read_is_in_the_log(node: Node) -> None:
    node.people.add_person(
        None,
        {
            "id": "a",
            "name": "A",
            "nationality": "KOR",
            "clearance": "군사III급비밀",
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst"],
        },
    )
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal; the point is that it is logged
        node.items.read(node.people.person("a"), "ghost")
    node.audit.sign_head()
    kinds = [r.kind for r in node.store.audit(limit=100)]
    assert "person.add" in kinds
    assert "item.read" in kinds
    assert all(r.leaf_index is not None for r in node.store.audit(limit=100))


def test_cli_verify_and_prove(tmp_path: Path) -> None:
    n = make_node(tmp_path / "jpn", "JPN")
    record(n, 9)
    n.close()
    runner = CliRunner()
    ok = runner.invoke(app, ["audit", "verify", "--dir", str(tmp_path / "jpn"), "--json"])
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    # a reader never integrates: the records wait for the writer (a serving node, or `audit integrate`)
    assert json.loads(ok.stdout)["entries"] == 0
    assert json.loads(ok.stdout)["pending"] > 0
    entry = json.loads(runner.invoke(app, ["audit", "log", "--dir", str(tmp_path / "jpn"), "--json"]).stdout)[
        4
    ]
    early = runner.invoke(
        app, ["audit", "prove", "--dir", str(tmp_path / "jpn"), entry["entry_id"], "--wait", "0"]
    )
    assert early.exit_code == 2
    assert "not yet under a signed tree head" in early.stderr
    started = time.monotonic()
    unknown = runner.invoke(
        app, ["audit", "prove", "--dir", str(tmp_path / "jpn"), "no-such-entry", "--wait", "600"]
    )
    assert unknown.exit_code == 2
    assert time.monotonic() - started < 300  # an entry the log does not hold is not waited for
    assert runner.invoke(app, ["audit", "head", "--dir", str(tmp_path / "jpn")]).exit_code == 2  # none yet
    done = runner.invoke(app, ["audit", "integrate", "--dir", str(tmp_path / "jpn"), "--json"])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["integrated"] == json.loads(ok.stdout)["pending"]
    proved = runner.invoke(
        app, ["audit", "prove", "--dir", str(tmp_path / "jpn"), entry["entry_id"], "--json"]
    )
    assert json.loads(proved.stdout)["leaf_index"] == 4
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'jpn' / 'gsomia.db'}")
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE audit_records SET outcome = 'refused' WHERE entry_id = :e"),
            {"e": entry["entry_id"]},
        )
    engine.dispose()
    bad = runner.invoke(app, ["audit", "verify", "--dir", str(tmp_path / "jpn")])
    assert bad.exit_code == 1
    assert entry["entry_id"] in bad.stdout


# --- partners over the exchange ---


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[dict[str, Node], PeerTransport, FakeClock]]:
    """Three nodes in one process, partners to each other over the in-memory transport."""
    clock = FakeClock(datetime(2024, 3, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    nodes = network.open_nodes(members, clock)
    yield nodes, MemoryTransport(nodes), clock
    for n in nodes.values():
        n.close()


def _round(nodes: dict[str, Node], client: PeerTransport) -> None:
    for n in nodes.values():
        n.heads.share_head()
    for _ in range(2):
        for n in nodes.values():
            n.exchange.deliver_due(client)
    for n in nodes.values():
        n.audit.check_partners(client)


def test_partners_exchange_heads_and_stay_consistent(
    net: tuple[dict[str, Node], PeerTransport, FakeClock],
) -> None:
    nodes, client, clock = net
    _round(nodes, client)
    record(nodes["KOR"], 25)
    clock.advance(seconds=10)
    _round(nodes, client)
    partners = {p["party"]: p for p in nodes["JPN"].audit.partners()}
    assert partners["KOR"]["status"] == "consistent"
    assert partners["KOR"]["heads"] >= 2
    assert partners["KOR"]["size"] == nodes["KOR"].audit.latest_head().size  # type: ignore[union-attr]


def test_a_forked_head_is_detected(net: tuple[dict[str, Node], PeerTransport, FakeClock]) -> None:
    nodes, client, clock = net
    _round(nodes, client)
    kor = nodes["KOR"]
    record(kor, 10)
    real = kor.audit.sign_head()
    # KOR signs a head for a log it does not hold (a rewritten history of the same length)
    forged = sign_origin(kor.ring, head_content("KOR", real.size, b"\x42" * 32, clock.now), clock.now)
    status = nodes["JPN"].audit.receive_head("KOR", forged, nodes["JPN"].exchange._identities)
    assert status == "pending"
    results = nodes["JPN"].audit.check_partners(client)
    assert [r["status"] for r in results] == ["inconsistent"]
    assert [p["status"] for p in nodes["JPN"].audit.partners() if p["party"] == "KOR"] == ["forked"]
    alerts = nodes["JPN"].store.audit(kind="audit.fork")
    assert alerts
    assert alerts[-1].outcome == "alert"
    # the genuine head of the same size is now a second root for that size: also reported
    assert (
        nodes["JPN"].audit.receive_head("KOR", real.jws, nodes["JPN"].exchange._identities) == "inconsistent"
    )
    # both pairs are kept as evidence: the forged head against the last consistent one (the proof
    # failed), and against the genuine head of its size (two roots)
    forks = nodes["JPN"].audit.forks(None, "KOR")
    assert len(forks) == 2
    assert all(f["verified"] for f in forks)
    assert {h["jws"] for h in forks[1]["heads"]} == {forged, real.jws}


def test_a_receipt_names_the_log_entry_and_the_sender_can_prove_delivery(
    net: tuple[dict[str, Node], PeerTransport, FakeClock],
) -> None:
    nodes, client, _clock = net
    kor = nodes["KOR"]
    officer = kor.people.person("officer")
    kor.items.ingest(
        officer,
        payload=b"{}",
        item_id="p1",
        label=kor_label(),
    )
    entry = kor.exchange.release(officer, "p1", "JPN")
    kor.exchange.deliver_due(client)
    nodes["JPN"].audit.sign_head()  # JPN's writer (its background loop) brings the entry under a head
    proof = kor.heads.delivery_proof(entry.msg_id, client)
    assert proof["receiver"] == "JPN"
    assert proof["entry"]["kind"] == "envelope.received"
    assert json.loads(proof["entry"]["detail"])["msg_id"] == entry.msg_id


def test_an_altered_stored_subtree_is_caught_before_it_serves_a_bad_proof(node: Node) -> None:
    record(node, 8)
    node.audit.sign_head()
    assert node.audit.verify().ok
    with node.store.engine.begin() as conn:
        conn.execute(
            sqlalchemy.text("UPDATE merkle_nodes SET hash = :h WHERE level = 1 AND idx = 0"),
            {"h": b"\x00" * 32},
        )
    report = node.audit.verify()
    assert not report.ok
    assert "stored subtree (1, 0)" in (report.problem or "")


def test_a_node_serving_without_its_sender_still_grows_and_signs_its_log(node: Node) -> None:
    """``node serve --no-sender``: no delivery, but the log's writer runs (readers never integrate)."""
    import asyncio

    import httpx

    from gsomia.api import create_app

    async def head_while_serving(app: Any, want: int, seconds: float = 20) -> dict[str, Any]:
        async with (
            app.router.lifespan_context(app),  # what the server runs: the background loop
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client,
        ):
            deadline = time.monotonic() + seconds
            while (got := await client.get("/audit/head")).status_code != 200 or got.json()["size"] < want:
                assert time.monotonic() < deadline, got.text
                await asyncio.sleep(0.05)
            return dict(got.json())

    record(node, 5)
    served = asyncio.run(head_while_serving(create_app(node, log_writer=True, sender_interval=0.05), 5))
    assert node.audit.size() >= 5
    before = node.audit.pending()  # (the loop's own last records, e.g. its leases let go, may wait)
    record(node, 3)  # an app without the writer (as tests build it) only reads
    with pytest.raises(AssertionError):
        asyncio.run(head_while_serving(create_app(node, sender_interval=0.05), served["size"] + 3, 1.5))
    assert node.audit.pending() == before + 3


def test_each_item_of_a_batch_receipt_proves_its_own_delivery(
    net: tuple[dict[str, Node], PeerTransport, FakeClock],
) -> None:
    """One receipt for the batch names each item's log entry: each delivery is proved on its own."""
    nodes, client, _clock = net
    kor = nodes["KOR"]
    officer = kor.people.person("officer")
    for item_id in ("q1", "q2"):
        kor.items.ingest(
            officer,
            payload=b"{}",
            item_id=item_id,
            label=kor_label(),
        )
    released = kor.exchange.release_many(officer, ["q1", "q2"], "JPN")
    kor.exchange.deliver_due(client)
    entries = [kor.exchange.outbox_entry(e.msg_id) for e in released.entries]
    assert len({e.receipt for e in entries if e is not None}) == 1  # the batch's one receipt
    nodes["JPN"].audit.sign_head()
    proved = [kor.heads.delivery_proof(e.msg_id, client)["entry"] for e in released.entries]
    assert [json.loads(p["detail"])["msg_id"] for p in proved] == [e.msg_id for e in released.entries]
    assert [p["kind"] for p in proved] == ["envelope.received"] * 2
