"""Window roots matched to their windows by the frames they name (a root may follow frames of the
sender's next window, sent while the root waited for its audit record's commit).

Every frame must be covered by a verified root, in order: a root naming frames not received, a
wrong count, a window's root out of order or twice is refused (``bad-batch-signature``, the link
drops). The frames here all carry the same body, so only the frame numbers the root names tell one
window from the next: each test fails if that check is removed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gsomia.crypto.envelope import sign_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import LinkError
from gsomia.stream._link import BatchSigner, BatchVerifier, SignedBatch, _batch_content

AT = datetime(2026, 1, 1, tzinfo=UTC)
BODY = b"the same track frame"


@pytest.fixture
def kor(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "KOR.json", "KOR", "kor-node", AT)


def _verifier(kor: KeyRing) -> BatchVerifier:
    peer = PeerIdentity.from_document(kor.identity("http://kor.invalid"))
    return BatchVerifier("JPN", {"KOR": peer}.get)


def _window(signer: BatchSigner, verifier: BatchVerifier, seqs: range) -> SignedBatch:
    for seq in seqs:
        signer.add(seq, BODY, now=0.0)
        verifier.add(seq, BODY, seq)
    batch = signer.close(AT)
    assert batch is not None
    return batch


def _refused(verifier: BatchVerifier, jws: str) -> str:
    with pytest.raises(LinkError) as caught:
        verifier.verify(jws, "KOR", AT)
    assert caught.value.detail == "bad-batch-signature"
    return str(caught.value)


def test_a_root_after_the_next_windows_frames_covers_its_own_window_only(kor: KeyRing) -> None:
    signer, verifier = BatchSigner(kor, "JPN"), _verifier(kor)
    first = _window(signer, verifier, range(0, 3))
    second = _window(signer, verifier, range(3, 5))  # sent while the first root awaited its commit
    assert verifier.pending == 5
    checked = verifier.verify(first.jws, "KOR", AT)
    assert (checked.first_seq, checked.count) == (0, 3)
    assert (verifier.pending, verifier.oldest()) == (2, 3)  # the next window's deadline: from frame 3
    assert verifier.covered == 3  # what the receiver confirms: not the next window's frames
    assert verifier.verify(second.jws, "KOR", AT).first_seq == 3
    assert (verifier.pending, verifier.oldest(), verifier.covered) == (0, None, 5)


def test_a_root_naming_frames_not_received_is_refused(kor: KeyRing) -> None:
    signer, verifier = BatchSigner(kor, "JPN"), _verifier(kor)
    for seq in range(0, 4):
        signer.add(seq, BODY, now=0.0)
    verifier.add(0, BODY)
    verifier.add(1, BODY)
    verifier.add(2, BODY)  # frame 3 never arrived
    batch = signer.close(AT)
    assert batch is not None
    assert "signed 0+4" in _refused(verifier, batch.jws)
    # nor frames from a first one that never came (frames 1.. with the count received)
    other, fresh = BatchSigner(kor, "JPN"), _verifier(kor)
    for seq in range(1, 4):
        other.add(seq, BODY, now=0.0)
        fresh.add(seq + 1, BODY)
    shifted = other.close(AT)
    assert shifted is not None
    _refused(fresh, shifted.jws)


def test_a_root_with_a_wrong_count_is_refused(kor: KeyRing) -> None:
    signer, verifier = BatchSigner(kor, "JPN"), _verifier(kor)
    batch = _window(signer, verifier, range(0, 3))
    for count in (0, -1, 4, 2):  # none, negative, more than received, fewer than the root covers
        content = _batch_content("KOR", "JPN", 0, count, batch.root, AT)
        _refused(verifier, sign_origin(kor, content, AT))
    assert verifier.pending == 3  # nothing refused covered a frame
    verifier.verify(batch.jws, "KOR", AT)


def test_a_window_root_out_of_order_is_refused(kor: KeyRing) -> None:
    signer, verifier = BatchSigner(kor, "JPN"), _verifier(kor)
    _window(signer, verifier, range(0, 2))
    second = _window(signer, verifier, range(2, 4))  # same bodies, same count: the same root
    assert "signed 2+2" in _refused(verifier, second.jws)


def test_a_window_root_sent_twice_is_refused(kor: KeyRing) -> None:
    signer, verifier = BatchSigner(kor, "JPN"), _verifier(kor)
    first = _window(signer, verifier, range(0, 2))
    _window(signer, verifier, range(2, 4))
    verifier.verify(first.jws, "KOR", AT)
    assert "signed 0+2" in _refused(verifier, first.jws)  # its frames are covered already
