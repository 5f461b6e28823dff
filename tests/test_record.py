"""The shipped data against the public record (issue 21 §1, §3).

Each test names its source: the treaty text (Art. numbers) or the contemporary report. The
domain brief is our summary; the texts and the reporting are the authority.
"""

from __future__ import annotations

from datetime import date, datetime
from importlib.resources import files
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gsomia import DataFileError, EventKind, ReleaseDecision, ReleaseEngine, ReleaseRequest, load_catalogue
from gsomia.core.catalogue import Catalogue
from gsomia.stream import launches

KST = ZoneInfo("Asia/Seoul")
JST = ZoneInfo("Asia/Tokyo")


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_the_us_rok_agreement_was_signed_and_in_force_on_24_september_1987(catalogue: Catalogue) -> None:
    """US–ROK Agreement on Security Measures for the Protection of Classified Military Information,
    signed at Washington 24 Sep 1987, in force that day (a supplement to the 1962 General Security
    Agreement). The data had a 1987-01-01 placeholder."""
    agreement = catalogue.agreement("usa-kor-gsomia-1987")
    days = {e.kind: e.at.astimezone(KST).date() for e in agreement.events}
    assert days[EventKind.SIGNED] == date(1987, 9, 24)
    assert days[EventKind.ENTERED_INTO_FORCE] == date(1987, 9, 24)
    assert not agreement.state_at(datetime(1987, 9, 23, 23, 59, tzinfo=KST)).in_force
    assert agreement.state_at(datetime(1987, 9, 24, 0, 0, tzinfo=KST)).in_force
    assert "placeholder" not in agreement.notes


def test_the_2019_notice_falls_in_the_reported_window(catalogue: Catalogue) -> None:
    """Yonhap, 23 Aug 2019 (https://m-en.yna.co.kr/view/AEN20190823004651325): Japan's ambassador
    was received at the foreign ministry at about 15:25 and the note verbale handed over by the
    First Vice-Minister within about 30 minutes; reports were filed from 15:57. Not 16:30."""
    notice = catalogue.agreement("kor-jpn-gsomia-2016").event("2019-08-23-termination-notice")
    assert datetime(2019, 8, 23, 15, 25, tzinfo=KST) <= notice.at <= datetime(2019, 8, 23, 15, 57, tzinfo=KST)
    assert "15:25" in notice.note
    assert "15:57" in notice.note


def test_the_2016_cabinet_approval_is_tuesday_22_november_with_no_uncertainty(catalogue: Catalogue) -> None:
    """The ROK cabinet meeting of Tuesday 22 Nov 2016, chaired by the Prime Minister, approved the
    agreement; the President approved it the same day."""
    event = catalogue.agreement("kor-jpn-gsomia-2016").event("2016-11-22-cabinet-approval")
    assert event.at.astimezone(KST).date() == date(2016, 11, 22)
    assert event.at.astimezone(KST).strftime("%A") == "Tuesday"
    assert "uncertain" not in event.note
    assert "Monday" not in event.note
    assert "Tuesday" in event.reference


def test_the_2019_launch_file_holds_every_launch_day_from_may_to_november() -> None:
    """ROK JCS announcements as reported by Yonhap: 31 Jul (05:06, Wonsan), 2 Aug (02:59, Yonghung),
    10 Aug (05:34, Hamhung) and 16 Aug (08:01, Tongchon; "the sixth since 25 Jul") were missing."""
    flown = launches(2019)
    days = [launch.launched.astimezone(KST).date() for launch in flown]
    for missing in (date(2019, 7, 31), date(2019, 8, 2), date(2019, 8, 10), date(2019, 8, 16)):
        assert missing in days
    since_25_jul = [d for d in days if date(2019, 7, 25) <= d <= date(2019, 8, 16)]
    assert len(since_25_jul) == 6  # the 16 Aug launch is the sixth since 25 Jul
    assert len(days) == len(set(days)) == 13
    times = {launch.id: launch.launched.astimezone(KST).strftime("%H:%M") for launch in flown}
    assert times["2019-08-16-tongchon"] == "08:01"
    assert times["2019-08-02-yonghung"] == "02:59"


@pytest.mark.parametrize(
    ("agreement", "words"),
    [
        ("kor-jpn-gsomia-2016", ("Seoul's reading", "Tokyo kept counting", "purposes listed", "17:06")),
        (
            "usa-jpn-gsomia-2007",
            ("term (indefinite, 90 days' notice", "equivalence table", "purposes listed"),
        ),
        (
            "usa-kor-gsomia-1987",
            ("term (indefinite, 90 days' notice", "equivalence table", "purposes listed"),
        ),
        ("tisa-2014", ("term (indefinite, 90 days' notice", "purposes listed")),
        ("trilateral-missile-warning-2023", ("equivalence table", "not a signature", "multilateral")),
    ],
)
def test_every_assumption_in_the_data_is_stated_as_one_with_its_consequence(
    catalogue: Catalogue,
    agreement: str,
    words: tuple[str, ...],
) -> None:
    """Issue 21 §3: the terms of the US agreements, the purpose lists, Seoul's reading of the
    suspension, its instant, and the missile-warning table and signature are assumptions."""
    assumptions = catalogue.agreement(agreement).assumptions
    said = " ".join(a.sentence for a in assumptions)
    for word in words:
        assert word in said
    assert all(a.consequence for a in assumptions)
    assert "Assumption" not in catalogue.agreement(agreement).notes  # stated once, where it is shown


def test_agreement_status_states_the_assumptions_it_rests_on(catalogue: Catalogue) -> None:
    """The notice_suspended state is Seoul's reading (Tokyo kept counting the 24 Aug deadline):
    the status at that time says so in its explanation and lists it; before, it does not."""
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
    suspended = gsomia.state_at(datetime(2019, 11, 23, 0, 0, 1, tzinfo=KST))
    assert "Assumption: The notice_suspended state" in suspended.explanation
    assert "Tokyo kept counting" in suspended.explanation
    assert {a.about for a in suspended.assumptions} == {"", "notice_suspended", "2019-11-22-notice-suspended"}
    normal = gsomia.state_at(datetime(2024, 1, 1, tzinfo=KST))
    assert "notice_suspended" not in {a.about for a in normal.assumptions}
    assert "2019-11-22-notice-suspended" in {a.about for a in normal.assumptions}  # it happened
    before = gsomia.state_at(datetime(2019, 8, 24, tzinfo=KST))
    assert "Seoul's reading" not in before.explanation
    without = gsomia.what_if(without=["2019-11-22-notice-suspended"])
    assert "2019-11-22-notice-suspended" not in {a.about for a in without.assumptions}


def test_the_suspension_instant_and_the_missile_warning_signature_are_marked_as_assumptions(
    catalogue: Catalogue,
) -> None:
    """Issue 21 §3: 18:00 KST on 22 Nov 2019 is the public announcement (Seoul had told Tokyo before
    17:06); the record shows ministerial agreement and activation on 19 Dec 2023, not a signature."""
    suspended = catalogue.agreement("kor-jpn-gsomia-2016").event("2019-11-22-notice-suspended")
    assert "Assumption" in suspended.note
    assert "17:06" in suspended.note
    signed = catalogue.agreement("trilateral-missile-warning-2023").event("2023-12-19-signed")
    assert "Assumption" in signed.note
    assert "not a signature" in signed.note


def _decide(
    catalogue: Catalogue, sender: str, recipient: str, level: str, at: datetime, topic: str = "dprk-missile"
) -> ReleaseDecision:
    label = catalogue.label(
        originator=sender,
        classification=level,
        releasable_to=[recipient],
        purpose="threat-assessment",
        topics=[topic],
        created=at,
    )
    return ReleaseEngine(catalogue).decide(
        ReleaseRequest(label, sender, recipient, "threat-assessment"), at=at
    )


def test_a_us_top_secret_item_in_2010_is_not_marked_as_a_level_japan_did_not_have(
    catalogue: Catalogue,
) -> None:
    """特定秘密の保護に関する法律 (Act No. 108 of 2013) came into force on 10 Dec 2014: a US TOP
    SECRET release to Japan in 2010 cannot be marked "USA 特定秘密". Before and after it, Japan
    protects US TOP SECRET as 機密, a Special Defense Secret under the MDA Secrets Protection Act
    (1954), kept outside 特定秘密."""
    in_2010 = datetime(2010, 6, 1, 10, tzinfo=JST)
    decision = _decide(catalogue, "USA", "JPN", "TOP SECRET", in_2010)
    assert decision.allowed
    assert decision.marking is not None
    assert decision.marking.text == "USA 機密"
    assert "機密" in [lv.name for lv in catalogue.party("JPN").scheme.levels]


def test_tokutei_himitsu_cannot_be_released_before_the_act_and_can_after(catalogue: Catalogue) -> None:
    """The level and the equivalence rows naming it carry a validity period from 10 Dec 2014 (the
    Act's entry into force); a release the day before is refused by those checks, naming it."""
    scheme = catalogue.party("JPN").scheme
    assert scheme.level("特定秘密").valid_from == datetime(2014, 12, 10, tzinfo=JST)
    eve = datetime(2014, 12, 9, 23, 59, tzinfo=JST)
    refused = _decide(catalogue, "JPN", "USA", "特定秘密", eve)
    assert not refused.allowed
    # no row maps it yet, and the level itself does not exist yet: both say from when
    assert [c.rule for c in refused.failed()] == ["equivalence", "level_validity"]
    assert all("2014-12-10" in c.reason for c in refused.failed())
    allowed = _decide(catalogue, "JPN", "USA", "特定秘密", datetime(2014, 12, 10, 0, 0, tzinfo=JST))
    assert allowed.allowed
    assert allowed.marking is not None
    assert allowed.marking.classification == "TOP SECRET"


def test_an_equivalence_row_ends_when_its_period_ends(tmp_path: Path) -> None:
    """A row's valid_until is exclusive: from that instant the mapping is gone and release refused."""
    source = (files("gsomia") / "data" / "agreements" / "usa-jpn-gsomia-2007.toml").read_text(
        encoding="utf-8"
    )
    edited = source.replace(
        'levels = { USA = "SECRET", JPN = "極秘" }',
        'levels = { USA = "SECRET", JPN = "極秘" }\nvalid_until = 2020-01-01',
    )
    assert edited != source
    (tmp_path / "usa-jpn-gsomia-2007.toml").write_text(edited, encoding="utf-8")
    changed = load_catalogue([tmp_path])
    before = datetime(2019, 12, 31, 23, 59, tzinfo=JST)
    assert _decide(changed, "USA", "JPN", "SECRET", before, "prc-navy").allowed  # outside TISA's scope
    after = _decide(changed, "USA", "JPN", "SECRET", datetime(2020, 1, 1, 0, 0, tzinfo=JST), "prc-navy")
    assert not after.allowed
    assert "exists until 2020-01-01" in after.failed()[0].reason


def test_a_level_bound_without_an_offset_is_refused(tmp_path: Path) -> None:
    """A party file has no time zone: a level's bound must carry its UTC offset."""
    source = (files("gsomia") / "data" / "parties" / "JPN.toml").read_text(encoding="utf-8")
    (tmp_path / "JPN.toml").write_text(
        source.replace("valid_from = 2014-12-10T00:00:00+09:00", "valid_from = 2014-12-10"), encoding="utf-8"
    )
    with pytest.raises(DataFileError, match=r"scheme.levels\[1\].valid_from.*UTC offset"):
        load_catalogue([tmp_path])


def test_the_rank_of_tokutei_himitsu_above_gokuhi_is_marked_as_an_assumption(catalogue: Catalogue) -> None:
    """Art. 4 gives "極秘/特定秘密" together for SECRET; ranking 特定秘密 above 極秘 in clearance
    comparisons is a modelling choice, stated with its consequence (issue 21 §3)."""
    said = " ".join(a.sentence for a in catalogue.party("JPN").scheme.assumptions)
    assert "特定秘密 above 極秘" in said
    assert "Consequence: In clearance comparisons" in said
    behind = catalogue.assumptions_behind(
        "kor-jpn-gsomia-2016", datetime(2024, 1, 1, tzinfo=KST), ["KOR", "JPN"]
    )
    assert any("特定秘密 above 極秘" in a.text for a in behind)


def test_the_demo_shows_what_the_direct_reading_of_the_2023_arrangement_allows(catalogue: Catalogue) -> None:
    """Issue 21 §1: the record describes the 2023 arrangement as linking the ROK–US and Japan–US
    systems through the US; the model keeps a direct (multilateral) reading, states it as an
    assumption, and the demo shows its consequence: with the 2019 suspension removed, KOR's
    tracks still reach JPN directly in 2024, under the arrangement alone."""
    from gsomia.demo.scenario import stream_story

    moment = stream_story(catalogue)[-1]
    assert "modelled as multilateral (an assumption" in moment.what
    jpn = next(r for r in moment.plan.routes if r.recipient == "JPN")
    assert jpn.allowed
    assert jpn.name == "direct"
    assert jpn.decision.agreement == "trilateral-missile-warning-2023"
    topology = next(
        a
        for a in catalogue.agreement("trilateral-missile-warning-2023").assumptions
        if "multilateral" in a.text
    )
    assert "KOR→JPN" in topology.consequence
