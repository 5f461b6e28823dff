"""``gsomia duty``: the duties from the node's host; bad input exits 2 with one line on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.node_fixtures import kor_label
from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.node import Node, load_config

runner = CliRunner()


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code == 0:
        return json.loads(result.stdout)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def test_duties_from_the_command_line(tmp_path: Path) -> None:
    d = str(tmp_path / "jpn")
    run("node", "init", "--party", "JPN", "--dir", d)
    for pid, role in (("tanaka", "analyst"), ("officer", "security_officer")):
        run(
            "person",
            "add",
            "--dir",
            d,
            "--id",
            pid,
            "--name",
            pid,
            "--nationality",
            "JPN",
            "--clearance",
            "極秘",
            "--topic",
            "dprk-missile",
            "--role",
            role,
        )
    # a KOR item as the exchange would have stored it at JPN (a person cannot ingest a partner's item)
    node = Node(load_config(Path(d)))
    try:
        node.items.ingest(
            None,
            label=kor_label(),
            payload=b'{"a": 1}',
            item_id="k1",
            received_from="KOR",
            agreement="kor-jpn-gsomia-2016",
        )
    finally:
        node.close()
    assert run("duty", "derive", "--dir", d, "--as", "tanaka", "k1", "--id", "k1-copy")["id"] == "k1-copy"
    err = run(
        "duty", "reclassify", "--dir", d, "--as", "officer", "k1", "--level", "秘", "--reason", "x", code=2
    )
    assert "only the originator KOR" in err
    err = run("duty", "request-destruction", "--dir", d, "--as", "officer", "k1", "--holder", "USA", code=2)
    assert "only the originator KOR" in err
    err = run(
        "duty",
        "destroy",
        "--dir",
        d,
        "--as",
        "tanaka",
        "k1",
        "--method",
        "bin",
        "--witness",
        "officer",
        "--reason",
        "done",
        code=2,
    )
    assert "method must be one of" in err
    record = run(
        "duty",
        "destroy",
        "--dir",
        d,
        "--as",
        "tanaka",
        "k1",
        "--method",
        "shredding",
        "--witness",
        "officer",
        "--reason",
        "done",
    )
    assert record["witness"] == "officer"
    incident = run(
        "duty",
        "report-incident",
        "--dir",
        d,
        "--as",
        "officer",
        "k1-copy",
        "--nature",
        "possible-compromise",
        "--text",
        "seen on a screen in a corridor",
    )
    assert incident["unsent"].startswith("the originator KOR could not be told: no registered link")
    advanced = run(
        "duty",
        "advance-incident",
        "--dir",
        d,
        "--as",
        "officer",
        incident["id"],
        "--state",
        "findings",
        "--text",
        "a visitor saw it",
    )
    assert advanced["state"] == "findings"
    visit = run(
        "duty",
        "visit",
        "--dir",
        d,
        "tanaka",
        "--highest",
        "hi",
        "--starts",
        "2024-03-01T00:00+09:00",
        "--ends",
        "2024-03-02T00:00+09:00",
        "--purpose",
        "liaison",
    )
    assert visit["highest"] == "秘"
    run("duty", "authority-add", "--dir", d, "KOR", "mnd", "--name", "Ministry of National Defense")
    rules = run(
        "duty", "rules-record", "--dir", d, "KOR", "--title", "rules", "--effective", "2024-04-01T00:00+09:00"
    )
    assert rules["flagged"] == ["k1-copy"]  # the destroyed item is no longer held
    registers = run("duty", "registers", "--dir", d)
    assert [a["id"] for a in registers["authorities"]] == ["mnd"]
    report = run("duty", "termination-report", "--dir", d, "--as", "officer")
    kor = next(p for p in report["partners"] if p["party"] == "KOR")
    assert [(i["item"], i["status"]) for i in kor["held_here"]] == [("k1", "destroyed"), ("k1-copy", "held")]
    status = run("duty", "label-status", "--dir", d, "--as", "officer", "k1-copy")
    assert status["changes"] == []
