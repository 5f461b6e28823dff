"""The boundary's two paths through a track update give the same answers.

``parse_track_update`` checks the common shape (exact keys, floats in range, instants with an
offset) without building error paths; anything else goes through the checks that name the
field. These tests drive both: an accepted update is the same whichever path read it, and
every refusal (a forbidden field first) keeps its error type and message.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.stream._updates import PLAIN_UPDATE, changed

from gsomia.core.tracks import TrackPoint, TrackUpdate, parse_track_update
from gsomia.errors import ForbiddenFieldError, TrackError

_UPDATE = PLAIN_UPDATE


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    return changed(_UPDATE, path, value)


def test_integers_take_the_slow_path_and_give_the_same_update() -> None:
    fast = parse_track_update(_UPDATE, originator="KOR")
    slow = parse_track_update(
        _with(("points", 1), {"t": "2019-05-04T00:29:10+00:00", "lat": 39.42, "lon": 127.7,
                              "alt_m": 18000, "speed_mps": 900}),
        originator="KOR",
    )  # fmt: skip
    assert slow == fast
    assert type(slow.points[1].alt_m) is float
    launch_int = parse_track_update(_with(("launch", "lat"), 39), originator="KOR")
    assert launch_int.launch.lat == 39.0
    assert type(launch_int.launch.lat) is float


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("points", 1, "lat"), 91.0, "track.points[1].lat: 91.0 is outside [-90, 90]"),
        (("points", 1, "speed_mps"), float("nan"), "track.points[1].speed_mps: nan is outside [0, 20000]"),
        (("points", 0, "lon"), float("-inf"), "track.points[0].lon: -inf is outside [-180, 180]"),
        (("points", 1, "t"), None, "track.points[1].t: expected an ISO 8601 instant"),
        (("points", 0, "lon"), True, "track.points[0].lon: expected a number"),
        (("points", 1, "alt_m"), -501.0, "track.points[1].alt_m: -501.0 is outside [-500, 5000000]"),
        (("points", 0, "speed_mps"), "fast", "track.points[0].speed_mps: expected a number"),
        (
            ("points", 1, "t"),
            "2019-05-04T00:29:10",
            "track.points[1].t: '2019-05-04T00:29:10' has no UTC offset",
        ),
        (("points", 0, "t"), "yesterday", "track.points[0].t: 'yesterday' is not ISO 8601"),
        (("points", 0, "t"), 12, "track.points[0].t: expected an ISO 8601 instant"),
        (("points", 1), [1, 2], "track.points[1]: expected an object"),
        (("launch", "lat"), -90.5, "track.launch.lat: -90.5 is outside [-90, 90]"),
        (
            ("impact", "time"),
            "2019-05-04T00:33:00",
            "track.impact.time: '2019-05-04T00:33:00' has no UTC offset",
        ),
        (("launch",), "here", "track.launch: expected an object"),
    ],
)
def test_a_refusal_names_the_same_field_as_before(path: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(TrackError) as caught:
        parse_track_update(_with(path, value), originator="KOR")
    assert type(caught.value) is TrackError
    assert str(caught.value) == message


def test_unknown_and_missing_point_fields_are_named() -> None:
    extra = _with(("points", 1, "heading"), 90.0)
    with pytest.raises(TrackError, match=r"track\.points\[1\]: unknown field 'heading'"):
        parse_track_update(extra, originator="KOR")
    missing = copy.deepcopy(_UPDATE)
    del missing["points"][0]["speed_mps"]
    with pytest.raises(TrackError, match=r"track\.points\[0\]: missing field 'speed_mps'"):
        parse_track_update(missing, originator="KOR")


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("points", 1, "radar_id"), "points[1].radar_id"),
        (("launch", "sensor"), "launch.sensor"),
        (("impact", "aegis_ship"), "impact.aegis_ship"),
        (("prelaunch_indicator",), "prelaunch_indicator"),
    ],
)
def test_a_forbidden_field_is_still_refused_first_and_named(path: tuple[Any, ...], field: str) -> None:
    with pytest.raises(ForbiddenFieldError) as caught:
        parse_track_update(_with(path, "x"), originator="KOR")
    assert f"track field '{field}' is forbidden" in str(caught.value)


def test_samples_out_of_time_order_are_still_refused() -> None:
    data = _with(("points", 1, "t"), "2019-05-04T00:29:01+00:00")
    with pytest.raises(TrackError, match=r"track\.points\[1\]\.t: samples must be in time order"):
        parse_track_update(data, originator="KOR")


def test_the_inline_sample_path_makes_the_same_values_as_the_checks_that_name_fields() -> None:
    """The samples' common case is read inline in the update's loop: each sample is the same
    TrackPoint (and the update the same TrackUpdate, field by field) as the named checks make, at
    the bounds too."""
    edge = {"t": "2019-05-04T09:29:10+09:00", "lat": -90.0, "lon": 180.0, "alt_m": 5_000_000.0,
            "speed_mps": 0.0}  # fmt: skip
    fast = parse_track_update(_with(("points", 1), edge), originator="KOR")
    slow = parse_track_update(_with(("points", 1), dict(edge, speed_mps=0)), originator="KOR")  # an int
    assert type(fast) is TrackUpdate
    assert type(fast.points[1]) is TrackPoint
    assert fast == slow
    assert fast.points[1] == slow.points[1]
    assert fast.points[1].at.utcoffset() is not None
    assert fast.points[1].lat == -90.0
    assert fast._asdict().keys() == {"track_id", "originator", "update_ts", "launch", "impact", "points",
                                     "missile_class", "quality", "final"}  # fmt: skip
