"""Attack on 033eaff (ingest_many written in parts on a writer thread): an ingest's preparation reads the
store (the change watch's counters when they fall due, a visitor's visits, consents on file) and must
not do it while holding the batch's connection and, on SQLite, the process's writer queue.

033eaff moved the preparation of the first part inside ``Store.insert_item_parts``' transaction: the
ingest took a connection (and the writer queue) first, then prepared, and a read in the preparation
asked the pool for a second connection while holding the first. With the pool's connections all held
by ingests so (the API's 40 worker threads against a pool of 40), each waits for another that none
gives back until the pool's timeout. A pool of one connection shows that hold-and-wait with one ingest:
the single item a request ingests (every production ingest is one) was refused after the pool's
timeout, where the node before prepared first and wrote after, and stored it. The first part is
prepared before the transaction again; only a batch's later parts are prepared beside the writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.node_fixtures import jpn_label

from gsomia.node import Node, init_node_dir
from gsomia.store import Store
from gsomia.testing import FakeClock


@pytest.fixture
def one_connection_node(tmp_path: Path, store_url: str) -> Iterator[Node]:
    config = init_node_dir(tmp_path / "jpn", "JPN", store_url)
    store = Store(store_url, pool_size=1, max_overflow=0, pool_timeout=2)
    node = Node(config, clock=FakeClock(), store=store)
    yield node
    node.close()


def test_an_ingest_whose_preparation_reads_the_store_is_stored_with_one_connection(
    one_connection_node: Node,
) -> None:
    node = one_connection_node
    for n in range(3):
        node.kernel.watch._next = 0.0  # the counters fall due: the preparation reads them (one connection)
        before = node.kernel.watch.reads
        item = node.items.ingest(None, label=jpn_label(), payload=b"{}", item_id=f"one-{n}")
        assert node.kernel.watch.reads > before, "the probe's read did not happen in the preparation"
        assert node.store.get_item(item.id) is not None
    assert node.store.count_items() == 3
