"""A node's side of a link, driven in process: what a peer sends that the node cannot accept."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from tests.conftest import kst
from tests.identity_docs import published
from tests.stream._kor_jpn import kor_messages

from gsomia.demo import network
from gsomia.errors import LinkError
from gsomia.node import Node
from gsomia.stream import StreamService
from gsomia.stream._link import CONSENT, TRACK, TRACKS, initiate
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock, make_node


def _drive(kor: Node, jpn: Node, kind: int, body: bytes) -> LinkError:
    """Open a link from KOR to JPN's service, send one frame, return the refusal."""

    async def run() -> LinkError:
        inbound: asyncio.Queue[bytes] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()
        service = StreamService(jpn)
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        first, finish = initiate(kor.ring, peer, kor.clock())
        await inbound.put(first)
        task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
        session = finish(await outbound.get())
        for wire in session.seal(kind, body, 0.0):
            await inbound.put(wire)
        with pytest.raises(LinkError) as caught:
            await asyncio.wait_for(task, 10)
        await service.close()
        return caught.value

    return asyncio.run(run())


def _signed(*messages: bytes) -> Callable[[Node], bytes]:
    return lambda kor: sign_batch(kor.ring, list(messages), kor.clock())


@pytest.mark.parametrize(
    ("kind", "body", "code"),
    [
        (CONSENT, b"not.a.jws", "bad-consent"),
        (TRACK, b'{"label": {}, "track": {}, "recipient": "JPN"}', "unsigned"),
        (TRACKS, b"\x00\x05short", "malformed"),
        (TRACKS, _signed(b"{not json"), "malformed"),
        (TRACKS, _signed(b'{"label": {}, "track": {}, "recipient": "JPN"}'), "malformed"),
    ],
)
def test_what_a_peer_cannot_send_closes_the_link_and_is_audited(
    linked_kor_jpn: tuple[Node, Node], kind: int, body: bytes | Callable[[Node], bytes], code: str
) -> None:
    kor, jpn = linked_kor_jpn
    refusal = _drive(kor, jpn, kind, body if isinstance(body, bytes) else body(kor))
    assert refusal.detail == code
    records = jpn.store.audit(after_seq=0, kind="stream.link", limit=10)
    assert [(r.outcome, r.subject) for r in records] == [("opened", "KOR"), ("refused", "KOR")]
    assert code in records[-1].detail


def test_a_partner_that_is_down_loses_its_tracks_and_the_outage_is_audited_once(tmp_path: Path) -> None:
    """KOR keeps publishing (locally and to the others); the JPN outage is one audit record."""
    from gsomia.demo.network import free_port
    from gsomia.stream import launches, replay

    clock = FakeClock(kst(2024, 3, 1))
    kor, jpn = (
        make_node(tmp_path / "kor", "KOR", clock=clock),
        make_node(tmp_path / "jpn", "JPN", clock=clock),
    )
    document = published(jpn, endpoint=f"http://127.0.0.1:{free_port()}")  # nobody listens there
    kor.exchange.register_peer(None, document, ["kor-jpn-gsomia-2016"])
    network.assure({"KOR": kor, "JPN": jpn})  # JPN's assurance reaches KOR by file
    updates = replay(launches(2019)[0], originator="KOR", every_s=60)[:3]

    async def run() -> list[dict[str, object]]:
        service = StreamService(kor)
        try:
            return [await service.publish_update(u) for u in updates]
        finally:
            await service.close()

    results = asyncio.run(run())
    assert all(r["routes"] == [] for r in results)  # JPN unreachable; USA not assured, nor registered
    failed = kor.store.audit(after_seq=0, kind="stream.link", limit=10)
    assert [(r.outcome, r.subject) for r in failed] == [("failed", "JPN")]
    kor.close()
    jpn.close()


def test_a_link_whose_hello_names_another_party_than_its_tls_certificate_is_refused(
    linked_kor_jpn: tuple[Node, Node],
) -> None:
    """Under mutual TLS the edge knows whose certificate the connection showed (``tls_peer``): a
    registered peer's certificate carrying another registered peer's link hello is refused before
    the link is answered."""
    kor, jpn = linked_kor_jpn

    async def run(tls_peer: str) -> LinkError | bytes | bytearray:
        inbound: asyncio.Queue[bytes] = asyncio.Queue()
        outbound: asyncio.Queue[bytes] = asyncio.Queue()
        service = StreamService(jpn)
        peer = kor.exchange.peer("JPN")
        assert peer is not None
        first, _ = initiate(kor.ring, peer, kor.clock())
        await inbound.put(first)
        task = asyncio.create_task(service.serve_link(inbound.get, outbound.put, "10.0.0.9", tls_peer))
        try:
            answer = asyncio.create_task(outbound.get())
            done, _ = await asyncio.wait({task, answer}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if answer in done:
                return answer.result()
            error = task.exception()
            assert isinstance(error, LinkError)
            return error
        finally:
            for pending in (task, answer):
                pending.cancel()
            await service.close()

    refused = asyncio.run(run("USA"))
    assert isinstance(refused, LinkError)
    assert refused.detail == "handshake-failed"
    assert "TLS certificate is USA's" in str(refused)
    assert isinstance(asyncio.run(run("KOR")), bytes | bytearray)  # KOR's certificate: answered


def _tampered(change: Callable[[bytes], bytes]) -> Callable[[Node], bytes]:
    """One of KOR's genuine track messages, changed by ``change`` before KOR signs it (the
    originator's signature holds: only JPN's boundary read can refuse it)."""

    def body(kor: Node) -> bytes:
        (message,) = kor_messages(kor, 1, "t")
        changed = change(message)
        assert changed != message
        return sign_batch(kor.ring, [changed], kor.clock())

    return body


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.replace(b'"track":{', b'"track":{"route":"forged",', 1),  # a field no track has
        lambda m: m.replace(b'},"label":', b',"track_id":"t 1"},"label":', 1),  # a key twice, the last bad
        lambda m: m.replace(b'},"label":', b',"quality":2},"label":', 1),
        lambda m: m[:-1] + b',"track":{"track_id":"t-2"}}',  # the track twice, the last not one
        lambda m: m[:-1] + b',"recipient":7}',
    ],
)
def test_a_signed_track_the_boundary_refuses_closes_the_link(
    linked_kor_jpn: tuple[Node, Node], change: Callable[[bytes], bytes]
) -> None:
    """JPN reads each track at its boundary from the bytes it passes on: a key given twice, a field
    no track has, are refused, whatever the originator signed."""
    kor, jpn = linked_kor_jpn
    refusal = _drive(kor, jpn, TRACKS, _tampered(change)(kor))
    assert refusal.detail == "malformed", refusal


def _label_key_again(message: bytes) -> bytes:
    """The label's first key given again before it, with its own value: any reader reads the same
    label, yet the bytes name the key twice."""
    key, value = next(iter(orjson.loads(message)["label"].items()))
    return message.replace(b'"label":{', b'"label":{' + orjson.dumps({key: value})[1:-1] + b",", 1)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.replace(b'"track":{', b'"track":{"track_id":"decoy",', 1),  # the first a decoy
        lambda m: m.replace(b'"track":{', b'"track":{"missile_class":"SLBM",', 1),
        lambda m: m.replace(b'"track":{', b'"track":{"tr\\u0061ck_id":"decoy",', 1),  # spelt otherwise
        lambda m: m.replace(b'"track":{', b'"track":{"track_id" : "decoy",', 1),  # spaced
        lambda m: m.replace(b'"launch":{', b'"launch":{"lat":0.0,', 1),  # nested in the track
        lambda m: m.replace(b'"points":[{', b'"points":[{"alt_m":0.0,', 1),
        _label_key_again,
        lambda m: m[:-1] + b',"recipient":"JPN"}',  # the message's own fields
        lambda m: m[:-1] + b',"originator":"KOR"}',
        lambda m: m[:-1] + b',"via":null}',
        lambda m: m.replace(b'{"track":', b'{"track":{},"track":', 1),
    ],
)
def test_a_signed_track_that_names_a_key_twice_closes_the_link(
    linked_kor_jpn: tuple[Node, Node], change: Callable[[bytes], bytes]
) -> None:
    """A key given twice, anywhere in a track message, even with its last value the genuine one:
    readers differ on which they take (first, last, an error), so what JPN checked and passes on
    would not be what every consumer reads. Before, each of these was read as its last, accepted."""
    kor, jpn = linked_kor_jpn
    refusal = _drive(kor, jpn, TRACKS, _tampered(change)(kor))
    assert refusal.detail == "malformed", refusal
