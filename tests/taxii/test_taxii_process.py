"""The OASIS taxii2-client walks a REAL node process (``gsomia node serve``): discovery, collections,
objects page by page, the manifest, by id, versions, filters, add_objects and the status; and the
node keeps answering ``/healthz`` while it ingests a large POST (the ingest is off the event loop)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import requests
from taxii2client.v21 import Server, as_pages
from tests.node_fixtures import add, kor_label
from tests.reliability.processes import serve
from tests.taxii.test_stix import indicator

from gsomia.demo import network
from gsomia.demo.network import NetNode
from gsomia.node import NewIngest, Node, init_node_dir
from gsomia.taxii._server import MAX_POST_OBJECTS
from gsomia.taxii._stix import marking_for

GSOMIA = "kor-jpn-gsomia-2016"


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@pytest.fixture(scope="module")
def node_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Node]]:
    """A JPN node directory with 7 KOR items, served by its own process; (endpoint, token, node)."""
    directory = tmp_path_factory.mktemp("taxii-process") / "jpn"
    node = Node(init_node_dir(directory, "JPN"))  # the real clock: the served process reads it too
    add(node, "tanaka", "JPN", "極秘", ["dprk-missile"], ["analyst"])
    node.items.ingest_many(
        None,
        [
            NewIngest(kor_label(), json.dumps({"n": n}).encode(), "json", f"kor-{n}", "KOR", GSOMIA)
            for n in range(7)
        ],
    )
    token = node.credentials.issue(None, "tanaka")[1]
    member = NetNode("JPN", directory, network.free_port())
    server = serve(member)
    try:
        yield member.endpoint, token, node
    finally:
        server.terminate()
        server.wait(timeout=10)
        node.close()


def test_the_taxii2_client_walks_a_node_process(node_process: tuple[str, str, Node]) -> None:
    endpoint, token, node = node_process
    server = Server(f"{endpoint}/taxii2/", auth=Bearer(token))
    assert server.title == "gsomia node (JPN)"
    [root] = server.api_roots
    assert root.versions == ["application/taxii+json;version=2.1"]
    collection = next(c for c in root.collections if c.title == "party:KOR")
    pages = list(as_pages(collection.get_objects, per_request=3))
    walked = [o for page in pages for o in page.get("objects", [])]
    assert all(len(page.get("objects", [])) <= 3 for page in pages)
    items = [o for o in walked if o["type"] == "x-gsomia-item"]
    assert [o["item_id"] for o in items] == [f"kor-{n}" for n in range(7)]
    manifest = [
        e for page in as_pages(collection.get_manifest, per_request=3) for e in page.get("objects", [])
    ]
    assert [e["id"] for e in manifest] == [o["id"] for o in walked]
    one = collection.get_object(items[2]["id"])["objects"]
    assert one[0]["item_id"] == "kor-2"
    label = collection.get_object(items[2]["object_marking_refs"][0])["objects"][0]
    assert label["type"] == "marking-definition"  # the label, served to whoever may read the item
    assert collection.object_versions(items[2]["id"])["versions"] == [items[2]["modified"]]
    assert collection.get_objects(type="indicator").get("objects", []) == []
    later = collection.get_objects(added_after=manifest[3]["date_added"])["objects"]
    assert [o["item_id"] for o in later if o["type"] == "x-gsomia-item"] == [f"kor-{n}" for n in range(4, 7)]

    writable = next(c for c in root.collections if c.title == f"agreement:{GSOMIA}")
    marking = marking_for(
        node.catalogue.label(
            originator="JPN",
            classification="秘",
            releasable_to=["KOR"],
            purpose="threat-assessment",
            topics=["dprk-missile"],
            created=node.clock(),
        )
    )
    mine = indicator(object_marking_refs=[marking["id"]])
    status = writable.add_objects(json.dumps({"objects": [marking, mine]}))
    assert (status.status, status.success_count, status.failure_count) == ("complete", 1, 0)
    status.refresh()
    assert status.successes == [{"id": mine["id"], "version": mine["modified"]}]
    assert writable.get_object(mine["id"])["objects"][0]["pattern"] == mine["pattern"]


def test_healthz_answers_while_a_large_post_is_ingested(node_process: tuple[str, str, Node]) -> None:
    """The POST runs in a worker thread: the event loop (health, streams) answers meanwhile."""
    endpoint, token, node = node_process
    marking = marking_for(
        node.catalogue.label(
            originator="JPN",
            classification="秘",
            releasable_to=["KOR"],
            purpose="threat-assessment",
            topics=["dprk-missile"],
            created=node.clock(),
        )
    )
    objects = [marking] + [
        indicator(id=f"indicator--1f4c5a1e-2b9e-4c8f-9a55-{n:012d}", object_marking_refs=[marking["id"]])
        for n in range(MAX_POST_OBJECTS - 1)
    ]
    collection = next(
        c["id"]
        for c in httpx.get(
            f"{endpoint}/taxii2/api/collections/", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()["collections"]
        if c["title"] == f"agreement:{GSOMIA}"
    )
    done: dict[str, float] = {}
    body = json.dumps({"objects": objects}).encode()
    sent = threading.Event()

    def chunks() -> Iterator[bytes]:
        """The body in pieces; ``sent`` once the server has taken the last (its ingest starts)."""
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]
        sent.set()

    def upload() -> None:
        response = httpx.post(
            f"{endpoint}/taxii2/api/collections/{collection}/objects/",
            content=chunks(),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/taxii+json;version=2.1",
                "Content-Length": str(len(body)),  # in pieces, but not chunked: the server asks for it
            },
            timeout=300,
        )
        assert response.status_code == 202, response.text
        done["post"] = time.monotonic()
        done["stored"] = response.json()["success_count"]

    thread = threading.Thread(target=upload)
    thread.start()
    assert sent.wait(timeout=300), "the upload's body was not taken"
    health = httpx.get(f"{endpoint}/healthz", timeout=60)
    answered = time.monotonic()
    thread.join(timeout=300)
    assert health.status_code == 200
    assert done["stored"] == MAX_POST_OBJECTS - 1
    assert answered < done["post"], "health waited for the whole upload: the ingest blocked the event loop"
