"""The agreement lifecycle: the 2016–2023 timeline, deadlines, notices and what-ifs."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.conftest import KST, kst

from gsomia import Agreement, Catalogue, Event, EventKind, LifecycleError, Status, TermRules, UnknownNameError
from gsomia.core.agreements import Equivalence, Topology
from gsomia.core.instants import add_months
from gsomia.errors import InstantError

GSOMIA = "kor-jpn-gsomia-2016"
SUSPENSION = "2019-11-22-notice-suspended"


def state(catalogue: Catalogue, at: datetime, agreement: str = GSOMIA) -> Status:
    return catalogue.agreement(agreement).state_at(at).status


def test_gsomia_is_not_in_force_the_day_before_signature(catalogue: Catalogue) -> None:
    s = catalogue.agreement(GSOMIA).state_at(kst(2016, 11, 22))
    assert s.status is Status.NOT_IN_FORCE
    assert not s.in_force
    assert s.term_end is None


def test_gsomia_enters_into_force_on_23_november_2016(catalogue: Catalogue) -> None:
    s = catalogue.agreement(GSOMIA).state_at(kst(2016, 11, 23))
    assert s.status is Status.IN_FORCE
    assert s.term_end == kst(2017, 11, 23)
    assert s.notice_deadline == kst(2017, 8, 25)


def test_notice_of_august_2019_leaves_agreement_in_force_until_the_anniversary(catalogue: Catalogue) -> None:
    s = catalogue.agreement(GSOMIA).state_at(kst(2019, 8, 24))
    assert s.status is Status.TERMINATION_NOTIFIED
    assert s.in_force
    assert s.notice is not None
    assert s.notice.effective_end == kst(2019, 11, 23)
    assert s.notice.on_time
    assert s.term_end == kst(2019, 11, 23)
    assert "2019-11-23T00:00+09:00" in s.explanation


def test_deadline_for_23_november_is_end_of_24_august(catalogue: Catalogue) -> None:
    """Notice on 24 Aug (any hour) is on time; the deadline instant is 25 Aug 00:00 KST."""
    s = catalogue.agreement(GSOMIA).state_at(kst(2019, 8, 22))
    assert s.notice_deadline == kst(2019, 8, 25)
    assert s.notice_deadline - timedelta(microseconds=1) < kst(2019, 8, 25)


def test_suspension_keeps_agreement_in_force_after_the_anniversary(catalogue: Catalogue) -> None:
    s = catalogue.agreement(GSOMIA).state_at(kst(2019, 11, 23, 0, 0, 1))
    assert s.status is Status.NOTICE_SUSPENDED
    assert s.in_force
    assert "suspended" in s.explanation


def test_without_the_suspension_the_agreement_ends_at_midnight_kst(catalogue: Catalogue) -> None:
    what_if = catalogue.agreement(GSOMIA).what_if(without=[SUSPENSION])
    assert what_if.state_at(kst(2019, 11, 22, 23, 59, 59)).status is Status.TERMINATION_NOTIFIED
    ended = what_if.state_at(kst(2019, 11, 23, 0, 0, 1))
    assert ended.status is Status.TERMINATED
    assert ended.since == kst(2019, 11, 23)
    assert what_if.state_at(kst(2019, 11, 23)).status is Status.TERMINATED


def test_what_if_sets_aside_later_events_that_could_not_have_happened(catalogue: Catalogue) -> None:
    what_if = catalogue.agreement(GSOMIA).what_if(without=[SUSPENSION])
    assert [e.id for e in what_if.events if e.id == "2023-03-21-notes-withdrawn"] == []
    assert len(what_if.set_aside) == 1
    assert "2023-03-21-notes-withdrawn" in what_if.set_aside[0]
    assert what_if.state_at(kst(2023, 6, 1)).status is Status.TERMINATED


def test_what_if_with_an_unknown_event_names_it(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownNameError, match="no-such-event"):
        catalogue.agreement(GSOMIA).what_if(without=["no-such-event"])


def test_withdrawal_in_2023_makes_the_agreement_fully_normal(catalogue: Catalogue) -> None:
    s = catalogue.agreement(GSOMIA).state_at(kst(2023, 3, 21))
    assert s.status is Status.IN_FORCE
    assert s.notice is None
    assert s.term_end == kst(2023, 11, 23)
    later = catalogue.agreement(GSOMIA).state_at(kst(2026, 11, 29))
    assert later.status is Status.IN_FORCE
    assert later.term_end == kst(2027, 11, 23)


def test_tisa_takes_effect_29_december_2014(catalogue: Catalogue) -> None:
    assert state(catalogue, kst(2014, 12, 28, 23, 59), "tisa-2014") is Status.NOT_IN_FORCE
    assert state(catalogue, kst(2014, 12, 29), "tisa-2014") is Status.IN_FORCE


def test_missile_warning_arrangement_operational_19_december_2023(catalogue: Catalogue) -> None:
    agreement = "trilateral-missile-warning-2023"
    assert state(catalogue, kst(2023, 12, 18), agreement) is Status.NOT_IN_FORCE
    assert state(catalogue, kst(2023, 12, 19), agreement) is Status.IN_FORCE


def test_naive_instant_is_refused(catalogue: Catalogue) -> None:
    with pytest.raises(InstantError, match="UTC offset"):
        catalogue.agreement(GSOMIA).state_at(datetime(2019, 1, 1))


# --- a small agreement built in the test, to exercise every rule of the machine ---

TERM = TermRules(initial_months=12, renewal_months=12, notice_days=90)


def ev(event_id: str, kind: EventKind, at: datetime, party: str | None = "AAA") -> Event:
    return Event(event_id, kind, at, f"note {event_id}", party)


def agreement(*events: Event, term: TermRules = TERM) -> Agreement:
    return Agreement(
        id="test",
        title="Test agreement",
        parties=("AAA", "BBB"),
        topology=Topology.BILATERAL,
        hub=None,
        scope_topics=None,
        purposes=frozenset({"defence"}),
        timezone=KST,
        term=term,
        equivalence=Equivalence(()),
        events=events,
    )


SIGNED = ev("signed", EventKind.SIGNED, kst(2020, 1, 10), None)
IN_FORCE = ev("eif", EventKind.ENTERED_INTO_FORCE, kst(2020, 1, 10), None)


def test_late_notice_takes_effect_at_the_following_anniversary() -> None:
    late = ev("late", EventKind.TERMINATION_NOTIFIED, kst(2021, 11, 1))  # deadline 2021-10-12
    a = agreement(SIGNED, IN_FORCE, late)
    s = a.state_at(kst(2021, 11, 2))
    assert s.notice is not None
    assert not s.notice.on_time
    assert s.notice.effective_end == kst(2023, 1, 10)
    assert "missed" in s.explanation
    assert "following anniversary" in s.explanation
    assert a.state_at(kst(2022, 1, 10, 0, 0, 1)).status is Status.TERMINATION_NOTIFIED
    assert a.state_at(kst(2023, 1, 10)).status is Status.TERMINATED


def test_notice_just_before_the_deadline_is_on_time() -> None:
    on_time = ev("n", EventKind.TERMINATION_NOTIFIED, kst(2021, 10, 11, 23, 59, 59))
    s = agreement(SIGNED, IN_FORCE, on_time).state_at(kst(2021, 10, 12))
    assert s.notice is not None
    assert s.notice.on_time
    assert s.notice.effective_end == kst(2022, 1, 10)


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            (SIGNED, IN_FORCE, ev("s", EventKind.NOTICE_SUSPENDED, kst(2020, 5, 1))),
            "no pending termination notice",
        ),
        (
            (SIGNED, IN_FORCE, ev("w", EventKind.NOTICE_WITHDRAWN, kst(2020, 5, 1))),
            "no termination notice to withdraw",
        ),
        ((IN_FORCE,), "no signature is recorded"),
        ((SIGNED, IN_FORCE, ev("again", EventKind.ENTERED_INTO_FORCE, kst(2020, 6, 1))), "already in force"),
        ((SIGNED, ev("t", EventKind.TERMINATION_NOTIFIED, kst(2020, 2, 1))), "not in force"),
        (
            (
                SIGNED,
                IN_FORCE,
                ev("n1", EventKind.TERMINATION_NOTIFIED, kst(2020, 2, 1)),
                ev("n2", EventKind.TERMINATION_NOTIFIED, kst(2020, 3, 1)),
            ),
            "already pending",
        ),
        (
            (
                SIGNED,
                IN_FORCE,
                Event("end", EventKind.TERMINATED, kst(2020, 2, 1), "both notes", mutual_consent=True),
                ev("x", EventKind.AMENDED, kst(2021, 1, 1)),
            ),
            "already terminated",
        ),
        ((ev("amend", EventKind.AMENDED, kst(2019, 1, 1)),), "must be signed"),
    ],
)
def test_events_that_break_the_rules_are_refused_with_the_reason(
    events: tuple[Event, ...], message: str
) -> None:
    with pytest.raises(LifecycleError, match=message):
        agreement(*events)


def test_duplicate_event_ids_are_refused() -> None:
    with pytest.raises(LifecycleError, match="used twice"):
        agreement(SIGNED, ev("signed", EventKind.AMENDED, kst(2020, 2, 1)))


def test_event_by_a_non_party_is_refused() -> None:
    with pytest.raises(Exception, match="not a party"):
        agreement(SIGNED, ev("n", EventKind.APPROVED, kst(2020, 1, 1), party="ZZZ"))


def test_termination_in_force_without_notice_needs_mutual_consent() -> None:
    """Art. 21.3 of the ROK–Japan GSOMIA: either party may terminate by written notice through
    the diplomatic channel 90 days ahead; without a notice, only the parties together can end it."""
    with pytest.raises(LifecycleError, match=r"only by written notice \(Art. 21.3\)"):
        agreement(SIGNED, IN_FORCE, ev("end", EventKind.TERMINATED, kst(2021, 3, 1)))
    pending = ev("n", EventKind.TERMINATION_NOTIFIED, kst(2020, 6, 1))  # ends at 2021-01-10
    with pytest.raises(LifecycleError, match="mutual consent"):
        agreement(SIGNED, IN_FORCE, pending, ev("end", EventKind.TERMINATED, kst(2020, 7, 1)))
    agreed = Event("end", EventKind.TERMINATED, kst(2021, 3, 1), "joint note", mutual_consent=True)
    a = agreement(SIGNED, IN_FORCE, agreed)
    assert a.state_at(kst(2021, 3, 1)).status is Status.TERMINATED
    assert "by mutual consent" in a.state_at(kst(2021, 3, 1)).explanation
    with pytest.raises(LifecycleError, match="only a termination"):
        Event("x", EventKind.AMENDED, kst(2021, 3, 1), "r", mutual_consent=True)


def test_a_what_if_file_cannot_end_the_agreement_in_its_normal_state(tmp_path: Path) -> None:
    """Issue 21 §2: a `terminated` event in the normal state, read from --with-file, is an error."""
    from gsomia import load_catalogue, load_events

    path = tmp_path / "end.toml"
    path.write_text(
        '[[events]]\nid = "end"\nkind = "terminated"\nat = 2024-06-01\nreference = "a note"\n',
        encoding="utf-8",
    )
    gsomia = load_catalogue().agreement("kor-jpn-gsomia-2016")
    with pytest.raises(LifecycleError, match=r"Art. 21.3"):
        gsomia.what_if(adding=load_events(path, gsomia.timezone))
    path.write_text(path.read_text(encoding="utf-8") + "mutual_consent = true\n", encoding="utf-8")
    ended = gsomia.what_if(adding=load_events(path, gsomia.timezone))
    assert ended.state_at(kst(2024, 6, 1)).status is Status.TERMINATED


def test_suspended_notice_allows_immediate_termination() -> None:
    a = agreement(
        SIGNED,
        IN_FORCE,
        ev("n", EventKind.TERMINATION_NOTIFIED, kst(2020, 6, 1)),
        ev("s", EventKind.NOTICE_SUSPENDED, kst(2021, 1, 9)),
        ev("end", EventKind.TERMINATED, kst(2021, 3, 1, 12)),
    )
    assert a.state_at(kst(2021, 1, 11)).status is Status.NOTICE_SUSPENDED
    assert a.state_at(kst(2021, 3, 1, 11, 59)).in_force
    assert a.state_at(kst(2021, 3, 1, 12)).status is Status.TERMINATED


def test_indefinite_agreement_ends_notice_days_after_notice() -> None:
    a = agreement(
        SIGNED,
        IN_FORCE,
        ev("n", EventKind.TERMINATION_NOTIFIED, kst(2020, 6, 1, 15)),
        term=TermRules(None, None, 90),
    )
    s = a.state_at(kst(2020, 6, 2))
    assert s.notice is not None
    assert s.notice.effective_end == kst(2020, 8, 30)
    assert a.state_at(kst(2020, 8, 30)).status is Status.TERMINATED


def test_fixed_term_without_renewal_expires() -> None:
    a = agreement(SIGNED, IN_FORCE, term=TermRules(24, None, 30))
    assert a.state_at(kst(2022, 1, 9)).in_force
    ended = a.state_at(kst(2022, 1, 10))
    assert ended.status is Status.TERMINATED
    assert "fixed term" in ended.explanation


def test_adding_an_event_that_breaks_the_rules_is_an_error(catalogue: Catalogue) -> None:
    bad = Event(
        "x", EventKind.NOTICE_SUSPENDED, kst(2018, 1, 1), "a suspension with nothing to suspend", "KOR"
    )
    with pytest.raises(LifecycleError, match="no pending termination notice"):
        catalogue.agreement(GSOMIA).what_if(adding=[bad])


# --- properties ---

zones = st.sampled_from(["Asia/Seoul", "Asia/Tokyo", "America/New_York", "Europe/London"])


@given(
    entry=st.dates(min_value=date(1950, 1, 1), max_value=date(2100, 12, 31)),
    years=st.integers(min_value=0, max_value=40),
    notice_days=st.integers(min_value=0, max_value=365),
    zone=zones,
)
def test_notice_deadline_is_exactly_the_notice_period_before_each_anniversary(
    entry: date, years: int, notice_days: int, zone: str
) -> None:
    tz = ZoneInfo(zone)
    start = datetime(entry.year, entry.month, entry.day, tzinfo=tz)
    a = Agreement(
        id="p",
        title="p",
        parties=("AAA", "BBB"),
        topology=Topology.BILATERAL,
        hub=None,
        scope_topics=None,
        purposes=frozenset({"x"}),
        timezone=tz,
        term=TermRules(12, 12, notice_days),
        equivalence=Equivalence(()),
        events=(
            Event("s", EventKind.SIGNED, start, "r"),
            Event("e", EventKind.ENTERED_INTO_FORCE, start, "r"),
        ),
    )
    probe = start + timedelta(days=365 * years + 1)
    s = a.state_at(probe)
    assert s.term_end is not None
    assert s.notice_deadline is not None
    anniversaries = [
        datetime.combine(add_months(entry, 12 * k), datetime.min.time(), tzinfo=tz)
        for k in range(1, years + 4)
    ]
    # the term end is the first anniversary (local midnight) strictly after the probe
    assert s.term_end == min(x for x in anniversaries if x > probe)
    # the next deadline is exactly notice_days (local calendar days) before an anniversary,
    # the first whose deadline has not passed
    deadlines = [
        datetime.combine(x.date() - timedelta(days=notice_days), datetime.min.time(), tzinfo=tz)
        for x in anniversaries
    ]
    assert s.notice_deadline == min(d for d in deadlines if d > probe)


@given(offset=st.integers(min_value=-200, max_value=200))
def test_a_notice_is_on_time_exactly_when_given_before_the_deadline(offset: int) -> None:
    given_at = kst(2021, 10, 12) + timedelta(hours=offset)
    a = agreement(SIGNED, IN_FORCE, ev("n", EventKind.TERMINATION_NOTIFIED, given_at))
    s = a.state_at(given_at)
    assert s.notice is not None
    assert s.notice.on_time is (given_at < kst(2021, 10, 12))
    assert s.notice.effective_end == (kst(2022, 1, 10) if s.notice.on_time else kst(2023, 1, 10))
