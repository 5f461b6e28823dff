"""The boundary's id and class patterns, matched once per distinct string (``_trackread._patterns``)
where msgspec matched them on every update: what is kept is only what its own pattern accepted, so
no order of updates makes the read take what the core's ``parse_track_update`` refuses (an id
spelt as a class that was taken before, a refused id sent again, a string kept before the bound
cleared it), at the publisher's feed and at a receiver."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.stream._updates import PLAIN_UPDATE, changed

from gsomia.core.tracks import parse_track_update
from gsomia.errors import GsomiaError
from gsomia.stream import _trackread
from gsomia.stream._trackread import read_feed_json, read_track_json_checked, read_track_update

_IDS = ["t1", "t1\n", "-t", "a" * 128, "a" * 129, "t 1", "t١", "", "kor:1.2_3-4", "KN-23", "(x)", "ミ"]
_CLASSES = ["KN-23", "ミサイル", "a" * 64, "a" * 65, "x\n", "x;", "", "t 1", "kor:1", "-t", "t1"]


@pytest.fixture(autouse=True)
def _cold() -> Any:
    """Each test starts with nothing kept, and leaves nothing kept behind it."""
    _trackread._ids.clear()
    _trackread._classes.clear()
    yield
    _trackread._ids.clear()
    _trackread._classes.clear()


def _core(data: dict[str, Any]) -> str | None:
    """The core's answer: the track id it accepts, or ``None`` for its refusal."""
    try:
        return parse_track_update(data, originator="KOR").track_id
    except GsomiaError:
        return None


def _reads(data: dict[str, Any]) -> list[str | None]:
    """The stream's three reads of ``data`` (the dict's, the feed's, a receiver's): the id each took
    as the update's, or ``None`` where it refused (the feed's ``None``: left to the slow path,
    which is ``read_track_update``, so the fast read must not take what the core refuses)."""
    raw = orjson.dumps(data)
    answers: list[str | None] = []
    try:
        answers.append(read_track_update(data, originator="KOR").track_id)
    except GsomiaError:
        answers.append(None)
    fast = read_feed_json(raw.decode(), originator="KOR", most=100)
    answers.append(None if fast is None else fast[0].track_id)
    try:
        answers.append(read_track_json_checked(raw, originator="KOR")[0])
    except GsomiaError:
        answers.append(None)
    return answers


def test_every_order_of_ids_and_classes_answers_as_the_core() -> None:
    """Each id and class, read first as the other's field and then as its own, twice over (cold,
    then with everything the first pass kept): every read answers as the core, each time."""
    cases = [changed(changed(PLAIN_UPDATE, ("missile_class",), s), ("track_id",), "t1") for s in _IDS]
    cases += [changed(PLAIN_UPDATE, ("track_id",), s) for s in _CLASSES]
    cases += [changed(PLAIN_UPDATE, ("track_id",), s) for s in _IDS]
    cases += [changed(PLAIN_UPDATE, ("missile_class",), s) for s in _CLASSES]
    for _ in range(2):
        for data in cases:
            expected = _core(data)
            answers = _reads(data)
            where = (data["track_id"], data["missile_class"])
            assert answers[0] == expected, where
            assert answers[2] == expected, where
            assert answers[1] in (None, expected)


def test_a_class_taken_does_not_pass_as_an_id() -> None:
    """``t 1`` is a class the pattern takes (a space) and no id: once taken as a class, an update
    naming it as its id is still refused, at the feed and at a receiver."""
    as_class = changed(PLAIN_UPDATE, ("missile_class",), "t 1")
    assert _reads(as_class) == [PLAIN_UPDATE["track_id"]] * 3
    as_id = changed(PLAIN_UPDATE, ("track_id",), "t 1")
    assert _core(as_id) is None
    assert _reads(as_id) == [None, None, None]
    assert "t 1" not in _trackread._ids


def test_a_refused_id_is_refused_every_time_and_never_kept() -> None:
    """An id its pattern refuses is refused again when sent again, after valid updates between."""
    bad = changed(PLAIN_UPDATE, ("track_id",), "a" * 129)
    for _ in range(3):
        assert _reads(bad) == [None, None, None]
        assert _reads(PLAIN_UPDATE) == [PLAIN_UPDATE["track_id"]] * 3
    assert "a" * 129 not in _trackread._ids


def test_the_kept_strings_are_bounded_and_checked_again_once_cleared() -> None:
    """More distinct ids than the bound: at most ``_KEPT`` kept; an id kept before the bound cleared
    them is matched again (accepted), and a refused one is still refused."""
    first = "t-first"
    raw = orjson.dumps(changed(PLAIN_UPDATE, ("track_id",), first))
    assert read_track_json_checked(raw, originator="KOR")[0] == first
    for n in range(_trackread._KEPT + 10):
        raw = orjson.dumps(changed(PLAIN_UPDATE, ("track_id",), f"t{n}"))
        assert read_track_json_checked(raw, originator="KOR")[0] == f"t{n}"
        assert len(_trackread._ids) <= _trackread._KEPT
    assert first not in _trackread._ids
    raw = orjson.dumps(changed(PLAIN_UPDATE, ("track_id",), first))
    assert read_track_json_checked(raw, originator="KOR")[0] == first
    assert _reads(changed(PLAIN_UPDATE, ("track_id",), "-t")) == [None, None, None]
