"""A termination mid-stream between real node processes on the wall clock (``slow``).

``test_termination.py`` proves the instant exactly with a fake clock (nodes in threads, since
processes cannot share one). Here the three nodes are processes on the real clock: in a
what-if where GSOMIA ended in 2019, KOR reaches JPN only under the 2023 missile-warning
arrangement, and that arrangement is written to terminate a minute after the nodes
start. KOR publishes a track every 50 ms across that instant: JPN receives what was
published before it, and nothing published after it, while the USA receives everything.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stream.test_stream_nodes import Follower, without_events

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import NetNode, build, start, stop
from gsomia.stream import launches, replay

pytestmark = pytest.mark.slow

LEAD = timedelta(seconds=60)  # time for three processes to start before the instant (a loaded machine)
BEFORE = timedelta(seconds=10)  # KOR publishes from this long before the instant
STEP = 0.05


def _what_if(directory: Path, end: datetime) -> Path:
    extra = directory / "what-if"
    extra.mkdir(parents=True)
    gsomia = without_events(
        "kor-jpn-gsomia-2016.toml", {"2019-11-22-notice-suspended", "2023-03-21-notes-withdrawn"}
    )
    (extra / "kor-jpn-gsomia-2016.toml").write_text(gsomia, encoding="utf-8")
    trilateral = (
        without_events("trilateral-missile-warning-2023.toml", set())
        + f"""
[[agreement.events]]
id = "drill-terminated"
kind = "terminated"
at = {end.strftime("%Y-%m-%dT%H:%M:%SZ")}
reference = "ended for the test, a minute after the nodes start"
mutual_consent = true
"""
    )
    (extra / "trilateral-missile-warning-2023.toml").write_text(trilateral, encoding="utf-8")
    return extra


def _key(track: dict[str, Any]) -> str:
    return f"{track['track_id']}@{track['update_ts']}"


def test_a_termination_stops_the_stream_between_processes_at_its_instant(tmp_path: Path) -> None:
    end = (datetime.now(UTC) + LEAD).replace(microsecond=0)
    extra = _what_if(tmp_path, end)
    members = build(tmp_path)
    for member in members:
        config = member.directory / "node.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("data_dirs = []", f"data_dirs = [{json.dumps(str(extra))}]"))
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    running = {n["party"]: NetNode(n["party"], Path(n["dir"]), n["port"]) for n in start(tmp_path)}
    try:
        assert datetime.now(UTC) < end - BEFORE, "the nodes took too long to start"
        jpn = Follower(running["JPN"].endpoint, tokens["JPN"]["analyst"])
        usa = Follower(running["USA"].endpoint, tokens["USA"]["analyst"])
        updates = replay(launches(2019)[0], originator="KOR", every_s=10)
        sent: list[tuple[datetime, datetime, str, list[str]]] = []
        headers = {"Authorization": f"Bearer {tokens['KOR']['officer']}"}
        with httpx.Client(base_url=running["KOR"].endpoint, headers=headers, timeout=10) as kor:
            while datetime.now(UTC) < end - BEFORE:  # the wall clock is the test's subject
                time.sleep(STEP)
            for n in itertools.count():  # the launch again and again, a new track each time
                # on until 2 s past the instant and a dozen tracks after it, however slow the machine
                after_end = sum(1 for before, _, _, _ in sent if before >= end)
                if datetime.now(UTC) > end + timedelta(seconds=2) and after_end > 12:
                    break
                assert datetime.now(UTC) < end + timedelta(seconds=120), "too few tracks after the instant"
                body = track_update_to_json(updates[n % len(updates)])
                body["track_id"] = f"KOR-live-{n // len(updates)}"
                before = datetime.now(UTC)
                response = kor.post("/stream/tracks", json=body)
                after = datetime.now(UTC)
                assert response.status_code == 202, response.text
                recipients = [r["recipient"] for r in response.json()["routes"]]
                sent.append((before, after, _key(body), recipients))
                time.sleep(STEP)
        usa_got = usa.wait_for(len(sent), 60)
        jpn.close(settle=1.0)
        usa.close()
    finally:
        stop(tmp_path)
    early = [ts for _, after, ts, _ in sent if after < end - timedelta(seconds=1)]
    late = [ts for before, _, ts, _ in sent if before >= end]
    assert len(early) > 10, "the run must start well before the instant"
    assert len(late) > 10, "the run must go on well after the instant"
    assert all("JPN" not in to for before, _, _, to in sent if before >= end)  # KOR stops sending
    jpn_got = [_key(t) for t in jpn.tracks]
    assert set(early) <= set(jpn_got)  # everything well before the instant arrived
    assert not set(late) & set(jpn_got)  # nothing published after it
    assert {t["agreement"] for t in jpn.tracks} == {"trilateral-missile-warning-2023"}
    assert [_key(t) for t in usa_got] == [key for _, _, key, _ in sent]  # the USA, throughout
    print(f"\n{len(sent)} published across {end.isoformat()}: JPN got {len(jpn_got)}, the USA {len(usa_got)}")
