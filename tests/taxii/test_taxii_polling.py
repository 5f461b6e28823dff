"""Polling under concurrent ingest: two processes of one node store items while a reader polls with
``added_after`` = the last ``X-TAXII-Date-Added-Last``. Every item is seen exactly once: date-added
is given under one lock in commit order, so no item commits later with an earlier instant."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add, kor_label

from gsomia.api import create_app
from gsomia.node import NewIngest, Node, init_node_dir

GSOMIA = "kor-jpn-gsomia-2016"
TAXII = "application/taxii+json;version=2.1"
PER_WRITER = 60
BATCH = 3


WRITER = """
import json, sys
from pathlib import Path
from gsomia.node import NewIngest, Node, load_config
directory, name, per, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
label, agreement = json.loads(sys.argv[5]), "kor-jpn-gsomia-2016"
node = Node(load_config(Path(directory)), migrate=False)
try:
    for start in range(0, per, batch):
        node.ingest_many(None, [
            NewIngest(label, json.dumps({"n": n}).encode(), "json", f"{name}-{n}", "KOR", agreement)
            for n in range(start, start + batch)
        ])
finally:
    node.close()
"""


def _writer(directory: Path, name: str) -> subprocess.Popen[bytes]:
    """A second process of the node: stores PER_WRITER items, BATCH at a time (one instant per batch)."""
    args = [
        sys.executable,
        "-c",
        WRITER,
        str(directory),
        name,
        str(PER_WRITER),
        str(BATCH),
        json.dumps(kor_label()),
    ]
    return subprocess.Popen(args)  # noqa: S603 - our own code, fixed arguments


def test_polling_never_repeats_or_skips_under_concurrent_ingest(tmp_path: Path, store_url: str) -> None:
    node = Node(init_node_dir(tmp_path / "jpn", "JPN", store_url))
    add(node, "tanaka", "JPN", "極秘", ["dprk-missile"], ["analyst"])
    token = node.issue_token(None, "tanaka")[1]
    app = create_app(node)
    writers: list[subprocess.Popen[bytes]] = []

    async def poll() -> list[str]:
        seen: list[str] = []
        headers = {"Accept": TAXII, "Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            found = (await client.get("/taxii2/api/collections/", headers=headers)).json()["collections"]
            cid = next(c["id"] for c in found if c["title"] == "party:KOR")
            after: str | None = None
            quiet_since: float | None = None
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                params: dict[str, Any] = {"limit": 7, **({"added_after": after} if after else {})}
                response = await client.get(
                    f"/taxii2/api/collections/{cid}/objects/", headers=headers, params=params
                )
                assert response.status_code == 200, response.text
                seen += [o["item_id"] for o in response.json()["objects"] if o["type"] == "x-gsomia-item"]
                after = response.headers.get("X-TAXII-Date-Added-Last", after)
                idle = not response.json()["objects"] and all(w.poll() is not None for w in writers)
                if idle:
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > 0.5:
                        return seen
                else:
                    quiet_since = None
                await asyncio.sleep(0.01)
        raise AssertionError("the writers did not finish in time")

    try:
        writers += [_writer(tmp_path / "jpn", f"w{k}") for k in range(2)]
        seen = asyncio.run(poll())
        assert [w.wait(timeout=600) for w in writers] == [0, 0]
    finally:
        for writer in writers:
            writer.kill()
        node.close()
    expected = {f"w{k}-{n}" for k in range(2) for n in range(PER_WRITER)}
    assert len(seen) == len(set(seen)), "an item was served twice"
    assert set(seen) == expected, f"skipped: {sorted(expected - set(seen))[:5]}"


@pytest.mark.parametrize("count", [1, 4])
def test_date_added_is_unique_and_increasing_even_for_items_of_one_instant(
    tmp_path: Path, count: int
) -> None:
    node = Node(init_node_dir(tmp_path / f"n{count}", "JPN"))
    try:
        for _ in range(3):
            node.ingest_many(
                None,
                [NewIngest(kor_label(), b"{}", "json", None, "KOR", GSOMIA) for _ in range(count)],
            )
        added = [r.added_us for r in node.store.list_items(node_filter(), 0, 100)]
        assert all(a is not None for a in added)
        assert added == sorted(added)
        assert len(set(added)) == len(added) == 3 * count
    finally:
        node.close()


def node_filter() -> Any:
    from gsomia.store import ItemFilter

    return ItemFilter()
