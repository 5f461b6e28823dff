"""The label standards from the command line: `gsomia label show`, `gsomia bdo verify`, `gsomia spif`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_node_cli import make, run
from tests.node_fixtures import kor_label
from typer.testing import CliRunner

from gsomia import load_catalogue
from gsomia.cli import app
from gsomia.demo import network
from gsomia.standards import from_labels, labels_from_json, labels_from_xml

runner = CliRunner()


def held_item(tmp_path: Path) -> Path:
    """A JPN node holding KOR's item k1 as the exchange stores it (a person cannot ingest it)."""
    from gsomia.node import Node, load_config

    d = make(tmp_path)
    node = Node(load_config(d))
    try:
        node.items.ingest(
            None,
            label=kor_label(),
            payload=b'{"launch": "Sinpo"}',
            item_id="k1",
            received_from="KOR",
            agreement="kor-jpn-gsomia-2016",
        )
    finally:
        node.close()
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
    assert "no item 'k1' at this node" in refused.stderr  # refused reads look like unknown items
    assert "군사II급비밀" not in refused.stderr
    assert "slab:" not in refused.stdout


def test_bdo_export_verify_and_import_between_two_node_directories(tmp_path: Path) -> None:
    from tests.node_fixtures import add

    from gsomia.node import Node, init_node_dir

    kor = Node(init_node_dir(tmp_path / "kor", "KOR"))
    jpn = Node(init_node_dir(tmp_path / "jpn", "JPN"))
    try:
        jpn.exchange.register_peer(None, kor.exchange.identity(), ["kor-jpn-gsomia-2016"])
        network.assure({"KOR": kor, "JPN": jpn})  # Art. 7(5): JPN's own assurance, for its decision
        add(kor, "kim", "KOR", "군사II급비밀", ["dprk-missile"], ["analyst"])
        kor.items.ingest(
            None, label=kor_label(created="2026-01-01T00:00:00+09:00"), payload=b'{"t": 1}', item_id="k9"
        )
    finally:
        kor.close()
        jpn.close()
    out = tmp_path / "k9.xml"
    exported = runner.invoke(
        app, ["bdo", "export", "--dir", str(tmp_path / "kor"), "--as", "kim", "k9", "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.stderr
    verified = runner.invoke(app, ["bdo", "verify", "--dir", str(tmp_path / "jpn"), str(out), "--json"])
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["signer"] == "KOR"
    imported = runner.invoke(app, ["bdo", "import", "--dir", str(tmp_path / "jpn"), str(out), "--json"])
    assert imported.exit_code == 0, imported.stderr
    assert json.loads(imported.stdout)["status"] == "stored"
    out.write_bytes(out.read_bytes().replace(b"k9", b"k8"))  # tampered in transit
    refused = runner.invoke(app, ["bdo", "verify", "--dir", str(tmp_path / "jpn"), str(out)])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "error: envelope refused"
