"""Instants: aware datetimes, local midnights and calendar arithmetic.

Pure: time zones arrive as ``tzinfo`` objects built at the boundary, and nothing
here reads the clock.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, datetime, time, tzinfo

from gsomia.errors import InstantError

__all__ = ["add_months", "epoch_us", "local_midnight", "parse_instant", "require_aware"]

_BARE_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """00:00 on ``day`` in ``tz`` (an anniversary falls at local midnight)."""
    return datetime.combine(day, time(0, 0), tzinfo=tz)


def parse_instant(text: str, tz: tzinfo) -> datetime:
    """Parse ISO 8601 with an offset; a bare date is local midnight in ``tz``.

    >>> from zoneinfo import ZoneInfo
    >>> parse_instant("2019-11-23", ZoneInfo("Asia/Seoul")).isoformat()
    '2019-11-23T00:00:00+09:00'
    >>> parse_instant("2019-11-23T00:00:01+09:00", ZoneInfo("UTC")).second
    1
    """
    text = text.strip()
    if _BARE_DATE.match(text):
        try:
            return local_midnight(date.fromisoformat(text), tz)
        except ValueError as exc:
            raise InstantError(f"instant {text!r} is not a valid date: {exc}") from exc
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InstantError(
            f"instant {text!r} is not ISO 8601 (e.g. 2019-11-23T00:00:01+09:00 or 2019-11-23)"
        ) from exc
    return require_aware(at, f"instant {text!r}")


def add_months(day: date, months: int) -> date:
    """Calendar month arithmetic; a day past the month's end falls on its last day."""
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(day.day, last))
