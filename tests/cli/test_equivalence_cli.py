"""`gsomia agreement equivalence propose|list` and `gsomia spif export --dir`: a party's change to its
side of an agreement's equivalence table from the node's host (issue 19 §3)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_node_cli import make, run
from typer.testing import CliRunner

from gsomia.cli import app

runner = CliRunner()
GSOMIA = "kor-jpn-gsomia-2016"


def _officer(d: Path) -> None:
    run(
        "person", "add", "--dir", str(d), "--id", "mori", "--name", "Mori", "--nationality", "JPN",
        "--clearance", "gokuhi", "--topic", "dprk-missile", "--role", "security_officer",
    )  # fmt: skip


def test_propose_list_and_the_spif_of_the_node_at_the_instant(tmp_path: Path) -> None:
    d = make(tmp_path)
    _officer(d)
    made = run(
        "agreement", "equivalence", "propose", "--dir", str(d), "--as", "mori", GSOMIA,
        "--map", "gokuhi=KOR:gunsa-3geup-bimil", "--at", "2030-01-01", "--reason", "a stricter review",
    )  # fmt: skip
    assert (made["party"], made["sequence"], made["sent_to"]) == ("JPN", 1, [])  # no partner registered
    assert made["remaps"] == [
        {"party": "JPN", "level": "極秘", "partner": "KOR", "partner_level": "군사III급비밀"}
    ]
    assert (
        made["effective"] == "2029-12-31T15:00:00+00:00"
    )  # local midnight in Seoul's zone (the agreement's)
    (listed,) = run("agreement", "equivalence", "list", "--dir", str(d), GSOMIA)
    assert (listed["sequence"], listed["received_from"]) == (1, None)
    before = runner.invoke(app, ["spif", "export", "--party", "JPN", "--at", "2029-12-01", "--dir", str(d)])
    after = runner.invoke(app, ["spif", "export", "--party", "JPN", "--at", "2030-01-02", "--dir", str(d)])
    assert before.exit_code == after.exit_code == 0, (before.stderr, after.stderr)
    out_to_class_three = 'policyRef="GSOMIA-KOR" lacv="1" applied="encrypt"'
    assert out_to_class_three not in before.stdout
    assert out_to_class_three in after.stdout
    data_only = runner.invoke(app, ["spif", "export", "--party", "JPN", "--at", "2030-01-02"])
    assert out_to_class_three not in data_only.stdout  # the data files alone know nothing of it


def test_bad_proposals_are_one_line_and_exit_2(tmp_path: Path) -> None:
    d = make(tmp_path)
    _officer(d)
    base = ["agreement", "equivalence", "propose", "--dir", str(d), "--as", "mori", GSOMIA, "--reason", "x"]
    bad_map = run(*base, "--map", "gokuhi", "--at", "2030-01-01", code=2)
    assert "expected LEVEL=PARTNER:LEVEL" in bad_map
    past = run(*base, "--map", "gokuhi=KOR:none", "--at", "2020-01-01", code=2)
    assert "now or later" in past
    caveat = run(*base, "--map", "gokuhi=KOR:daeoebi", "--at", "2030-01-01", code=2)
    assert "handling caveat" in caveat
    theirs = run(*base, "--map", "KOR:gunsa-2geup-bimil=JPN:hi", "--at", "2030-01-01", code=2)
    assert "KOR's side" in theirs
    not_officer = run(
        *base[:6], "tanaka", GSOMIA, "--reason", "x", "--map", "gokuhi=KOR:none", "--at", "2030-01-01", code=2
    )
    assert "security_officer" in not_officer
    assert run("agreement", "equivalence", "list", "--dir", str(d)) == []
