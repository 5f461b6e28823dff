"""``leaf_data`` writes the usual record without a dict: it must stay byte for byte ``canonical``'s,
or every leaf written since would stop verifying (and an old log would look tampered with)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from gsomia._codec import canonical
from gsomia.audit import leaf_data
from gsomia.audit._log import _leaf_hashes
from gsomia.core.merkle import leaf_hash
from gsomia.store import AuditRow

_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)


def _reference(row: AuditRow) -> bytes:
    fields = {
        "entry": row.entry_id,
        "at_us": row.at_us,
        "kind": row.kind,
        "actor": row.actor,
        "subject": row.subject,
        "outcome": row.outcome,
        "detail": row.detail,
    }
    return canonical(fields).encode()


@given(
    at_us=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    kind=_text,
    actor=st.none() | _text,
    subject=st.none() | _text,
    outcome=_text,
    detail=_text,
    entry_id=_text,
)
def test_leaf_data_is_the_canonical_json_of_the_record(
    at_us: int, kind: str, actor: str | None, subject: str | None, outcome: str, detail: str, entry_id: str
) -> None:
    row = AuditRow(at_us, kind, actor, subject, outcome, detail, entry_id=entry_id)
    assert leaf_data(row) == _reference(row)


def test_controls_quotes_and_non_ascii_are_escaped_as_canonical_escapes_them() -> None:
    row = AuditRow(1, 'k"\\', "a\x00\x1f\n\t", "한글/\u2028", "ok", '{"x":"\\u0000"}', entry_id="e")
    assert leaf_data(row) == _reference(row)
    assert b"\\u0000" in leaf_data(row)
    assert "한글".encode() in leaf_data(row)


def test_an_unusual_record_goes_through_canonical_itself() -> None:
    # not an int instant (a bool is an int subclass): the general path, the same bytes as before
    row = AuditRow(True, "k", None, None, "ok", "{}", entry_id="e")  # type: ignore[arg-type]
    assert leaf_data(row) == _reference(row)
    assert b'"at_us":true' in leaf_data(row)


# --- the writer's batch path: _leaf_hashes over the tuples it reads must give leaf_hash(leaf_data) ---


def _as_stored(row: AuditRow) -> tuple[object, ...]:
    """A record's fields as the writer hashes them: as stored, in the insert's column order."""
    return (row.at_us, row.kind, row.actor, row.subject, row.outcome, row.detail, row.entry_id)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            _text,
            st.none() | _text,
            st.none() | _text,
            _text,
            _text,
            st.none() | _text,
        ),
        max_size=8,
    )
)
def test_the_writers_batch_hashes_are_the_leaf_hashes_of_the_canonical_json(
    fields: list[tuple[int, str, str | None, str | None, str, str, str | None]],
) -> None:
    rows = [
        AuditRow(at, kind, actor, subject, outcome, detail, entry_id=entry)
        for at, kind, actor, subject, outcome, detail, entry in fields
    ]
    got = _leaf_hashes([_as_stored(r) for r in rows])
    assert got == [leaf_hash(_reference(r)) for r in rows]


def test_one_unusual_field_in_a_batch_sends_it_through_canonical_with_the_same_hashes() -> None:
    usual = AuditRow(1, "k", "a", None, "ok", "{}", entry_id="e1")
    odd = [
        AuditRow(True, "k", None, None, "ok", "{}", entry_id="e2"),  # type: ignore[arg-type]
        AuditRow(2, "k", 7, None, "ok", "{}", entry_id="e3"),  # type: ignore[arg-type]
        AuditRow(3, "k", None, None, "ok", "{}", entry_id=None),  # type: ignore[arg-type]
    ]
    for other in odd:
        got = _leaf_hashes([_as_stored(usual), _as_stored(other)])
        assert got == [leaf_hash(_reference(usual)), leaf_hash(_reference(other))]
    # a bool instant is the canonical JSON's true, not the %d template's 1
    assert _leaf_hashes([_as_stored(odd[0])]) != _leaf_hashes([_as_stored(replace(odd[0], at_us=1))])


def test_what_orjson_does_not_write_as_canonical_does_goes_through_canonical() -> None:
    # the writer's fields are written by orjson only where its bytes are canonical's: an instant past
    # 64 bits (orjson refuses it) and a subclass of str go through canonical, to the same leaf hashes
    class Text(str):
        pass

    rows = [
        AuditRow(2**70, "k", None, None, "ok", "{}", entry_id="e1"),
        AuditRow(1, Text("k"), Text("a"), None, "ok", '{"x":"秘 \\u0000"}', entry_id="e2"),
        AuditRow(2, "k", "a\x00\x1f\x7f\u2028", "한글", "ok", '{"q":"\\""}', entry_id=None),  # type: ignore[arg-type]
    ]
    assert _leaf_hashes([_as_stored(r) for r in rows]) == [leaf_hash(_reference(r)) for r in rows]
    assert [leaf_data(r) for r in rows] == [_reference(r) for r in rows]
