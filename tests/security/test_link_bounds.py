"""Attack: exhausting or confusing a node through its stream link and its publisher feed (issue 22 §8).

The adversaries: a hostile partner (KOR's node operator, holding KOR's genuine keys) that sends
tracks without signed roots or floods a link with authorisations; a network attacker who replays
a captured handshake; anyone on the network who opens idle WebSockets to ``/stream/link``; a
release officer's feed client that sends a binary message. KOR and JPN run as node processes.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from tests.security._live import (
    CONSENT,
    Consumer,
    Processes,
    audit,
    identity,
    ring,
    send_frames,
    tokens,
)
from tests.stream._updates import kor_message
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.core.policy import Consent, ConsentKind
from gsomia.core.tracks import track_update_to_json
from gsomia.crypto.envelope import sign_origin
from gsomia.demo.network import NetNode, build
from gsomia.exchange._messages import consent_content
from gsomia.kernel import NodeContext
from gsomia.stream import launches, replay
from gsomia.stream._gate import LinkGate
from gsomia.stream._link import TRACK, TRACKS, initiate
from gsomia.stream._service import _ROOT_DEADLINE_S


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NetNode]]:
    """KOR and JPN as processes, under the shipped agreements (KOR reaches JPN directly)."""
    members = {m.party: m for m in build(tmp_path_factory.mktemp("pair") / "net")}
    with Processes(members["KOR"], members["JPN"]):
        yield members


def _updates(launch: int, track_id: str) -> list[dict[str, Any]]:
    return [
        track_update_to_json(u)
        for u in replay(launches(2019)[launch], originator="KOR", every_s=30, track_id=track_id)
    ]


def _refusals(jpn: NetNode, error: str) -> list[dict[str, Any]]:
    return [
        r for r in audit(jpn, "stream.link") if r["outcome"] == "refused" and r["detail"]["error"] == error
    ]


def test_tracks_without_any_signed_root_are_never_shown(pair: dict[str, NetNode]) -> None:
    """A hostile partner (KOR, its genuine keys) sends five tracks and no signed root at all."""
    jpn = pair["JPN"]
    analyst = Consumer(jpn, tokens(jpn)["analyst"])
    try:
        frames = [(TRACK, kor_message(u)) for u in _updates(1, "KOR-unrooted")[:5]]
        closed = send_frames(ring(pair["KOR"]), jpn, frames)
        time.sleep(1.0)  # what JPN accepted would reach its analyst within milliseconds
    finally:
        analyst.close()
    assert [t["track_id"] for t in analyst.tracks] == []
    assert closed == (1008, "unsigned")
    assert _refusals(jpn, "unsigned")


def test_a_sender_that_never_sends_its_window_root_is_dropped(pair: dict[str, NetNode]) -> None:
    """KOR signs its tracks as their originator but never the hop's window root over its frames."""
    from gsomia.stream._origin import sign_batch

    kor, jpn = pair["KOR"], pair["JPN"]
    body = sign_batch(ring(kor), [kor_message(_updates(2, "KOR-no-window-root")[1])], datetime.now(UTC))
    began = time.monotonic()
    closed = send_frames(ring(kor), jpn, [(TRACKS, body)])
    waited = time.monotonic() - began
    assert closed == (1008, "no-batch-root")
    # dropped at the root's deadline: never before it, and not at some longer time-out (the margin is
    # for a loaded machine, whose scheduler may keep JPN's process waiting for seconds)
    assert _ROOT_DEADLINE_S <= waited < _ROOT_DEADLINE_S + 30
    assert _refusals(jpn, "no-batch-root")


def test_a_replayed_handshake_is_neither_answered_nor_audited_as_opened(pair: dict[str, NetNode]) -> None:
    """A network attacker replays KOR's captured first handshake message to JPN three times."""
    kor, jpn = pair["KOR"], pair["JPN"]
    url = jpn.endpoint.replace("http", "ws") + "/stream/link"
    first, _ = initiate(ring(kor), identity(jpn), datetime.now(UTC))
    opened_before = [r for r in audit(jpn, "stream.link") if r["outcome"] == "opened"]
    answers = 0
    for _ in range(3):
        with connect(url, compression=None, open_timeout=10) as ws:
            ws.send(first)
            try:  # answered or closed at once; a loaded JPN may take seconds to do either
                ws.recv(timeout=60)
                answers += 1
            except (ConnectionClosed, TimeoutError):
                pass
    opened = [r for r in audit(jpn, "stream.link") if r["outcome"] == "opened"]
    assert opened == opened_before  # a replayer cannot confirm the keys: never "opened"
    assert answers <= 1  # the first sight of the hello is answered; a replay is not
    replays = _refusals(jpn, "replayed-handshake")
    assert 1 <= len(replays) <= 2  # each replay refused (bounded: the tally's 10 a source and minute)


def test_a_link_carries_a_bounded_number_of_authorisations(pair: dict[str, NetNode]) -> None:
    """A hostile partner (KOR) floods one link with distinct, genuinely signed authorisations."""
    kor, jpn = pair["KOR"], pair["JPN"]
    own = ring(kor)
    now = datetime.now(UTC)
    before = len(audit(jpn, "stream.consent"))
    frames = []
    for n in range(200):
        consent = Consent(ConsentKind.TRACK_RELAY, "KOR", "USA", now, f"flood {n}", hub="JPN")
        jws = sign_origin(own, consent_content(consent, uuid.uuid4().hex), now)
        frames.append((CONSENT, jws.encode()))
    closed = send_frames(own, jpn, frames, wait=20)
    assert closed == (1008, "too-many-consents")
    kept = len(audit(jpn, "stream.consent")) - before
    assert 0 < kept <= 64
    assert _refusals(jpn, "too-many-consents")


def test_idle_unauthenticated_links_are_limited_per_source_and_closed_at_a_deadline(
    pair: dict[str, NetNode],
) -> None:
    """Anyone opens twenty WebSockets to ``/stream/link`` and sends nothing."""
    jpn = pair["JPN"]
    url = jpn.endpoint.replace("http", "ws") + "/stream/link"
    before = len(audit(jpn, "stream.link"))
    deadline = LinkGate().handshake_s  # the node's own gate: an idle link is closed this long after it opened
    closed: list[tuple[int | None, str]] = []
    began_wall = time.time()
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(url, compression=None, open_timeout=10)) for _ in range(20)]
        began = time.monotonic()
        for ws in sockets:
            try:
                ws.recv(timeout=max(0.1, deadline + 60 - (time.monotonic() - began)))
                closed.append((None, "answered"))
            except ConnectionClosed as exc:
                closed.append((exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, ""))
            except TimeoutError:
                closed.append((None, "kept open"))
        waited = time.monotonic() - began
    assert closed.count((1008, "too-many-links")) == 12
    assert closed.count((1008, "handshake-timeout")) == 8
    assert waited < deadline + 30  # at the gate's deadline (a loaded machine's scheduler may add seconds)
    minutes = int(time.time() // 60) - int(began_wall // 60) + 1  # the tally's windows it spanned
    records = Counter(r["detail"]["error"] for r in audit(jpn, "stream.link")[before:])
    # per source and code a window's first 10 a record (every process's), the rest only counted
    assert 1 <= records["too-many-links"] <= min(12, NodeContext.REFUSALS_RECORDED * minutes)
    assert records["handshake-timeout"] <= 8


def test_a_text_message_on_a_link_is_refused(pair: dict[str, NetNode]) -> None:
    """Anyone sends text where the link protocol carries binary messages."""
    jpn = pair["JPN"]
    with connect(jpn.endpoint.replace("http", "ws") + "/stream/link", compression=None) as ws:
        ws.send("hello")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1008, "malformed")


def test_a_binary_message_on_the_publish_feed_is_refused_and_the_feed_goes_on(
    pair: dict[str, NetNode],
) -> None:
    """A release officer's feed client sends a binary message, then a valid update."""
    kor = pair["KOR"]
    url = kor.endpoint.replace("http", "ws") + "/stream/tracks/publish"
    headers = {"Authorization": f"Bearer {tokens(kor)['officer']}"}
    update = _updates(3, "KOR-after-binary")[0]
    with connect(url, additional_headers=headers) as feed:
        feed.send(b"\x00\x01 not text")
        refusal = json.loads(feed.recv(timeout=10))
        feed.send(json.dumps(update))
        with pytest.raises(TimeoutError):  # accepted updates get no answer
            feed.recv(timeout=1)
    assert refusal["error"] == "InvalidInputError"
    assert "binary" in refusal["detail"]
    published = [r for r in audit(kor, "stream.plan") if r["subject"] == "KOR-after-binary"]
    assert published
