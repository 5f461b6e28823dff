"""Instants: aware datetimes, local midnights and calendar arithmetic.

Pure: time zones arrive as ``tzinfo`` objects built at the boundary, and nothing
here reads the clock.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, tzinfo

from gsomia.errors import InstantError

__all__ = [
    "INSTANT_PATTERN",
    "RFC3339_PART",
    "TIMESTAMP_PATTERN",
    "add_months",
    "epoch_us",
    "local_midnight",
    "parse_instant",
    "require_aware",
    "require_supported",
]

# The years an instant given to gsomia may fall in. Agreements run from the 1980s; the bound keeps
# every term end, notice deadline and renewal computed from an instant inside the calendar Python
# can hold (year 9999), so far-future input is refused at the boundary instead of overflowing later.
_FIRST_YEAR = 1900
_LAST_YEAR = 2999

# The instants gsomia accepts, as a regular expression that the OpenAPI document states too: a
# calendar date (1900-2999, days per month, 29 February in leap years only), optionally followed by
# a time (minutes, optional seconds and up to 6 decimals) and a UTC offset (``Z`` or ``+hh:mm``).
# It is what ``datetime.isoformat`` writes, so every instant gsomia writes reads back.
_YEAR = r"(?:19|2[0-9])[0-9][0-9]"  # [0-9], not \d: Python's \d also matches other scripts' digits
_LEAP = r"(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|2[048]00)"
_DATE = (
    rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    rf"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)"
)
_TIME = (
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9])?)"  # local mean time had offset seconds
)
INSTANT_PATTERN = rf"^{_DATE}(?:{_TIME})?$"
# An instant that must carry its time and offset (a label's ``created``): no bare date.
TIMESTAMP_PATTERN = rf"^{_DATE}{_TIME}$"
# RFC 3339 as STIX and TAXII write it: seconds always, any number of decimals (no anchors: a part).
RFC3339_PART = (
    rf"{_DATE}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_INSTANT = re.compile(INSTANT_PATTERN)


def epoch_us(at: datetime) -> int:
    """Microseconds since the Unix epoch: how the store keeps instants (sortable integers).

    >>> from datetime import UTC
    >>> epoch_us(datetime(2019, 11, 23, tzinfo=UTC))
    1574467200000000
    """
    return int(at.timestamp() * 1_000_000)


def require_aware(at: datetime, what: str = "instant") -> datetime:
    """Return ``at`` if it carries an offset; a naive instant is ambiguous and refused."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise InstantError(f"{what} {at.isoformat()} has no UTC offset; give one, e.g. +09:00")
    return at


def require_supported(at: datetime, what: str = "instant") -> datetime:
    """Return ``at`` if it falls in the years gsomia computes with (1900-2999, UTC); refuse it otherwise.

    >>> from datetime import UTC
    >>> require_supported(datetime(9999, 12, 31, tzinfo=UTC))
    Traceback (most recent call last):
    ...
    gsomia.errors.InstantError: instant 9999-12-31T00:00:00+00:00 is outside the supported years 1900-2999
    """
    if not _FIRST_YEAR <= at.year <= _LAST_YEAR:
        raise InstantError(
            f"{what} {at.isoformat()} is outside the supported years {_FIRST_YEAR}-{_LAST_YEAR}"
        )
    return at


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """00:00 on ``day`` in ``tz`` (an anniversary falls at local midnight)."""
    return datetime.combine(day, time(0, 0), tzinfo=tz)


def parse_instant(text: str, tz: tzinfo) -> datetime:
    """Parse ISO 8601 with an offset; a bare date is local midnight in ``tz``.

    The forms accepted are exactly :data:`INSTANT_PATTERN` (years 1900-2999).

    >>> from zoneinfo import ZoneInfo
    >>> parse_instant("2019-11-23", ZoneInfo("Asia/Seoul")).isoformat()
    '2019-11-23T00:00:00+09:00'
    >>> parse_instant("2019-11-23T00:00:01+09:00", ZoneInfo("UTC")).second
    1
    """
    text = text.strip()
    if not _INSTANT.match(text):
        raise InstantError(_why_not(text))
    if "T" not in text:
        return local_midnight(date.fromisoformat(text), tz)
    return datetime.fromisoformat(text)


def _why_not(text: str) -> str:
    """What is wrong with an instant that does not match :data:`INSTANT_PATTERN`."""
    form = "give ISO 8601 such as 2019-11-23T00:00:01+09:00, or a date such as 2019-11-23"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return f"instant {text!r} is not ISO 8601: {form}"
    if not _FIRST_YEAR <= at.year <= _LAST_YEAR:
        return f"instant {text!r} is outside the supported years {_FIRST_YEAR}-{_LAST_YEAR}"
    if "T" in text and at.utcoffset() is None:
        return f"instant {text!r} has no UTC offset; give one, e.g. +09:00"
    return f"instant {text!r} is not in the accepted form: {form}"


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic; a day past the month's end falls on its last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))
