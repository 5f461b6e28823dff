"""Audit records written in a batch (PostgreSQL: one COPY from 32 records, executemany below; SQLite:
executemany) come back exactly as given, whatever their text holds, and are refused as a whole."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from gsomia.errors import ConflictError, InvalidInputError
from gsomia.store import AuditRow, Store

# what ends a COPY field or row, its escape character, its NULL marker, non-ASCII, quotes
AWKWARD = ["a\tb", "line\nbreak", "cr\rhere", "back\\slash", "\\N", "\\", "한국어 日本語", '"q"', "", " "]


def _rows(count: int, offset: int = 0) -> list[AuditRow]:
    out = []
    for n in range(count):
        text = AWKWARD[n % len(AWKWARD)]
        out.append(
            AuditRow(
                1_700_000_000_000_000 + n + offset,
                f"kind.{text}",
                None if n % 3 == 0 else f"actor {text}",
                None if n % 4 == 1 else text,
                "allowed",
                f'{{"n":{n},"text":"{text}"}}',
                entry_id=f"e{offset + n:06d}" if n % 2 else "",
            )
        )
    return out


@pytest.mark.parametrize("count", [5, 31, 32, 500])
def test_a_batch_of_records_reads_back_exactly(store: Store, count: int) -> None:
    rows = _rows(count)
    store.append_audit(rows)
    back = store.audit(after_seq=0, limit=1000)
    assert len(back) == count
    for given, stored in zip(rows, back, strict=True):
        assert (stored.at_us, stored.kind, stored.actor, stored.subject, stored.outcome, stored.detail) == (
            given.at_us,
            given.kind,
            given.actor,
            given.subject,
            given.outcome,
            given.detail,
        )
        assert stored.entry_id == given.entry_id if given.entry_id else len(stored.entry_id) == 32
        assert stored.leaf_index is None
    made = [r.entry_id for r, given in zip(back, rows, strict=True) if not given.entry_id]
    assert all(len(e) == 32 and int(e, 16) >= 0 for e in made)
    assert len({r.entry_id for r in back}) == count  # every record its own id, made or given


def test_a_batch_naming_an_entry_already_stored_is_refused_whole(store: Store) -> None:
    store.append_audit(_rows(40))
    again = _rows(40, offset=1_000)
    again[-1] = AuditRow(1, "k", None, None, "allowed", "{}", entry_id="e000001")  # stored above
    with pytest.raises(ConflictError):
        store.append_audit(again)
    assert len(store.audit(after_seq=0, limit=1000)) == 40


def test_a_batch_with_a_nul_in_a_detail_is_refused_whole_on_postgresql(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores a NUL in text")
    rows = _rows(40)
    rows[7] = AuditRow(7, "k", None, None, "allowed", '{"x":"a\x00b"}')
    with pytest.raises(InvalidInputError):
        store.append_audit(rows)
    assert store.audit(after_seq=0, limit=1000) == []


@pytest.mark.parametrize("count", [5, 500])  # executemany, and COPY on PostgreSQL
def test_made_entry_ids_are_uuidv7_time_ordered_with_74_random_bits(store: Store, count: int) -> None:
    import uuid

    first = [AuditRow(1, "k", None, None, "allowed", "{}") for _ in range(count)]
    store.append_audit(first)
    time.sleep(0.002)
    store.append_audit([AuditRow(2, "k", None, None, "allowed", "{}") for _ in range(count)])
    back = store.audit(after_seq=0, limit=2 * count)
    ids = [r.entry_id or "" for r in back]
    for e in ids:
        parsed = uuid.UUID(e)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    # the later batch's ids sort after the earlier one's (their milliseconds): the index's right edge
    assert max(ids[:count]) < min(ids[count:])
    # and no one guesses one from another: the 74 bits after the milliseconds differ in every id
    randoms = [int(e, 16) & ((1 << 80) - 1) for e in ids]
    assert len(set(randoms)) == len(randoms)
    assert len({r >> 62 & 0xFFF for r in randoms}) > 1  # rand_a varies too, not a counter


def test_an_entry_id_is_not_a_counter() -> None:
    from gsomia.store._store import new_entry_id

    ids = [new_entry_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    tails = sorted(int(e[12:], 16) for e in ids)
    # consecutive ids (same millisecond) are not neighbours: their random parts spread over the range
    assert max(b - a for a, b in pairwise(tails)) > 2**40


def test_entry_ids_made_for_a_batch_are_each_a_uuidv7_of_its_own_random_bits() -> None:
    import uuid

    from gsomia.store._store import new_entry_ids

    before_ms = time.time_ns() // 1_000_000
    ids = new_entry_ids(10_000)
    after_ms = time.time_ns() // 1_000_000
    assert len(ids) == 10_000
    assert len(set(ids)) == 10_000
    parsed = [uuid.UUID(e) for e in ids]
    assert all(len(e) == 32 and e == e.lower() for e in ids)
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert all(before_ms <= u.int >> 80 <= after_ms for u in parsed)  # this millisecond's
    # the 74 random bits: rand_a (12), then rand_b (62, its first 2 beside the variant); each part
    # takes many values and its bits are set about half the time (not a counter, not a constant)
    rand_a = [u.int >> 64 & 0xFFF for u in parsed]
    rand_b = [u.int & (1 << 62) - 1 for u in parsed]
    assert len(set(rand_a)) > 3_000
    assert len(set(rand_b)) == 10_000
    for bit in (*range(62), *(64 + b for b in range(12))):
        share = sum(u.int >> bit & 1 for u in parsed) / len(parsed)
        assert 0.45 < share < 0.55, bit
    assert new_entry_ids(0) == []
    assert len(new_entry_ids(1)) == 1
    assert max(b - a for a, b in pairwise(sorted(int(e[13:], 16) for e in ids))) > 2**40


@pytest.mark.parametrize("count", [5, 40])  # executemany, and COPY on PostgreSQL
def test_a_nul_in_a_records_text_is_stored_escaped_in_a_batch_of_given_and_made_ids(
    store: Store, count: int
) -> None:
    rows = _rows(count)
    rows[2] = AuditRow(3, "kind\x00x", "actor\x00", "sub\x00ject", "allow\x00ed", "{}", entry_id="given")
    rows[3] = AuditRow(4, "k", "\x00", None, "allowed", "{}")
    store.append_audit(rows)
    back = store.audit(after_seq=0, limit=1000)
    assert [(r.kind, r.actor, r.subject, r.outcome, r.entry_id) for r in back[2:4]] == [
        ("kind\\x00x", "actor\\x00", "sub\\x00ject", "allow\\x00ed", "given"),
        ("k", "\\x00", None, "allowed", back[3].entry_id),
    ]
    assert len(back[3].entry_id or "") == 32
    assert [r.kind for r in back[4:]] == [r.kind for r in rows[4:]]  # the others as given
