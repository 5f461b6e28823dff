"""The inbox's byte check before the walk (issue 18): ``_storable_json`` says a signed item's JSON
can hold no NUL and no lone surrogate only where ``unstorable`` over what it parses to finds none.
It lets the inbox skip the walk for a clean item; it must never let an unstorable one through."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia._canonical import loads, unstorable
from gsomia._canonical import storable_json as _storable_json

_HOSTILE = [
    b'{"item": "a\\u0000b"}',  # a NUL by its escape
    b'{"item": "\\ud800"}',  # a lone surrogate by its escape
    b'{"it\\u0000em": "x"}',  # in a key
    b'{"item": "\\udfff tail"}',
    b'{"item": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 (json.loads reads it, surrogatepass)
    b'{"a": ["x", {"b": "\\u0000"}]}',
    b'\xef\xbb\xbf{"item": "\\u0000"}',  # a byte order mark before it
]
_CLEAN = [
    b'{"item": "k1", "label": {"classification": "\xea\xb5\xb0\xec\x82\xac"}}',  # Korean
    b'{"item": "\xed\x95\x9c"}',  # Hangul whose UTF-8 starts with the byte a surrogate's does
    b'{"item": "a\\\\u0000b"}',  # an escaped backslash before u0000: text, not a NUL
    b'{"item": "\\ud83d\\ude00"}',  # a surrogate pair: an astral character
    b'{"n": 1, "f": 1.5, "t": true, "z": null}',
]


@pytest.mark.parametrize("raw", _HOSTILE)
def test_json_that_parses_to_unstorable_text_is_never_passed_by_its_bytes(raw: bytes) -> None:
    assert unstorable(json.loads(raw), "item") is not None
    assert not _storable_json(raw)


@pytest.mark.parametrize("raw", _CLEAN)
def test_clean_json_is_passed_or_left_to_the_walk_which_agrees(raw: bytes) -> None:
    assert unstorable(loads(raw), "item") is None
    if b"\\u" not in raw:
        assert _storable_json(raw)  # the common case skips the walk


_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_VALUES = st.recursive(
    st.none() | st.integers() | st.booleans() | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(_VALUES, st.booleans())
def test_the_bytes_check_never_passes_what_the_walk_refuses(value: object, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if _storable_json(raw):
        assert unstorable(json.loads(raw), "item") is None
