"""The bytes gsomia signs (envelope claims, receipts, originator signatures) are the standard
library encoder's canonical JSON; orjson writes them only where its bytes are the same, so what was
signed and stored before verifies unchanged. Held byte for byte against the encoder gsomia used
before, over Korean and Japanese text, control characters, astral code points, nested values and
what orjson writes differently (floats written with an exponent, NaN, big integers, other types),
which go back to ``json``."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from gsomia._canonical import (
    KeyTwiceError,
    NotFiniteError,
    canonical_bytes,
    canonical_tree_bytes,
    compact_built_bytes,
    compact_bytes,
    loads,
    loads_strict,
)
from gsomia._codec import (
    DecisionTexts,
    Encoded,
    canonical,
    canonical_built,
    canonical_record,
    label_to_dict,
    storable,
    storable_record,
)
from gsomia.crypto.envelope import _canonical as envelope_canonical

_BEFORE_ENVELOPE = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False
)


def _before_codec(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Code(StrEnum):
    A = "a"


LABEL = {
    "policy": "kor-jpn-gsomia-2016",
    "originator": "KOR",
    "classification": "군사II급비밀",
    "releasable_to": ["JPN", "USA"],
    "caveats": [],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile", "북한 탄도미사일"],
    "created": "2024-03-01T00:00:00+00:00",
    "review": None,
    "alternatives": [{"party": "JPN", "classification": "極秘", "agreement": "kor-jpn-gsomia-2016"}],
}
CORPUS: list[Any] = [
    {},
    [],
    "",
    0,
    -(2**63),
    2**64 - 1,
    True,
    None,
    LABEL,
    {"v": 1, "kind": "item", "item": "k1", "label": LABEL, "payload": "eyJ0cmFjayI6IDF9"},
    {"z": {"b": [1, {"d": None, "c": [True, False]}], "a": "秘密"}, "é": "ß", "A": "Ａ", "a": 1},
    {"text": "발사체 2발, 동해상 落下 — 「弾道ミサイル」\u3000全角"},
    {"control": "".join(chr(c) for c in range(32)) + '"\\/\x7f\u2028\u2029'},
    {"astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🚀 𠀋", "\U0001f680": 1, "\uffff": 2, "\ue000": 3},
    {"keys": {"b": 1, "B": 2, "가": 3, "あ": 4, "ㄱ": 5, "10": 6, "9": 7, "": 8}},
    ("tuple", ["nested", ("deeper", {"x": ()})]),
    {"track": [[39.03, 125.67, 0], [39.042, 125.98, 20]], "zero": [0.0, -0.0], "edges": [1e-4, -1e-4]},
    {"floats": [0.1, 1.5, 123456789012345.6, 9999999999999998.0, 1e15, -2.5e-3, 1 / 3]},
]
# what orjson writes otherwise, or not at all: left to json (which writes or refuses it as before)
ODD: list[Any] = [
    {"float": 1e16},
    {"float": 1.5e-7},
    {"float": 9.999999999999999e-05},
    {"float": 5e-324},
    {"float": 1.7976931348623157e308},
    {"big": 2**64},
    {"big": -(2**63) - 1},
    {1: "an int key"},
    {"enum": Level.HIGH},
    {"str-enum": Code.A},
    {"sub": type("D", (dict,), {})(a=1)},
]
REFUSED: list[Any] = [
    {"nan": math.nan},
    {"inf": math.inf},
    {"when": datetime(2024, 3, 1, tzinfo=UTC)},
    {"id": uuid.UUID(int=1)},
    {"bytes": b"raw"},
]


@pytest.mark.parametrize("value", CORPUS + ODD, ids=repr)
def test_the_same_bytes_as_the_encoder_used_before(value: Any) -> None:
    assert canonical(value) == _before_codec(value)
    if isinstance(value, dict):
        assert envelope_canonical(value) == _BEFORE_ENVELOPE.encode(value).encode()


@pytest.mark.parametrize("value", CORPUS, ids=repr)
def test_orjson_writes_the_plain_values(value: Any) -> None:
    assert canonical_bytes(value) == _before_codec(value).encode()


@pytest.mark.parametrize("value", ODD + REFUSED, ids=repr)
def test_what_orjson_writes_otherwise_is_left_to_json(value: Any) -> None:
    assert canonical_bytes(value) is None


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_what_json_refused_is_still_refused(value: Any) -> None:
    for encode in (_BEFORE_ENVELOPE.encode, envelope_canonical):
        with pytest.raises((TypeError, ValueError)):
            encode(value)


def test_a_cycle_is_left_to_json() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    assert canonical_bytes(cyclic) is None
    with pytest.raises(ValueError, match="Circular"):
        canonical(cyclic)


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # surrogates are not UTF-8
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | _TEXT
    | st.floats(allow_nan=False, allow_infinity=False)
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_any_json_value_gets_the_same_bytes(value: dict[str, Any]) -> None:
    assert envelope_canonical(value) == _BEFORE_ENVELOPE.encode(value).encode()
    assert canonical(value) == _before_codec(value)


@settings(max_examples=2000, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_float_gets_the_same_bytes(value: float) -> None:
    data = {"f": value, "in": [value, -value], "mixed": [0, value, "x", None]}
    assert canonical(data) == _before_codec(data)


def _starlette(value: Any) -> bytes:
    return JSONResponse(None).render(value)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_a_response_gets_starlettes_bytes_in_its_own_key_order(value: dict[str, Any]) -> None:
    """The TAXII response's bytes (orjson where it writes the same) are Starlette's, byte for byte."""
    written = compact_bytes(value)
    assert written is None or written == _starlette(value)
    reordered = dict(reversed(list(value.items())))
    assert compact_bytes(reordered) in (None, _starlette(reordered))


_BUILT = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TEXT, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _BUILT, max_size=6), _VALUES)
def test_a_built_view_gets_starlettes_bytes_with_only_its_loose_value_looked_at(
    value: dict[str, Any], loose: Any
) -> None:
    """An item's view (strings, integers, None, lists, dicts) holding a payload from outside: the
    bytes are Starlette's wherever ``compact_built_bytes`` writes them, and it writes them exactly
    where ``compact_bytes`` would (only the loose value can hold what orjson writes otherwise)."""
    whole = {**value, "payload": loose}
    written = compact_built_bytes(whole, loose)
    assert written == compact_bytes(whole)
    assert written is None or written == _starlette(whole)


@pytest.mark.parametrize("value", ODD + REFUSED, ids=repr)
def test_a_built_view_holding_an_odd_loose_value_is_left_to_json(value: Any) -> None:
    assert compact_built_bytes({"id": "x", "payload": value}, value) is None


@pytest.mark.parametrize("value", ODD + REFUSED, ids=repr)
def test_a_response_orjson_would_write_otherwise_is_left_to_json(value: Any) -> None:
    assert compact_bytes(value) is None


@pytest.mark.parametrize("value", CORPUS, ids=repr)
def test_a_response_of_plain_values_is_written_by_orjson(value: Any) -> None:
    assert compact_bytes(value) == _starlette(value)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6), st.data())
def test_a_record_with_values_written_once_gets_the_same_bytes(value: dict[str, Any], data: Any) -> None:
    """Issue 18: a value shared by a batch's records (its decision) is written once and placed in
    each record as it is: the record's text is the standard encoder's of the whole record."""
    written = data.draw(st.sets(st.sampled_from(sorted(value)) if value else st.nothing()))
    record = {k: Encoded(canonical(v)) if k in written else v for k, v in value.items()}
    assert canonical_record(record) == _before_codec(value)


# any text, surrogates (which no store holds) and NUL (which PostgreSQL's text refuses) among them
_ANY_TEXT = st.text(st.characters(), max_size=12) | st.sampled_from(
    ["\x00", "a\ud800b", "\udfff\x00", "秘\x00密"]
)
_ANY_VALUES = st.recursive(
    _ANY_TEXT | st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_ANY_TEXT, inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(_ANY_TEXT, _ANY_VALUES, max_size=6), st.data())
def test_an_audit_detail_is_the_storable_canonical_record(value: dict[str, Any], data: Any) -> None:
    """An audit record's detail (``storable_record``, orjson in one call where it may) is exactly
    ``storable(canonical_record(...))``, the record's values written once or not, whatever they hold
    (a NUL, a lone surrogate in a value, in a key, in a value written once): what every store holds,
    escaped as before."""
    written = data.draw(st.sets(st.sampled_from(sorted(value)) if value else st.nothing()))
    record = {k: Encoded(canonical(v)) if k in written else v for k, v in value.items()}
    expected = storable(_before_codec(value))
    assert storable_record(record) == expected == storable(canonical_record(record))
    assert "\x00" not in expected
    expected.encode()  # no surrogate is left: UTF-8 takes it


@pytest.mark.parametrize(
    "record",
    [
        {"reason": "a\x00b"},
        {"reason": "\ud800"},
        {"decision": Encoded('{"reason":"\ud800"}'), "msg_id": "m"},
        {"decision": Encoded('{"reason":"\\u0000 秘"}'), "msg_id": "\x00"},
        {"\ud800": 1, "decision": Encoded("{}")},
    ],
    ids=repr,
)
def test_unstorable_text_in_an_audit_detail_is_escaped(record: dict[str, Any]) -> None:
    assert storable_record(record) == storable(canonical_record(record))
    assert "\x00" not in storable_record(record)
    storable_record(record).encode()


def test_a_decision_is_written_once_for_the_batch_and_as_it_is_written_alone() -> None:
    """Issue 18: the decisions a batch shares (the engine's memo) are written once each, by identity,
    and each as ``decision_json`` writes it; another decision, equal or not, is written for itself."""
    from dataclasses import replace

    from gsomia._codec import decision_json
    from gsomia.core.policy import Check, ReleaseDecision

    at = datetime(2024, 6, 1, tzinfo=UTC)
    checks = (Check("scope", True, "ok"),)
    one = ReleaseDecision(True, at, ("KOR", "JPN"), "kor-jpn-gsomia-2016", checks, None)
    other = replace(one, allowed=False, checks=(Check("scope", False, "이것은 아니다"),))
    texts = DecisionTexts()
    first = texts.text(one)
    assert first == canonical(decision_json(one))
    assert texts.text(one) is first  # written once
    assert texts.text(other) == canonical(decision_json(other)) != first
    assert texts.text(replace(one)) == first  # equal, held apart, written the same


def _typed(value: Any) -> Any:
    """``value`` with each number's type beside it (``1 == 1.0`` and ``0.0 == -0.0`` in Python)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


# texts orjson parses otherwise than json, or not at all: json's value, or json's refusal
ODD_TEXTS = [
    b"[18446744073709551616]",
    b"[-9223372036854775809]",
    b'{"a": 123456789012345678901234567890}',
    b"[1e400]",
    b"[-1e400]",
    b"[NaN]",
    b"Infinity",
    b'["\\ud800"]',
    b"\xef\xbb\xbf[1]",
    '[1, "秘"]'.encode("utf-16"),
    b"1e16",
    b"[1e-7, 5e-324]",
    b'{"a": 1, "a": 2}',
    b"[-0, -0.0, 0.1e1]",
    # what msgspec refuses or reads on its own terms (issue 18: it parses first): json's value
    b"[1.7976931348623159e308, -8839e318]",
    b"[2.4703282292062328e-324, 1e-400, 4.9e-324, 1.7976931348623158e308]",
    b"[" + b"9" * 4300 + b"]",
    '["\ud800"]'.encode("utf-8", "surrogatepass"),
    b'{"b": 1, "a": 2, "b": 3}',
    b"[" * 200 + b"]" * 200,
    rb'["\ud83d\ude00", "\u0000", "\/"]',
]
NOT_JSON = [b"", b"[1,]", b"{'a': 1}", b"[1] x", b"\xff", b'"\x01"', b"[" * 3000, b"[" + b"9" * 4301 + b"]"]


@pytest.mark.parametrize("text", ODD_TEXTS + [json.dumps(v).encode() for v in CORPUS], ids=repr)
def test_loads_gives_json_loads_value(text: bytes) -> None:
    assert _typed(loads(text)) == _typed(json.loads(text))


@pytest.mark.parametrize("text", NOT_JSON, ids=repr)
def test_loads_refuses_what_json_loads_refuses(text: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        json.loads(text)
    with pytest.raises((ValueError, RecursionError)):
        loads(text)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_loads_gives_json_loads_value_for_any_json(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False).encode()
    assert _typed(loads(text)) == _typed(json.loads(text))


# numbers as any writer may spell them: long mantissas, long fractions, exponents near and past the
# doubles' range (msgspec parses first, issue 18: every float it reads must be float()'s nearest double)
_NUMBER_TEXTS = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.from_regex(r"0|[1-9][0-9]{0,40}", fullmatch=True),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,40}", fullmatch=True)),
    st.one_of(
        st.just(""),
        st.builds(lambda e, n: f"{e}{n}", st.sampled_from(["e", "E", "e+", "e-"]), st.integers(0, 400)),
    ),
)


@settings(max_examples=500, deadline=None)
@given(_NUMBER_TEXTS)
def test_loads_reads_every_number_as_json_loads_does(number: str) -> None:
    text = f'[{number}, {{"n": {number}}}]'.encode()
    assert _typed(loads(text)) == _typed(json.loads(text))
    assert _typed(loads(memoryview(bytearray(b"xx" + text))[2:])) == _typed(json.loads(text))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_loads_reads_every_double_back_to_itself(value: float) -> None:
    for text in (repr(value).encode(), orjson.dumps(value), f"{value:.17e}".encode()):
        assert _typed(loads(text)) == _typed(json.loads(text))


@pytest.mark.parametrize("odd", ODD + REFUSED, ids=repr)
def test_a_container_held_twice_is_looked_at_whole(odd: Any) -> None:
    """Issue 18: the walk looks at a container held in several places once (a page's items share
    their label's dict); what it holds is still looked at, wherever the container is met first."""
    shared = [odd, "x"]
    for value in (
        {"a": shared, "b": shared},
        {"a": {"in": shared}, "b": shared, "c": [shared]},
        [shared, shared, {"deep": [shared]}],
    ):
        assert compact_bytes(value) is None
        assert canonical_bytes(value) is None
    plain = {"label": LABEL, "n": 1}
    page = {"items": [plain, plain, {"label": LABEL, "n": 2}]}
    assert compact_bytes(page) == _starlette(page)


@pytest.mark.parametrize("value", CORPUS + ODD + REFUSED, ids=repr)
def test_the_walk_of_a_tree_answers_as_the_walk_that_notes_containers(value: Any) -> None:
    """Issue 18: a hop's claims are checked by a walk that does not note the containers it met (each is
    looked at as often as it is held); its answer is the other walk's, held once or in several places."""
    shared = [value, "x"]
    for tree in ({"v": value}, [value], {"a": shared, "b": [shared, {"c": shared}]}, [[], {}, [[value]]]):
        assert canonical_tree_bytes(tree) == canonical_bytes(tree)
    if value in REFUSED or value in ODD:
        assert canonical_tree_bytes({"deep": [[{"x": value}]]}) is None


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_any_tree_gets_the_same_answer(value: dict[str, Any]) -> None:
    assert canonical_tree_bytes(value) == canonical_bytes(value)
    assert canonical_tree_bytes([value, value]) == canonical_bytes([value, value])


@settings(max_examples=200)
@given(st.text(), st.text(), st.lists(st.text(), max_size=4), st.integers())
def test_a_built_value_is_written_as_the_standard_encoder_writes_it(
    a: str, b: str, many: list[str], n: int
) -> None:
    # canonical_built skips the walk for dicts made only of strings, None, integers, lists and dicts:
    # the same text as before over any text (lone surrogates, control and astral characters) and any
    # integer (past 64 bits: orjson refuses, json writes it)
    data = {"a": a, "b": None, "many": many, "n": n, "alternatives": [{"party": a, "classification": b}]}
    data[b] = 1
    assert canonical_built(data) == _before_codec(data)


def test_the_built_values_hold_only_what_canonical_built_may_skip_checking() -> None:
    # label_to_dict's label and an item's signed content are written by canonical_built: a float or
    # another type added to them would have to be walked (canonical), so this fails on such a change
    from gsomia._canonical import _plain
    from gsomia.core.labels import AlternativeLabel, SecurityLabel
    from gsomia.kernel._items import item_content

    label = SecurityLabel(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=frozenset({"JPN", "USA"}),
        purpose="missile-warning",
        topics=frozenset({"dprk-missile"}),
        created=datetime(2024, 2, 1, 9, tzinfo=UTC),
        caveats=frozenset({"G2G-ONLY"}),
        review=datetime(2030, 1, 1, tzinfo=UTC),
        alternatives=(AlternativeLabel("JPN", "極秘", "kor-jpn-gsomia-2016"),),
    )
    as_dict = label_to_dict(label)
    assert _plain(as_dict)
    assert canonical_built(as_dict) == _before_codec(as_dict)
    content = item_content("KOR-1", label, "application/json", b"\x00\xff{}", 3)
    assert _plain(json.loads(content))
    assert content.decode() == _before_codec(json.loads(content))


# what json.loads reads and no other reader of a stored value does (issue 18, 2026-12-08): refused,
# with an escape beside it (read by json) or without (read by msgspec first), in UTF-16 too
NOT_FINITE = [
    b"NaN",
    b"[Infinity]",
    b'{"a": -Infinity}',
    b"[1e400]",
    b'{"a": [-1.5e309]}',
    b'{"a": "\\u00e9", "b": NaN}',
    b'{"a": "\\u00e9", "b": 1E400}',
    '{"a": "秘", "b": NaN}'.encode("utf-16"),
]


@pytest.mark.parametrize("text", NOT_FINITE, ids=repr)
def test_loads_strict_refuses_what_is_not_a_finite_number(text: bytes) -> None:
    json.loads(text)  # the standard reader takes each
    with pytest.raises(NotFiniteError):
        loads_strict(text)


@pytest.mark.parametrize(
    "text",
    [b'{"a": 1, "a": 2}', b'[{"x": {"a": "\\u00e9", "\\u0061": 2}}]', '{"a": 1, "a": 2}'.encode("utf-16")],
    ids=repr,
)
def test_loads_strict_refuses_a_key_given_twice(text: bytes) -> None:
    with pytest.raises(KeyTwiceError):
        loads_strict(text)


# the odd texts that are JSON, each key once, every number finite
_NOT_STRICT = (
    b"NaN", b"Infinity", b"e400", b"e309", b"8839e318", b"1.7976931348623159e308", b'"a": 1, "a"', b'"b": 3',
)  # fmt: skip
STRICT_TEXTS = [t for t in ODD_TEXTS if not any(mark in t for mark in _NOT_STRICT)]


@pytest.mark.parametrize("text", STRICT_TEXTS + [json.dumps(v).encode() for v in CORPUS], ids=repr)
def test_loads_strict_gives_json_loads_value_for_json(text: bytes) -> None:
    assert _typed(loads_strict(text)) == _typed(json.loads(text))


@pytest.mark.parametrize("text", NOT_JSON, ids=repr)
def test_loads_strict_refuses_what_json_loads_refuses(text: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        loads_strict(text)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_loads_strict_gives_json_loads_value_for_any_json(value: Any) -> None:
    for text in (json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()):
        assert _typed(loads_strict(text)) == _typed(json.loads(text))
