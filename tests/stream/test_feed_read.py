"""A feed message read in one pass (``read_feed_json``) and published together (``publish_feed``).

What the one pass takes is exactly what the slow path (``parse_feed_message``, then
``read_track_update`` of each update) takes, the same values; everything else (a key given twice at
any depth, an escape, another originator, a value out of range, too many updates, not JSON) is
left to the slow path, which refuses it as before. Published together, each update is checked,
planned and sent as one published alone, and a publisher without the role is refused each update.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import kst
from tests.stream.test_stream_fuzz import mutations

from gsomia.core.access import Person, Role
from gsomia.core.tracks import track_update_to_json
from gsomia.errors import AccessDenied, GsomiaError, InvalidInputError
from gsomia.node import Node
from gsomia.stream import StreamService, launches, replay
from gsomia.stream._service import FEED_BATCH, parse_feed_message
from gsomia.stream._trackread import read_feed_json, read_track_update
from gsomia.testing import FakeClock, make_node

FEW = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
UPDATES = replay(launches(2019)[0], originator="KOR", every_s=30)
WITH_IMPACT = track_update_to_json(next(u for u in UPDATES if u.points and u.impact is not None))
FIRST = track_update_to_json(next(u for u in UPDATES if u.points))


def _slow(text: str) -> list[Any]:
    """The updates as the slow path reads them, or the first error it raises."""
    return [read_track_update(data, originator="KOR") for data in parse_feed_message(text)]


mutated = mutations(WITH_IMPACT)
messages = (
    st.lists(st.integers(0, 1).map(lambda i: (WITH_IMPACT, FIRST)[i]) | mutated, max_size=4).map(
        lambda v: orjson.dumps(v).decode()
    )
    | mutated.map(lambda v: orjson.dumps(v).decode())
    | st.text(max_size=60)
)


@FEW
@given(messages)
def test_what_the_one_pass_takes_is_what_the_slow_path_takes(text: str) -> None:
    fast = read_feed_json(text, originator="KOR", most=FEED_BATCH)
    if fast is None:
        return  # the slow path decides it, as before
    assert fast == _slow(text)


def test_valid_messages_are_read_in_one_pass() -> None:
    for data in ([WITH_IMPACT, FIRST, WITH_IMPACT], WITH_IMPACT, [], [{**FIRST, "originator": "KOR"}]):
        text = orjson.dumps(data).decode()
        assert read_feed_json(text, originator="KOR", most=FEED_BATCH) == _slow(text)
    spaced = orjson.dumps([FIRST], option=orjson.OPT_INDENT_2).decode()
    assert read_feed_json(spaced, originator="KOR", most=FEED_BATCH) == _slow(spaced)


def _twice(text: str, key: str, value: str) -> str:
    """``text`` with ``"key":value`` given again right after the first ``"key":`` member's opening."""
    at = text.index(f'"{key}":')
    return text[:at] + f'"{key}":{value},' + text[at:]


ONE = orjson.dumps([FIRST, WITH_IMPACT]).decode()
LEFT_TO_THE_SLOW_PATH = {
    "a key twice, top level": _twice(ONE, "track_id", '"other"'),
    "a key twice, same value": _twice(ONE, "final", "false"),
    "a key twice, in the launch": _twice(ONE, "time", '"2019-05-04T00:00:00+00:00"'),
    "a key twice, in a point": _twice(ONE, "alt_m", "1.0"),
    "a key twice, a number for a string": _twice(ONE, "quality", "0.5"),
    "an escaped key": ONE.replace('"quality"', '"qu\\u0061lity"', 1),
    "another originator": orjson.dumps([FIRST, {**WITH_IMPACT, "originator": "JPN"}]).decode(),
    "a field no track has": orjson.dumps([FIRST, {**WITH_IMPACT, "sensor": "x"}]).decode(),
    "out of range": orjson.dumps([{**FIRST, "quality": 2}]).decode(),
    "an instant with no offset": orjson.dumps([{**FIRST, "update_ts": "2019-05-04T00:00:00"}]).decode(),
    "too many": orjson.dumps([FIRST] * (FEED_BATCH + 1)).decode(),
    "not JSON": ONE[:-1],
}


@pytest.mark.parametrize("name", sorted(LEFT_TO_THE_SLOW_PATH))
def test_anything_else_is_left_to_the_slow_path(name: str) -> None:
    assert read_feed_json(LEFT_TO_THE_SLOW_PATH[name], originator="KOR", most=FEED_BATCH) is None


@pytest.fixture(scope="module")
def kor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = make_node(tmp_path_factory.mktemp("kor"), "KOR", clock=FakeClock(kst(2024, 3, 1)))
    yield node
    node.close()


def _feed(node: Node, actor: Person | None, text: str) -> tuple[list[tuple[GsomiaError, Any]], int]:
    async def run() -> tuple[list[tuple[GsomiaError, Any]], int]:
        service = StreamService(node, hubs=())
        try:
            refused = await service.publish_feed(actor, text)
            return refused, service.stats.published
        finally:
            await service.close()

    return asyncio.run(run())


@pytest.mark.parametrize("name", [n for n in sorted(LEFT_TO_THE_SLOW_PATH) if "twice" in n or "escaped" in n])
def test_a_feed_message_naming_a_key_twice_is_refused_whole(kor: Node, name: str) -> None:
    text = LEFT_TO_THE_SLOW_PATH[name]
    if "escaped" in name:  # an escape alone is no refusal: read the slow way, and published
        assert _feed(kor, None, text) == ([], 2)
        return
    with pytest.raises(InvalidInputError, match="twice"):
        _feed(kor, None, text)


def test_a_forged_originator_in_a_batch_is_refused_and_the_rest_published(kor: Node) -> None:
    text = LEFT_TO_THE_SLOW_PATH["another originator"]
    refused, published = _feed(kor, None, text)
    assert published == 1
    assert [(type(exc).__name__, data["originator"]) for exc, data in refused] == [("TrackError", "JPN")]


def test_a_publisher_without_the_role_is_refused_each_update(kor: Node) -> None:
    analyst = Person("p-analyst", "An Analyst", "KOR", "SECRET", frozenset(), frozenset({Role.ANALYST}))
    refused, published = _feed(kor, analyst, ONE)
    assert published == 0
    assert [type(exc) for exc, _ in refused] == [AccessDenied, AccessDenied]
    inactive = Person(
        "p-off", "An Officer", "KOR", "SECRET", frozenset(), frozenset({Role.RELEASE_OFFICER}), False
    )
    assert [type(exc) for exc, _ in _feed(kor, inactive, ONE)[0]] == [AccessDenied, AccessDenied]


def test_a_batch_is_published_whole_by_an_officer(kor: Node) -> None:
    officer = Person(
        "p-officer", "An Officer", "KOR", "SECRET", frozenset(), frozenset({Role.RELEASE_OFFICER})
    )
    assert _feed(kor, officer, ONE) == ([], 2)
