"""The publisher encodes a parsed update as the JSON form says, whichever path encodes it.

An update whose instants are all at UTC is handed to orjson with its instants whole (orjson
writes them as ``isoformat`` does); one with an instant at another offset goes through
``track_update_to_json``. Both give the bytes of ``track_update_to_json``, and the receivers'
boundary reads back the same update.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.stream._updates import changed

from gsomia.core.tracks import parse_track_update, track_update_to_json
from gsomia.stream._service import _track_bytes

_UPDATE: dict[str, Any] = {
    "track_id": "kor-2019-05-04-1",
    "update_ts": "2019-05-04T00:29:10.250000+00:00",
    "launch": {"lat": 39.4, "lon": 127.5, "time": "2019-05-04T00:29:00Z"},
    "impact": {"lat": 39.8, "lon": 129.9, "time": "2019-05-04T00:33:00.000001+00:00"},
    "points": [
        {"t": "2019-05-04T00:29:05+00:00", "lat": 39.41, "lon": 127.6, "alt_m": 9000.0, "speed_mps": 800.0},
        {"t": "2019-05-04T00:29:10-00:00", "lat": 39.42, "lon": 127.7, "alt_m": 18000.0, "speed_mps": 900.0},
    ],
    "missile_class": "SRBM (KN-23)",
    "quality": 0.9,
    "final": False,
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ((), None),  # every instant at UTC: the whole-instant path
        (("impact",), None),
        (("points",), []),
        (("update_ts",), "2019-05-04T09:29:10+09:00"),
        (("launch", "time"), "2019-05-03T20:59:00.5-03:30"),
        (("impact", "time"), "2019-05-04T05:33:00+05:00:30"),  # orjson would write +05:01
        (("points", 1, "t"), "2019-05-04T00:29:10+00:00:01.000005"),
    ],
)
def test_the_encoding_is_the_json_form_at_every_offset(path: tuple[Any, ...], value: Any) -> None:
    data = changed(_UPDATE, path, value) if path else _UPDATE
    update = parse_track_update(data, originator="KOR")
    encoded = _track_bytes(update)
    assert encoded == orjson.dumps(track_update_to_json(update))
    assert parse_track_update(orjson.loads(encoded), originator="KOR") == update
