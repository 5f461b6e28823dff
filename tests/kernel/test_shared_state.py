"""Keys and peers are the store's: what one process of a node changes, every other process uses
within the watch interval, on every path that signs or verifies; concurrent changes all land."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.identity_docs import claims

from gsomia.crypto.envelope import sign_origin, verify_origin
from gsomia.crypto.keys import KeyRing
from gsomia.errors import ConfigError, EnvelopeError, InvalidInputError
from gsomia.kernel import DEFAULT_INTERVAL, StoreKeyRing
from gsomia.node import Node
from gsomia.node._config import KEYRING_FILE, init_node_dir
from gsomia.stream import StreamService
from gsomia.testing import FakeClock, make_node

NOW = datetime(2024, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
def two(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Node, Node]]:
    """Two processes of one KOR node: two ``Node`` objects over the same directory and store."""
    first = make_node(tmp_path / "kor", "KOR", clock=clock)
    second = Node.open(tmp_path / "kor", clock=clock)
    yield first, second
    first.close()
    second.close()


def _settle() -> None:
    time.sleep(DEFAULT_INTERVAL + 0.05)


def _kid(jws: str) -> str:
    header = jws.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"])


def test_every_service_signs_with_the_one_store_backed_ring(two: tuple[Node, Node]) -> None:
    node, _ = two
    ring = node.kernel.ring
    assert isinstance(ring, StoreKeyRing)
    stream = StreamService(node)
    holders = [node.ring, node.exchange.ring, node.kernel.items.ring, node.duties.kernel.ring]
    holders += [node.audit.kernel.ring, stream.kernel.ring]
    assert all(held is ring for held in holders)


def test_a_rotation_by_another_process_is_used_here_within_the_interval(
    two: tuple[Node, Node], clock: FakeClock
) -> None:
    serving, operator = two
    before = serving.ring.signing_key(clock.now)[0]
    clock.advance(seconds=1)
    identity = operator.exchange.rotate_keys(None, WEEK)
    newest = next(k["kid"] for k in claims(identity)["keys"] if k["use"] == "sig")
    assert newest != before
    _settle()
    assert serving.ring.signing_key(clock.now)[0] == newest
    assert claims(serving.exchange.identity())["keys"] == claims(identity)["keys"]  # what it publishes
    serving.kernel.record("test.event", None, None, "allowed")
    serving.audit.integrate()
    assert _kid(serving.audit.sign_head().jws) == newest  # a tree head
    jws = sign_origin(serving.ring, b'{"v": 1}', clock.now)  # items, consents, receipts, duties
    assert _kid(jws) == newest
    assert verify_origin(jws, lambda _: None, clock.now, own=operator.ring)[0] == "KOR"


def test_a_revocation_of_a_peer_key_by_another_process_is_refused_here(
    tmp_path: Path, two: tuple[Node, Node], clock: FakeClock
) -> None:
    serving, operator = two
    jpn = make_node(tmp_path / "jpn", "JPN", clock=clock)
    try:
        operator.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
        _settle()
        signed = sign_origin(jpn.ring, b'{"v": 1}', clock.now)
        assert verify_origin(signed, serving.kernel.peers.peer, clock.now)[0] == "JPN"
        kid = jpn.ring.signing_key(clock.now)[0]
        operator.exchange.revoke_peer_key(None, "JPN", kid, clock.now)
        _settle()
        with pytest.raises(EnvelopeError) as refused:
            verify_origin(signed, serving.kernel.peers.peer, clock.now)
        assert refused.value.detail == "revoked-key"
        # JPN's document offered again (it still lists the key, the only one that signs it) is
        # refused: a revoked key vouches for nothing, and the revocation stands
        with pytest.raises(InvalidInputError, match="signed by none of the keys registered for JPN"):
            serving.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
        _settle()
        with pytest.raises(EnvelopeError):
            verify_origin(signed, operator.kernel.peers.peer, clock.now)
    finally:
        jpn.close()


def test_concurrent_rotations_in_two_processes_all_land(two: tuple[Node, Node], clock: FakeClock) -> None:
    errors: list[BaseException] = []

    def rotate(node: Node) -> None:
        try:
            for _ in range(4):
                node.ring.rotate(clock.now, WEEK)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    clock.advance(seconds=1)
    threads = [threading.Thread(target=rotate, args=(node,)) for node in two]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _settle()
    for node in two:  # 1 first + 8 rotations, each a signing key, none lost
        assert len([e for e in node.ring.entries if e.use == "sig"]) == 9


def test_a_key_file_of_an_older_node_is_imported_once(tmp_path: Path, clock: FakeClock) -> None:
    directory = tmp_path / "old"
    config = init_node_dir(directory, "JPN")
    legacy = KeyRing.create(directory / KEYRING_FILE, "JPN", "jpn-node", NOW - WEEK)
    node = Node(config, clock=clock)
    try:
        assert [e.kid for e in node.ring.entries] == [e.kid for e in legacy.entries]
    finally:
        node.close()


def test_a_sealed_ring_altered_in_the_store_does_not_open(two: tuple[Node, Node]) -> None:
    node, _ = two
    with node.store.engine.begin() as conn:
        sealed = conn.exec_driver_sql("SELECT sealed FROM key_ring").scalar_one()
        altered = bytes(sealed[:-1]) + bytes([sealed[-1] ^ 1])
        conn.exec_driver_sql("UPDATE key_ring SET sealed = ?", (altered,))
        conn.exec_driver_sql("UPDATE generations SET value = value + 1 WHERE name = 'keys'")
    _settle()
    with pytest.raises(ConfigError, match="does not open"):
        node.ring.signing_key(NOW)
