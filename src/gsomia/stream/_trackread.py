"""A track update read at a node's boundary with msgspec's validated conversion, the core's parse
deciding every update it does not pass.

:func:`~gsomia.core.tracks.parse_track_update` is the rule (pure, in the core, naming the field that
fails); every node a track reaches reads it once at its boundary (the publisher's feed, each hub,
the recipient). :func:`read_track_update` makes the same checks faster: msgspec checks the shape
(the allowed fields at every depth, none missing, the types, the ranges, at most ``MAX_POINTS``
samples) in C; the id's and the class's patterns are the core's expressions, each distinct string
matched once while it is kept (:func:`_patterns`), and the instants are read here by the same
``datetime.fromisoformat`` and offset check as the core's, samples in time order. Whatever it does not
accept, for any reason, goes to ``parse_track_update``, which refuses it naming the field (a
forbidden one first) or, where the two differ in what they take (an integer for a coordinate, an
instant ``fromisoformat`` reads and msgspec would not), accepts it as before: an update either
accepts is the same value (tests/stream/test_trackread.py). The instants stay text for msgspec:
its own reading takes a lowercase ``t``/``z`` that ``fromisoformat`` refuses and rounds a seventh
fraction digit where ``fromisoformat`` truncates it, which would move the instant that keys a
received update in the replay memory.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
import orjson
from msgspec import UNSET, Meta, Struct, UnsetType

from gsomia._canonical import json_keys, keys_once, strings_read  # kept here too: the stream's names
from gsomia.core.tracks import MAX_POINTS, GeoFix, TrackPoint, TrackUpdate, parse_track_update

__all__ = [
    "json_keys",
    "keys_once",
    "read_feed_json",
    "read_track_json",
    "read_track_json_checked",
    "read_track_json_keys",
    "read_track_update",
    "strings_read",
]

_Lat = Annotated[float, Meta(ge=-90, le=90)]
_Lon = Annotated[float, Meta(ge=-180, le=180)]


class _Fix(Struct, forbid_unknown_fields=True):
    lat: _Lat
    lon: _Lon
    time: str


class _Point(Struct, forbid_unknown_fields=True):
    t: str
    lat: _Lat
    lon: _Lon
    alt_m: Annotated[float, Meta(ge=-500, le=5_000_000)]
    speed_mps: Annotated[float, Meta(ge=0, le=20_000)]


class _Track(Struct, forbid_unknown_fields=True):
    track_id: str  # its pattern checked in _instants, once per distinct id (_patterns)
    update_ts: str
    launch: _Fix
    points: Annotated[list[_Point], Meta(max_length=MAX_POINTS)]
    missile_class: str  # the same, once per distinct class
    quality: Annotated[float, Meta(ge=0, le=1)]
    final: bool
    originator: str | UnsetType = UNSET
    impact: _Fix | UnsetType | None = UNSET  # UNSET: no key (``None``: ``null``), for the count of keys


_convert = msgspec.convert
_decode_track = msgspec.json.Decoder(_Track).decode
_decode_feed = msgspec.json.Decoder(list[_Track] | _Track).decode
_ValidationError = msgspec.ValidationError
_DecodeError = msgspec.DecodeError  # a ValidationError is one too
_fromisoformat = datetime.fromisoformat
_tuple_new = tuple.__new__


# The id's and the class's patterns, checked as msgspec checked them (``re.search``, the core's
# expressions: tests/stream/test_track_patterns.py), each distinct string once while it is kept: a
# stream's updates repeat a few ids and classes, and msgspec's call of the pattern cost about half
# its decoding of a track (2.6 of 5.4 µs; benchmarks/JOURNAL.md, bench_stream, 2026-12-08). What
# is kept is only what its pattern accepted, one dict per pattern, at most _KEPT strings each.
_TRACK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$").search
_MISSILE_CLASS = re.compile(r"^[\w .,()/+-]{1,64}$").search
_KEPT = 4096
_ids: dict[str, None] = {}
_classes: dict[str, None] = {}


def _patterns(track_id: str, missile_class: str) -> bool:
    """Whether the id and the class match their patterns (each kept once it has)."""
    return _matched(_ids, _TRACK_ID, track_id) and _matched(_classes, _MISSILE_CLASS, missile_class)


def _matched(kept: dict[str, None], search: Any, text: str) -> bool:
    """Whether ``text`` is kept in ``kept`` or matches ``search`` (then kept, ``kept`` cleared first
    when it holds ``_KEPT``)."""
    if text in kept:
        return True
    if search(text) is None:
        return False
    if len(kept) >= _KEPT:
        kept.clear()
    kept[text] = None
    return True


def _at(text: str) -> datetime | None:
    try:
        at = _fromisoformat(text)
    except ValueError:
        return None
    return at if at.utcoffset() is not None else None


def _fast(data: Any, originator: str) -> TrackUpdate | None:
    try:
        track = _convert(data, _Track)
    except _ValidationError:
        return None
    return _from_struct(track, originator)


def _instants(
    track: _Track, originator: str, points: list[TrackPoint] | None
) -> tuple[datetime, datetime, datetime | None] | None:
    """The checks msgspec does not make, on ``track`` as it decoded it: the originator's, the id's
    and the class's patterns (:func:`_patterns`), and every instant read by ``fromisoformat`` with
    an offset, the samples in time order; the update's, the launch's and the impact's instants
    (``None`` without one), or ``None`` where a check fails. Each sample is appended to ``points``
    when given (a caller that builds the update)."""
    if track.originator is not UNSET and track.originator != originator:
        return None
    if (track.track_id not in _ids or track.missile_class not in _classes) and not _patterns(
        track.track_id, track.missile_class
    ):
        return None
    before = None
    for p in track.points:
        # _at inlined (a track's samples are most of its instants): the same reading and offset
        # check (``fromisoformat`` gives an instant with an offset, or none: ``tzinfo`` is then None)
        try:
            at = _fromisoformat(p.t)
        except ValueError:
            return None
        if at.tzinfo is None or (before is not None and at < before):
            return None
        before = at
        if points is not None:
            points.append(_tuple_new(TrackPoint, (at, p.lat, p.lon, p.alt_m, p.speed_mps)))
    update_ts, launched = _at(track.update_ts), _at(track.launch.time)
    if update_ts is None or launched is None:
        return None
    impact = track.impact
    if isinstance(impact, _Fix):
        impact_at = _at(impact.time)
        if impact_at is None:
            return None
        return update_ts, launched, impact_at
    return update_ts, launched, None


def _from_struct(track: _Track, originator: str) -> TrackUpdate | None:
    points: list[TrackPoint] = []
    read = _instants(track, originator, points)
    if read is None:
        return None
    update_ts, launched, impact_at = read
    launch, impact = track.launch, track.impact
    fix = None
    if impact_at is not None and isinstance(impact, _Fix):
        fix = _tuple_new(GeoFix, (impact.lat, impact.lon, impact_at))
    return _tuple_new(
        TrackUpdate,
        (
            track.track_id,
            originator,
            update_ts,
            _tuple_new(GeoFix, (launch.lat, launch.lon, launched)),
            fix,
            tuple(points),
            track.missile_class,
            track.quality,
            track.final,
        ),
    )


def read_track_update(data: Any, *, originator: str) -> TrackUpdate:
    """:func:`~gsomia.core.tracks.parse_track_update`'s value for ``data`` (its refusal, naming the
    field, for what it refuses), in about two thirds of its CPU for an update it accepts (10 -> 7 µs
    for a bench_stream update of four samples; benchmarks/JOURNAL.md, bench_stream)."""
    update = _fast(data, originator)
    return parse_track_update(data, originator=originator) if update is None else update


def _track_strings(track: _Track) -> int:
    """How many strings, keys and values, the JSON of ``track`` holds when no key is given twice
    (every field it has, at every depth: each object's fields are known, all but two of the
    track's required, and the instants, the id and the class are strings)."""
    impact = track.impact
    originator = track.originator is not UNSET
    fix = isinstance(impact, _Fix)
    points = len(track.points)
    return 14 + 2 * originator + (impact is not UNSET) + 4 * fix + 6 * points


def read_track_json_keys(raw: bytes, *, originator: str) -> tuple[TrackUpdate, int | None]:
    """:func:`read_track_json` without its check of keys given twice: the update, and how many
    strings (keys and values) ``raw`` holds if no key is given twice (``None`` where msgspec did
    not read it), for a caller that checks the whole message the track is in (:func:`keys_once`)."""
    try:
        track = _decode_track(raw)
        update = _from_struct(track, originator)
    except _DecodeError:
        update = None
    if update is None:
        return parse_track_update(orjson.loads(raw), originator=originator), None
    return update, _track_strings(track)


def read_track_json_checked(raw: bytes, *, originator: str) -> tuple[str, datetime, int | None]:
    """:func:`read_track_json_keys` for a caller that needs of the update only its track id and its
    instant (a receiver: the rest goes on as the bytes checked): the same checks and the same
    answer, accepted or refused, without the update's samples and fixes made into tuples. The
    track id, the update's instant and the strings count (``None`` where msgspec did not read it)."""
    try:
        track = _decode_track(raw)
        read = _instants(track, originator, None)
    except _DecodeError:
        read = None
    if read is None:
        update = parse_track_update(orjson.loads(raw), originator=originator)
        return update.track_id, update.update_ts, None
    return track.track_id, read[0], _track_strings(track)


def read_track_json(raw: bytes, *, originator: str) -> TrackUpdate:
    """:func:`read_track_update` of the JSON text ``raw`` (a track as a received message holds it):
    msgspec checks the shape as it decodes the bytes, with no Python dict made on the way, and
    anything it does not accept is decoded (``orjson``, its refusal as ``ValueError``) and goes to
    ``parse_track_update``: the same value or refusal as ``read_track_update(orjson.loads(raw))``
    (tests/stream/test_trackread.py), for text with no key given twice at any depth. A key given
    twice is refused (``ValueError``): readers differ on which of the two they take (orjson and
    ``JSON.parse`` the last, others the first or neither), so the update checked here would not be
    the one every consumer of these bytes reads."""
    update, strings = read_track_json_keys(raw, originator=originator)
    keys_once(raw, strings)
    return update


def read_feed_json(text: str, *, originator: str, most: int) -> list[TrackUpdate] | None:
    """Every update of one message of the publisher's feed (a JSON object, or an array of at most
    ``most`` of them) read at the boundary in one pass of msgspec's typed decoding over the text,
    no Python dict made: ``[read_track_update(d) for d in orjson.loads(text)]`` (or of the one
    object), the same values, when the message is one the slow path accepts whole. ``None`` for
    anything else, read by the caller as before (``orjson``, the check of keys given twice, then
    each update on its own, refused naming the field): a message with a backslash anywhere, one
    msgspec does not decode into tracks (not JSON, an update with a field no track has, a value out
    of range...), an update whose instants ``fromisoformat`` does not read or are out of order, or
    another originator's, more than ``most`` updates, or text whose quotes are not two a string
    of the tracks read (a key given twice, at any depth: :func:`keys_once`'s count over the whole
    message, the tracks' strings summed). Nothing is refused here: what is taken is exactly what
    the slow path takes, and the slow path decides everything else."""
    if "\\" in text:
        return None
    try:
        read = _decode_feed(text)
    except _DecodeError:
        return None
    tracks: list[_Track] = read if isinstance(read, list) else [read]
    if len(tracks) > most:
        return None
    updates = []
    strings = 0
    for track in tracks:
        update = _from_struct(track, originator)
        if update is None:
            return None
        updates.append(update)
        strings += _track_strings(track)
    if text.count('"') != 2 * strings:
        return None
    return updates
