"""Link sessions: Noise KK between pinned node keys; replay, gaps and tampering are refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import LinkError
from gsomia.stream._link import TRACK, BatchSigner, BatchVerifier, LinkSession, accept, initiate

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _ring(tmp_path: Path, party: str) -> KeyRing:
    return KeyRing.create(tmp_path / f"{party}.json", party, f"{party.lower()}-node", AT)


def _peer(ring: KeyRing) -> PeerIdentity:
    return PeerIdentity.from_document(ring.identity(f"http://{ring.party.lower()}.invalid"))


@pytest.fixture
def rings(tmp_path: Path) -> dict[str, KeyRing]:
    return {p: _ring(tmp_path, p) for p in ("KOR", "JPN", "USA")}


def _pair(rings: dict[str, KeyRing], **kw: float) -> tuple[LinkSession, LinkSession]:
    kor, jpn = rings["KOR"], rings["JPN"]
    first, finish = initiate(kor, _peer(jpn), AT)
    answer, responder = accept(jpn, {"KOR": _peer(kor)}.get, first, AT, **kw)  # type: ignore[arg-type]
    return finish(answer, **kw), responder


def test_frames_cross_in_order_and_rekey_transparently(rings: dict[str, KeyRing]) -> None:
    sender, receiver = _pair(rings, rekey_frames=3)
    opened = []
    for i in range(10):
        for wire in sender.seal(TRACK, f"track {i}".encode(), now=float(i)):
            frame = receiver.open(wire)
            if frame is not None:
                opened.append(frame.body.decode())
    assert opened == [f"track {i}" for i in range(10)]
    assert sender.sent == receiver.received == 13  # ten tracks and three REKEY frames


def test_a_rekey_is_also_due_after_its_time(rings: dict[str, KeyRing]) -> None:
    sender, receiver = _pair(rings, rekey_seconds=5)
    wires = sender.seal(TRACK, b"a", now=0.0) + sender.seal(TRACK, b"b", now=6.0)
    assert len(wires) == 3  # the second message is preceded by a REKEY frame
    opened = [receiver.open(w) for w in wires]
    assert [f.body if f else None for f in opened] == [b"a", None, b"b"]


def test_a_replayed_frame_is_refused(rings: dict[str, KeyRing]) -> None:
    sender, receiver = _pair(rings)
    wire = sender.seal(TRACK, b"one", 0.0)[0]
    receiver.open(wire)
    with pytest.raises(LinkError) as caught:
        receiver.open(wire)
    assert caught.value.detail == "replayed"


def test_a_dropped_or_reordered_frame_is_refused(rings: dict[str, KeyRing]) -> None:
    sender, receiver = _pair(rings)
    first = sender.seal(TRACK, b"one", 0.0)[0]
    second = sender.seal(TRACK, b"two", 0.0)[0]
    with pytest.raises(LinkError) as caught:
        receiver.open(second)
    assert caught.value.detail == "gap"
    assert receiver.open(first) is not None


@pytest.mark.parametrize("where", [0, 8, 9, 20, -1])
def test_a_tampered_frame_is_refused(rings: dict[str, KeyRing], where: int) -> None:
    sender, receiver = _pair(rings)
    wire = bytearray(sender.seal(TRACK, b"a track update", 0.0)[0])
    wire[where] ^= 0x01
    with pytest.raises(LinkError) as caught:
        receiver.open(bytes(wire))
    assert caught.value.detail in {"tampered", "gap", "malformed"}
    if where >= 9:
        assert caught.value.detail == "tampered"


def test_the_handshake_needs_the_pinned_keys(rings: dict[str, KeyRing]) -> None:
    kor, jpn, usa = rings["KOR"], rings["JPN"], rings["USA"]
    first, _ = initiate(kor, _peer(jpn), AT)
    with pytest.raises(LinkError) as caught:
        accept(jpn, {}.get, first, AT)
    assert caught.value.detail == "unknown-peer"
    # USA's key pinned as if it were KOR's: the hello names KOR's key, which is not the pinned one
    with pytest.raises(LinkError) as caught:
        accept(jpn, {"KOR": _peer(usa)}.get, first, AT)
    assert caught.value.detail == "handshake-failed"
    with pytest.raises(LinkError):
        accept(usa, {"KOR": _peer(kor)}.get, first, AT)  # addressed to JPN
    tampered = bytearray(first)
    tampered[-1] ^= 1
    with pytest.raises(LinkError):
        accept(jpn, {"KOR": _peer(kor)}.get, bytes(tampered), AT)


def test_batch_roots_are_signed_and_checked_against_what_arrived(rings: dict[str, KeyRing]) -> None:
    kor, jpn = rings["KOR"], rings["JPN"]
    signer = BatchSigner(kor, "JPN")
    verifier = BatchVerifier("JPN", {"KOR": _peer(kor)}.get)
    for seq in range(5):
        signer.add(seq, b"t%d" % seq, now=0.0)
        verifier.add(seq, b"t%d" % seq)
    assert signer.due(0.06)
    assert not signer.due(0.01)
    batch = signer.close(AT)
    assert batch is not None
    checked = verifier.verify(batch.jws, "KOR", AT)
    assert (checked.first_seq, checked.count, checked.root) == (0, 5, batch.root)
    # a frame the receiver did not get (or got changed) breaks the match
    for seq in range(5, 7):
        signer.add(seq, b"t%d" % seq, now=0.0)
    verifier.add(5, b"t5-changed")
    verifier.add(6, b"t6")
    second = signer.close(AT)
    assert second is not None
    with pytest.raises(LinkError) as caught:
        verifier.verify(second.jws, "KOR", AT)
    assert caught.value.detail == "bad-batch-signature"
    assert jpn.party == "JPN"
