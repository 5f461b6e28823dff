"""``gsomia release``: two-person release from the node's host; bad input exits 2 with one line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.demo import network
from gsomia.node import Node, load_config

runner = CliRunner()


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code == 0:
        return json.loads(result.stdout)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_request_approve_from_the_command_line(tmp_path: Path) -> None:
    members = network.build(tmp_path / "net")
    kor = str(next(m.directory for m in members if m.party == "KOR"))
    node = Node(load_config(Path(kor)))
    try:
        node.people.add_person(
            None,
            {
                "id": "officer2",
                "name": "second officer",
                "clearance": "군사I급비밀",
                "need_to_know": ["dprk-missile"],
                "roles": ["release_officer"],
                "nationality": "KOR",
            },
        )
        created = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
        label = {
            "originator": "KOR",
            "classification": "군사II급비밀",
            "releasable_to": ["JPN"],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": created,
        }
        node.items.ingest(node.people.person("officer"), label=label, payload=b"{}", item_id="c1")
    finally:
        node.close()
    assert "PARTY=LEVEL" in run(
        "release", "set-policy", "--dir", kor, "--as", "admin", "--above", "KOR", code=2
    )
    assert "role" in run("release", "set-policy", "--dir", kor, "--as", "officer", "--above", "KOR=3", code=2)
    policy = run("release", "set-policy", "--dir", kor, "--as", "admin", "--above", "KOR=군사III급비밀")
    assert policy["above"] == {"KOR": "군사III급비밀"}
    assert run("release", "policy", "--dir", kor, "--as", "officer")["validity_seconds"] == 86400
    assert "two_person" in run(
        "item", "release", "--dir", kor, "--as", "officer", "c1", "--to", "JPN", code=2
    )
    request = run("release", "request", "--dir", kor, "--as", "officer", "c1", "--to", "JPN")
    assert request["state"] == "requested"
    assert [r["id"] for r in run("release", "queue", "--dir", kor, "--as", "officer2")] == [request["id"]]
    assert "--state" in run("release", "queue", "--dir", kor, "--as", "officer2", "--state", "odd", code=2)
    assert "second release officer" in run(
        "release", "approve", "--dir", kor, "--as", "officer", request["id"], code=2
    )
    assert "not both" in run("release", "approve", "--dir", kor, "--as", "officer2", code=2)
    assert "no open release request" in run(
        "release", "approve", "--dir", kor, "--as", "officer2", "--item", "zz", code=2
    )
    approved = run("release", "approve", "--dir", kor, "--as", "officer2", "--item", "c1")
    assert approved["request"]["state"] == "approved"
    outbox = run("outbox", "list", "--dir", kor)
    assert [e["msg_id"] for e in outbox] == [approved["msg_id"]]
    assert "approved already" in run(
        "release", "refuse", "--dir", kor, "--as", "officer2", request["id"], "--reason", "no", code=2
    )
