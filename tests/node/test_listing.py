"""A page's read decisions (issue 18): each label decided once a page, never a different answer from
the one read decision asked item by item; nothing the memo holds outlives the page."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.node_fixtures import add

from gsomia._codec import canonical
from gsomia.core.access import Person
from gsomia.kernel import checks_json
from gsomia.node import NewIngest, Node
from gsomia.store import ItemFilter

TOPICS = ("dprk-missile", "dprk-nuclear", "prc-navy")


def _mixed(node: Node, count: int, seed: int) -> None:
    """``count`` items of many labels: JPN's own at every level and KOR's received, topics, caveats,
    releasability; most labels shared by several items that differ only in their creation instant,
    and twins at the top level that differ in nothing else."""
    rng = random.Random(seed)  # noqa: S311 - a fixed mix of labels, not a secret
    batch: list[NewIngest] = []
    for n in range(count):
        created = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(500_000))
        if rng.random() < 0.4:
            label: dict[str, Any] = {
                "originator": "KOR",
                "classification": rng.choice(("군사II급비밀", "군사III급비밀")),
                "releasable_to": rng.choice((["JPN"], ["JPN", "USA"])),
            }
            origin = {"item_id": f"k{n}", "received_from": "KOR", "agreement": "kor-jpn-gsomia-2016"}
        else:
            label = {
                "originator": "JPN",
                "classification": rng.choice(("特定秘密", "極秘", "秘")),
                "releasable_to": rng.choice((["KOR"], ["USA"], ["KOR", "USA"])),
            }
            origin = {"item_id": f"j{n}"}
        label.update(
            purpose="threat-assessment",
            topics=sorted(set(rng.choices(TOPICS, k=rng.choice((1, 2))))),
            created=created.isoformat(),
            caveats=["NOFORN"] if label["originator"] == "JPN" and rng.random() < 0.15 else [],
        )
        batch.append(NewIngest(label=label, payload=b'{"n": %d}' % n, **origin))
        if label["originator"] == "JPN" and label["classification"] != "特定秘密" and rng.random() < 0.3:
            twin = {**label, "classification": "特定秘密"}  # its twin, at the top level
            batch.append(NewIngest(label=twin, payload=b"{}", item_id=f"{origin['item_id']}-above"))
    node.items.ingest_many(None, batch)


def _one_by_one(node: Node, reader: Person) -> list[str]:
    """What the one read decision, asked of each item on its own, lets ``reader`` see, in order."""
    rows = node.store.list_items(ItemFilter(), 0, 10_000)
    return [r.id for r in rows if node.kernel.view(reader, node.kernel.items.item(r)).allowed]


def _paged(node: Node, reader: Person, limit: int) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = node.items.list_items(reader, ItemFilter(), cursor, limit)
        seen += [i.id for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen


def test_a_partly_cleared_reader_gets_exactly_what_each_items_own_decision_permits(jpn_node: Node) -> None:
    """On a mixed store, pages of several sizes hold exactly the items the read decision lets each
    reader see when asked item by item: the cleared, the partly cleared (for whom an item's twin at the
    top level is withheld beside it, though the two differ in nothing else), and foreign readers
    (a KOR reader sees KOR's own items; none here has a USA level: the USA reader sees nothing)."""
    _mixed(jpn_node, 160, seed=18)
    readers = [
        add(jpn_node, "all", "JPN", "特定秘密", list(TOPICS), ["analyst"]),
        add(jpn_node, "part", "JPN", "極秘", ["dprk-missile"], ["analyst"]),
        add(jpn_node, "low", "JPN", "秘", ["prc-navy", "dprk-nuclear"], ["analyst"]),
        add(jpn_node, "smith", "USA", "TOP SECRET", list(TOPICS), ["analyst"]),
        add(jpn_node, "kim", "KOR", "군사II급비밀", ["dprk-missile"], ["analyst"]),
    ]
    for reader in readers:
        expected = _one_by_one(jpn_node, reader)
        assert bool(expected) == (reader.nationality != "USA")  # KOR's own items: kim's too
        for limit in (1, 7, 100, 1000):
            assert _paged(jpn_node, reader, limit) == expected, (reader.id, limit)
    held = {r.id for r in jpn_node.store.list_items(ItemFilter(), 0, 10_000)}
    part_sees = set(_paged(jpn_node, readers[1], 7))
    twins = [i for i in part_sees if f"{i}-above" in held]
    assert twins, "the mix holds a top-level twin of an item the partly cleared reader may read"
    assert not any(f"{i}-above" in part_sees for i in twins)


def test_a_need_to_know_or_label_change_shows_on_the_next_page(jpn_node: Node) -> None:
    """Nothing decided for one page is kept for the next: the same reader with another
    need-to-know, and an item the originator reclassified above them, are seen on the next page."""
    _mixed(jpn_node, 60, seed=7)
    part = add(jpn_node, "part", "JPN", "極秘", ["dprk-missile"], ["analyst"])
    before = _paged(jpn_node, part, 1000)
    assert before == _one_by_one(jpn_node, part)
    navy = replace(part, need_to_know=frozenset({"prc-navy"}))
    after = _paged(jpn_node, navy, 1000)
    assert after == _one_by_one(jpn_node, navy)
    assert after != before
    officer = add(jpn_node, "officer", "JPN", "特定秘密", list(TOPICS), ["release_officer", "analyst"])
    own = next(i for i in before if i.startswith("j") and not i.endswith("-above"))
    jpn_node.duties.reclassify(officer, own, "特定秘密", "reviewed")
    assert own not in _paged(jpn_node, part, 1000)
    assert _paged(jpn_node, part, 1000) == _one_by_one(jpn_node, part)


def test_each_read_served_in_bulk_is_recorded_with_its_own_decisions_checks(jpn_node: Node) -> None:
    """A page served in bulk (TAXII's path) writes one item.read record per item whose checks are
    the ones the read decision gives that item on its own."""
    _mixed(jpn_node, 80, seed=3)
    part = add(jpn_node, "part", "JPN", "極秘", ["dprk-missile", "prc-navy"], ["analyst"])
    page = jpn_node.items.read_page(
        part, ItemFilter(), cursor=None, limit=1000, keep=lambda _item, _payload: True, channel="test"
    )
    assert [i.id for i, _ in page.items] == _one_by_one(jpn_node, part)
    records = {r.subject: r.detail for r in jpn_node.store.audit(kind="item.read") if r.actor == "part"}
    assert records.keys() == {i.id for i, _ in page.items}
    for item, _ in page.items:
        decision = jpn_node.kernel.decide_read(part, item.label, item.id)
        assert records[item.id] == canonical({"channel": "test", "checks": checks_json(decision.checks)})
        assert json.loads(records[item.id])["checks"]


def test_a_batch_ingested_is_recorded_as_each_item_alone_would_be(jpn_node: Node) -> None:
    """The batch's records are written without parsing each stored label again: each ``item.ingest``
    record still holds the canonical form of ``{"label": <the item's stored label>}``, and each
    inventory entry its agreement."""
    _mixed(jpn_node, 40, seed=5)
    rows = {r.id: r for r in jpn_node.store.list_items(ItemFilter(), 0, 1000)}
    records = {r.subject: r.detail for r in jpn_node.store.audit(kind="item.ingest")}
    assert records.keys() == rows.keys()
    for item_id, row in rows.items():
        assert records[item_id] == canonical({"label": json.loads(row.label)})
        (entry,) = jpn_node.store.inventory(item_id)
        assert json.loads(entry.detail) == {"agreement": row.agreement}
