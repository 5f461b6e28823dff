"""A read by name (issue 18): ``ItemService.read_named`` reads the row its resolution found, where
resolving and reading took two queries; it is still the node's one read decision on that row.

Attacks: a reader without the clearance, a name this node does not hold, a name with an originator
that is not the item's, a stored row changed between two reads, concurrent pages: each refused as
an unknown item, nothing said of the label, each read decided and audited exactly once; a page's
``item.list`` record is in the store when the page is answered, also when many pages are asked at
once (their records share transactions).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from tests.node_fixtures import kor_label

from gsomia.api import create_app
from gsomia.api._items import READ_THREADS
from gsomia.core.access import Person
from gsomia.errors import NotFoundError
from gsomia.node import Node
from gsomia.store import ItemFilter

HELD = "named-1"
pytestmark = pytest.mark.usefixtures("people", "held")


@pytest.fixture
def held(jpn_node: Node) -> None:
    jpn_node.items.ingest(
        None,
        label=kor_label(),
        payload=b'{"track": 1}',
        item_id=HELD,
        received_from="KOR",
        agreement="kor-jpn-gsomia-2016",
    )


def _records(node: Node, kind: str, outcome: str, subject: str | None = None) -> int:
    return len(
        [
            r
            for r in node.store.audit(kind=kind)
            if r.outcome == outcome and (subject is None or r.subject == subject)
        ]
    )


def test_a_read_by_name_is_the_read_of_the_resolved_item_audited_once(jpn_node: Node) -> None:
    tanaka = jpn_node.people.person("tanaka")
    for ref, originator in ((HELD, None), (HELD, "KOR"), (f"KOR:{HELD}", None)):
        before = _records(jpn_node, "item.read", "allowed", HELD)
        item, payload = jpn_node.items.read_named(tanaka, ref, originator)
        assert (item.id, item.label.originator, payload) == (HELD, "KOR", b'{"track": 1}')
        assert (item, payload) == jpn_node.items.read(
            tanaka, jpn_node.items.resolve_item(tanaka, ref, originator)
        )
        assert _records(jpn_node, "item.read", "allowed", HELD) == before + 2


@pytest.mark.parametrize(
    ("who", "ref", "originator"),
    [
        ("sato", "named-1", None),
        ("tanaka", "named-2", None),
        ("tanaka", "named-1", "JPN"),
        ("smith", "KOR:named-1", None),
    ],
)
def test_a_read_by_name_refused_is_an_unknown_item_audited_once(
    jpn_node: Node, who: str, ref: str, originator: str | None
) -> None:
    reader: Person = jpn_node.people.person(who)
    refusals = len([r for r in jpn_node.store.audit() if r.outcome == "refused"])
    with pytest.raises(NotFoundError) as caught:
        jpn_node.items.read_named(reader, ref, originator)
    assert "秘" not in str(caught.value)  # nothing of the label: the same words as an item not held
    assert len([r for r in jpn_node.store.audit() if r.outcome == "refused"]) == refusals + 1
    assert _records(jpn_node, "item.read", "allowed") == 0


def test_a_row_changed_since_its_resolution_is_decided_on_the_row_read(jpn_node: Node) -> None:
    """The row handed to the read is the one the name resolved to: a row of another item is not used."""
    tanaka = jpn_node.people.person("tanaka")
    other = jpn_node.store.get_item(HELD)
    assert other is not None
    with pytest.raises(NotFoundError):
        jpn_node.kernel.read_item(tanaka, "named-2", other)  # another id's row: read again, not held
    assert _records(jpn_node, "item.read", "refused", "named-2") == 1


def test_concurrent_pages_are_each_answered_after_their_audit_record(jpn_node: Node) -> None:
    tanaka = jpn_node.people.person("tanaka")

    def page(_: int) -> int:
        listed = jpn_node.items.list_items(tanaka, ItemFilter(), None, 20)
        return len(listed.items)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(page, range(40))) == [1] * 40
    assert _records(jpn_node, "item.list", "allowed") == 40


def test_concurrent_reads_through_the_app_each_decided_and_audited_once(jpn_node: Node) -> None:
    """More pages and reads at once than the read routes' worker threads (``READ_THREADS``): each is
    answered, the refused as unknown items, and each has its one audit record."""
    tokens = {pid: jpn_node.credentials.issue(None, pid)[1] for pid in ("tanaka", "sato")}
    app = create_app(jpn_node)
    asks = [("tanaka", f"/items/{HELD}"), ("sato", f"/items/{HELD}"), ("tanaka", "/items?limit=20")] * 10
    assert len(asks) > 3 * READ_THREADS

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            answers = await asyncio.gather(
                *(client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"}) for who, path in asks)
            )
        return [a.status_code for a in answers]

    assert asyncio.run(run()) == [200, 404, 200] * 10
    assert _records(jpn_node, "item.read", "allowed", HELD) == 10
    assert _records(jpn_node, "item.read", "refused", HELD) == 10
    assert _records(jpn_node, "item.list", "allowed") == 10
