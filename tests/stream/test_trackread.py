"""The stream's boundary read (msgspec's conversion, the core's parse deciding what it does not
pass) answers as the core's ``parse_track_update`` does: the same update for what either accepts,
the same refusal (type and message, a forbidden field first) for the rest."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from tests.stream._updates import PLAIN_UPDATE, changed

from gsomia.core.tracks import MAX_POINTS, parse_track_update
from gsomia.errors import GsomiaError
from gsomia.stream._trackread import (
    _fast,
    json_keys,
    keys_once,
    read_track_json,
    read_track_json_checked,
    read_track_json_keys,
    read_track_update,
    strings_read,
)

_POINT = {"t": "2019-05-04T00:29:05+00:00", "lat": 39.41, "lon": 127.6, "alt_m": 9000.0, "speed_mps": 800.0}
_UPDATE = PLAIN_UPDATE
_INSTANTS = [
    "2019-05-04T00:29:10Z",
    "2019-05-04t00:29:10z",
    "2019-05-04 00:29:10+00:00",
    "2019-05-04T00:29:10.1234567+00:00",
    "2019-05-04T00:29:10.5+09:30",
    "2019-05-04T00:29:10",
    "2019-05-04",
    "2019-05-04T23:59:60+00:00",
    "2019-05-04T24:00:00+00:00",
    "2019-05-04T00:29:10+24:00",
    "2019-05-04T00:29:10+00:00:01",
    "20190504T002910Z",
    "",
    None,
    5,
]
_NUMBERS = [
    39,
    90,
    90.0,
    -90,
    90.0000001,
    10**400,
    -(10**400),
    True,
    None,
    "1",
    float("nan"),
    float("inf"),
    0,
]
_CASES: list[tuple[tuple[Any, ...], Any]] = [
    *((("update_ts",), v) for v in _INSTANTS),
    *((("launch", "time"), v) for v in _INSTANTS),
    *((("impact", "time"), v) for v in _INSTANTS),
    *((("points", 1, "t"), v) for v in _INSTANTS),
    *((("launch", "lat"), v) for v in _NUMBERS),
    *((("impact", "lon"), v) for v in _NUMBERS),
    *((("points", 0, field), v) for field in ("lat", "lon", "alt_m", "speed_mps") for v in _NUMBERS),
    *((("quality",), v) for v in [0, 1, 1.5, -0.0, True, None, float("nan")]),
    *((("final",), v) for v in [True, 0, 1, None, "false"]),
    *(
        (("track_id",), v)
        for v in ["t1", "t1\n", "-t", "a" * 128, "a" * 129, "t 1", "t١", "", None, 7, "kor:1.2_3-4"]
    ),
    *((("missile_class",), v) for v in ["KN-23", "ミサイル", "a" * 64, "a" * 65, "x\n", "x;", "", None]),
    *((("originator",), v) for v in ["KOR", "JPN", None, 1, ""]),
    *((("impact",), v) for v in [None, {}, [], {"lat": 1.0, "lon": 2.0}, "x"]),
    (("impact", "radar"), "x"),
    (("launch", "sensor_id"), 1),
    (("points", 0, "emitter"), {"deep": 1}),
    (("radar",), {"aegis": 1}),
    (("extra",), 1),
    (("points",), []),
    (("points",), [_POINT] * MAX_POINTS),
    (("points",), [_POINT] * (MAX_POINTS + 1)),
    (("points",), [_POINT, {**_POINT, "t": "2019-05-04T00:29:04+00:00"}]),
    (("points",), [_POINT, {**_POINT, "t": "2019-05-04T09:29:04+09:00"}]),
    (("points",), [_POINT, {**_POINT, "t": "2019-05-04T09:29:06+09:00"}]),
    (("points",), [_POINT, [1, 2]]),
    (("points",), {"0": _POINT}),
    (("points",), None),
    (("launch",), None),
    (("launch",), [39.0, 127.0]),
]


def _outcome(parse: Any, data: Any) -> tuple[str, Any]:
    try:
        update = parse(data, originator="KOR")
    except GsomiaError as exc:
        return type(exc).__name__, str(exc)
    return "update", (update, [type(x).__name__ for x in (update.launch.lat, update.quality)])


@pytest.mark.parametrize(("path", "value"), _CASES)
def test_the_read_answers_as_the_core_parse(path: tuple[Any, ...], value: Any) -> None:
    data = changed(_UPDATE, path, value)
    assert _outcome(read_track_update, data) == _outcome(parse_track_update, data)


@pytest.mark.parametrize("data", [None, [], "track", 1, {}, {"track_id": "t1", "radar": "x"}])
def test_what_is_not_an_update_is_refused_as_the_core_refuses_it(data: Any) -> None:
    assert _outcome(read_track_update, data) == _outcome(parse_track_update, data)
    assert _outcome(read_track_update, data)[0] != "update"


def test_an_ordinary_update_takes_the_fast_read() -> None:
    for data in (_UPDATE, changed(_UPDATE, ("impact",), None), changed(_UPDATE, ("originator",), "KOR")):
        assert _fast(data, "KOR") == parse_track_update(data, originator="KOR")
    assert _fast(changed(_UPDATE, ("originator",), "JPN"), "KOR") is None


def _json_outcome(raw: bytes) -> tuple[str, Any]:
    try:
        return _outcome(lambda _raw, originator: read_track_json(_raw, originator=originator), raw)
    except ValueError as exc:  # not JSON: refused as orjson refuses it
        return "ValueError", type(exc).__name__


def _loads_outcome(raw: bytes) -> tuple[str, Any]:
    try:
        data = orjson.loads(raw)
    except ValueError as exc:
        return "ValueError", type(exc).__name__
    return _outcome(read_track_update, data)


@pytest.mark.parametrize(("path", "value"), _CASES)
def test_the_read_of_the_bytes_answers_as_the_read_of_their_decoding(
    path: tuple[Any, ...], value: Any
) -> None:
    data = changed(_UPDATE, path, value)
    raw = json.dumps(data).encode()  # NaN and 10**400 as JSON text, which orjson refuses
    assert _json_outcome(raw) == _loads_outcome(raw)


def _checked_outcome(read: Any, raw: bytes) -> tuple[str, Any]:
    """What a receiver keeps of a read of ``raw``: the track id, the update's instant and the strings
    count, or the refusal (its type, and its message for gsomia's own)."""
    try:
        answer = read(raw, originator="KOR")
    except GsomiaError as exc:
        return type(exc).__name__, str(exc)
    except ValueError as exc:
        return "ValueError", type(exc).__name__
    if isinstance(answer, tuple) and len(answer) == 3:
        return "read", answer
    update, strings = answer
    return "read", (update.track_id, update.update_ts, strings)


@pytest.mark.parametrize(("path", "value"), _CASES)
def test_the_receivers_read_keeps_what_the_whole_read_reads(path: tuple[Any, ...], value: Any) -> None:
    """A receiver's read (no samples made into tuples) takes and refuses what the read of the whole
    update does, with the same id, instant and strings count: the same boundary."""
    raw = json.dumps(changed(_UPDATE, path, value)).encode()
    whole = _checked_outcome(read_track_json_keys, raw)
    assert _checked_outcome(read_track_json_checked, raw) == whole
    if whole[0] == "read":
        assert whole[1][:2] == (_loads_outcome(raw)[1][0].track_id, _loads_outcome(raw)[1][0].update_ts)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b'"track"',
        b"{}",
        b"{",
        b'{"track_id": "t1", "radar": "x"}',
        orjson.dumps(_UPDATE) + b" x",
        orjson.dumps(_UPDATE)[:-1] + b', "radar": 1, "radar": 2}',  # a forbidden field named first
        b" \n" + orjson.dumps(_UPDATE) + b" \n",
        orjson.dumps(_UPDATE).replace(b'"KOR"', b'"\\u004bOR"'),
    ],
)
def test_what_the_bytes_hold_is_read_as_their_decoding_is(raw: bytes) -> None:
    assert _json_outcome(raw) == _loads_outcome(raw)


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps(_UPDATE)[:-1] + b',"track_id":"second"}',  # at the top, the last valid
        orjson.dumps(_UPDATE)[:-1] + b', "track_id": "t-2"}',
        orjson.dumps(_UPDATE).replace(b'"launch":{', b'"launch":{"lat":1.0,', 1),  # nested
        orjson.dumps(_UPDATE).replace(b'"launch":{', b'"launch":{"l\\u0061t":1.0,', 1),  # spelt otherwise
        orjson.dumps(_UPDATE).replace(b'"launch":{', b'"launch":{"lat" :1.0,', 1),
        orjson.dumps(_UPDATE).replace(b'"points":[{', b'"points":[{"t":"2019-01-01T00:00:00Z",', 1),
    ],
)
def test_a_key_given_twice_is_refused(raw: bytes) -> None:
    """Readers differ on a key given twice (the first, the last, an error): refused at the boundary,
    whichever value is the valid one. Before, read as its last."""
    with pytest.raises(ValueError, match="given twice"):
        read_track_json(raw, originator="KOR")


@pytest.mark.parametrize(
    "value",
    ['a":"b', ":x", 'a\\":1', '"', "\\", 'x" :', "SRBM (a:b)"],
)
def test_strings_that_look_like_keys_are_not_a_key_given_twice(value: str) -> None:
    """The count of keys is exact: quotes, colons, backslashes and spaces inside strings count none."""
    data = {"a": value, "b": [{"c": value, value: 1}, {"c": {"d": value}}], value + "!": None}
    for raw in (orjson.dumps(data), json.dumps(data).encode(), json.dumps(data, indent=1).encode()):
        keys_once(raw, strings_read(orjson.loads(raw)))
        assert json_keys(raw) == 7
        assert strings_read(data) == 10
        with pytest.raises(ValueError, match="given twice"):
            keys_once(raw.replace(b'"c":', b'"c":1,"c":', 1), 10)


def test_an_update_read_fast_counts_its_strings_exactly() -> None:
    for data in (_UPDATE, changed(_UPDATE, ("impact",), None), changed(_UPDATE, ("originator",), "KOR")):
        raw = orjson.dumps(data)
        assert read_track_json_keys(raw, originator="KOR")[1] == strings_read(data)
    no_impact = {k: v for k, v in _UPDATE.items() if k not in ("impact", "originator")}
    raw = orjson.dumps(no_impact)
    assert read_track_json_keys(raw, originator="KOR")[1] == strings_read(no_impact)
