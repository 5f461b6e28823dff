"""The bytes gsomia signs: canonical JSON (sorted keys, no spaces, UTF-8 text kept as is).

The standard library's encoder defines them (``json`` with ``sort_keys=True``,
``separators=(",", ":")``, ``ensure_ascii=False``); :func:`canonical_bytes` writes the same bytes
with orjson (``OPT_SORT_KEYS``), many times faster on a batch envelope's claims, wherever orjson's
output is the standard encoder's byte for byte: a value made only of dicts, lists, tuples, strings,
integers, booleans, ``None`` and floats that ``repr`` writes without an exponent (zero, or 1e-4 to
1e16 in size; orjson writes some smaller ones otherwise, ``0.00009999999999999999`` for
``9.999999999999999e-05``, NaN and the infinities as ``null``, and it writes a few types the
standard encoder refuses). Anything else (such a float, another type, an integer past 64 bits,
keys that are not strings, nesting deeper than orjson goes) is left to the caller's standard
encoder, which writes or refuses it as it always did.
tests/test_canonical.py holds the two to the same bytes over Korean and Japanese text, control
characters, astral code points and nested values; what was signed and stored before reads and
verifies unchanged.

Here too, below every reader of outside text (the codec, the data files), is THE rule for text no
store can hold (:func:`unstorable`: a NUL, a lone surrogate, anywhere in a value, its keys included).
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import orjson

__all__ = [
    "NUL_PROBLEM",
    "SURROGATE_PROBLEM",
    "KeyTwiceError",
    "NotFiniteError",
    "canonical_built_bytes",
    "canonical_bytes",
    "canonical_bytes_with",
    "canonical_tree_bytes",
    "compact_built_bytes",
    "compact_bytes",
    "held_as_is",
    "json_keys",
    "keys_once",
    "loads",
    "loads_strict",
    "storable_json",
    "strings_read",
    "unstorable",
]

_LEAVES = frozenset({str, int, bool, type(None)})
_NESTED = frozenset({dict, list, tuple})


def _plain(data: Any) -> bool:
    """Whether ``data`` holds only what orjson writes as the standard encoder does. Only called on
    what orjson has written already: acyclic, at most 255 levels deep, every key a string. The
    values of each container are looked at in one loop, and only containers are put aside for
    later (issue 18: most values are strings; this walk was most of a small record's encoding). A
    container held in several places (the label that a page's items share) is looked at once."""
    pending = [data]
    pop, push = pending.pop, pending.append
    seen: set[int] = set()  # containers met already: one held in several places is looked at once
    note = seen.add
    while pending:
        value = pop()
        kind = type(value)
        members = value.values() if kind is dict else value if kind is list or kind is tuple else (value,)
        for member in members:
            kind = type(member)
            if kind in _LEAVES:
                continue
            if kind in _NESTED:
                # an empty one holds nothing to look at (a message's route and consents are often
                # empty: putting them aside was a quarter of the walk over a batch of the exchange's
                # messages, issue 18); one alive for the walk (``data`` holds it) has its own id
                if member and id(member) not in seen:
                    note(id(member))
                    push(member)
            # a float: the same digits as repr() (both the shortest that round-trip), and the same form
            # where repr() writes no exponent (this excludes NaN and the infinities, which orjson
            # writes null); anything else is not written as the standard encoder writes it
            elif kind is not float or not (1e-4 <= member < 1e16 or -1e16 < member <= -1e-4 or member == 0.0):
                return False
    return True


def _plain_tree(data: Any) -> bool:
    """:func:`_plain` without the note of the containers met: each is looked at as often as it is held,
    as orjson writes it. For a value built for one writing, whose containers are seldom shared (a
    hop's claims: issue 18, the note of each of a batch's 300 containers was a third of the walk);
    the answer is :func:`_plain`'s."""
    pending = [data]
    pop, push = pending.pop, pending.append
    while pending:
        value = pop()
        for member in value.values() if type(value) is dict else value:
            kind = type(member)
            if kind in _LEAVES:
                continue
            if kind in _NESTED:
                if member:  # an empty one holds nothing to look at
                    push(member)
            elif kind is not float or not (1e-4 <= member < 1e16 or -1e16 < member <= -1e-4 or member == 0.0):
                return False  # as in _plain: only such a float is written as the standard encoder writes it
    return True


def canonical_bytes(data: Any) -> bytes | None:
    """The standard encoder's canonical form of ``data`` (sorted keys, ``separators=(",", ":")``,
    ``ensure_ascii=False``) as UTF-8, written by orjson; ``None`` where orjson's bytes would not be
    the same (see the module's docstring): the caller then writes it with ``json`` as before."""
    try:
        written = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # a type orjson refuses, an integer past 64 bits, a cycle, depth
        return None
    return written if _plain(data) else None


def canonical_bytes_with(data: dict[str, Any], written: dict[str, str]) -> bytes | None:
    """:func:`canonical_bytes` of ``data`` with the keys of ``written`` added, each value given as
    its canonical JSON already written (placed as it is: ``orjson.Fragment``), in one call: the
    record a batch's items share a value of (their decision) is written once a record, not once a
    field. ``None`` where :func:`canonical_bytes` of ``data`` would be (the caller writes it field
    by field); ``written``'s texts are the caller's to have written canonically."""
    merged: dict[str, Any] = dict(data)
    for key, text in written.items():
        merged[key] = orjson.Fragment(text)
    try:
        out = orjson.dumps(merged, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return out if _plain(data) else None


def canonical_tree_bytes(data: dict[str, Any] | list[Any]) -> bytes | None:
    """:func:`canonical_bytes` of a dict or list, checked by :func:`_plain_tree`: the same answer,
    faster for a value whose containers are not shared, slower for one that shares many."""
    try:
        written = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None
    return written if _plain_tree(data) else None


def canonical_built_bytes(data: dict[str, Any]) -> bytes | None:
    """:func:`canonical_bytes` of a dict its maker built of dicts with string keys, lists, strings,
    ``None`` and integers only (an item's label as :func:`gsomia._codec.label_to_dict` writes it, the
    content the originator signs): for such a value orjson's bytes are the standard encoder's, so the
    walk of :func:`_plain` that looks for anything else is not made (issue 18: it was the row builder's
    largest cost after the signature). ``None`` where orjson refuses it (a lone surrogate, an integer
    past 64 bits): the caller writes it with ``json``. tests/test_canonical.py holds the makers' values
    to this shape."""
    try:
        return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return None


def compact_bytes(data: Any) -> bytes | None:
    """The standard encoder's compact form of ``data`` in its own key order (``separators=(",", ":")``,
    ``ensure_ascii=False``: what Starlette's ``JSONResponse`` writes) as UTF-8, written by orjson;
    ``None`` where orjson's bytes would not be the same: the caller then writes it with ``json``."""
    try:
        written = orjson.dumps(data)
    except orjson.JSONEncodeError:
        return None
    return written if _plain(data) else None


def compact_built_bytes(data: Any, loose: Any = None) -> bytes | None:
    """:func:`compact_bytes` of a value its maker built of dicts with string keys, lists, strings,
    ``None``, booleans and integers only (an item's view, :func:`gsomia._present.item_view`, whose
    label is :func:`gsomia._codec.label_to_dict`'s: see :func:`canonical_built_bytes`), but for
    ``loose``, a value held in it that came from outside (a JSON payload), which alone is looked at as
    :func:`compact_bytes` looks at all of it. A page's views were walked whole for a float none of
    them can hold: the walk was a fifth of a page's JSON (issue 18, bench_load). ``None`` where
    orjson's bytes would not be the standard encoder's: the caller then writes it with ``json``."""
    try:
        written = orjson.dumps(data)
    except orjson.JSONEncodeError:
        return None
    return written if loose is None or _plain(loose) else None


_decode = msgspec.json.Decoder().decode


def loads(text: bytes | memoryview) -> Any:
    """``json.loads(text)``, parsed by msgspec where the two give the same value: msgspec reads every
    integer exactly (as ``json`` does, where orjson reads one past 64 bits as a float, which had to be
    looked for afterwards: a walk of the value, or writing it again), every float to the nearest double
    as ``float()`` does, and refuses what only the standard decoder takes (NaN, the infinities, a
    number past the largest double, a lone surrogate, a byte order mark, UTF-16, an integer of more
    digits than ``int`` converts): each is parsed by ``json`` again, which reads or refuses it as it
    always did. Raises ``ValueError`` where ``json.loads`` does. tests/test_canonical.py holds the two
    to the same values (issue 18: a batch envelope's claims, 199 KB, in 193 µs against orjson's 202 and
    its check's 60)."""
    try:
        return _decode(text)
    except (msgspec.DecodeError, RecursionError):
        return json.loads(text if type(text) is not memoryview else bytes(text))


# --- a key given twice in a JSON object: refused wherever outside text is read ---


class KeyTwiceError(ValueError):
    """An object of a JSON text names the key ``name`` twice."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the key {name!r} is given twice in an object")
        self.name = name


def _counted(total: list[int]) -> Any:
    """An ``object_pairs_hook`` refusing an object that names a key twice, counting keys in ``total``."""

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        read = dict(pairs)
        if len(read) != len(pairs):
            seen: set[str] = set()
            for name, _ in pairs:
                if name in seen:
                    raise KeyTwiceError(name)
                seen.add(name)
        total[0] += len(pairs)
        return read

    return members


def json_keys(raw: bytes) -> int:
    """How many keys the JSON text ``raw`` holds, at every depth (names read as JSON reads them,
    escapes and all); ``ValueError`` where an object names a key twice, or for what is not JSON."""
    total = [0]
    json.loads(raw, object_pairs_hook=_counted(total))
    return total[0]


def keys_once(raw: bytes, strings: int | None) -> None:
    """``ValueError`` if an object of the JSON text ``raw`` (read as valid) names a key twice.

    ``strings`` is how many strings, keys and values, ``raw`` holds if no key is given twice, when
    the caller knows it from its decoding (:func:`strings_read`: each object's distinct keys, the
    string values a decoding kept; at most as many as ``raw`` spells, a repeated key and its value
    being dropped). Then the common case is checked in C, exactly: in text with no backslash no
    string holds a quote, so ``raw`` holds two quotes a string, and twice ``strings`` of them means
    no key is given twice. Text with escapes, or a count that differs, is read by
    :func:`json_keys`: some five times the CPU, for text gsomia's encoders do not write; so is text
    holding a NUL byte (JSON in UTF-16 or UTF-32, which ``json`` reads too, where a quote's byte may
    stand in another character's code unit: valid UTF-8 JSON holds no NUL byte)."""
    if strings is not None and b"\\" not in raw and b"\x00" not in raw and raw.count(b'"') == 2 * strings:
        return
    json_keys(raw)


class NotFiniteError(ValueError):
    """A JSON text holds ``NaN``, ``Infinity`` or ``-Infinity``, or a number past the largest double
    (``1e400``, which ``float`` reads as an infinity): none is JSON (RFC 8259 §6)."""

    def __init__(self) -> None:
        super().__init__("holds NaN, an infinity or a number past the largest double: none is JSON")


def _no_constant(_name: str) -> Any:
    raise NotFiniteError


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise NotFiniteError
    return number


def loads_strict(raw: bytes) -> Any:
    """The value ``json.loads(raw)`` reads, parsed once, refusing what it would take that is not JSON
    or that readers differ on: ``NotFiniteError`` (NaN, an infinity, a number past the largest
    double: ``json`` reads them where msgspec, orjson, PostgreSQL's ``jsonb`` and a partner's
    strict reader refuse them, so an item stored with one could not be answered again),
    ``KeyTwiceError`` (an object naming a key twice), ``RecursionError`` (nested deeper than the
    interpreter reads), ``ValueError`` (not JSON).

    Text without a backslash and a NUL byte (the usual body) is decoded by msgspec, which refuses
    what is not JSON itself, and its keys checked by counting quotes (:func:`keys_once`'s common
    case); anything else (escapes, UTF-16, what msgspec refused) by ``json`` with the checks in its
    hooks: one parse either way, where the request gate read a body holding an escape two or three
    times, by parsers that differed on NaN (issue 18, benchmarks/JOURNAL.md, bench_load,
    2026-12-08)."""
    if b"\\" not in raw and b"\x00" not in raw:
        try:
            value = _decode(raw)
            if raw.count(b'"') == 2 * strings_read(value):
                return value
        except (msgspec.DecodeError, RecursionError):
            pass  # read by json below: its verdict (and its value, or its error) is the one
    hook = _counted([0])
    return json.loads(raw, object_pairs_hook=hook, parse_constant=_no_constant, parse_float=_finite)


def strings_read(data: Any) -> int:
    """How many strings, keys and values, the decoding ``data`` of some JSON text holds at every
    depth (each object's distinct keys): the ``strings`` :func:`keys_once` takes for that text."""
    if isinstance(data, str):
        return 1
    if isinstance(data, dict):
        return len(data) + sum(strings_read(value) for value in data.values())
    if isinstance(data, list):
        return sum(strings_read(value) for value in data)
    return 0


# --- THE rule for text no store can hold (here, below both the codec and the data files) ---


def held_as_is(text: str) -> bool:
    """Whether every store holds ``text`` as it is: no NUL, no surrogate. UTF-8 encodes every code
    point but the surrogates, so the encoder (C, one pass) answers for them: several times faster
    than the pattern's search over non-ASCII text (a release's audit record, 11 against ~2 us)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable_json(raw: bytes | bytearray | memoryview) -> bool:
    """Whether JSON text ``raw`` can hold no NUL and no lone surrogate in any value or key it parses
    to, decided on its bytes: what :func:`unstorable`'s walk over the parsed value answers, without
    the walk (an item message has ~20 texts and keys; a batch envelope's claims 250 such messages). A
    value parsed from strict UTF-8 (no encoded surrogate, which ``json.loads`` would take with
    ``surrogatepass``) without a NUL byte and without a ``\\u`` escape (the only way to write a NUL
    or a lone surrogate in JSON) holds neither. ``False`` means only that the walk must answer (a
    Korean text escaped as ``\\uXXXX``, a literal backslash before a ``u``)."""
    data = raw.tobytes() if type(raw) is memoryview else raw
    if b"\\u" in data or b"\x00" in data:
        return False
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


NUL_PROBLEM = "contains a NUL character (U+0000), which this node does not store"
SURROGATE_PROBLEM = "contains a lone surrogate (U+D800-U+DFFF), which is not text this node can store"


def _text_problem(text: str) -> str | None:
    if held_as_is(text):
        return None
    return NUL_PROBLEM if "\x00" in text else SURROGATE_PROBLEM


_NESTED_OR_TEXT = frozenset({str, dict, list, tuple})


def unstorable(value: Any, where: str) -> tuple[str, str] | None:
    """THE rule for text a caller or a partner sends: the first place in ``value`` (text, or a JSON
    value of lists and objects, the keys included) holding a NUL (which PostgreSQL's text type
    refuses) or a lone surrogate (which UTF-8 cannot encode, so nothing can sign, store or send it),
    as ``(where.key.0, problem)``; ``None`` when every text in it can be stored on every store. The
    place is named by its keys and list indexes (``body.label.topics.1``), never by its value."""
    pending: list[tuple[Any, str]] = [(value, where)]
    pop, push = pending.pop, pending.append
    while pending:
        item, at = pop()
        kind = type(item)
        if kind is str:
            problem = _text_problem(item)
            if problem is not None:
                return at, problem
        elif kind is dict:
            for key, member in item.items():
                problem = _text_problem(key) if type(key) is str else None
                if problem is not None:
                    return f"{at} (a name in it)", problem
                if type(member) in _NESTED_OR_TEXT:
                    push((member, f"{at}.{key}"))
        elif kind is list or kind is tuple:
            for index, member in enumerate(item):
                if type(member) in _NESTED_OR_TEXT:
                    push((member, f"{at}.{index}"))
    return None
