"""The OASIS taxii2-client (which nobody here wrote) reads and writes through a node served by uvicorn."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import uvicorn
from taxii2client.v21 import Server, as_pages
from tests.node_fixtures import kor_label
from tests.taxii.stix_checks import assert_valid_bundle
from tests.taxii.test_stix import indicator

from gsomia.api import create_app
from gsomia.demo import network
from gsomia.node import Node
from gsomia.taxii._stix import extension_objects, marking_for


class Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


@pytest.fixture
def served(jpn_node: Node) -> Iterator[str]:
    port = network.free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(jpn_node), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True, name="gsomia-taxii-test")
    thread.start()
    endpoint = f"http://127.0.0.1:{port}"
    network._wait_healthy(endpoint, network.START_S, alive=thread.is_alive)
    try:
        yield endpoint
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _collection(endpoint: str, token: str, title: str) -> Any:
    server = Server(f"{endpoint}/taxii2/", auth=Bearer(token))
    [root] = server.api_roots
    return next(c for c in root.collections if c.title == title)


@pytest.mark.usefixtures("people")
def test_taxii2_client_pages_through_what_the_reader_may_read(served: str, jpn_node: Node) -> None:
    for n in range(5):
        jpn_node.ingest(
            None,
            label=kor_label(),
            payload=json.dumps({"n": n}).encode(),
            item_id=f"kor-{n}",
            received_from="KOR",
            agreement="kor-jpn-gsomia-2016",
        )
    tanaka = jpn_node.issue_token(None, "tanaka")[1]
    sato = jpn_node.issue_token(None, "sato")[1]
    collection = _collection(served, tanaka, "party:KOR")
    pages = list(as_pages(collection.get_objects, per_request=2))
    walked = [o for page in pages for o in page.get("objects", [])]
    objects = [o for o in walked if o["type"] == "x-gsomia-item"]
    assert [o["item_id"] for o in objects] == [f"kor-{n}" for n in range(5)]
    assert all(len(page.get("objects", [])) <= 2 for page in pages)
    manifest = [
        e for page in as_pages(collection.get_manifest, per_request=2) for e in page.get("objects", [])
    ]
    assert [e["id"] for e in manifest] == [o["id"] for o in walked]
    one = collection.get_object(objects[0]["id"])
    assert one["objects"][0]["item_id"] == "kor-0"
    held = jpn_node.held("kor-0")
    assert held is not None
    assert_valid_bundle(
        {
            "type": "bundle",
            "id": "bundle--6a0d8c55-4b6e-4f43-8d8a-2a4f3c1b9e77",
            "objects": [*extension_objects(), marking_for(held.label), *objects],
        }
    )
    hidden = _collection(served, sato, "party:KOR")
    assert hidden.get_objects().get("objects", []) == []
    assert hidden.get_manifest().get("objects", []) == []
    with pytest.raises(requests.HTTPError):
        hidden.get_object(objects[0]["id"])


@pytest.mark.usefixtures("people")
def test_taxii2_client_writes_labelled_objects_and_reads_the_status(served: str, jpn_node: Node) -> None:
    tanaka = jpn_node.issue_token(None, "tanaka")[1]
    collection = _collection(served, tanaka, "agreement:kor-jpn-gsomia-2016")
    assert collection.can_write
    label = jpn_node.catalogue.label(
        originator="JPN",
        classification="秘",
        releasable_to=["KOR"],
        purpose="threat-assessment",
        topics=["dprk-missile"],
        created=jpn_node.clock(),
    )
    mine = indicator(object_marking_refs=[marking_for(label)["id"]])
    envelope = {"objects": [*extension_objects(), marking_for(label), mine]}
    status = collection.add_objects(json.dumps(envelope))
    assert status.status == "complete"
    assert status.success_count == 1
    assert collection.get_object(mine["id"])["objects"][0]["pattern"] == mine["pattern"]
