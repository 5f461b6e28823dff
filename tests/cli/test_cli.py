"""The command line: the JSON shapes scripts rely on, exit codes, errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gsomia.cli import app

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str, code: int = 0) -> Any:
    exit_code, out, err = run(*args, "--json")
    assert exit_code == code, (out, err)
    return json.loads(out)


def test_agreement_list_json() -> None:
    data = run_json("agreement", "list")
    by_id = {a["id"]: a for a in data}
    assert by_id["tisa-2014"]["parties"] == ["USA", "KOR", "JPN"]
    assert by_id["tisa-2014"]["topology"] == "hub"
    assert by_id["kor-jpn-gsomia-2016"]["topology"] == "bilateral"
    assert all({"id", "title", "parties", "topology"} <= set(a) for a in data)


def test_status_and_decide_state_their_assumptions() -> None:
    """Issue 21 §3: `agreement status` and `decide` mark what they rest on as assumptions, each
    with its consequence (text and JSON)."""
    data = run_json("agreement", "status", "kor-jpn-gsomia-2016", "--at", "2020-01-01")
    about = {a["about"]: a for a in data["assumptions"]}
    assert "Tokyo kept counting" in about["notice_suspended"]["text"]
    assert about["notice_suspended"]["consequence"]
    assert "Assumption: The notice_suspended state" in data["explanation"]
    code, out, _ = run("agreement", "status", "kor-jpn-gsomia-2016", "--at", "2020-01-01")
    assert code == 0
    assert "Tokyo kept counting" in " ".join(out.split())
    decide = ["decide", "--from", "KOR", "--to", "JPN", "--classification", "군사II급비밀"]
    decide += ["--purpose", "missile-warning", "--topic", "dprk-missile", "--at", "2024-01-10"]
    decided = run_json(*decide)
    assert decided["agreement"] == "kor-jpn-gsomia-2016"
    assert any("purposes listed" in a["text"] for a in decided["assumptions"])
    code, out, _ = run(*decide)
    assert code == 0
    assert "Consequence:" in out


def test_agreement_status_during_the_notice() -> None:
    data = run_json("agreement", "status", "kor-jpn-gsomia-2016", "--at", "2019-08-24")
    assert data["in_force"] is True
    assert data["status"] == "termination_notified"
    assert data["term_end"] == "2019-11-23T00:00:00+09:00"
    assert data["at"] == "2019-08-24T00:00:00+09:00"
    assert set(data) >= {
        "agreement",
        "at",
        "in_force",
        "status",
        "term_end",
        "notice_deadline",
        "explanation",
    }


def test_agreement_status_what_if_without_the_suspension() -> None:
    args = ("agreement", "status", "kor-jpn-gsomia-2016", "--at", "2019-11-23T00:00:01+09:00")
    assert run_json(*args)["status"] == "notice_suspended"
    data = run_json(*args, "--without", "2019-11-22-notice-suspended")
    assert data["status"] == "terminated"
    assert data["in_force"] is False
    assert data["what_if"]["without"] == ["2019-11-22-notice-suspended"]
    assert "2023-03-21-notes-withdrawn" in data["what_if"]["set_aside"][0]


def test_agreement_status_what_if_with_a_file(tmp_path: Path) -> None:
    events = tmp_path / "e.toml"
    events.write_text(
        '[[events]]\nid = "end-2021"\nkind = "terminated"\nat = 2021-06-01\n'
        'reference = "hypothetical"\nparty = "KOR"\n',
        encoding="utf-8",
    )
    data = run_json(
        "agreement", "status", "kor-jpn-gsomia-2016", "--at", "2021-06-02", "--with-file", str(events)
    )
    assert data["status"] == "terminated"
    assert data["what_if"]["added"] == ["end-2021"]


def test_agreement_status_human_output() -> None:
    code, out, _ = run("agreement", "status", "kor-jpn-gsomia-2016", "--at", "2019-08-24")
    assert code == 0
    assert "termination_notified" in out
    assert "2019-11-23" in out


def test_decide_allowed_json_has_marking_and_checks() -> None:
    data = run_json(
        "decide",
        "--from",
        "KOR",
        "--to",
        "JPN",
        "--classification",
        "군사II급비밀",
        "--purpose",
        "threat-assessment",
        "--topic",
        "dprk-missile",
        "--at",
        "2019-08-24",
    )
    assert data["allowed"] is True
    assert data["marking"]["text"] == "KOR 極秘"
    assert {c["rule"] for c in data["checks"]} >= {"agreement_in_force", "equivalence", "third_party"}
    assert all(set(c) == {"rule", "passed", "reason"} for c in data["checks"])


def test_decide_refused_exits_one_and_explains() -> None:
    data = run_json(
        "decide",
        "--from",
        "KOR",
        "--to",
        "JPN",
        "--classification",
        "gunsa-1geup-bimil",
        "--purpose",
        "threat-assessment",
        "--at",
        "2024-01-01",
        code=1,
    )
    assert data["allowed"] is False
    assert data["marking"] is None
    failed = [c for c in data["checks"] if not c["passed"]]
    assert failed[0]["rule"] == "equivalence"


def test_decide_via_hub_with_consent_in_2016() -> None:
    base = (
        "decide",
        "--from",
        "KOR",
        "--to",
        "JPN",
        "--via",
        "USA",
        "--classification",
        "군사II급비밀",
        "--purpose",
        "threat-assessment",
        "--topic",
        "dprk-missile",
        "--at",
        "2016-11-22",
    )
    assert run_json(*base, code=1)["allowed"] is False
    allowed = run_json(*base, "--consent", "hub_relay:KOR:JPN")
    assert allowed["allowed"] is True
    assert allowed["route"] == ["KOR", "USA", "JPN"]
    assert allowed["agreement"] == "tisa-2014"


def test_decide_human_output_shows_every_rule() -> None:
    code, out, _ = run(
        "decide",
        "--from",
        "JPN",
        "--to",
        "KOR",
        "--classification",
        "gokuhi",
        "--purpose",
        "threat-assessment",
        "--at",
        "2016-11-22",
    )
    assert code == 1
    assert "REFUSED" in out
    assert "agreement_in_force" in out
    assert "hub_authorisation" in out


def test_bad_input_goes_to_stderr_with_exit_two() -> None:
    code, out, err = run("agreement", "status", "no-such-agreement", "--at", "2019-01-01")
    assert code == 2
    assert out == ""
    assert "unknown agreement 'no-such-agreement'" in err
    code, _, err = run("agreement", "status", "kor-jpn-gsomia-2016", "--at", "yesterday")
    assert code == 2
    assert "not ISO 8601" in err
    code, _, err = run(
        "decide",
        "--from",
        "KOR",
        "--to",
        "JPN",
        "--classification",
        "極秘",
        "--purpose",
        "p",
        "--at",
        "2020-01-01",
    )
    assert code == 2
    assert "KOR has no classification" in err
    code, _, err = run(
        "decide",
        "--from",
        "KOR",
        "--to",
        "JPN",
        "--classification",
        "군사II급비밀",
        "--purpose",
        "p",
        "--at",
        "2020-01-01",
        "--consent",
        "blessing:KOR:JPN",
    )
    assert code == 2
    assert "unknown kind" in err


def test_user_data_directory_is_honoured(tmp_path: Path) -> None:
    code, _, err = run("--data", str(tmp_path / "missing"), "agreement", "list")
    assert code == 2
    assert "not a directory" in err


def test_party_list_json() -> None:
    data = run_json("party", "list")
    jpn = next(p for p in data if p["code"] == "JPN")
    assert [lv["name"] for lv in jpn["levels"]][:4] == ["機密", "特定秘密", "極秘", "秘"]


def test_demo_tells_the_story() -> None:
    code, out, err = run("demo")
    assert code == 0, err
    for needle in (
        "2016-11-22",
        "2019-08-24",
        "notice_suspended",
        "WHAT-IF",
        "terminated",
        "군사I급비밀 has no equivalent",
        "outside the scope of tisa-2014",
        "Missile-warning stream",
        "JPN via USA (tisa-2014)",
        "JPN direct (trilateral-missile-warning-2023)",  # the multilateral reading's consequence
        "modelled as multilateral (an assumption",
        "After delivery",
        "kor-report reached JPN as its tearline alone",  # the USA-only body withheld (issue 20 §2)
        "withheld the body",
        "KOR 군사III급비밀 / JPN 秘",  # the originator's downgrade applied at the holder
        "applied by JPN",
        "KOR sees it as opened",
        "the signed record reached KOR",
        "(corroborated: JPN's radar held the same track) reached KOR",  # a sighting (issue 20 §4)
        "nothing crossed while it waited; park approved; it reached JPN",  # two-person release (§1), then §3
        "applied itself then: JPN's kor-assessment KOR 군사II급비밀 / JPN 極秘 → KOR 군사III급비밀 / JPN 秘",
    ):
        assert needle in " ".join(out.split()), needle  # rich wraps long lines at the terminal's width


def test_demo_json_at_key_instants() -> None:
    steps = run_json("demo")
    by_at = {(s["at"], s["what_if"]): s for s in steps}
    eve = by_at[("2016-11-22T00:00:00+09:00", False)]
    flows = {f["flow"]: f["allowed"] for f in eve["flows"]}
    assert flows["KOR→JPN direct, 군사II급비밀"] is False
    assert flows["KOR→USA→JPN, missile data, authorised"] is True
    assert flows["KOR→USA→JPN, naval data, authorised"] is False
    after = by_at[("2019-11-23T00:00:01+09:00", False)]
    assert after["gsomia"]["status"] == "notice_suspended"
    what_if = by_at[("2019-11-23T00:00:01+09:00", True)]
    assert what_if["gsomia"]["status"] == "terminated"
    assert {f["flow"]: f["allowed"] for f in what_if["flows"]}["KOR→JPN direct, 군사II급비밀"] is False


def test_help_lists_the_commands() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for command in ("agreement", "decide", "demo", "party"):
        assert command in out


@pytest.mark.parametrize(
    "args",
    [
        ("agreement", "status", "kor-jpn-gsomia-2016", "--at", "9999-12-31"),
        ("agreement", "status", "kor-jpn-gsomia-2016", "--at", "0001-01-01T00:00+09:00"),
        ("stream", "plan", "--at", "9999-12-31"),
        ("decide", "--from", "KOR", "--to", "JPN", "--classification", "군사II급비밀", "--purpose", "p",
         "--at", "9999-12-31"),
    ],
)  # fmt: skip
def test_an_instant_beyond_the_supported_years_is_one_line_and_exit_two(args: tuple[str, ...]) -> None:
    """Far-future (or far-past) instants are input errors, never a traceback (issue 15 §3)."""
    code, out, err = run(*args)
    assert code == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "outside the supported years 1900-2999" in err


def test_a_misspelt_topic_is_one_line_and_exit_two() -> None:
    """``--topic dprk-misile`` is not silently a new topic: exit 2 naming the declared topics."""
    code, out, err = run(
        "decide", "--from", "KOR", "--to", "JPN", "--classification", "gunsa-2geup-bimil",
        "--purpose", "threat-assessment", "--topic", "dprk-misile", "--at", "2019-08-24",
    )  # fmt: skip
    assert code == 2
    assert out == ""
    assert "unknown topic 'dprk-misile'" in err
    assert "dprk-missile" in err
    assert len(err.strip().splitlines()) == 1
