"""Hypothesis against the stream's boundary parsers: whatever comes in, only the domain's errors.

The boundaries: a track update as published (JSON, then ``parse_track_update``), a message
of the publisher's WebSocket feed (``parse_feed_message``, then ``StreamService.publish``),
the Noise handshake messages (``accept`` for the hello, ``finish`` for the answer), link
frames as received (``LinkSession.open``, ``decode_groups``) and the frame bodies a node's
``serve_link`` reads after authentication. Each gets arbitrary input and a valid example
with one part replaced by something arbitrary. The property: a value, or a
:class:`~gsomia.errors.GsomiaError` (on a link, a ``LinkError``); nothing else. ``-m slow``
runs many more examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import kst

from gsomia._codec import label_to_dict
from gsomia.core.tracks import parse_track_update, track_update_to_json
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.demo import network
from gsomia.errors import GsomiaError, LinkError
from gsomia.node import Node
from gsomia.stream import StreamService, StreamStats, launches, replay
from gsomia.stream._link import (
    BATCH,
    CLOSE,
    CONSENT,
    TRACK,
    TRACKS,
    LinkSession,
    accept,
    initiate,
)
from gsomia.stream._origin import Entry, decode_groups, encode_group, sign_batch
from gsomia.stream._service import FEED_BATCH, parse_feed_message
from gsomia.testing import FakeClock, make_node

FEW = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
MANY = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
AT = datetime(2026, 1, 1, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["KOR", "JPN", "USA", "2024-03-01T00:00:00+09:00", "2024-03-01T00:00:00", "", "radar"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)

UPDATES = replay(launches(2019)[0], originator="KOR", every_s=30)
TRACK_JSON = track_update_to_json(next(u for u in UPDATES if u.points and u.impact is not None))


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a member of ``data`` (keys and list indices)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _replaced(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(data)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return out


def mutations(valid: Any) -> st.SearchStrategy[Any]:
    """``valid`` with one member replaced by arbitrary JSON (or an extra member added)."""
    paths = list(_paths(valid))
    replaced = st.tuples(st.sampled_from(paths), json_values).map(lambda pv: _replaced(valid, *pv))
    added = st.tuples(st.text(max_size=12), json_values).map(lambda kv: {**valid, kv[0]: kv[1]})
    return replaced | added


# --- a track update as published ---


@FEW
@given(st.binary(max_size=200) | json_values.map(orjson.dumps) | mutations(TRACK_JSON).map(orjson.dumps))
def test_a_published_track_is_parsed_or_refused_with_a_domain_error(raw: bytes) -> None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return  # the feed refuses what is not JSON before the parser (below)
    try:
        update = parse_track_update(data, originator="KOR")
    except GsomiaError:
        return
    assert update.originator == "KOR"
    assert parse_track_update(track_update_to_json(update), originator="KOR") == update


# --- the publisher's WebSocket feed ---


@pytest.fixture(scope="module")
def kor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = make_node(tmp_path_factory.mktemp("kor"), "KOR", clock=FakeClock(kst(2024, 3, 1)))
    yield node
    node.close()


feed_messages = (
    st.text(max_size=100)
    | json_values.map(lambda v: orjson.dumps(v).decode())
    | mutations(TRACK_JSON).map(lambda v: orjson.dumps(v).decode())
    | st.lists(mutations(TRACK_JSON), max_size=3).map(lambda v: orjson.dumps(v).decode())
)


@FEW
@given(feed_messages)
def test_a_feed_message_is_published_or_each_update_refused_with_a_domain_error(kor: Node, text: str) -> None:
    async def run() -> None:
        service = StreamService(kor, hubs=())
        try:
            try:
                updates = parse_feed_message(text)
            except GsomiaError:
                return
            assert len(updates) <= FEED_BATCH
            for data in updates:
                try:
                    result = await service.publish(None, data)
                except GsomiaError:
                    continue
                assert result["track_id"] == data["track_id"]
        finally:
            await service.close()

    asyncio.run(run())


def test_a_feed_batch_over_the_limit_is_refused_whole() -> None:
    with pytest.raises(GsomiaError, match="at most"):
        parse_feed_message(orjson.dumps([TRACK_JSON] * (FEED_BATCH + 1)))
    assert parse_feed_message(orjson.dumps([TRACK_JSON] * 2)) == [TRACK_JSON, TRACK_JSON]
    assert parse_feed_message(orjson.dumps(TRACK_JSON)) == [TRACK_JSON]


# --- the Noise handshake and link frames ---


@pytest.fixture(scope="module")
def rings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyRing]:
    directory = tmp_path_factory.mktemp("rings")
    return {p: KeyRing.create(directory / f"{p}.json", p, f"{p.lower()}-node", AT) for p in ("KOR", "JPN")}


def _peer(ring: KeyRing) -> PeerIdentity:
    return PeerIdentity.from_document(ring.identity(f"http://{ring.party.lower()}.invalid"))


def _flip(data: bytes, index: int, byte: int) -> bytes:
    if not data:
        return data
    index %= len(data)
    return data[:index] + bytes([byte]) + data[index + 1 :]


@FEW
@given(
    st.binary(max_size=300)
    | st.tuples(st.integers(0, 10_000), st.integers(0, 255)).map(lambda ib: ("flip", *ib))
    | st.tuples(st.integers(0, 400)).map(lambda n: ("cut", n[0]))
)
def test_a_hello_is_answered_or_refused_with_a_link_error(rings: dict[str, KeyRing], fuzz: Any) -> None:
    first, _ = initiate(rings["KOR"], _peer(rings["JPN"]), AT)
    if isinstance(fuzz, bytes):
        hello = fuzz
    elif fuzz[0] == "flip":
        hello = _flip(first, fuzz[1], fuzz[2])
    else:
        hello = first[: fuzz[1]]
    peers = {"KOR": _peer(rings["KOR"])}.get
    try:
        answer, session = accept(rings["JPN"], peers, hello, AT)
    except LinkError:
        return
    assert session.peer == "KOR"
    assert answer


@FEW
@given(st.binary(max_size=200) | st.tuples(st.integers(0, 1000), st.integers(0, 255)))
def test_a_handshake_answer_finishes_or_is_refused_with_a_link_error(
    rings: dict[str, KeyRing], fuzz: Any
) -> None:
    first, finish = initiate(rings["KOR"], _peer(rings["JPN"]), AT)
    answer, _ = accept(rings["JPN"], {"KOR": _peer(rings["KOR"])}.get, first, AT)
    changed = fuzz if isinstance(fuzz, bytes) else _flip(answer, *fuzz)
    try:
        session = finish(changed)
    except LinkError:
        return
    assert changed == answer  # only the true answer finishes the handshake
    assert session.peer == "JPN"


def _pair(rings: dict[str, KeyRing]) -> tuple[LinkSession, LinkSession]:
    first, finish = initiate(rings["KOR"], _peer(rings["JPN"]), AT)
    answer, receiver = accept(rings["JPN"], {"KOR": _peer(rings["KOR"])}.get, first, AT)
    return finish(answer), receiver


@FEW
@given(
    st.binary(max_size=120)
    | st.tuples(
        st.sampled_from([TRACK, TRACKS, BATCH, CONSENT, CLOSE]),
        st.binary(max_size=60),
        st.integers(0, 200),
        st.integers(0, 255),
    )
)
def test_a_frame_is_opened_only_when_intact_and_in_sequence(rings: dict[str, KeyRing], fuzz: Any) -> None:
    sender, receiver = _pair(rings)
    if isinstance(fuzz, bytes):
        wire = fuzz
        original = None
    else:
        kind, body, index, byte = fuzz
        (original,) = sender.seal(kind, body, 0.0)
        wire = _flip(original, index, byte)
    try:
        frame = receiver.open(wire)
    except LinkError:
        assert receiver.received == 0
        return
    assert wire == original  # anything else fails authentication, sequence or type
    assert frame is not None
    assert frame.body == fuzz[1]


@FEW
@given(st.binary(max_size=200) | st.tuples(st.integers(0, 400), st.integers(0, 255)))
def test_a_batch_of_tracks_decodes_or_is_refused_with_a_link_error(
    rings: dict[str, KeyRing], fuzz: Any
) -> None:
    valid = sign_batch(rings["KOR"], [b"one", b"two", b"three"], AT)
    body = fuzz if isinstance(fuzz, bytes) else _flip(valid, *fuzz)
    try:
        groups = decode_groups(body, "KOR")
    except LinkError:
        return
    assert b"".join(encode_group(g.jws, g.size, g.entries) for g in groups) == body


@FEW
@given(st.lists(st.binary(min_size=1, max_size=50), min_size=1, max_size=10))
def test_a_batch_of_tracks_round_trips(rings: dict[str, KeyRing], messages: list[bytes]) -> None:
    (group,) = decode_groups(sign_batch(rings["KOR"], messages, AT), "KOR")
    assert [e.message for e in group.entries] == messages
    assert group.whole
    proofs = [Entry(e.index, (b"\x00" * 32,), e.message) for e in group.entries]
    assert decode_groups(encode_group(group.jws, group.size, proofs), "KOR")[0].entries == tuple(proofs)


# --- frame bodies a node reads after authentication ---


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    clock = FakeClock(kst(2024, 3, 1))
    directory = tmp_path_factory.mktemp("pair")
    kor, jpn = (
        make_node(directory / "kor", "KOR", clock=clock),
        make_node(directory / "jpn", "JPN", clock=clock),
    )
    kor.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
    jpn.exchange.register_peer(None, kor.exchange.identity(), ["kor-jpn-gsomia-2016"])
    network.assure({"KOR": kor, "JPN": jpn})  # Art. 7(5)
    yield kor, jpn
    kor.close()
    jpn.close()


class _Ended(Exception):
    """The test's end of input: the node read everything without refusing the link."""


def _serve(kor: Node, jpn: Node, kind: int, body: bytes) -> tuple[BaseException, StreamStats]:
    """Open a link from KOR to JPN's service, send one frame, end the input; what ended the link."""

    async def run() -> tuple[BaseException, StreamStats]:
        inbound: asyncio.Queue[bytes | None] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()

        async def receive() -> bytes:
            item = await inbound.get()
            if item is None:
                raise _Ended
            return item

        service = StreamService(jpn)
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        first, finish = initiate(kor.ring, peer, kor.clock())
        await inbound.put(first)
        task = asyncio.create_task(service.serve_link(receive, outbound.put))
        session = finish(await outbound.get())
        for wire in session.seal(kind, body, 0.0):
            await inbound.put(wire)
        await inbound.put(None)
        try:
            await asyncio.wait_for(task, 10)
        except (LinkError, _Ended) as exc:
            return exc, service.stats
        finally:
            await service.close()
        raise AssertionError("serve_link returned without the input ending")

    return asyncio.run(run())


def _message(kor: Node) -> dict[str, Any]:
    label = StreamService(kor).stream_label()
    return {
        "track": TRACK_JSON,
        "label": label_to_dict(label),
        "originator": "KOR",
        "recipient": "JPN",
        "via": None,
    }


frame_bodies = st.binary(max_size=120) | json_values.map(orjson.dumps)


@FEW
@given(st.data())
def test_an_authenticated_frame_is_read_or_the_link_refused_with_a_link_error(
    pair: tuple[Node, Node], data: st.DataObject
) -> None:
    kor, jpn = pair
    valid = _message(kor)
    kind = data.draw(st.sampled_from([TRACK, TRACKS, CONSENT, BATCH, CLOSE]))
    body = data.draw(frame_bodies | mutations(valid).map(orjson.dumps))
    if kind == TRACKS and data.draw(st.booleans()):
        body = sign_batch(kor.ring, [orjson.dumps(valid), body or b"x"], kor.clock())
    ended, _ = _serve(kor, jpn, kind, body)
    assert isinstance(ended, LinkError | _Ended)


def test_a_valid_batch_of_tracks_is_read_whole(pair: tuple[Node, Node]) -> None:
    kor, jpn = pair
    message = orjson.dumps(_message(kor))
    ended, stats = _serve(kor, jpn, TRACKS, sign_batch(kor.ring, [message, message], kor.clock()))
    assert isinstance(ended, _Ended)
    assert stats.received == 2


@pytest.mark.slow
@MANY
@given(st.data())
def test_many_authenticated_frames(pair: tuple[Node, Node], data: st.DataObject) -> None:
    kor, jpn = pair
    kind = data.draw(st.sampled_from([TRACK, TRACKS, CONSENT, BATCH]))
    body = data.draw(frame_bodies | mutations(_message(kor)).map(orjson.dumps))
    assert isinstance(_serve(kor, jpn, kind, body)[0], LinkError | _Ended)


@pytest.mark.slow
@MANY
@given(st.binary(max_size=200) | json_values.map(orjson.dumps) | mutations(TRACK_JSON).map(orjson.dumps))
def test_many_published_tracks(raw: bytes) -> None:
    with contextlib.suppress(GsomiaError, orjson.JSONDecodeError):
        parse_track_update(orjson.loads(raw), originator="KOR")


# --- the forbidden-field check runs only on refusal: the same verdict as running it first ---


def _forbidden_first(data: Any) -> type[Exception] | None:
    """The verdict of the original order: the forbidden walk first, then the parse."""
    from gsomia.core.tracks import _forbidden

    try:
        _forbidden(data, "")
        parse_track_update(data, originator="KOR")
    except GsomiaError as exc:
        return type(exc)
    return None


@FEW
@given(
    mutations(TRACK_JSON)
    | st.tuples(st.sampled_from(["radar", "x_sensor", "Platform", "pre-launch"]), json_values).map(
        lambda kv: {**TRACK_JSON, "points": [{**TRACK_JSON["points"][0], kv[0]: kv[1]}]}
    )
)
def test_a_forbidden_field_is_named_whatever_else_is_wrong(data: Any) -> None:
    try:
        parse_track_update(data, originator="KOR")
        verdict: type[Exception] | None = None
    except GsomiaError as exc:
        verdict = type(exc)
    assert verdict is _forbidden_first(data)


def test_a_forbidden_field_deep_in_nested_json_is_named_without_recursion_error() -> None:
    from gsomia.errors import ForbiddenFieldError

    nested: Any = {"radar": 1}
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(ForbiddenFieldError, match="radar"):
        parse_track_update({**TRACK_JSON, "launch": nested}, originator="KOR")


def test_no_allowed_track_field_names_what_is_forbidden() -> None:
    from gsomia.core import tracks

    allowed = tracks._TOP | tracks._FIX | tracks._POINT
    assert not [key for key in allowed if tracks._FORBIDDEN.search(key.lower())]
