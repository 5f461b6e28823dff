"""The shipped data against the public record (issue 21 §1, §3).

Each test names its source: the treaty text (Art. numbers) or the contemporary report. The
domain brief is our summary; the texts and the reporting are the authority.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from gsomia import EventKind, load_catalogue
from gsomia.core.catalogue import Catalogue
from gsomia.stream import launches

KST = ZoneInfo("Asia/Seoul")


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
        ("kor-jpn-gsomia-2016", ("Seoul's", "Tokyo kept counting", "purposes listed")),
        ("usa-jpn-gsomia-2007", ("term", "90 days")),
        ("usa-kor-gsomia-1987", ("term", "90 days")),
        ("tisa-2014", ("90 days", "purposes listed")),
        ("trilateral-missile-warning-2023", ("equivalence table", "90 days")),
    ],
)
def test_every_assumption_in_the_data_says_it_is_one_and_its_consequence(
    catalogue: Catalogue,
    agreement: str,
    words: tuple[str, ...],
) -> None:
    """Issue 21 §3: the terms of the US agreements, the purpose lists, Seoul's reading of the
    suspension and the missile-warning table are assumptions, stated with their consequence."""
    notes = catalogue.agreement(agreement).notes
    assert "Assumption" in notes or "assumption" in notes
    assert "consequence" in notes
    for word in words:
        assert word in notes


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
