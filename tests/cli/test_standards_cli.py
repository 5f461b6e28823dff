"""The label standards from the command line: `gsomia label show`, `gsomia bdo verify`, `gsomia spif`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_node_cli import make, run
from tests.node_fixtures import kor_label
from typer.testing import CliRunner

from gsomia import load_catalogue
from gsomia.cli import app
from gsomia.standards import from_labels, labels_from_json, labels_from_xml

runner = CliRunner()


def held_item(tmp_path: Path) -> Path:
    d = make(tmp_path)
    label, payload = tmp_path / "label.json", tmp_path / "payload.json"
    label.write_text(json.dumps(kor_label()), encoding="utf-8")
    payload.write_text('{"launch": "Sinpo"}', encoding="utf-8")
    run(
        "item", "ingest", "--dir", str(d), "--as", "tanaka", "--label", str(label), "--payload", str(payload),
        "--id", "k1", "--received-from", "KOR", "--agreement", "kor-jpn-gsomia-2016",
    )  # fmt: skip
    return d


def test_label_show_prints_the_item_label_in_4774_xml_and_json(tmp_path: Path) -> None:
    d = held_item(tmp_path)
    catalogue = load_catalogue()
    xml = runner.invoke(app, ["label", "show", "--dir", str(d), "--as", "tanaka", "k1"])
    assert xml.exit_code == 0, xml.stderr
    assert 'item="k1"' in xml.stdout
    label = from_labels(labels_from_xml(xml.stdout.encode()), catalogue)
    assert (label.originator, label.classification) == ("KOR", "군사II급비밀")
    assert [(a.party, a.classification) for a in label.alternatives] == [("JPN", "極秘")]
    as_json = runner.invoke(
        app, ["label", "show", "--dir", str(d), "--as", "tanaka", "k1", "--format", "4774-json"]
    )
    assert as_json.exit_code == 0, as_json.stderr
    assert from_labels(labels_from_json(as_json.stdout), catalogue) == label


def test_label_show_is_a_read_refused_to_whoever_may_not_read_the_item(tmp_path: Path) -> None:
    d = held_item(tmp_path)
    run(
        "person", "add", "--dir", str(d), "--id", "sato", "--name", "Sato", "--nationality", "JPN",
        "--clearance", "hi", "--topic", "dprk-missile", "--role", "analyst",
    )  # fmt: skip
    refused = runner.invoke(app, ["label", "show", "--dir", str(d), "--as", "sato", "k1"])
    assert refused.exit_code == 2
    assert "access refused" in refused.stderr
    assert "slab:" not in refused.stdout
