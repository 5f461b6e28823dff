"""Attack: a batch look-up (``among``: the items, the inbox's message ids) asked for an id holding a
NUL. The edges refuse such text before any look-up, but a look-up must never answer for ANOTHER id:
the inbox's replay fence would take a message for one it holds (answering it with that message's
receipt), and an item look-up would find an item that was not asked for. On SQLite an id given as
text is compared whole; an id read back from a JSON text by ``json_each`` is cut at its NUL there
(SQLite 3.40: ``"a\\u0000b"`` comes back ``"a"``), so such a look-up must not go that way with it.
On PostgreSQL the driver refuses the NUL (an error, never an answer)."""

from __future__ import annotations

from tests.store.test_store import item

from gsomia.store import FederationStore, InboxRow, Store

HELD = "held-1"
ASKED = [f"{HELD}\x00", f"{HELD}\x00tail", "\x00"]  # each cut at its NUL: HELD, HELD, ""


def _answer(lookup: object) -> object:
    try:
        return lookup()  # type: ignore[operator]
    except Exception:  # the driver's own refusal of the NUL (PostgreSQL): no answer, which is right
        return None


def test_an_item_id_holding_a_nul_never_finds_another_item(store: Store) -> None:
    store.insert_items([item(1, id=HELD)])
    for asked in ASKED:
        found = _answer(lambda asked=asked: store.existing_items([asked]))
        assert found in (None, set()), f"{asked!r} found {found!r}"
        rows = _answer(lambda asked=asked: store.get_items([asked]))
        assert not rows, f"{asked!r} found {rows!r}"
    assert store.existing_items([HELD]) == {HELD}  # the control: the id itself is found


def test_a_message_id_holding_a_nul_is_never_taken_for_one_held(store: Store) -> None:
    fed = FederationStore(store)
    fed.accept(inbox=[InboxRow(HELD, "KOR", "item", None, 1, "stored", "")])
    for asked in ASKED:
        found = _answer(lambda asked=asked: fed.inbox_entries([asked]))
        assert not found, f"{asked!r} answered as {found!r}"
    assert set(fed.inbox_entries([HELD])) == {HELD}
