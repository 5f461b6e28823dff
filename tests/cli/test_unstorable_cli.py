"""The command line given text no store can hold: an argument whose bytes are not UTF-8 (Python
hands them over as lone surrogates), a JSON file holding a NUL or a lone surrogate (a label, a
payload, portions, an identity, an assurance). Exit 2, one line naming the argument or the place in
the file, nothing stored; the same on SQLite and PostgreSQL.

Before, a label file with a lone surrogate in its level was stored on both stores (a label that
no partner could be sent), and an argument's was a traceback from the driver."""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import postgres_schema
from tests.node_fixtures import jpn_label
from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.node import Node, load_config

runner = CliRunner()


# a command opens the node and leaves it to the process's end to close (as a command line does):
# on PostgreSQL its connection is let go when collected, which is no finding of these tests
pytestmark = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def node_dir(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_status: str | None
) -> Iterator[Path]:
    """One JPN node directory per store for the module: every command below is refused."""
    d = tmp_path_factory.mktemp("unstorable-cli") / "node"
    with contextlib.ExitStack() as stack:
        url = (
            f"sqlite:///{d.parent / 'store.db'}"
            if request.param == "sqlite"
            else stack.enter_context(postgres_schema(postgres_status))
        )
        init = ["node", "init", "--party", "JPN", "--dir", str(d), "--database-url", url]
        assert runner.invoke(app, init).exit_code == 0
        person = ["person", "add", "--dir", str(d), "--id", "tanaka", "--name", "Tanaka"]
        person += ["--nationality", "JPN", "--clearance", "gokuhi", "--topic", "dprk-missile"]
        assert runner.invoke(app, [*person, "--role", "analyst"]).exit_code == 0
        yield d
        gc.collect()  # the commands' connections, before the schema is dropped


def refused(args: list[str], needle: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    said = " ".join(result.stderr.split()).replace("│", "")
    assert needle in said, said
    assert "Traceback" not in result.stderr
    return said


def stored_items(d: Path) -> int:
    node = Node(load_config(d))
    try:
        return node.store.count_items()
    finally:
        node.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--id", "a\udcffb"], "the value of --id: contains a lone surrogate"),
        (["--as", "tan\udce4ka"], "the value of --as: contains a lone surrogate"),
    ],
    ids=["id", "actor"],
)
def test_an_argument_that_is_not_text(node_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    label, payload = tmp_path / "label.json", tmp_path / "payload.json"
    label.write_text(json.dumps(jpn_label()), encoding="utf-8")
    payload.write_text("{}", encoding="utf-8")
    ingest = ["item", "ingest", "--dir", str(node_dir), "--as", "tanaka", "--label", str(label)]
    refused([*ingest, "--payload", str(payload), *args], needle)
    assert stored_items(node_dir) == 0


@pytest.mark.parametrize("bad", ["\x00", "\ud800"], ids=["nul", "lone-surrogate"])
@pytest.mark.parametrize(
    ("file", "place"),
    [
        ("label", "label.classification"),
        ("payload", "payload.note"),
        ("portions", "portions.0.label.topics.0"),
    ],
)
def test_a_json_file_holding_unstorable_text(
    node_dir: Path, tmp_path: Path, bad: str, file: str, place: str
) -> None:
    label, payload, portions = tmp_path / "label.json", tmp_path / "payload.json", tmp_path / "portions.json"
    label.write_text(json.dumps(jpn_label(classification=f"極{bad}秘") if file == "label" else jpn_label()))
    payload.write_text(json.dumps({"note": f"n{bad}"} if file == "payload" else {}))
    portions.write_text(json.dumps([{"id": "p1", "label": jpn_label(topics=[bad]), "payload": 1}]))
    base = ["item", "ingest", "--dir", str(node_dir), "--as", "tanaka"]
    given = (
        ["--portions", str(portions)]
        if file == "portions"
        else ["--label", str(label), "--payload", str(payload)]
    )
    said = refused([*base, *given], f"{place}: contains a")
    assert "U+0000" in said or "U+D800" in said
    assert stored_items(node_dir) == 0


def test_a_peer_identity_file_holding_a_nul(node_dir: Path, tmp_path: Path) -> None:
    identity = tmp_path / "identity.json"
    identity.write_text(json.dumps({"payload": "x\x00"}))
    args = [
        "peer",
        "add",
        "--dir",
        str(node_dir),
        "--identity",
        str(identity),
        "--agreement",
        "kor-jpn-gsomia-2016",
    ]
    refused(args, "identity.payload: contains a NUL")
