"""Track updates: parsed at the boundary, sensor details and pre-launch indicators refused."""

from __future__ import annotations

from typing import Any

import pytest

from gsomia.core.tracks import parse_track_update, track_update_to_json
from gsomia.errors import ForbiddenFieldError, TrackError


def _update(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "track_id": "KOR-t1",
        "originator": "KOR",
        "update_ts": "2019-08-24T06:45:10+09:00",
        "launch": {"lat": 39.74, "lon": 127.47, "time": "2019-08-24T06:45:00+09:00"},
        "impact": {"lat": 40.25, "lon": 131.88, "time": "2019-08-24T06:49:48+09:00"},
        "points": [
            {
                "t": "2019-08-24T06:45:09+09:00",
                "lat": 39.75,
                "lon": 127.5,
                "alt_m": 9000.0,
                "speed_mps": 1900.0,
            },
            {
                "t": "2019-08-24T06:45:10+09:00",
                "lat": 39.76,
                "lon": 127.52,
                "alt_m": 10000.0,
                "speed_mps": 1890,
            },
        ],
        "missile_class": "Large-calibre guided MRL (KN-25)",
        "quality": 0.6,
        "final": False,
    }
    base.update(extra)
    return base


def test_a_well_formed_update_round_trips() -> None:
    update = parse_track_update(_update(), originator="KOR")
    assert len(update.points) == 2
    assert update.impact is not None
    assert track_update_to_json(update) == _update(
        points=[
            {**p, "alt_m": float(p["alt_m"]), "speed_mps": float(p["speed_mps"])} for p in _update()["points"]
        ]
    )


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"sensor": "TPY-2"}, "sensor"),
        ({"radar_site": "Kyogamisaki"}, "radar_site"),
        (
            {"launch": {"lat": 1, "lon": 1, "time": "2019-08-24T06:45:00+09:00", "platform": "x"}},
            "launch.platform",
        ),
        ({"pre_launch_indicators": ["TEL movement"]}, "pre_launch_indicators"),
        (
            {"points": [{"t": "2019-08-24T06:45:09+09:00", "detected_by": {"Sensor_ID": 3}}]},
            "points[0].detected_by.Sensor_ID",
        ),
    ],
)
def test_sensor_platform_and_pre_launch_fields_are_refused_by_name(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ForbiddenFieldError) as caught:
        parse_track_update(_update(**extra), originator="KOR")
    assert caught.value.field == field
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"quality": 1.5}, "track.quality"),
        ({"update_ts": "2019-08-24T06:45:10"}, "no UTC offset"),
        ({"originator": "JPN"}, "publishes for KOR"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"final": "yes"}, "track.final"),
        ({"track_id": "bad id!"}, "track.track_id"),
        ({"launch": {"lat": 95, "lon": 1, "time": "2019-08-24T06:45:00+09:00"}}, "track.launch.lat"),
    ],
)
def test_malformed_updates_name_the_problem(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(TrackError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        parse_track_update(_update(**extra), originator="KOR")


def test_samples_out_of_time_order_are_refused() -> None:
    points = list(reversed(_update()["points"]))
    with pytest.raises(TrackError, match=r"points\[1\]\.t: samples must be in time order"):
        parse_track_update(_update(points=points), originator="KOR")


def test_impact_may_be_unknown() -> None:
    assert parse_track_update(_update(impact=None), originator="KOR").impact is None
