"""Data files: the shipped scenario loads; bad files fail with file, field and problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from tests.conftest import kst

from gsomia import DataFileError, EventKind, Status, load_catalogue, load_events
from gsomia._datafiles import parse_agreement, parse_party

GOOD = """
[agreement]
id = "aaa-bbb"
title = "A and B"
parties = ["KOR", "JPN"]
topology = "bilateral"
timezone = "Asia/Seoul"
purposes = ["defence-cooperation"]

[agreement.scope]
all_military_information = true

[agreement.term]
initial = "P1Y"
renewal = "P1Y"
notice_days = 90

[[agreement.equivalence]]
levels = { KOR = "군사II급비밀", JPN = "極秘" }

[[agreement.events]]
id = "signed"
kind = "signed"
at = 2020-01-10
reference = "signature"

[[agreement.events]]
id = "in-force"
kind = "entered_into_force"
at = 2020-01-10
reference = "in force"
"""


def test_shipped_catalogue_has_the_scenario_agreements() -> None:
    catalogue = load_catalogue()
    assert set(catalogue.agreements) == {
        "kor-jpn-gsomia-2016",
        "tisa-2014",
        "usa-kor-gsomia-1987",
        "usa-jpn-gsomia-2007",
        "trilateral-missile-warning-2023",
    }
    assert set(catalogue.parties) == {"KOR", "JPN", "USA"}
    tisa = catalogue.agreement("tisa-2014")
    assert tisa.hub == "USA"
    assert tisa.scope_topics == frozenset({"dprk-nuclear", "dprk-missile"})


def test_good_agreement_parses() -> None:
    agreement = parse_agreement("good.toml", GOOD.encode())
    assert agreement.state_at(kst(2020, 6, 1)).status is Status.IN_FORCE


@pytest.mark.parametrize(
    ("edit", "field", "problem"),
    [
        (('topology = "bilateral"', 'topology = "star"'), "agreement.topology", "Input should be"),
        (("notice_days = 90", "notice_days = -1"), "agreement.term.notice_days", "greater than or equal"),
        (('initial = "P1Y"', 'initial = "one year"'), "agreement.term.initial", "not a duration"),
        (
            ('timezone = "Asia/Seoul"', 'timezone = "Mars/Olympus"'),
            "agreement.timezone",
            "unknown IANA time zone",
        ),
        (('id = "aaa-bbb"', 'id = "Bad Id"'), "agreement.id", "should match pattern"),
        (('kind = "signed"', 'kind = "ratified"'), "agreement.events.0.kind", "Input should be"),
        (
            ('at = 2020-01-10\nreference = "signature"', 'at = "tomorrow"\nreference = "signature"'),
            "agreement.events[0].at",
            "not ISO 8601",
        ),
        (
            ('at = 2020-01-10\nreference = "signature"', 'at = 2020-01-10T10:00:00\nreference = "signature"'),
            "agreement.events[0].at",
            "no UTC offset",
        ),
        (
            ("all_military_information = true", "all_military_information = false"),
            "agreement.scope",
            "either",
        ),
        (('purposes = ["defence-cooperation"]', "purposes = []"), "agreement.purposes", "at least 1"),
        (('title = "A and B"', 'title = "A and B"\ncolour = "blue"'), "agreement.colour", "Extra inputs"),
        (('kind = "entered_into_force"', 'kind = "notice_withdrawn"'), "agreement", "no termination notice"),
        (('parties = ["KOR", "JPN"]', 'parties = ["KOR"]'), "agreement.parties", "at least 2"),
    ],
)
def test_bad_agreement_file_names_file_field_and_problem(
    edit: tuple[str, str], field: str, problem: str
) -> None:
    old, new = edit
    assert old in GOOD
    with pytest.raises(DataFileError) as caught:
        parse_agreement("bad.toml", GOOD.replace(old, new, 1).encode())
    error = caught.value
    assert error.source == "bad.toml"
    assert error.field == field, str(error)
    assert problem in error.problem, str(error)
    assert str(error).startswith("bad.toml: ")


def test_malformed_toml_is_reported() -> None:
    with pytest.raises(DataFileError, match="not valid UTF-8 TOML"):
        parse_agreement("broken.toml", b"[agreement\nid=")


def test_equivalence_naming_an_unknown_level_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD.replace('JPN = "極秘"', 'JPN = "cho-gokuhi"'), encoding="utf-8")
    with pytest.raises(DataFileError, match="cho-gokuhi"):
        load_catalogue([tmp_path])


def test_a_user_adds_a_party_and_an_agreement_by_file(tmp_path: Path) -> None:
    (tmp_path / "GBR.toml").write_text(
        """
[party]
code = "GBR"
name = "United Kingdom"

[scheme]
title = "Government Security Classifications"

[[scheme.levels]]
name = "SECRET"
alias = "uk-secret"
gloss = "Secret"
rank = 2

[[scheme.levels]]
name = "OFFICIAL-SENSITIVE"
alias = "official-sensitive"
gloss = "Official-Sensitive"
rank = 1
""",
        encoding="utf-8",
    )
    (tmp_path / "gbr-jpn.toml").write_text(
        GOOD.replace('"aaa-bbb"', '"gbr-jpn"')
        .replace('["KOR", "JPN"]', '["GBR", "JPN"]')
        .replace('KOR = "군사II급비밀"', 'GBR = "SECRET"'),
        encoding="utf-8",
    )
    catalogue = load_catalogue([tmp_path])
    assert catalogue.party("GBR").scheme.level("uk-secret").name == "SECRET"
    assert catalogue.agreement("gbr-jpn").equivalence.map("GBR", "SECRET", "JPN") == "極秘"
    assert "gbr-jpn" in {a.id for a in catalogue.agreements_of("JPN")}


def test_a_user_file_replaces_a_shipped_agreement(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD.replace('"aaa-bbb"', '"tisa-2014"'), encoding="utf-8")
    assert load_catalogue([tmp_path]).agreement("tisa-2014").title == "A and B"


def test_two_user_files_defining_one_agreement_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.toml").write_text(GOOD, encoding="utf-8")
    with pytest.raises(DataFileError, match="already defined"):
        load_catalogue([tmp_path])


def test_unknown_kind_of_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text('[weather]\nsky = "blue"\n', encoding="utf-8")
    with pytest.raises(DataFileError, match="neither a party file"):
        load_catalogue([tmp_path])


def test_missing_data_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="not a directory"):
        load_catalogue([tmp_path / "nope"])


def test_party_file_with_duplicate_rank_is_refused() -> None:
    text = b"""
[party]
code = "AAA"
name = "A"
[scheme]
title = "t"
[[scheme.levels]]
name = "X"
alias = "x"
gloss = "x"
rank = 1
[[scheme.levels]]
name = "Y"
alias = "y"
gloss = "y"
rank = 1
"""
    with pytest.raises(DataFileError, match="share rank 1"):
        parse_party("p.toml", text)


def test_events_file_for_what_if(tmp_path: Path) -> None:
    path = tmp_path / "events.toml"
    path.write_text(
        '[[events]]\nid = "x"\nkind = "terminated"\nat = "2021-01-01T09:00:00+09:00"\n'
        'reference = "r"\nparty = "KOR"\n',
        encoding="utf-8",
    )
    events = load_events(path, ZoneInfo("Asia/Seoul"))
    assert events[0].kind is EventKind.TERMINATED
    with pytest.raises(DataFileError, match="cannot read"):
        load_events(tmp_path / "missing.toml", ZoneInfo("Asia/Seoul"))


def _label(catalogue: object, topics: list[str], **kw: object) -> object:
    from gsomia.core.catalogue import Catalogue

    assert isinstance(catalogue, Catalogue)
    return catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN"],
        purpose="threat-assessment",
        topics=topics,
        created=kst(2024, 1, 1),
        **kw,  # type: ignore[arg-type]
    )


def test_a_topic_the_data_does_not_declare_is_refused_by_name() -> None:
    """A misspelt topic is an input error naming the topics the data declares, not a new topic."""
    from gsomia.errors import UnknownNameError

    catalogue = load_catalogue()
    assert {"dprk-missile", "dprk-nuclear", "prc-navy"} <= catalogue.topics
    _label(catalogue, ["prc-navy", "dprk-missile"])  # declared: by the parties, by TISA's scope
    with pytest.raises(UnknownNameError, match=r"unknown topic 'dprk-misile'.*dprk-missile"):
        _label(catalogue, ["dprk-misile"])
    # a label already held keeps its topics when a data revision stops declaring one
    held = _label(catalogue, ["retired-topic"], held=True)
    assert held.topics == frozenset({"retired-topic"})  # type: ignore[attr-defined]


def test_a_party_file_declares_its_topics(tmp_path: Path) -> None:
    party = """
[party]
code = "GBR"
name = "United Kingdom"
topics = ["north-atlantic"]

[scheme]
title = "Government Security Classifications"

[[scheme.levels]]
name = "SECRET"
alias = "uk-secret"
gloss = "Secret"
rank = 2
"""
    (tmp_path / "GBR.toml").write_text(party, encoding="utf-8")
    assert "north-atlantic" in load_catalogue([tmp_path]).topics
    with pytest.raises(DataFileError, match=r"party\.topics"):
        parse_party("GBR.toml", party.replace('"north-atlantic"', '"North Atlantic"').encode())


# --- data files that would weaken protection (issue 22 §9) ---

_SECOND_ROW = """
[[agreement.equivalence]]
levels = { KOR = "군사III급비밀", JPN = "秘" }
"""


def test_an_equivalence_mapping_a_classification_to_a_handling_caveat_is_refused(tmp_path: Path) -> None:
    """KOR Secret to JPN 取扱厳重注意 (a caveat, not a classification) would let a person cleared only
    for the caveat read KOR Secret: refused, naming the file."""
    (tmp_path / "weak.toml").write_text(
        GOOD.replace('JPN = "極秘"', 'JPN = "取扱厳重注意"'), encoding="utf-8"
    )
    with pytest.raises(DataFileError, match="not one \\(rank 0: a handling caveat\\)") as caught:
        load_catalogue([tmp_path])
    assert "weak.toml" in str(caught.value)


def test_an_equivalence_that_is_not_monotonic_is_refused(tmp_path: Path) -> None:
    """KOR II급 (higher) to JPN 秘 and KOR III급 (lower) to JPN 極秘: the higher level would be the less
    protected one."""
    crossed = GOOD.replace('JPN = "極秘"', 'JPN = "秘"') + _SECOND_ROW.replace('JPN = "秘"', 'JPN = "極秘"')
    (tmp_path / "crossed.toml").write_text(crossed, encoding="utf-8")
    with pytest.raises(DataFileError, match="not monotonic"):
        load_catalogue([tmp_path])
    (tmp_path / "crossed.toml").write_text(GOOD + _SECOND_ROW, encoding="utf-8")  # the right way round
    assert (
        load_catalogue([tmp_path]).agreement("aaa-bbb").equivalence.map("KOR", "군사III급비밀", "JPN") == "秘"
    )


def test_a_deeply_nested_toml_file_is_one_line_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "deep.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(DataFileError, match="nested too deeply") as caught:
        load_catalogue([tmp_path])
    assert "deep.toml" in str(caught.value)
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", "--data", str(tmp_path), "party", "list"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "deep.toml" in done.stderr


def test_data_that_makes_every_party_a_hub_is_warned_about(tmp_path: Path) -> None:
    hub = GOOD.replace('topology = "bilateral"', 'topology = "hub"').replace(
        'parties = ["KOR", "JPN"]', 'parties = ["KOR", "JPN", "USA"]\nhub = "{hub}"'
    )
    for party in ("KOR", "JPN", "USA"):
        text = hub.replace("{hub}", party).replace('"aaa-bbb"', f'"hub-{party.lower()}"')
        (tmp_path / f"hub-{party}.toml").write_text(text, encoding="utf-8")
    (warning,) = load_catalogue([tmp_path]).warnings()
    assert "every party (JPN, KOR, USA) is the hub of some agreement" in warning
    done = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", "--data", str(tmp_path), "party", "list"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0
    assert "warning: every party" in done.stderr
    assert load_catalogue().warnings() == []  # the shipped data: no warning
