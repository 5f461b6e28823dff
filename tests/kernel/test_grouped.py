"""Audit records of concurrent requests are written together (issue 18), and never less safely:
each caller returns only once its own records are committed, and a failed write fails every
caller whose records were in it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tests.node_fixtures import analyst, jpn_label

from gsomia.errors import StoreError
from gsomia.kernel import GroupedAppend
from gsomia.store import AuditRow
from gsomia.testing import FakeClock, make_node


def _row(n: int) -> AuditRow:
    return AuditRow(n, "test.event", None, f"subject-{n}", "allowed", "{}")


class SlowStore:
    """A write that takes a while (so that callers pile up), remembering what it committed."""

    def __init__(self, fail_when: str | None = None) -> None:
        self.committed: list[str | None] = []
        self.writes: list[int] = []
        self.fail_when = fail_when
        self.lock = threading.Lock()

    def write(self, rows: Sequence[AuditRow]) -> None:
        time.sleep(0.01)
        if self.fail_when is not None and any(r.subject == self.fail_when for r in rows):
            raise StoreError("the store failed; nothing was written")
        with self.lock:
            self.writes.append(len(rows))
            self.committed += [r.subject for r in rows]


def test_concurrent_callers_share_writes_and_each_returns_after_its_own_commit() -> None:
    store = SlowStore()
    grouped = GroupedAppend(store.write)

    def call(n: int) -> bool:
        grouped.append([_row(n)])
        return f"subject-{n}" in store.committed  # committed before append returned

    with ThreadPoolExecutor(max_workers=40) as pool:
        assert all(pool.map(call, range(200)))
    assert sorted(store.committed) == sorted(f"subject-{n}" for n in range(200))  # each exactly once
    assert len(store.writes) < 100  # grouped: far fewer transactions than callers


def test_a_failed_write_fails_every_caller_in_it_and_not_the_next() -> None:
    store = SlowStore(fail_when="subject-0")
    grouped = GroupedAppend(store.write)
    with pytest.raises(StoreError):
        grouped.append([_row(0)])
    grouped.append([_row(1)])
    assert store.committed == ["subject-1"]

    store = SlowStore(fail_when="subject-7")
    grouped = GroupedAppend(store.write)
    outcomes: dict[int, str] = {}

    def call(n: int) -> None:
        try:
            grouped.append([_row(n)])
            outcomes[n] = "written" if f"subject-{n}" in store.committed else "lost"
        except StoreError:
            outcomes[n] = "raised"

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(call, range(40)))
    assert outcomes[7] == "raised"
    assert "lost" not in outcomes.values()  # a caller either raised or saw its record committed
    raised = {n for n, o in outcomes.items() if o == "raised"}
    assert not raised & {int(s.split("-")[1]) for s in store.committed if s}


def test_concurrent_reads_at_a_node_are_each_audited(tmp_path: Path) -> None:
    node = make_node(tmp_path / "jpn", "JPN", clock=FakeClock())
    reader = analyst(node)
    node.items.ingest(None, label=jpn_label(), payload=b'{"n": 1}', item_id="grouped-1")
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda _: node.items.read(reader, "grouped-1"), range(64)))
    reads = [r for r in node.store.audit(kind="item.read", limit=1000) if r.subject == "grouped-1"]
    assert len(reads) == 64
    assert all(r.actor == "reader" and r.outcome == "allowed" for r in reads)
    node.close()
