"""The stream between real node processes: allowed routes only, hub relay, refusals audited."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.stream._updates import kor_message
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.core.tracks import track_update_to_json
from gsomia.crypto.keys import PeerIdentity
from gsomia.demo.network import NetNode, build, start, stop
from gsomia.node import Node
from gsomia.stream import launches, replay
from gsomia.stream._link import TRACKS, initiate
from gsomia.stream._origin import sign_batch


def without_events(name: str, drop: set[str]) -> str:
    """A shipped agreement file with some events left out (a what-if)."""
    text = (files("gsomia") / "data" / "agreements" / name).read_text(encoding="utf-8")
    head, *blocks = text.split("[[agreement.events]]")
    kept = [b for b in blocks if not any(f'id = "{e}"' in b for e in drop)]
    return head + "".join("[[agreement.events]]" + b for b in kept)


def what_if_dir(directory: Path) -> Path:
    """GSOMIA ended on 2019-11-23 (no suspension, no withdrawal) and no 2023 arrangement:
    Korea reaches Japan only through the USA hub, under TISA, with its authorisation."""
    extra = directory / "what-if"
    extra.mkdir(parents=True)
    (extra / "kor-jpn-gsomia-2016.toml").write_text(
        without_events(
            "kor-jpn-gsomia-2016.toml", {"2019-11-22-notice-suspended", "2023-03-21-notes-withdrawn"}
        ),
        encoding="utf-8",
    )
    (extra / "trilateral-missile-warning-2023.toml").write_text(
        without_events("trilateral-missile-warning-2023.toml", {"2023-12-19-operational"}), encoding="utf-8"
    )
    return extra


class Follower:
    """An SSE consumer on a thread, collecting the tracks it is sent until closed (the node's
    keep-alive comments, every second, let it notice)."""

    def __init__(self, endpoint: str, token: str) -> None:
        self.tracks: list[dict[str, Any]] = []
        self.ids: list[int] = []
        self.status: int | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint, token), daemon=True)
        self._thread.start()
        assert self.ready.wait(20)

    def _run(self, endpoint: str, token: str) -> None:
        try:
            self._follow(endpoint, token)
        except httpx.HTTPError:
            return  # the node stopped under the stream
        finally:
            self.ready.set()

    def _follow(self, endpoint: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx.Timeout(10, read=15)
        with httpx.stream(
            "GET", f"{endpoint}/stream/tracks/sse", headers=headers, timeout=timeout
        ) as response:
            self.status = response.status_code
            self.ready.set()
            if response.status_code != 200:
                return
            event: dict[str, str] = {}
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith(("id: ", "data: ", "event: ")):
                    key, _, value = line.partition(": ")
                    event[key] = value
                elif not line and "data" in event:
                    assert event["event"] == "track"
                    self.ids.append(int(event["id"]))
                    self.tracks.append(json.loads(event["data"]))
                    event = {}

    def wait_for(self, count: int, seconds: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while len(self.tracks) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.tracks

    def close(self, settle: float = 0.3) -> None:
        """Leave after ``settle`` seconds more (anything that should not come has had time to)."""
        time.sleep(settle)
        self._stop.set()
        self._thread.join(15)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    directory = tmp_path_factory.mktemp("stream-net")
    extra = what_if_dir(directory)
    members = build(directory)
    for member in members:
        config = member.directory / "node.toml"
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                "data_dirs = []", f"data_dirs = [{json.dumps(str(extra))}]"
            ),
            encoding="utf-8",
        )
    running = start(directory)  # picks fresh ports: the members' endpoints are the running ones
    try:
        yield {
            "members": {n["party"]: NetNode(n["party"], Path(n["dir"]), n["port"]) for n in running},
            "tokens": {m.party: json.loads((m.directory / "tokens.json").read_text()) for m in members},
        }
    finally:
        stop(directory)


def _post(net: dict[str, Any], party: str, path: str, body: Any, who: str = "officer") -> httpx.Response:
    member: NetNode = net["members"][party]
    token = net["tokens"][party][who]
    return httpx.post(
        f"{member.endpoint}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _audit(net: dict[str, Any], party: str, kind: str) -> list[dict[str, Any]]:
    member: NetNode = net["members"][party]
    token = net["tokens"][party]["admin"]
    response = httpx.get(
        f"{member.endpoint}/audit/log",
        params={"kind": kind, "limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def test_tracks_reach_partners_only_on_the_routes_the_agreements_allow(net: dict[str, Any]) -> None:
    """KOR's tracks reach the USA directly; Japan only through the hub once KOR authorises it."""
    members = net["members"]
    jpn = Follower(members["JPN"].endpoint, net["tokens"]["JPN"]["analyst"])
    usa = Follower(members["USA"].endpoint, net["tokens"]["USA"]["analyst"])
    try:
        updates = replay(launches(2019)[0], originator="KOR", every_s=30)
        assert len(updates) >= 8
        before, after = updates[:3], updates[3:]
        for update in before:
            response = _post(net, "KOR", "/stream/tracks", track_update_to_json(update))
            assert response.status_code == 202, response.text
            routes = response.json()
            assert [r["recipient"] for r in routes["routes"]] == ["USA"]
            assert routes["refused"][0]["recipient"] == "JPN"
            assert any("authorisation" in reason for reason in routes["refused"][0]["failed"])
        authorised = _post(net, "KOR", "/stream/authorisations", {"recipient": "JPN", "hub": "USA"})
        assert authorised.status_code == 201, authorised.text
        for update in after:
            response = _post(net, "KOR", "/stream/tracks", track_update_to_json(update))
            assert response.status_code == 202, response.text
            assert {(r["recipient"], r["route"]) for r in response.json()["routes"]} == {
                ("USA", "direct"),
                ("JPN", "via USA"),
            }
        usa_tracks = usa.wait_for(len(updates))
        jpn_tracks = jpn.wait_for(len(after))
    finally:
        jpn.close()
        usa.close()
    assert [t["update_ts"] for t in usa_tracks] == [track_update_to_json(u)["update_ts"] for u in updates]
    assert {(t["route"], t["agreement"]) for t in usa_tracks} == {("direct", "usa-kor-gsomia-1987")}
    assert [t["update_ts"] for t in jpn.tracks] == [track_update_to_json(u)["update_ts"] for u in after]
    assert {(t["route"], t["agreement"], t["originator"]) for t in jpn_tracks} == {
        ("via USA", "tisa-2014", "KOR")
    }
    assert jpn_tracks[-1]["final"] is True
    assert jpn.ids == sorted(jpn.ids)
    # non-repudiation: signed batch roots on both sides of each link
    assert _audit(net, "KOR", "stream.batch")
    assert {r["outcome"] for r in _audit(net, "USA", "stream.batch")} == {"signed", "verified"}
    assert {r["detail"]["sender"] for r in _audit(net, "JPN", "stream.batch")} == {"USA"}


def test_a_consumer_without_clearance_receives_nothing_and_is_audited(net: dict[str, Any]) -> None:
    member = net["members"]["JPN"]
    follower = Follower(member.endpoint, net["tokens"]["JPN"]["admin"])  # an administrator holds no clearance
    assert follower.status == 403
    assert follower.tracks == []
    assert any(r["outcome"] == "refused" for r in _audit(net, "JPN", "stream.sse"))
    headers = {"Authorization": f"Bearer {net['tokens']['JPN']['admin']}"}
    ws_url = member.endpoint.replace("http", "ws") + "/stream/tracks/ws"
    with (
        pytest.raises(Exception, match=r"1008|403|rejected"),
        connect(ws_url, additional_headers=headers) as ws,
    ):
        ws.recv(timeout=5)


def test_the_node_declines_websocket_compression(net: dict[str, Any]) -> None:
    """Compressing tracks beside data a client chooses would leak them (CRIME/BREACH): declined."""
    member = net["members"]["JPN"]
    headers = {"Authorization": f"Bearer {net['tokens']['JPN']['analyst']}"}
    url = member.endpoint.replace("http", "ws") + "/stream/tracks/ws"
    with connect(url, additional_headers=headers, compression="deflate") as ws:  # the client offers it
        assert ws.request is not None
        assert ws.response is not None
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


def test_sensor_details_are_refused_at_ingest_naming_the_field(net: dict[str, Any]) -> None:
    body = track_update_to_json(replay(launches(2019)[1], originator="KOR", every_s=60)[0])
    body["radar_site"] = "Kyogamisaki"
    response = _post(net, "KOR", "/stream/tracks", body)
    assert response.status_code == 422
    assert "radar_site" in response.json()["detail"]
    assert any(r["outcome"] == "refused" for r in _audit(net, "KOR", "stream.publish"))


def _attack(net: dict[str, Any], build_frames: Any) -> tuple[int | None, str]:
    """Open a link to JPN with KOR's real keys, send what ``build_frames`` makes, return the close."""
    kor_dir = net["members"]["KOR"].directory
    ring = Node.open(kor_dir, migrate=False).ring
    jpn = PeerIdentity.from_signed(
        httpx.get(f"{net['members']['JPN'].endpoint}/identity", timeout=10).json(), datetime.now(UTC)
    )
    first, finish = initiate(ring, jpn, datetime.now(UTC))
    url = net["members"]["JPN"].endpoint.replace("http", "ws") + "/stream/link"
    with connect(url) as ws:
        ws.send(first)
        session = finish(ws.recv(timeout=10))
        closed: ConnectionClosed | None = None
        try:
            for frame in build_frames(session):
                ws.send(frame)  # the node may close the link before the last frame is sent
            ws.recv(timeout=10)
        except ConnectionClosed as exc:
            closed = exc
    assert closed is not None, "the node kept the link open"
    received = closed.rcvd
    return (received.code, received.reason) if received else (None, "")


def _track_body() -> bytes:
    return kor_message(track_update_to_json(replay(launches(2019)[2], originator="KOR", every_s=60)[0]))


@pytest.mark.parametrize("attack", ["replayed", "gap", "tampered"])
def test_replayed_reordered_and_tampered_frames_are_refused_and_audited(
    net: dict[str, Any], attack: str
) -> None:
    ring = Node.open(net["members"]["KOR"].directory, migrate=False).ring
    body = sign_batch(ring, [_track_body()], datetime.now(UTC))  # a genuine batch of KOR's

    def frames(session: Any) -> list[bytes]:
        one = session.seal(TRACKS, body, 0.0)[0]
        two = session.seal(TRACKS, body, 0.0)[0]
        if attack == "replayed":
            return [one, one]
        if attack == "gap":
            return [two, one]
        return [one[:-1] + bytes([one[-1] ^ 1])]

    code, reason = _attack(net, frames)
    assert (code, reason) == (1008, attack)
    refusals = [r for r in _audit(net, "JPN", "stream.link") if r["outcome"] == "refused"]
    assert any(r["detail"]["error"] == attack and r["subject"] == "KOR" for r in refusals)


def test_the_cli_replays_a_launch_and_follows_it(net: dict[str, Any]) -> None:
    """``gsomia stream replay`` publishes at KOR; ``gsomia stream follow`` prints what the USA receives."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from gsomia.cli import app

    usa, kor = net["members"]["USA"], net["members"]["KOR"]
    subscribed = len(_audit(net, "USA", "stream.sse"))
    follow = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
        [sys.executable, "-m", "gsomia", "stream", "follow", "--endpoint", usa.endpoint,
         "--token", net["tokens"]["USA"]["analyst"], "--count", "2", "--json"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts a Python process slowly
        while len(_audit(net, "USA", "stream.sse")) == subscribed:
            assert time.monotonic() < deadline, "the follower did not subscribe"
            time.sleep(0.1)  # the follower subscribes before the first update
        launch = launches(2019)[5].id
        result = CliRunner().invoke(
            app,
            ["stream", "replay", launch, "--endpoint", kor.endpoint,
             "--token", net["tokens"]["KOR"]["officer"], "--every", "120", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["originator"] == "KOR"
        out, _ = follow.communicate(timeout=120)
    finally:
        follow.kill()
        follow.wait()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["track_id"] for line in lines] == [f"KOR-{launch}"] * 2
    assert lines[0]["route"] == "direct"
    listed = CliRunner().invoke(app, ["stream", "launches", "--json"])
    assert launch in {row["id"] for row in json.loads(listed.stdout)}
