"""Track updates and messages the stream's tests build by hand: KOR's track as KOR's node writes
it for JPN (the message an originator signs), and an update with one value changed."""

from __future__ import annotations

import copy
import json
from typing import Any


def kor_message(update: dict[str, Any], via: str | None = None) -> bytes:
    """``update`` (a track update's JSON form) as KOR's node writes it for JPN, directly or through
    ``via``: the track, its label (KOR's SECRET-equivalent, releasable to JPN and the USA, for
    missile warning), the originator, the recipient and the hub."""
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN", "USA"],
        "purpose": "missile-warning",
        "topics": ["dprk-missile"],
        "created": update["launch"]["time"],
    }
    message = {"track": update, "label": label, "originator": "KOR", "recipient": "JPN", "via": via}
    return json.dumps(message).encode()


def changed(update: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``update`` with the value at ``path`` (keys and list indexes) set to ``value``."""
    data = copy.deepcopy(update)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


# A plain update of two samples (an impact at another offset): the boundary tests' starting point.
PLAIN_UPDATE: dict[str, Any] = {
    "track_id": "kor-2019-05-04-1",
    "update_ts": "2019-05-04T00:29:10+00:00",
    "launch": {"lat": 39.4, "lon": 127.5, "time": "2019-05-04T00:29:00+00:00"},
    "impact": {"lat": 39.8, "lon": 129.9, "time": "2019-05-04T00:33:00+09:00"},
    "points": [
        {"t": "2019-05-04T00:29:05+00:00", "lat": 39.41, "lon": 127.6, "alt_m": 9000.0, "speed_mps": 800.0},
        {"t": "2019-05-04T00:29:10+00:00", "lat": 39.42, "lon": 127.7, "alt_m": 18000.0, "speed_mps": 900.0},
    ],
    "missile_class": "SRBM (KN-23)",
    "quality": 0.9,
    "final": False,
}
