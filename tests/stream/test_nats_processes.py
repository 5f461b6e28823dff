"""Two processes of one node over NATS JetStream: a track published through one reaches a consumer
on the other; the consumer's process is killed, it reconnects to the other process with
``Last-Event-ID`` and misses no track (the event ids are JetStream's sequence numbers, the same in
every process). Another node of the same party on the same NATS server shares nothing with it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.reliability.processes import Reader, kill, require_nats, serve, stop, wait_for

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, free_port
from gsomia.node import load_config
from gsomia.stream import launches, node_stream_names, replay


def test_a_consumer_resumes_on_the_other_process_and_misses_no_track(tmp_path: Path) -> None:
    require_nats()
    members = {m.party: m for m in build(tmp_path / "net")}
    kor = members["KOR"]
    tokens = json.loads((kor.directory / "tokens.json").read_text(encoding="utf-8"))
    officer = {"Authorization": f"Bearer {tokens['officer']}"}
    updates = [track_update_to_json(u) for u in replay(launches(2019)[0], originator="KOR", every_s=30)]
    assert len(updates) >= 6
    ports = [kor.port, free_port()]
    publisher, watched = (f"http://127.0.0.1:{p}" for p in ports)
    processes = [serve(kor, port=port, nats=True) for port in ports]
    try:
        first = Reader(watched, tokens["analyst"])
        assert first.status == 200
        for update in updates[:3]:
            assert (
                httpx.post(f"{publisher}/stream/tracks", json=update, headers=officer, timeout=10).status_code
                == 202
            )
        wait_for(lambda: len(first.events) == 3, 20, "the other process's consumer seeing the tracks")
        kill(processes[1])  # the consumer's process dies
        for update in updates[3:6]:  # published while the consumer is away
            assert (
                httpx.post(f"{publisher}/stream/tracks", json=update, headers=officer, timeout=10).status_code
                == 202
            )
        resumed = Reader(publisher, tokens["analyst"], after=first.events[-1][0])
        assert resumed.status == 200
        wait_for(lambda: len(resumed.events) >= 3, 20, "the resumed consumer catching up")
    finally:
        for process in processes:
            stop(process)
    seen = first.events + resumed.events
    assert [t["update_ts"] for _, t in seen] == [
        u["update_ts"] for u in updates[:6]
    ]  # none missed, none twice
    ids = [i for i, _ in seen]
    assert ids == list(range(ids[0], ids[0] + 6))  # one sequence, across both processes


def test_each_node_has_its_own_stream_and_its_processes_share_it(tmp_path: Path) -> None:
    members = {m.party: m for m in build(tmp_path / "a")}
    others = {m.party: m for m in build(tmp_path / "b")}
    kor = load_config(members["KOR"].directory).identity()
    again = load_config(members["KOR"].directory).identity()  # another process of the same node
    another_kor = load_config(others["KOR"].directory).identity()
    assert node_stream_names(kor) == node_stream_names(again)
    assert node_stream_names(kor) != node_stream_names(another_kor)
    assert node_stream_names(kor)[0].startswith("GSOMIA_TRACKS_KOR_")
    with pytest.raises(ValueError, match="PARTY:fingerprint"):
        node_stream_names("KOR.evil>")
