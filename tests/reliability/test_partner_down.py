"""A partner down for a while, and a partition, while an agreement ends: real node processes on loopback.

Both nodes serve as processes (``gsomia node serve``; KOR delivers from its own sender loop).
Besides the shipped GSOMIA, KOR and JPN share a drill agreement (a data file in each node's
``data_dirs``, purpose ``fault-drill``). The items are released at KOR while the drill is in
force; then its end, a few seconds ahead, is written and the nodes start. Items under GSOMIA
wait for JPN and arrive; items under the drill still queued at its end never arrive, and KOR's
outbox says why, in its HTTP API (read as the release officer) and its CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.reliability.livenet import SUMMARIES
from tests.reliability.processes import Partition, count, serve, stop, wait_for

from gsomia.demo import network
from gsomia.node import Node, init_node_dir, load_config
from gsomia.node._config import set_endpoint
from gsomia.store import ItemFilter

DRILL = "kor-jpn-drill"
UNDELIVERABLE = ["--state", "undeliverable", "--json"]


def _drill_file(start: datetime, end: datetime | None) -> str:
    ended = (
        f"""
[[agreement.events]]
id = "ended"
kind = "terminated"
at = {end.strftime("%Y-%m-%dT%H:%M:%SZ")}
reference = "ended by both parties during the drill"
mutual_consent = true
"""
        if end is not None
        else ""
    )
    return f"""
[agreement]
id = "{DRILL}"
title = "KOR-JPN fault drill"
parties = ["KOR", "JPN"]
topology = "bilateral"
timezone = "UTC"
purposes = ["fault-drill"]

[agreement.scope]
all_military_information = true

[agreement.term]
initial = "P1Y"
renewal = "P1Y"
notice_days = 90

[[agreement.equivalence]]
levels = {{ JPN = "秘", KOR = "군사III급비밀" }}

[[agreement.events]]
id = "signed"
kind = "signed"
at = {start.strftime("%Y-%m-%dT%H:%M:%SZ")}
reference = "drill signed"

[[agreement.events]]
id = "in-force"
kind = "entered_into_force"
at = {start.strftime("%Y-%m-%dT%H:%M:%SZ")}
reference = "drill in force"
{ended}"""


START = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def _drill_net(root: Path) -> list[network.NetNode]:
    """KOR, JPN (and USA) sharing the drill agreement, in force and with no end yet."""
    for party in ("KOR", "JPN"):
        data = root / f"drill-{party.lower()}"
        data.mkdir(parents=True)
        (data / f"{DRILL}.toml").write_text(_drill_file(START, None), encoding="utf-8")
        config = init_node_dir(root / "net" / party.lower(), party)
        path = config.directory / "node.toml"
        text = path.read_text(encoding="utf-8").replace("data_dirs = []", f'data_dirs = ["{data}"]')
        path.write_text(text, encoding="utf-8")
    return network.build(root / "net")


def _drill_ends(root: Path, seconds: float, *, kor_knows_the_end: bool = True) -> datetime:
    """Record the drill's end ``seconds`` from now (read by the nodes when they start); KOR may not hear."""
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    for party, knows in (("kor", kor_knows_the_end), ("jpn", True)):
        path = root / f"drill-{party}" / f"{DRILL}.toml"
        path.write_text(_drill_file(START, end if knows else None), encoding="utf-8")
    return end


def _officer(member: network.NetNode) -> httpx.Client:
    tokens = json.loads((member.directory / "tokens.json").read_text(encoding="utf-8"))
    return httpx.Client(
        base_url=member.endpoint, headers={"Authorization": f"Bearer {tokens['officer']}"}, timeout=10
    )


def _queue(member: network.NetNode, items: dict[str, str]) -> None:
    """Ingest and release each item (id -> purpose) to JPN at KOR, before KOR's process starts.

    Done before the drill's end is written, so every release is decided while it is in force
    however long the processes then take to start.
    """
    kor = Node(load_config(member.directory))
    officer = kor.person("officer")
    try:
        for item_id, purpose in items.items():
            label = {
                "originator": "KOR",
                "classification": "군사III급비밀",
                "releasable_to": ["JPN"],
                "purpose": purpose,
                "topics": ["dprk-missile"],
                "created": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            }
            kor.ingest(officer, label=label, payload=b'{"track": 1}', item_id=item_id)
            kor.exchange.release(officer, item_id, "JPN", purpose=purpose)
    finally:
        kor.close()


def _outbox(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.get("/outbox", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {e["item_id"]: e for e in response.json() if e["kind"] == "item"}


def _sleep_until(instant: datetime) -> None:
    time.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))


def _received_at(directory: Path) -> dict[str, datetime]:
    jpn = Node(load_config(directory))
    try:
        return {
            row.id: datetime.fromtimestamp(r.at_us / 1e6, UTC)
            for row in jpn.store.list_items(ItemFilter(), 0, 100)
            for r in jpn.store.inventory(row.id)
            if r.kind == "received"
        }
    finally:
        jpn.close()


def _waiting(entry: dict[str, Any]) -> bool:
    """Tried and waiting for the partner, or (if KOR started after the end) already ruled out."""
    if entry["state"] == "undeliverable":
        return "terminated" in entry["last_error"]
    return entry["state"] == "pending" and entry["attempts"] > 0


def test_a_partner_down_gets_the_queue_when_back_unless_the_agreement_ended_meanwhile(tmp_path: Path) -> None:
    members = _drill_net(tmp_path)
    kor_m, jpn_m = members[0], members[1]
    # three under GSOMIA, which stays in force; three under the drill, which ends while JPN is down
    _queue(
        kor_m, {f"g{n}": "threat-assessment" for n in range(3)} | {f"d{n}": "fault-drill" for n in range(3)}
    )
    end = _drill_ends(tmp_path, 3)
    kor = serve(kor_m, sender=True)
    jpn = None
    try:
        with _officer(kor_m) as api:
            wait_for(lambda: all(_waiting(e) for e in _outbox(api).values()), 120, "a first attempt each")
            waiting = _outbox(api)
            for n in range(3):
                assert waiting[f"g{n}"]["state"] == "pending"
                assert "ConnectError" in waiting[f"g{n}"]["last_error"]  # JPN is down: why it waits
            _sleep_until(end + timedelta(seconds=1))
            jpn = serve(jpn_m)
            wait_for(
                lambda: all(e["state"] != "pending" for e in _outbox(api).values()), 40, "the queue settling"
            )
            settled = _outbox(api)
        cli = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "gsomia", "outbox", "list", "--dir", str(kor_m.directory), *UNDELIVERABLE],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
    finally:
        stop(kor)
        if jpn is not None:
            stop(jpn)

    assert {i: e["state"] for i, e in settled.items()} == {
        **{f"g{n}": "delivered" for n in range(3)},
        **{f"d{n}": "undeliverable" for n in range(3)},
    }
    for n in range(3):
        reason = settled[f"d{n}"]["last_error"]
        assert "agreement_in_force" in reason
        assert "terminated" in reason  # decided again at the instant of sending
    listed = {e["item_id"]: e["last_error"] for e in json.loads(cli.stdout)}
    assert listed == {f"d{n}": settled[f"d{n}"]["last_error"] for n in range(3)}
    held = _received_at(jpn_m.directory)
    assert set(held) == {"g0", "g1", "g2"}
    undeliverable = count(
        kor_m.directory, "SELECT count(*) FROM audit_records WHERE kind = 'envelope.undeliverable'"
    )
    assert undeliverable == 3
    SUMMARIES.append(
        (
            "partner down: JPN down while the drill agreement ended",
            [
                f"  queued while JPN was down: 6 items, pending: '{waiting['g0']['last_error'][:50]}'",
                "  after JPN came back: g0-g2 (GSOMIA) delivered; d0-d2 (drill) undeliverable:",
                f"    {settled['d0']['last_error'][:110]}",
                "  the reason: in GET /outbox, in `gsomia outbox list`, audited (envelope.undeliverable)",
            ],
        )
    )


@pytest.mark.parametrize(
    "kor_knows_the_end",
    [pytest.param(True, id="sender-knows", marks=pytest.mark.slow), pytest.param(False, id="sender-stale")],
)
def test_nothing_crosses_a_partition_after_the_agreement_ended_during_it(
    tmp_path: Path, kor_knows_the_end: bool
) -> None:
    members = _drill_net(tmp_path)
    kor_m, jpn_m = members[0], members[1]
    link = Partition(jpn_m.port)  # KOR reaches JPN only through it
    set_endpoint(jpn_m.directory, link.endpoint)
    kor_node, jpn_node = Node(load_config(kor_m.directory)), Node(load_config(jpn_m.directory))
    kor_node.exchange.register_peer(None, jpn_node.exchange.identity(), ["kor-jpn-gsomia-2016", DRILL])
    kor_node.close()
    jpn_node.close()
    _queue(kor_m, {"g0": "threat-assessment"} | {f"d{n}": "fault-drill" for n in range(3)})
    link.cut()  # both nodes up, the network between them down
    end = _drill_ends(tmp_path, 3, kor_knows_the_end=kor_knows_the_end)
    jpn = serve(jpn_m)
    kor = serve(kor_m, sender=True)
    try:
        with _officer(kor_m) as api:
            wait_for(
                lambda: all(_waiting(e) for e in _outbox(api).values()), 20, "an attempt through the cut"
            )
            assert _outbox(api)["g0"]["state"] == "pending"
            _sleep_until(end + timedelta(seconds=1))
            link.heal()
            wait_for(
                lambda: all(e["state"] != "pending" for e in _outbox(api).values()), 40, "the queue settling"
            )
            settled = _outbox(api)
    finally:
        stop(kor)
        stop(jpn)
        link.close()

    assert settled["g0"]["state"] == "delivered"  # the link works again: GSOMIA's item crossed it
    held = _received_at(jpn_m.directory)
    assert set(held) == {"g0"}  # nothing under the ended drill crossed after its end
    reasons = [settled[f"d{n}"]["last_error"] for n in range(3)]
    assert {settled[f"d{n}"]["state"] for n in range(3)} == {"undeliverable"}
    if kor_knows_the_end:
        assert all(r.startswith("agreement_in_force") and "terminated" in r for r in reasons)
    else:  # KOR still thought it in force and sent; JPN decided on its own side and refused
        assert all(r.startswith("JPN refused: agreement_in_force") and "terminated" in r for r in reasons)
        refused = count(
            jpn_m.directory,
            "SELECT count(*) FROM audit_records"
            " WHERE kind = 'envelope.refused' AND detail LIKE '%terminated%'",
        )
        assert refused == 3
    side = "KOR re-decided at sending" if kor_knows_the_end else "KOR (stale) sent; JPN refused"
    SUMMARIES.append(
        (
            f"partition: the drill agreement ended during it ({side})",
            [
                "  queued during the partition: 1 under GSOMIA, 3 under the drill; after healing, GSOMIA's"
                " crossed, the drill's did not:",
                f"    {reasons[0][:110]}",
            ],
        )
    )
