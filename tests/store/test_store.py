"""The store, on SQLite and PostgreSQL alike: migrations, transactions, keyset pages, tokens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, text

from gsomia.errors import ConflictError, InvalidInputError, StoreError
from gsomia.store import AuditRow, InventoryEntry, ItemFilter, ItemPart, ItemRow, NewItem, Store, TokenRow
from gsomia.store._tables import metadata


def item(n: int, **kw: object) -> NewItem:
    values: dict[str, object] = {
        "id": f"item-{n:05d}",
        "originator": "KOR",
        "classification": "군사II급비밀",
        "label": "{}",
        "topics": frozenset({"dprk-missile"}),
        "received_from": None,
        "agreement": None,
        "created_us": 1_000_000 * n,
        "ingested_us": 1_000_000 * n,
        "ingested_by": "tester",
        "payload_type": "bytes",
        "payload_size": 3,
        "payload": b"abc",
    }
    values.update(kw)
    return NewItem(**values)  # type: ignore[arg-type]


def test_migrations_are_idempotent_and_match_the_table_definitions(store: Store) -> None:
    store.migrate()
    assert store.revision() == Store.head()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_insert_and_read_back(store: Store) -> None:
    seqs = store.insert_items([item(1), item(2, topics=frozenset({"a", "b"}))])
    assert seqs[1] > seqs[0]
    row = store.get_item("item-00002")
    assert row is not None
    assert row.payload == b"abc"
    assert store.item_topics(row.seq) == ["a", "b"]
    assert store.get_item("nope") is None


def test_a_large_insert_gives_each_item_its_own_seq_in_order(store: Store) -> None:
    # more items than one IN (...) list holds (the inventory looks the seqs up by id in such lists)
    new = [item(n, topics=frozenset({f"t{n % 3}"})) for n in range(1, 1202)]
    seqs = store.insert_items(new, inventory=[(i.id, 1, "ingested", "KOR", "x", "{}") for i in new])
    assert len(set(seqs)) == len(new)
    assert seqs == sorted(seqs)  # in the order given
    for n in (1, 500, 501, 1000, 1201):
        row = store.get_item(f"item-{n:05d}")
        assert row is not None
        assert row.seq == seqs[n - 1]
        assert store.item_topics(row.seq) == [f"t{n % 3}"]
    held = store.inventories([i.id for i in new], "ingested")  # more ids than one IN (...) list holds
    assert len(held) == len(new)
    assert held["item-01201"] == store.inventory("item-01201")


def test_a_batch_of_awkward_values_reads_back_exactly_and_is_found_by_every_lookup(store: Store) -> None:
    # PostgreSQL writes a batch as one array per column (binary), and looks ids up as one array:
    # quotes, backslashes, braces, commas, NULLs, NUL bytes and large integers must come back as given
    awkward = '{"k": "a\\"b\\\\c", "l": "{x,y}", "m": "NULL", "n": "한국어 日本語"}'
    batch = [
        item(n, label=awkward, payload=bytes([0, n, 255]) * 200, origin_jws=None if n % 2 else b"\x00sig",
             agreement=None if n % 3 else f"ag,{{{n}}}", created_us=2**53 + n,
             topics=frozenset({f"t{n}", "shared topic"}), portions=None if n % 2 else '[{"id": "p\\1"}]')
        for n in range(1, 121)
    ]  # fmt: skip
    seqs = store.insert_items(batch, inventory=[(i.id, 5, "ingested", "KOR", "x", awkward) for i in batch])
    assert len(set(seqs)) == len(batch)
    rows = store.get_items([i.id for i in batch] + ["absent"])
    assert set(rows) == {i.id for i in batch}
    for new, seq in zip(batch, seqs, strict=True):
        row = rows[new.id]
        assert row.seq == seq
        assert (row.label, row.payload, row.origin_jws, row.agreement, row.created_us, row.portions) == (
            new.label, new.payload, new.origin_jws, new.agreement, new.created_us, new.portions
        )  # fmt: skip
        assert store.item_topics(seq) == sorted(new.topics)
        assert [(e.kind, e.detail) for e in store.inventory(new.id)] == [("ingested", awkward)]
    assert set(store.items_of([("KOR", i.id) for i in batch] + [("JPN", batch[0].id)])) == {
        ("KOR", i.id) for i in batch
    }
    assert store.existing_items([batch[0].id, "absent", batch[-1].id]) == {batch[0].id, batch[-1].id}
    # many items' inventories of one kind at once, each as the item's own read gives it
    ids = [i.id for i in batch]
    assert store.inventories([*ids, "absent"], "ingested") == {i: store.inventory(i) for i in ids}
    assert store.inventories(ids, "reached") == {}


def test_the_seqs_returned_are_the_stored_ones_whoever_else_writes(store: Store) -> None:
    # SQLite's seqs are given in the statement (one past the largest, read under the write lock), not
    # read back: another handle on the same database (another process of the node) writing between
    # and alongside, and the largest row deleted, must never make a returned seq name another row
    other = Store(store.url)
    try:
        given: dict[str, int] = {}
        for n, handle in enumerate((store, other, store, other)):
            batch = [item(100 * n + k) for k in range(1, 31)]
            given |= dict(zip((i.id for i in batch), handle.insert_items(batch), strict=True))
        with store.engine.begin() as conn:
            last = max(given, key=given.__getitem__)
            conn.execute(text("DELETE FROM item_topics WHERE item_seq = :s"), {"s": given.pop(last)})
            conn.execute(text("DELETE FROM items WHERE id = :i"), {"i": last})
        errors: list[BaseException] = []

        def write(handle: Store, first: int) -> None:
            try:
                for b in range(5):
                    batch = [item(first + 10 * b + k) for k in range(10)]
                    inventory = [(i.id, 1, "ingested", "KOR", "x", "{}") for i in batch]
                    seqs = handle.insert_items(batch, inventory)
                    given.update(zip((i.id for i in batch), seqs, strict=True))
            except BaseException as exc:  # handed to the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(h, f)) for h, f in ((store, 1000), (other, 2000))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(set(given.values())) == len(given) == 4 * 30 - 1 + 2 * 50
        rows = store.get_items(list(given))
        assert {i: r.seq for i, r in rows.items()} == given
        assert all(store.item_topics(seq) == ["dprk-missile"] for seq in given.values())
        assert all(store.inventory(i)[0].kind == "ingested" for i in given if i >= "item-01000")
    finally:
        other.close()


def test_duplicate_id_is_a_conflict_and_writes_nothing(store: Store) -> None:
    store.insert_items([item(1)])
    audit = [AuditRow(1, "item.ingest", "x", "item-00002", "allowed", "{}")]
    with pytest.raises(ConflictError):
        store.insert_items(
            [item(2), item(1)], inventory=[("item-00002", 1, "ingested", "KOR", "x", "{}")], audit=audit
        )
    assert store.count_items() == 1
    assert store.get_item("item-00002") is None
    assert store.audit() == []


def _part(first: int, count: int) -> ItemPart:
    batch = [item(first + k) for k in range(count)]
    inventory = [InventoryEntry(i.id, 1, "ingested", "KOR", "x", "{}") for i in batch]
    audit = [AuditRow(1, "item.ingest", "x", i.id, "allowed", "{}") for i in batch]
    return batch, inventory, audit


def test_parts_are_one_transaction_unseen_until_all_are_written_and_their_seqs_in_order(store: Store) -> None:
    # the parts are written by the store's writer thread while the next is made in this one: another
    # connection reading meanwhile sees none of them until the last is written and committed
    store.insert_items([item(1)])
    seen: list[int] = []

    def parts() -> Iterator[ItemPart]:
        for n in range(4):
            seen.append(store.count_items())  # after part n-1 was handed to the writer
            yield _part(100 + 10 * n, 10)

    seqs = store.insert_item_parts(parts())
    assert seen == [1, 1, 1, 1]
    assert store.count_items() == 41
    rows = store.get_items([f"item-{100 + k:05d}" for k in range(40)])
    assert seqs == [rows[f"item-{100 + k:05d}"].seq for k in range(40)] == sorted(seqs)
    assert len({r.added_us for r in rows.values()}) == 40
    assert [r.subject for r in store.audit()] == [f"item-{100 + k:05d}" for k in range(40)]
    assert all(store.inventory(f"item-{100 + k:05d}")[0].kind == "ingested" for k in range(40))


def test_a_part_refused_by_its_maker_after_others_were_written_leaves_nothing(store: Store) -> None:
    def parts() -> Iterator[ItemPart]:
        yield _part(1, 10)
        yield _part(11, 10)
        raise InvalidInputError("item 25 of 30: refused")

    with pytest.raises(InvalidInputError, match="item 25 of 30"):
        store.insert_item_parts(parts())
    assert store.count_items() == 0
    assert store.audit() == []
    assert store.inventory("item-00001") == []
    store.insert_item_parts([_part(1, 5)])  # the store writes on: no lock or connection left behind
    assert store.count_items() == 5


def test_an_id_held_already_in_a_later_part_is_a_conflict_and_writes_nothing(store: Store) -> None:
    store.insert_items([item(25)])
    made: list[int] = []

    def parts() -> Iterator[ItemPart]:
        for n in range(6):
            made.append(n)
            yield _part(1 + 10 * n, 10)

    with pytest.raises(ConflictError):
        store.insert_item_parts(parts())
    # part 2 (25 in it) was refused while part 3 was made: the batch ended there, part 4 never made
    assert made == [0, 1, 2, 3]
    assert store.count_items() == 1
    assert store.audit() == []
    assert store.get_item("item-00001") is None


def test_an_in_memory_store_writes_its_parts_on_its_one_connection() -> None:
    # an in-memory SQLite's connection serves its own thread only: its parts are written in the caller's
    memory = Store("sqlite://")
    try:
        memory.migrate()
        assert memory.insert_item_parts([_part(1, 3), _part(4, 3)]) == [1, 2, 3, 4, 5, 6]
        assert memory.count_items() == 6
    finally:
        memory.close()


def test_keyset_pages_cover_every_item_once(store: Store) -> None:
    store.insert_items([item(n) for n in range(1, 26)])
    seen: list[str] = []
    after = 0
    while True:
        page = store.list_items(ItemFilter(), after, 10)
        if not page:
            break
        seen += [r.id for r in page]
        after = page[-1].seq
    assert seen == [f"item-{n:05d}" for n in range(1, 26)]
    assert all(r.payload == b"" for r in store.list_items(ItemFilter(), 0, 5))  # listing leaves payloads out


def test_filters(store: Store) -> None:
    store.insert_items(
        [
            item(1),
            item(
                2,
                originator="JPN",
                classification="極秘",
                received_from="JPN",
                agreement="kor-jpn-gsomia-2016",
            ),
            item(3, topics=frozenset({"prc-navy"})),
            item(4, created_us=50_000_000),
        ]
    )

    def ids(where: ItemFilter) -> list[str]:
        return [r.id for r in store.list_items(where, 0, 100)]

    assert ids(ItemFilter(originator="JPN")) == ["item-00002"]
    assert ids(ItemFilter(classification="군사II급비밀")) == ["item-00001", "item-00003", "item-00004"]
    assert ids(ItemFilter(topic="prc-navy")) == ["item-00003"]
    assert ids(ItemFilter(received_from="JPN")) == ["item-00002"]
    assert ids(ItemFilter(created_from_us=2_000_000, created_before_us=4_000_000)) == [
        "item-00002",
        "item-00003",
    ]


def test_inventory_follows_the_item(store: Store) -> None:
    store.insert_items([item(1)], inventory=[("item-00001", 5, "ingested", "KOR", "alice", '{"n":1}')])
    store.add_inventory([("item-00001", 6, "sent", "JPN", "bob", "{}")])
    rows = store.inventory("item-00001")
    assert [(r.kind, r.party) for r in rows] == [("ingested", "KOR"), ("sent", "JPN")]


def test_tokens(store: Store) -> None:
    store.add_person("p1", "{}", 1)
    store.add_token(TokenRow("t1", "p1", 1, 100, None), "d" * 64)
    found = store.find_token("d" * 64)
    assert found is not None
    assert found.person_id == "p1"
    assert store.revoke_token("t1", 50)
    assert not store.revoke_token("t1", 60)
    revoked = store.token("t1")
    assert revoked is not None
    assert revoked.revoked_us == 50
    with pytest.raises(ConflictError):
        store.add_person("p1", "{}", 2)


def test_topic_pages_follow_the_cursor(store: Store) -> None:
    store.insert_items([item(n, topics=frozenset({"a"} if n % 2 else {"b"})) for n in range(1, 41)])
    seen: list[str] = []
    after = 0
    while page := store.list_items(ItemFilter(topic="a"), after, 7):
        seen += [r.id for r in page]
        after = page[-1].seq
    assert seen == [f"item-{n:05d}" for n in range(1, 41, 2)]


def test_a_partys_collection_by_date_added_reads_an_index_in_that_order(store: Store) -> None:
    """A TAXII page of a party's collection (``originator = ?`` by date-added) walks
    ``ix_items_originator_added``: no sort of every item of the party, so its cost does not grow
    with the store (issue 18: at 100,000 items the sort made the page 2.5 times dearer)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("the plan checked is SQLite's (PostgreSQL's planner chooses by its statistics)")
    store.insert_items([item(n, originator="KOR" if n % 3 else "JPN") for n in range(1, 61)])
    seen: list[str] = []

    def trace(dbapi_conn: Any, *_: object) -> None:  # the statements SQLite runs, values in place
        dbapi_conn.set_trace_callback(lambda sql: seen.append(sql) if "FROM items" in sql else None)

    where = ItemFilter(originator="KOR", by_added=True)
    event.listen(store.engine, "checkout", trace)
    try:
        rows = store.list_items(where, 0, 10)
    finally:
        event.remove(store.engine, "checkout", trace)
        store.engine.dispose()  # no connection keeps the trace
    assert [r.originator for r in rows] == ["KOR"] * 10
    assert [r.added_us for r in rows] == sorted(r.added_us or 0 for r in rows)
    statement, *_ = seen
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}"))
    assert "ix_items_originator_added" in plan
    assert "TEMP B-TREE" not in plan


def test_a_sqlite_store_checkpoints_its_wal_in_large_steps_and_reads_what_it_wrote(store: Store) -> None:
    # every connection of the pool: a checkpoint at 16,384 WAL pages, not at each 1,000-item commit
    if store.engine.dialect.name != "sqlite":
        pytest.skip("a SQLite pragma")
    with store.engine.connect() as a, store.engine.connect() as b:
        assert [c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() for c in (a, b)] == [16_384] * 2
        assert a.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    # a second handle (another process of the node) reads every row the first wrote, checkpointed or not
    store.insert_items([item(n, payload=bytes(3000)) for n in range(1, 2001)])
    other = Store(store.url)
    try:
        assert other.count_items() == 2000
        row = other.get_item("item-02000")
        assert row is not None
        assert row.payload == bytes(3000)
    finally:
        other.close()


def test_kept_statements_bind_each_calls_values(store: Store) -> None:
    """A page's and a name's SELECT are built once per shape and kept (issue 18): each call of a
    shape answers for its own values, never the values the statement was first built with. Every
    filter shape, asked twice with different values in a row, against the rows filtered here."""
    store.insert_items(
        [
            item(
                n,
                originator=("KOR", "JPN", "USA")[n % 3],
                classification=("군사II급비밀", "극비")[n % 2],
                received_from=(None, "JPN", "USA")[n % 3],
                topics=frozenset({("a", "b", "c")[n % 3], ("b", "d")[n % 2]}),
                created_us=1_000_000 * (n % 7),
                ingested_us=1_000_000 * n,
                origin_id=f"theirs-{n % 4}" if n % 5 == 0 else None,
            )
            for n in range(1, 61)
        ]
    )
    every = store.list_items(ItemFilter(), 0, 1000, with_payload=True)
    topics = {r.seq: set(store.item_topics(r.seq)) for r in every}
    values: dict[str, tuple[object, object]] = {
        "originator": ("JPN", "USA"),
        "classification": ("극비", "군사II급비밀"),
        "topic": ("b", "c"),
        "received_from": ("JPN", "USA"),
        "created_from_us": (2_000_000, 5_000_000),
        "created_before_us": (6_000_000, 3_000_000),
        "ingested_after_us": (10_000_000, 40_000_000),
    }

    def wanted(r: ItemRow, where: ItemFilter, after: int) -> bool:
        return (
            r.seq > after
            and where.originator in (None, r.originator)
            and where.classification in (None, r.classification)
            and where.received_from in (None, r.received_from)
            and (where.topic is None or where.topic in topics[r.seq])
            and (where.created_from_us is None or r.created_us >= where.created_from_us)
            and (where.created_before_us is None or r.created_us < where.created_before_us)
            and (where.ingested_after_us is None or r.ingested_us > where.ingested_after_us)
        )

    names = list(values)
    shapes = [(), *[(n,) for n in names], *[(a, b) for a in names for b in names if a < b], tuple(names)]
    for shape in shapes:
        for turn, after, limit in ((0, 0, 1000), (1, every[5].seq, 7)):
            where = ItemFilter(**{name: values[name][turn] for name in shape})  # type: ignore[arg-type]
            got = [r.id for r in store.list_items(where, after, limit)]
            assert got == [r.id for r in every if wanted(r, where, after)][:limit], (shape, turn)

    for ref, originator in (
        ("item-00002", None),
        ("item-00003", None),
        ("theirs-1", None),
        ("theirs-2", None),
        ("theirs-1", "KOR"),
        ("theirs-1", "JPN"),
        ("JPN:theirs-2", None),
        ("KOR:theirs-1", None),
        ("KOR:theirs-1", "USA"),
    ):
        head, _, rest = ref.partition(":")
        expected = [
            r.id
            for r in every
            if (r.id == ref or r.origin_id == ref or (rest and r.originator == head and r.origin_id == rest))
            and originator in (None, r.originator)
        ]
        assert [r.id for r in store.items_named(ref, originator)] == expected, (ref, originator)


def test_a_kept_statements_errors_are_the_stores(store: Store) -> None:
    """The kept SELECTs (on SQLite run on the driver's own cursor) fail as ``execute`` failed: a value
    the database cannot compare is bad input, a database that cannot answer is the store's failure,
    neither saying more than the store's words."""
    store.insert_items([item(1)])
    with pytest.raises(InvalidInputError):
        store.list_items(ItemFilter(created_from_us=2**70), 0, 10)
    with pytest.raises(InvalidInputError):
        store.list_items(ItemFilter(), 2**70, 10)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE items RENAME TO items_gone")
    try:
        with pytest.raises(StoreError, match=r"^the store failed to answer$"):
            store.list_items(ItemFilter(), 0, 10)
        with pytest.raises(StoreError, match=r"^the store failed to answer$"):
            store.items_named("item-00001")
    finally:
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE items_gone RENAME TO items")
    assert [r.id for r in store.items_named("item-00001")] == ["item-00001"]


def test_the_sqlite_connections_past_the_pool_hold_nothing_between_uses(store: Store) -> None:
    """SQLite: the kept SELECTs and the audit appends take the driver's connections past the pool
    (``Store._sqlite_driver``). From many threads at once every append is written and every read sees
    each commit made before it; a connection left inside a transaction by its user is rolled back
    before it is given again (a snapshot kept open would hide later commits); one whose use failed
    is closed, never given again; ``close`` closes those kept."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's connections only (PostgreSQL's go through the pool)")
    store.insert_items([item(1)])
    errors: list[BaseException] = []

    def reader_and_writer(n: int) -> None:
        try:
            for k in range(25):
                store.append_audit([AuditRow(1, "item.read", f"t{n}", f"item-{k}", "allowed", "{}")])
                assert [r.id for r in store.items_named("item-00001")] == ["item-00001"]
                assert [r.id for r in store.list_items(ItemFilter(), 0, 10)][:1] == ["item-00001"]
        except BaseException as exc:  # raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=reader_and_writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len([r for r in store.audit(kind="item.read") if (r.actor or "").startswith("t")]) == 8 * 25

    with store._sqlite_driver() as dbapi:  # a user that leaves a read transaction open
        dbapi.execute("BEGIN")
        dbapi.execute("SELECT count(*) FROM items").fetchall()
        left = dbapi
    store.insert_items([item(2)])  # through the pool, committed
    with store._sqlite_driver() as dbapi:
        assert dbapi is left  # the last given back is taken first
        assert not dbapi.in_transaction
    assert [r.id for r in store.items_named("item-00002")] == ["item-00002"]

    def failing() -> Any:
        with store._sqlite_driver() as dbapi:
            taken.append(dbapi)
            raise RuntimeError("its user failed")

    taken: list[Any] = []
    with pytest.raises(RuntimeError):
        failing()
    failed = taken[0]
    with pytest.raises(Exception, match="closed"):
        failed.execute("SELECT 1")
    last = store.audit(kind="item.read")[-1]
    with pytest.raises(ConflictError):  # the same entry id again: refused, that connection closed
        store.append_audit([AuditRow(2, "item.read", "t", "x", "allowed", "{}", entry_id=last.entry_id)])
    store.append_audit([AuditRow(3, "item.read", "after", "x", "allowed", "{}")])
    assert store.audit(kind="item.read")[-1].actor == "after"

    kept = [held.dbapi_connection for held in store._spare]
    assert kept
    store.close()
    assert store._spare == []
    for dbapi in kept:
        with pytest.raises(Exception, match="closed"):
            dbapi.execute("SELECT 1")
