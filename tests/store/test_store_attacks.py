"""Adversarial review of the store's kept SELECTs (issue 18: a page's and a name's statement built
once per shape, values bound per call): readers in threads asking the same shapes with their own
values at once each get their own rows, never another caller's (a page served to the wrong reader),
including the date-added pages (TAXII) that the shapes' test leaves out."""

from __future__ import annotations

import threading

from tests.store.test_store import item

from gsomia.store import ItemFilter, ItemRow, Store


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
