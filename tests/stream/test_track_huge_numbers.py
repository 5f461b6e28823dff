"""A number too large for a float in a track update (issue 15 §3's bad input, found in the attack
review of issue 18's track boundary, core/tracks): JSON reads an integer of any length, and the
check that names the failing field turned it into a float unguarded, so an OverflowError left the
boundary where a TrackError belongs: POST /stream/tracks (read by the standard JSON parser) answered
500 and audited no refusal. (The feed and partners' frames are read by orjson, which refuses such a
number as JSON.) Every number field now refuses it as a TrackError naming the field."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stream._updates import changed

from gsomia.api import create_app
from gsomia.core.tracks import parse_track_update
from gsomia.errors import TrackError
from gsomia.testing import FakeClock, make_node

_UPDATE: dict[str, Any] = {
    "track_id": "kor-2019-05-04-1",
    "update_ts": "2019-05-04T00:29:10+00:00",
    "launch": {"lat": 39.4, "lon": 127.5, "time": "2019-05-04T00:29:00+00:00"},
    "points": [
        {"t": "2019-05-04T00:29:05+00:00", "lat": 39.41, "lon": 127.6, "alt_m": 9000.0, "speed_mps": 800.0},
    ],
    "missile_class": "SRBM (KN-23)",
    "quality": 0.9,
    "final": False,
}
_HUGE = 10**400  # past float's range: float() raises OverflowError, not a refusal

_PATHS = [("points", 0, "lat"), ("points", 0, "speed_mps"), ("launch", "lon"), ("quality",)]


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    return changed(_UPDATE, path, value)


@pytest.mark.parametrize("path", _PATHS)
@pytest.mark.parametrize("sign", [1, -1])
def test_an_integer_past_a_floats_range_is_refused_naming_the_field(path: tuple[Any, ...], sign: int) -> None:
    with pytest.raises(TrackError, match=str(path[-1])):
        parse_track_update(_with(path, sign * _HUGE), originator="KOR")


def test_the_api_answers_422_naming_the_field_and_audits_the_refusal(tmp_path: Path) -> None:
    """Before: 500 Internal Server Error, and no ``stream.publish`` refusal in the audit log."""
    node = make_node(tmp_path / "kor", "KOR", clock=FakeClock())
    try:
        node.people.add_person(
            None,
            {
                "id": "officer",
                "name": "Officer",
                "nationality": "KOR",
                "clearance": "군사II급비밀",
                "need_to_know": ["dprk-missile"],
                "roles": ["release_officer"],
            },
        )
        token = node.credentials.issue(None, "officer")[1]
        app = create_app(node)

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
                return await client.post(
                    "/stream/tracks",
                    headers={"Authorization": f"Bearer {token}"},
                    json=_with(("points", 0, "lat"), _HUGE),
                )

        response = asyncio.run(run())
        assert response.status_code == 422, response.text
        assert "track.points[0].lat" in response.json()["detail"]
        refusals = [r for r in node.store.audit(limit=1000) if r.kind == "stream.publish"]
        assert [r.outcome for r in refusals] == ["refused"]
    finally:
        node.close()
