"""The batch look-ups (``among``: on PostgreSQL one array parameter, on SQLite one JSON text read by
``json_each``) find exactly the ids given, whatever text they hold: an id is never found for another
that differs only by an escape, a quote or a bracket, and none is lost in the JSON's writing."""

from __future__ import annotations

import pytest
from tests.store.test_store import item

from gsomia.store import FederationStore, InboxRow, Store

# ids that JSON writes with escapes, or that look like JSON themselves, beside their near misses
AWKWARD = [
    'q"uote',
    "back\\slash",
    "\\u0041",  # the six characters, not "A"
    '["x"]',
    "a,b",
    "한국어 日本語",
    "line\u2028sep",
    "tab\there",
    "ctl\x1f",
    "𝔘 astral",
    "",
    " ",
    "x" * 120,  # ids are at most 128 characters
    "null",
    "1",
]
NEAR_MISSES = ['q\\"uote', "back\\\\slash", "A", "x", "a", "b", "line", "tab", "ctl", "NULL", "01", "x" * 119]


def test_every_lookup_finds_exactly_the_ids_given_whatever_their_text(store: Store) -> None:
    batch = [item(n, id=f"{text}", origin_id=f"{text}") for n, text in enumerate(AWKWARD, 1)]
    store.insert_items(batch, inventory=[(i.id, 5, "ingested", "KOR", "x", "{}") for i in batch])
    asked = AWKWARD + NEAR_MISSES
    assert store.existing_items(asked) == set(AWKWARD)
    assert store.existing_items(NEAR_MISSES) == set()
    assert set(store.get_items(asked)) == set(AWKWARD)
    assert set(store.items_of([("KOR", text) for text in asked])) == {("KOR", text) for text in AWKWARD}
    assert set(store.inventories(asked, "ingested")) == set(AWKWARD)
    assert store.existing_items([]) == set()
    # more than one chunk of values (500), and each value once however often asked
    many = [f"{text}-{n}" for n in range(700) for text in ('"', "\\", "]")]
    store.insert_items([item(1000 + n, id=i) for n, i in enumerate(many)])
    assert store.existing_items(many + many[:10] + ["absent"]) == set(many)


def test_the_inbox_finds_exactly_the_message_ids_given(store: Store) -> None:
    ids = [text for text in AWKWARD if 0 < len(text) <= 64]  # a message id is 1 to 64 characters
    rows = [InboxRow(text, "KOR", "item", None, 1, "stored", "") for text in ids]
    fed = FederationStore(store)
    fed.accept(inbox=rows)
    found = fed.inbox_entries(AWKWARD + NEAR_MISSES)
    assert set(found) == set(ids)
    assert all(found[r.msg_id].sender == "KOR" for r in rows)


def test_an_id_no_driver_can_bind_fails_as_it_did(store: Store) -> None:
    # a lone surrogate is no text any store holds (the edges refuse it before any look-up): asked
    # for anyway, the look-up fails, it does not answer "not held"
    with pytest.raises(Exception):  # noqa: B017, PT011 - the driver's own error, whichever it raises
        store.existing_items(["\ud800"])
