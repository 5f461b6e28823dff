"""Adversarial review of the store's kept SELECTs (issue 18: a page's and a name's statement built
once per shape, values bound per call): readers in threads asking the same shapes with their own
values at once each get their own rows, never another caller's (a page served to the wrong reader),
including the date-added pages (TAXII) that the shapes' test leaves out."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from tests.store.test_store import item

from gsomia.errors import ConflictError
from gsomia.store import DutiesStore, ItemFilter, ItemPart, ItemRow, Store


def test_readers_asking_one_shape_at_once_each_get_their_own_rows(store: Store) -> None:
    parties = ("KOR", "JPN", "USA")
    store.insert_items(
        [
            item(
                n,
                originator=parties[n % 3],
                origin_id="theirs-1" if n <= 3 else f"own-{n}",
                topics=frozenset({f"t{n % 3}"}),
            )
            for n in range(1, 91)
        ]
    )
    every = store.list_items(ItemFilter(), 0, 1000, with_payload=True)
    middle = sorted(r.added_us or 0 for r in every)[30]

    def expected(party: str, by_added: bool) -> list[str]:
        rows = [r for r in every if r.originator == party and (not by_added or (r.added_us or 0) > middle)]
        rows.sort(key=lambda r: (r.added_us or 0) if by_added else r.seq)
        return [r.id for r in rows]

    def named(party: str) -> list[str]:
        return [r.id for r in every if r.originator == party and r.origin_id == "theirs-1"]

    failures: list[str] = []
    start = threading.Barrier(len(parties) * 2)

    def reader(party: str, by_added: bool) -> None:
        start.wait()
        for _ in range(25):
            where = ItemFilter(
                originator=party, by_added=by_added, added_after_us=middle if by_added else None
            )
            got: list[ItemRow] = store.list_items(where, 0, 1000)
            if [r.id for r in got] != expected(party, by_added):
                failures.append(f"page {party} by_added={by_added}: {[r.originator for r in got][:5]}")
            topic = [r.id for r in store.list_items(ItemFilter(topic=f"t{parties.index(party)}"), 0, 1000)]
            if topic != [r.id for r in every if r.originator == party]:
                failures.append(f"topic page for {party}")
            if [r.id for r in store.items_named("theirs-1", party)] != named(party):
                failures.append(f"by name for {party}")
            if [r.id for r in store.items_named(f"{party}:theirs-1")] != named(party):
                failures.append(f"by prefixed name for {party}")

    threads = [threading.Thread(target=reader, args=(p, b)) for p in parties for b in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert all(expected(p, b) for p in parties for b in (False, True))  # no vacuous comparison


# --- a page's and a name's one SELECT outside a transaction (issue 18) ---
#
# On PostgreSQL the kept SELECTs run in autocommit, one round trip: the statement is its own
# snapshot. A hostile review asks two things of that: that a commit which changes several items
# at once (a duty that destroys one item and relabels another) is seen whole or not at all by one
# page, each row one version of its item (label, classification and sealed payload together);
# and that the connection, given back to the pool, is not left in autocommit, where the next
# writer's statements would each commit on their own and a failed transaction would leave half.


def _version(n: int) -> tuple[str, str, bytes]:
    """Label, classification and payload of an item's version ``n``: each names the version."""
    return f'{{"v":{n}}}', f"level-{n}", f"sealed-{n}".encode()


def test_a_page_sees_a_commit_of_several_items_whole_and_each_row_as_one_version(store: Store) -> None:
    duties = DutiesStore(store)
    label, level, payload = _version(1)
    common = {"label": label, "classification": level, "payload": payload, "origin_id": "same"}
    store.insert_items([item(1, originator="KOR", **common), item(2, originator="JPN", **common)])
    ids = ("item-00001", "item-00002")
    last = 60
    stop = threading.Event()
    failures: list[str] = []
    pages = [0]

    def writer() -> None:
        try:
            for v in range(1, last):
                ops = []
                for item_id in ids:
                    if v == last - 1 and item_id == ids[0]:
                        ops.append(DutiesStore.withdraw(item_id, "destroyed"))  # in the same commit
                    else:
                        new = _version(v + 1)
                        ops.append(DutiesStore.relabel(item_id, v, v + 1, new[0], new[1], new[2], None))
                duties.commit(ops=ops)
        finally:
            stop.set()

    def check(rows: list[ItemRow], payloads: bool) -> None:
        by_id = {r.id: r for r in rows}
        if set(by_id) != set(ids):
            failures.append(f"rows {sorted(by_id)}")
            return
        first, second = by_id[ids[0]], by_id[ids[1]]
        for r in (first, second):
            label, level, payload = _version(r.label_version)
            if (r.label, r.classification) != (label, level):
                failures.append(f"{r.id}: label {r.label} / {r.classification} of version {r.label_version}")
            if payloads and r.payload != (payload if r.state == "held" else b""):
                failures.append(f"{r.id}: payload {r.payload!r} of version {r.label_version} ({r.state})")
        if first.state == "destroyed":
            if second.label_version != last:
                failures.append(
                    f"the destruction seen without the relabel of its commit: {second.label_version}"
                )
        elif first.label_version != second.label_version:
            failures.append(
                f"one commit seen in part: versions {first.label_version}, {second.label_version}"
            )

    def reader() -> None:
        while not stop.is_set():
            check(store.list_items(ItemFilter(), 0, 100, with_payload=True), True)
            check(store.list_items(ItemFilter(by_added=True), 0, 100), False)
            check(store.items_named("same"), True)
            pages[0] += 1

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert pages[0] > 0
    final = {r.id: r for r in store.list_items(ItemFilter(), 0, 100, with_payload=True)}
    assert final[ids[0]].state == "destroyed"
    assert final[ids[0]].payload == b""
    assert final[ids[1]].label_version == last


def test_a_page_leaves_no_pooled_connection_committing_each_statement(store_url: str) -> None:
    store = Store(store_url, pool_size=1, max_overflow=0)  # every statement on the one connection
    try:
        store.migrate()
        store.insert_items([item(1, origin_id="same")])
        assert [r.id for r in store.list_items(ItemFilter(), 0, 10)] == ["item-00001"]
        assert [r.id for r in store.items_named("same")] == ["item-00001"]
        # a transaction that writes an item and then fails (the op finds no item to destroy)
        with pytest.raises(ConflictError):
            DutiesStore(store).commit(items=[item(2)], ops=[DutiesStore.withdraw("item-00099", "destroyed")])
        assert store.get_item("item-00002") is None  # nothing of it stayed
        assert [r.id for r in store.list_items(ItemFilter(), 0, 10)] == ["item-00001"]
    finally:
        store.close()


# --- a batch written in parts on a writer thread (issue 18, 033eaff) ---


def test_an_id_twice_in_one_batch_in_two_parts_refuses_the_whole_batch(store: Store) -> None:
    """An id in the first part and again in a later one (neither held before): the other connection
    the iterator may read through does not see the first part's uncommitted rows, so only the
    table's own constraint, in the one transaction, can refuse it; nothing of the batch stays."""
    from tests.store.test_store import _part

    def parts() -> Iterator[ItemPart]:
        yield _part(1, 10)
        yield _part(11, 10)
        yield _part(5, 1)  # item-00005 again, two parts later
        yield _part(21, 10)

    with pytest.raises(ConflictError):
        store.insert_item_parts(parts())
    assert store.count_items() == 0
    assert store.audit() == []
    assert len(store.insert_item_parts([_part(1, 3)])) == 3  # the store still writes
    assert store.count_items() == 3
