"""``gsomia net up/status/down`` and the federation commands, with real node processes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
from tests.identity_docs import claims
from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.demo.network import trust

runner = CliRunner()


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return json.loads(result.stdout) if code == 0 else result.stderr


def test_net_up_status_down_and_an_item_crosses(tmp_path: Path) -> None:
    d = tmp_path / "net"
    running = run("net", "up", "--dir", str(d))
    try:
        assert [n["party"] for n in running] == ["KOR", "JPN", "USA"]
        status = run("net", "status", "--dir", str(d))
        assert all(n["alive"] and n["healthy"] for n in status)
        assert "already running" in run("net", "up", "--dir", str(d), code=2)
        peers = run("peer", "list", "--dir", str(d / "kor"))
        assert [p["party"] for p in peers] == ["JPN", "USA"]
        assert "kor-jpn-gsomia-2016" in peers[0]["agreements"]
        label, payload = tmp_path / "label.json", tmp_path / "payload.json"
        label.write_text(
            json.dumps(
                {
                    "originator": "KOR",
                    "classification": "군사II급비밀",
                    "releasable_to": ["JPN"],
                    "purpose": "threat-assessment",
                    "topics": ["dprk-missile"],
                    "created": "2024-01-01T00:00:00+09:00",
                }
            ),
            encoding="utf-8",
        )
        payload.write_text('{"apogee_km": 950}', encoding="utf-8")
        run(
            "item",
            "ingest",
            "--dir",
            str(d / "kor"),
            "--as",
            "officer",
            "--label",
            str(label),
            "--payload",
            str(payload),
            "--id",
            "cli-1",
        )
        queued = run("item", "release", "--dir", str(d / "kor"), "--as", "officer", "cli-1", "--to", "JPN")
        assert queued["decision"]["allowed"] is True
        # the KOR node's own sender process delivers it; the JPN node's API shows it arrived
        token = json.loads((d / "jpn" / "tokens.json").read_text())["officer"]
        jpn = next(n for n in status if n["party"] == "JPN")["endpoint"]
        assert jpn.startswith("https://")  # TLS by default: the nodes call each other over mutual TLS
        verify = trust(d)  # the network's local authority
        for _ in range(100):
            got = httpx.get(
                f"{jpn}/items/cli-1", headers={"Authorization": f"Bearer {token}"}, timeout=5, verify=verify
            )
            if got.status_code == 200:
                break
            time.sleep(0.1)
        assert got.status_code == 200, got.text
        assert got.json()["payload"] == {"apogee_km": 950}
        assert got.json()["label"]["alternatives"][0]["classification"] == "極秘"
        delivered = run("outbox", "list", "--dir", str(d / "kor"))
        items = [(e["item_id"], e["state"], bool(e["receipt"])) for e in delivered if e["kind"] == "item"]
        assert items == [("cli-1", "delivered", True)]
        msg_id = next(e["msg_id"] for e in delivered if e["kind"] == "item")
        proved = run("outbox", "prove", "--dir", str(d / "kor"), msg_id)
        assert proved["receiver"] == "JPN"
        assert proved["entry"]["kind"] == "envelope.received"
        heads = [e for e in delivered if e["kind"] == "tree-head"]
        assert heads  # the node shares its signed tree head with its partners
        states = {e["state"] for e in heads}  # a head signed a moment ago may still be on its way
        assert "delivered" in states
        assert states <= {"delivered", "pending"}
    finally:
        stopped = run("net", "down", "--dir", str(d))
    assert not any(n["alive"] for n in stopped)
    assert "no network" in run("net", "status", "--dir", str(d), code=2)


def test_identity_and_peer_add(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    run("node", "init", "--party", "KOR", "--dir", str(a), "--endpoint", "http://127.0.0.1:9001")
    run("node", "init", "--party", "JPN", "--dir", str(b), "--endpoint", "http://127.0.0.1:9002")
    identity = runner.invoke(app, ["node", "identity", "--dir", str(b)])
    assert identity.exit_code == 0, identity.stderr
    doc = claims(json.loads(identity.stdout))
    assert doc["endpoint"] == "http://127.0.0.1:9002"
    path = tmp_path / "jpn.json"
    path.write_text(identity.stdout, encoding="utf-8")
    added = run("peer", "add", "--dir", str(a), "--identity", str(path), "--agreement", "kor-jpn-gsomia-2016")
    assert added["party"] == "JPN"
    err = run(
        "peer", "add", "--dir", str(a), "--identity", str(path), "--agreement", "usa-jpn-gsomia-2007", code=2
    )
    assert "not an agreement between KOR and JPN" in err
