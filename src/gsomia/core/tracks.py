"""Missile tracks as the real-time missile-warning arrangement shares them.

The arrangement shares, from launch to impact, the estimated launch point, the flight
trajectory and the estimated impact point; never pre-launch indicators or details of
national sensors. A :class:`TrackUpdate` holds exactly that, and
:func:`parse_track_update` refuses anything else at the boundary, naming the field:

>>> parse_track_update({"track_id": "t1", "radar": "x"}, originator="KOR")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gsomia.errors.ForbiddenFieldError: track field 'radar' is forbidden: ...
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from gsomia.errors import ForbiddenFieldError, TrackError

__all__ = [
    "FORBIDDEN_WORDS",
    "MAX_POINTS",
    "GeoFix",
    "TrackPoint",
    "TrackUpdate",
    "parse_track_update",
    "track_update_to_json",
]

MAX_POINTS = 1000
# A key containing any of these names a sensor, a platform or a pre-launch indicator.
FORBIDDEN_WORDS = (
    "sensor",
    "radar",
    "platform",
    "satellite",
    "aegis",
    "ship",
    "prelaunch",
    "pre_launch",
    "pre-launch",
    "indicator",
    "emitter",
    "detector",
)
_NESTED = (dict, list)
_FORBIDDEN = re.compile("|".join(re.escape(word) for word in FORBIDDEN_WORDS))
_TRACK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_MISSILE_CLASS = re.compile(r"^[\w .,()/+-]{1,64}$")
_TOP = frozenset(
    {
        "track_id",
        "originator",
        "update_ts",
        "launch",
        "impact",
        "points",
        "missile_class",
        "quality",
        "final",
    }
)
_TOP_REQUIRED = _TOP - {"impact", "originator"}
_FIX = frozenset({"lat", "lon", "time"})
_POINT = frozenset({"t", "lat", "lon", "alt_m", "speed_mps"})
# A sample's bounds, named once for the inline check and the one that names the failing field.
_LAT_MIN, _LAT_MAX = -90, 90
_LON_MIN, _LON_MAX = -180, 180
_ALT_MIN, _ALT_MAX = -500, 5_000_000
_SPEED_MIN, _SPEED_MAX = 0, 20_000
# parse_track_update relies on no allowed field naming what is forbidden (a test checks it)
_fromisoformat = datetime.fromisoformat
_tuple_new = tuple.__new__  # a named tuple made without its Python-level __new__ (the same tuple)


class GeoFix(NamedTuple):
    """An estimated point on the ground and its instant (launch or impact).

    A named tuple, not a frozen dataclass, as :class:`TrackPoint`: as immutable and as typed, and
    made about four times faster, which every node pays for each sample of each track it reads
    (``parse_track_update`` at the boundary; benchmarks/JOURNAL.md, bench_stream)."""

    lat: float
    lon: float
    at: datetime


class TrackPoint(NamedTuple):
    """One trajectory sample: instant, position, altitude above the surface, speed (a named tuple,
    as :class:`GeoFix`)."""

    at: datetime
    lat: float
    lon: float
    alt_m: float
    speed_mps: float


class TrackUpdate(NamedTuple):
    """One update of a track: the new samples and the current estimates (a named tuple, as
    :class:`TrackPoint`: every node a track reaches makes one at its boundary, and a frozen
    dataclass's ``__init__`` sets each of its nine fields through ``object.__setattr__``)."""

    track_id: str
    originator: str
    update_ts: datetime
    launch: GeoFix
    impact: GeoFix | None
    points: tuple[TrackPoint, ...]
    missile_class: str
    quality: float
    final: bool


def _children(data: Any, path: str) -> Iterator[tuple[str | None, Any, str]]:
    """(key or ``None`` in a list, value, path) of each member of an object or a list."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield str(key), value, f"{path}.{key}" if path else str(key)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield None, value, f"{path}[{index}]"


def _forbidden(data: Any, path: str) -> None:
    """Raise on the first key, at any depth, that names a sensor, platform or indicator.

    Depth first, in document order, with its own stack: however deep the JSON, no RecursionError.
    """
    stack = [_children(data, path)]
    while stack:
        for key, value, where in stack[-1]:
            if key is not None and _FORBIDDEN.search(key.lower()):
                raise ForbiddenFieldError(where)
            if isinstance(value, _NESTED):
                stack.append(_children(value, where))
                break
        else:
            stack.pop()


def _members(data: Any, allowed: frozenset[str], required: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TrackError(f"{where}: expected an object")
    keys = data.keys()
    if keys <= allowed and keys >= required:  # the common case, without building sets
        return data
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise TrackError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(data))
    if missing:
        raise TrackError(f"{where}: missing field {missing[0]!r}")
    return data


def _number(value: Any, where: str, low: float, high: float) -> float:
    if type(value) is float and low <= value <= high:  # the common case (NaN fails the comparison)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TrackError(f"{where}: expected a number")
    try:
        number = float(value)
    except OverflowError:  # an integer of any length reads from JSON; not written back (it may be long)
        raise TrackError(f"{where}: a number outside [{low}, {high}]") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise TrackError(f"{where}: {number} is outside [{low}, {high}]")
    return number


def _instant(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise TrackError(f"{where}: expected an ISO 8601 instant")
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise TrackError(f"{where}: {value!r} is not ISO 8601") from exc
    if at.utcoffset() is None:
        raise TrackError(f"{where}: {value!r} has no UTC offset")
    return at


def _valid_instant(value: Any) -> datetime | None:
    """``value`` as an instant with an offset, or ``None`` if it is not one (then :func:`_instant`
    says why, naming the field)."""
    if type(value) is str:
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return None
        if at.utcoffset() is not None:
            return at
    return None


def _fix(data: Any, where: str) -> GeoFix:
    if type(data) is dict and data.keys() == _FIX:  # the common case: no error paths built
        lat, lon, time = data["lat"], data["lon"], data["time"]
        if (
            type(lat) is float
            and _LAT_MIN <= lat <= _LAT_MAX
            and type(lon) is float
            and _LON_MIN <= lon <= _LON_MAX
        ):
            at = _valid_instant(time)
            if at is not None:
                return GeoFix(lat, lon, at)
    fix = _members(data, _FIX, _FIX, where)  # the same checks, naming the field that fails
    return GeoFix(
        _number(fix["lat"], f"{where}.lat", _LAT_MIN, _LAT_MAX),
        _number(fix["lon"], f"{where}.lon", _LON_MIN, _LON_MAX),
        _instant(fix["time"], f"{where}.time"),
    )


def _point(data: Any, index: int) -> TrackPoint:
    """A sample that :func:`_parse`'s inline check did not pass: the same checks, naming the
    field that fails."""
    where = f"track.points[{index}]"
    point = _members(data, _POINT, _POINT, where)
    return TrackPoint(
        _instant(point["t"], f"{where}.t"),
        _number(point["lat"], f"{where}.lat", _LAT_MIN, _LAT_MAX),
        _number(point["lon"], f"{where}.lon", _LON_MIN, _LON_MAX),
        _number(point["alt_m"], f"{where}.alt_m", _ALT_MIN, _ALT_MAX),
        _number(point["speed_mps"], f"{where}.speed_mps", _SPEED_MIN, _SPEED_MAX),
    )


def parse_track_update(data: Any, *, originator: str) -> TrackUpdate:
    """A track update from its JSON form, published at ``originator``'s node.

    Refuses, naming the field: anything about sensors, platforms or pre-launch indicators
    (:class:`~gsomia.errors.ForbiddenFieldError`), unknown or missing fields, out-of-range
    numbers, instants without an offset, samples out of time order, another originator.

    Every object at every depth is checked against its allowed fields, none of which names a
    sensor, platform or indicator; so an update that parses holds no forbidden key, and the
    walk that names one runs only when the update is refused (then before any other reason).
    """
    try:
        return _parse(data, originator)
    except TrackError:
        _forbidden(data, "")
        raise


def _parse(data: Any, originator: str) -> TrackUpdate:
    track = _members(data, _TOP, _TOP_REQUIRED, "track")
    track_id = track["track_id"]
    if not isinstance(track_id, str) or not _TRACK_ID.match(track_id):
        raise TrackError("track.track_id: 1-128 letters, digits, '.', '_', ':' or '-'")
    stated = track.get("originator", originator)
    if stated != originator:
        raise TrackError(f"track.originator: {stated!r}, but this node publishes for {originator}")
    points_data = track["points"]
    if not isinstance(points_data, list) or len(points_data) > MAX_POINTS:
        raise TrackError(f"track.points: expected a list of at most {MAX_POINTS} samples")
    points: list[TrackPoint] = []
    for p in points_data:
        # the common case inline (one call fewer per sample, at every node a track reaches);
        # _point makes the same checks when this one fails, naming the field
        if type(p) is dict and p.keys() == _POINT:
            lat, lon, alt, speed, t = p["lat"], p["lon"], p["alt_m"], p["speed_mps"], p["t"]
            if (
                type(lat) is float
                and _LAT_MIN <= lat <= _LAT_MAX
                and type(lon) is float
                and _LON_MIN <= lon <= _LON_MAX
                and type(alt) is float
                and _ALT_MIN <= alt <= _ALT_MAX
                and type(speed) is float
                and _SPEED_MIN <= speed <= _SPEED_MAX
                and type(t) is str
            ):
                try:
                    at = _fromisoformat(t)
                except ValueError:
                    at = None
                if at is not None and at.utcoffset() is not None:
                    points.append(_tuple_new(TrackPoint, (at, lat, lon, alt, speed)))
                    continue
        points.append(_point(p, len(points)))
    for i in range(1, len(points)):
        if points[i][0] < points[i - 1][0]:
            raise TrackError(f"track.points[{i}].t: samples must be in time order")
    missile_class = track["missile_class"]
    if not isinstance(missile_class, str) or not _MISSILE_CLASS.match(missile_class):
        raise TrackError("track.missile_class: 1-64 letters, digits, spaces or .,()/+-")
    final = track["final"]
    if not isinstance(final, bool):
        raise TrackError("track.final: expected true or false")
    impact = track.get("impact")
    return _tuple_new(
        TrackUpdate,
        (
            track_id,
            originator,
            _instant(track["update_ts"], "track.update_ts"),
            _fix(track["launch"], "track.launch"),
            None if impact is None else _fix(impact, "track.impact"),
            tuple(points),
            missile_class,
            _number(track["quality"], "track.quality", 0, 1),
            final,
        ),
    )


def _fix_json(fix: GeoFix) -> dict[str, Any]:
    return {"lat": fix.lat, "lon": fix.lon, "time": fix.at.isoformat()}


def track_update_to_json(update: TrackUpdate) -> dict[str, Any]:
    """The JSON form (the dashboard's contract, without ``route`` and ``agreement``)."""
    return {
        "track_id": update.track_id,
        "originator": update.originator,
        "update_ts": update.update_ts.isoformat(),
        "launch": _fix_json(update.launch),
        "impact": None if update.impact is None else _fix_json(update.impact),
        "points": [  # unpacked: the named tuple's fields in their order (at, lat, lon, alt_m, speed_mps)
            {"t": at.isoformat(), "lat": lat, "lon": lon, "alt_m": alt_m, "speed_mps": speed_mps}
            for at, lat, lon, alt_m, speed_mps in update.points
        ],
        "missile_class": update.missile_class,
        "quality": update.quality,
        "final": update.final,
    }
