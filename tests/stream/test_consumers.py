"""Consumers and publishers over WebSocket, and the same stream through a NATS JetStream bus."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from tests.stream.test_bus import NATS_URL, _nats_absent
from websockets.sync.client import connect

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import build, open_nodes, serve_in_threads
from gsomia.node import Node
from gsomia.node._service import system_clock
from gsomia.stream import NatsBus, StreamService, launches, replay


def _batches(node: Node) -> list[dict[str, Any]]:
    return [json.loads(r.detail) for r in node.store.audit(after_seq=0, kind="stream.batch", limit=100)]


def _ws(endpoint: str, path: str, token: str) -> Any:
    return connect(
        endpoint.replace("http", "ws") + path, additional_headers={"Authorization": f"Bearer {token}"}
    )


@pytest.mark.parametrize("bus", ["inprocess", "nats"])
def test_a_websocket_feed_at_kor_reaches_a_websocket_consumer_at_jpn(tmp_path: Path, bus: str) -> None:
    """Published over KOR's WebSocket feed, followed over JPN's WebSocket, on either bus."""
    if bus == "nats" and (absent := _nats_absent()) is not None:
        if os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"NATS is required (GSOMIA_REQUIRE_SERVICES=1) but absent at {NATS_URL}: {absent}")
        pytest.skip(f"NATS absent at {NATS_URL}: {absent}")
    members = build(tmp_path / "net")
    nodes = open_nodes(members, system_clock)
    streams = (
        {p: StreamService(nodes[p], NatsBus(NATS_URL, ephemeral=True)) for p in nodes}
        if bus == "nats"
        else None
    )
    endpoint = {m.party: m.endpoint for m in members}
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    updates = replay(launches(2019)[9], originator="KOR", every_s=40)
    with (
        serve_in_threads(nodes, members, streams),
        _ws(endpoint["JPN"], "/stream/tracks/ws", tokens["JPN"]["analyst"]) as consumer,
        _ws(endpoint["KOR"], "/stream/tracks/publish", tokens["KOR"]["officer"]) as feed,
    ):
        bad = dict(track_update_to_json(updates[0]), pre_launch_indicators=["TEL out of its shelter"])
        feed.send(json.dumps(bad))
        refusal = json.loads(feed.recv(timeout=10))
        assert refusal["error"] == "ForbiddenFieldError"
        assert "pre_launch_indicators" in refusal["detail"]
        for update in updates:
            feed.send(json.dumps(track_update_to_json(update)))
        got = [json.loads(consumer.recv(timeout=10)) for _ in updates]
    for node in nodes.values():
        node.close()
    assert [t["update_ts"] for t in got] == [track_update_to_json(u)["update_ts"] for u in updates]
    assert {(t["route"], t["agreement"]) for t in got} == {("direct", "kor-jpn-gsomia-2016")}
    assert got[-1]["final"] is True


def test_a_batch_on_the_feed_crosses_the_link_in_fewer_frames_than_tracks(tmp_path: Path) -> None:
    """One feed message of many updates (one refused in the middle): every valid update reaches
    JPN in order, the link coalesces them into TRACKS frames, and the signed roots cover them."""
    members = build(tmp_path / "net")
    nodes = open_nodes(members, system_clock)
    endpoint = {m.party: m.endpoint for m in members}
    tokens = {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members}
    updates = [track_update_to_json(u) for u in replay(launches(2019)[9], originator="KOR", every_s=20)]
    bad = dict(updates[1], radar_cross_section=0.1)
    with (
        serve_in_threads(nodes, members),
        _ws(endpoint["JPN"], "/stream/tracks/ws", tokens["JPN"]["analyst"]) as consumer,
        _ws(endpoint["KOR"], "/stream/tracks/publish", tokens["KOR"]["officer"]) as feed,
    ):
        feed.send(json.dumps([updates[0], bad, *updates[1:]]))
        refusal = json.loads(feed.recv(timeout=10))
        got = [json.loads(consumer.recv(timeout=10)) for _ in updates]
        deadline = time.monotonic() + 60
        while True:  # a window's root is signed within 50 ms (and a tick) of its first frame
            signed = [d for d in _batches(nodes["KOR"]) if d["recipient"] == "JPN"]
            verified = [d for d in _batches(nodes["JPN"]) if d["sender"] == "KOR"]
            if (signed and len(verified) == len(signed)) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    for node in nodes.values():
        node.close()
    assert refusal["error"] == "ForbiddenFieldError"
    assert "radar_cross_section" in refusal["detail"]
    assert [t["update_ts"] for t in got] == [u["update_ts"] for u in updates]
    frames = sum(d["count"] for d in signed)
    assert 1 <= frames < len(updates)  # coalesced: fewer frames than tracks
    assert sorted(d["root"] for d in signed) == sorted(d["root"] for d in verified)
