"""Operating a node from the command line: init, people, tokens, items, and serving the API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import jpn_label, kor_label
from tests.reliability.processes import serve
from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.demo import network
from gsomia.store import Store

runner = CliRunner()


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, (result.stdout, result.stderr)
    if code == 0:
        return json.loads(result.stdout)
    assert result.stderr.count("\n") == 1, result.stderr  # one line a person can act on
    return result.stderr


def make(tmp_path: Path) -> Path:
    d = tmp_path / "node"
    init = run("node", "init", "--party", "JPN", "--dir", str(d))
    assert init["party"] == "JPN"
    assert init["revision"] == Store.head()
    assert (d / "node.key").stat().st_mode & 0o077 == 0  # the key is private to its owner
    run(
        "person",
        "add",
        "--dir",
        str(d),
        "--id",
        "tanaka",
        "--name",
        "Tanaka",
        "--nationality",
        "JPN",
        "--clearance",
        "gokuhi",
        "--topic",
        "dprk-missile",
        "--role",
        "analyst",
    )
    return d


def test_init_ingest_list_show(tmp_path: Path) -> None:
    d = make(tmp_path)
    label, payload = tmp_path / "label.json", tmp_path / "payload.json"
    label.write_text(json.dumps(kor_label()), encoding="utf-8")
    payload.write_text('{"launch": "Sinpo"}', encoding="utf-8")
    received = ["--received-from", "KOR", "--agreement", "kor-jpn-gsomia-2016"]
    ingest = [
        "item",
        "ingest",
        "--dir",
        str(d),
        "--as",
        "tanaka",
        "--label",
        str(label),
        "--payload",
        str(payload),
    ]
    # a KOR item is KOR's only under KOR's signature: it arrives through the exchange
    assert "only with KOR's signature" in run(*ingest, "--id", "k0", *received, code=2)
    label.write_text(json.dumps(jpn_label()), encoding="utf-8")
    stored = run(
        "item",
        "ingest",
        "--dir",
        str(d),
        "--as",
        "tanaka",
        "--label",
        str(label),
        "--payload",
        str(payload),
        "--id",
        "k1",
    )
    assert stored["label"]["classification"] == "極秘"
    listed = run("item", "list", "--dir", str(d), "--as", "tanaka")
    assert [i["id"] for i in listed["items"]] == ["k1"]
    shown = run("item", "show", "--dir", str(d), "--as", "tanaka", "k1")
    assert shown["payload"] == {"launch": "Sinpo"}
    assert run("node", "migrate", "--dir", str(d))["revision"] == Store.head()


def test_cli_errors_are_one_line_on_stderr(tmp_path: Path) -> None:
    d = make(tmp_path)
    assert "exists already" in run("node", "init", "--party", "JPN", "--dir", str(d), code=2)
    assert "no node here" in run("item", "list", "--dir", str(tmp_path / "empty"), "--as", "x", code=2)
    label = tmp_path / "label.json"
    label.write_text(json.dumps(jpn_label(classification="cho-gokuhi")), encoding="utf-8")
    err = run(
        "item",
        "ingest",
        "--dir",
        str(d),
        "--as",
        "tanaka",
        "--label",
        str(label),
        "--payload",
        str(label),
        code=2,
    )
    assert "JPN has no classification" in err
    assert "not JSON" in run(
        "item",
        "ingest",
        "--dir",
        str(d),
        "--as",
        "tanaka",
        "--label",
        str(d / "node.key"),
        "--payload",
        str(label),
        code=2,
    )
    assert "no person" in run("item", "show", "--dir", str(d), "--as", "nobody", "k1", code=2)


def test_person_list_and_token(tmp_path: Path) -> None:
    d = make(tmp_path)
    assert [p["id"] for p in run("person", "list", "--dir", str(d))] == ["tanaka"]
    token = run("person", "token", "--dir", str(d), "tanaka", "--days", "7")
    assert token["token"].startswith("gsm_")


def test_node_serve_answers_on_loopback(tmp_path: Path) -> None:
    d = make(tmp_path)
    token = run("person", "token", "--dir", str(d), "tanaka")["token"]
    port = network.free_port()
    server = serve(network.NetNode("JPN", d, port), sender=True)
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.json()["status"] == "ok"
        assert health.json()["party"] == "JPN"
        items = httpx.get(
            f"http://127.0.0.1:{port}/items", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert items.status_code == 200
        assert items.json()["items"] == []
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_export_import_and_receipts_by_file_from_the_command_line(tmp_path: Path) -> None:
    """The air-gap round trip through the CLI: KOR exports, JPN imports, KOR takes the receipts."""
    from gsomia.demo import network
    from gsomia.node import Node, load_config

    members = network.build(tmp_path / "net")
    kor_dir, jpn_dir = (m.directory for m in members if m.party in ("KOR", "JPN"))
    kor = Node(load_config(kor_dir))
    officer = kor.people.person("officer")
    kor.items.ingest(officer, label=kor_label(releasable_to=["JPN"]), payload=b"{}", item_id="go")
    kor.items.ingest(officer, label=kor_label(releasable_to=["USA"]), payload=b"{}", item_id="stay")
    kor.close()
    out, receipts = tmp_path / "to-jpn.json", tmp_path / "receipts.json"
    done = run("export", "--dir", str(kor_dir), "--as", "officer", "--to", "JPN", "--out", str(out))
    assert [e["item"] for e in done["exported"]] == ["go"]
    assert [r["item"] for r in done["refused"]] == ["stay"]
    got = run("import", "--dir", str(jpn_dir), str(out), "--receipts", str(receipts))
    assert (got["sender"], [r["status"] for r in got["results"]]) == ("KOR", ["stored"])
    again = run("import", "--dir", str(jpn_dir), str(out))
    assert [r["status"] for r in again["results"]] == ["duplicate"]
    applied = run("import-receipts", "--dir", str(kor_dir), str(receipts))
    assert applied["delivered"] == [done["exported"][0]["msg_id"]]
    outbox = run("outbox", "list", "--dir", str(kor_dir))
    assert [(o["state"], o["receipt"] is not None) for o in outbox] == [("delivered", True)]
    assert outbox[0]["decision"]["allowed"] is True  # the API's outbox entry, from the one presenter
    out.write_text(out.read_text(encoding="utf-8")[:100], encoding="utf-8")
    assert "not JSON" in run("import", "--dir", str(jpn_dir), str(out), code=2)
    wrong = run("import", "--dir", str(kor_dir), str(receipts), code=2)
    assert "not a gsomia-transfer/1 file" in wrong


def test_export_writes_each_exported_item_as_a_binding_a_foreign_tool_can_check(tmp_path: Path) -> None:
    """``gsomia export --bindings DIR``: one ADatP-4778 binding per exported item, none for a refused
    one; the receiving node verifies each (chain, signatures, labels) and imports it as an arrival."""
    from gsomia.demo import network
    from gsomia.node import Node, load_config

    members = network.build(tmp_path / "net")
    kor_dir, jpn_dir = (m.directory for m in members if m.party in ("KOR", "JPN"))
    kor = Node(load_config(kor_dir))
    officer = kor.people.person("officer")
    kor.items.ingest(officer, label=kor_label(releasable_to=["JPN"]), payload=b'{"n": 1}', item_id="go")
    kor.items.ingest(officer, label=kor_label(releasable_to=["USA"]), payload=b"{}", item_id="stay")
    kor.close()
    out, bound = tmp_path / "to-jpn.json", tmp_path / "bdo"
    done = run(
        "export", "--dir", str(kor_dir), "--as", "officer", "--to", "JPN", "--out", str(out),
        "--bindings", str(bound), "--bindings-format", "json",
    )  # fmt: skip
    assert done["bindings"] == [str(bound / "go.bdo.json")]
    assert sorted(p.name for p in bound.iterdir()) == ["go.bdo.json"]  # nothing for the refused item
    assert (bound.stat().st_mode & 0o777, (bound / "go.bdo.json").stat().st_mode & 0o777) == (0o700, 0o600)
    verified = run("bdo", "verify", "--dir", str(jpn_dir), str(bound / "go.bdo.json"))
    assert (verified["signer"], verified["item"]) == ("KOR", "go")
    assert run("bdo", "import", "--dir", str(jpn_dir), str(bound / "go.bdo.json"))["status"] == "stored"
    # the transfer file still carries the same item; it is not stored twice
    got = run("import", "--dir", str(jpn_dir), str(out))
    assert [r["status"] for r in got["results"]] == ["already-held"]
    bad = run(
        "export", "--dir", str(kor_dir), "--as", "officer", "--to", "JPN", "--out", str(out),
        "--bindings", str(bound), "--bindings-format", "pdf", code=2,
    )  # fmt: skip
    assert "--bindings-format 'pdf'" in bad


def test_an_item_in_portions_from_the_command_line(tmp_path: Path) -> None:
    """``item ingest --portions``: the body and the tearline each with its own label; a reader cleared
    for the tearline alone sees only it, under its label; a file that is not a portions list is one
    line and exit 2."""
    d = make(tmp_path)
    run("person", "add", "--dir", str(d), "--id", "sato", "--name", "Sato", "--nationality", "JPN")
    run("person", "add", "--dir", str(d), "--id", "ito", "--name", "Ito", "--nationality", "JPN",
        "--clearance", "hi", "--topic", "dprk-missile", "--role", "analyst")  # fmt: skip
    parts = tmp_path / "report.json"
    parts.write_text(
        json.dumps(
            [
                {"id": "body", "label": jpn_label(releasable_to=["USA"]), "payload": {"t": "source"}},
                {"id": "tearline", "label": jpn_label(classification="秘"), "payload": {"t": "launch"}},
            ]
        ),
        encoding="utf-8",
    )
    base = ["item", "ingest", "--dir", str(d), "--as", "tanaka", "--id", "rep"]
    stored = run(*base, "--portions", str(parts))
    assert [p["id"] for p in stored["portions"]] == ["body", "tearline"]
    assert stored["label"]["classification"] == "極秘"
    shown = run("item", "show", "--dir", str(d), "--as", "ito", "rep")
    assert shown["label"]["classification"] == "秘"
    assert [p["id"] for p in shown["payload"]["portions"]] == ["tearline"]
    assert "source" not in json.dumps(shown)
    parts.write_text('{"id": "not a list"}', encoding="utf-8")
    assert "portions" in run(*base, "--portions", str(parts), code=2)
    assert "--portions alone" in run(*base, "--portions", str(parts), "--label", str(parts), code=2)


def test_peer_envelopes_shows_and_sets_the_versions_opened_and_refuses_bad_settings(tmp_path: Path) -> None:
    d = str(make(tmp_path))
    assert run("peer", "envelopes", "--dir", d) == []  # nothing set: every version opened
    shown = run(
        "peer", "envelopes", "--dir", d, "--party", "all", "--lowest", "2", "--from", "2099-01-01T00:00Z"
    )
    assert [(r["party"], r["lowest"], r["effective"], r["pending"], r["cause"], r["by"]) for r in shown] == [
        ("all", 2, 1, True, "set", "operator")  # stored 2, from 2099: every version is opened now
    ]
    assert shown[0]["since"].startswith("2099-01-01T00:00:00")
    assert "not a registered peer" in run(
        "peer", "envelopes", "--dir", d, "--party", "KOR", "--lowest", "2", code=2
    )
    assert "both --party and --lowest" in run("peer", "envelopes", "--dir", d, "--lowest", "2", code=2)
    result = runner.invoke(app, ["peer", "envelopes", "--dir", d, "--party", "all", "--lowest", "4"])
    assert result.exit_code == 2  # out of range: typer's own refusal names the option
    assert "--lowest" in result.stderr
    text = runner.invoke(app, ["peer", "envelopes", "--dir", d])
    assert text.exit_code == 0
    assert "all  lowest 2: COSE (gsomia-envelope/2 and /3)  from 2099-01-01T00:00:00+00:00" in text.stdout
    assert "opened now: 1 and up" in text.stdout
    shown = run("peer", "envelopes", "--dir", d, "--party", "all", "--lowest", "3")  # in force at once
    assert [(r["party"], r["lowest"], r["effective"]) for r in shown] == [("all", 3, 3)]


def test_node_serve_runs_the_server_that_settles_the_collector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # node serve's server collects and freezes what its start-up made (tests/api/test_settled_server.py);
    # here, that node serve is the one that runs it (not uvicorn's own, which leaves it in view)
    import gc
    import logging

    from gsomia.api import SettledServer

    d = make(tmp_path)
    ran: list[type] = []
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not this test process's objects
    # node serve points the root logger at its standard error (the runner's, closed once it returns):
    # this process's logging as it was afterwards, or later tests' records go to a closed file
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(SettledServer, "run", lambda self, *_: ran.append(type(self)))
    result = runner.invoke(app, ["node", "serve", "--dir", str(d), "--port", str(network.free_port())])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert ran == [SettledServer]
