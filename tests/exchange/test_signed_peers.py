"""Registering partners takes only signed identity documents: a tampered, unsigned, replayed or
unvouched document is refused and audited, and the registered document stays; a rotation is
registered; ``replace`` takes a partner afresh when its registered keys have all ended."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from gsomia.errors import InvalidInputError
from gsomia.node import Node
from gsomia.testing import FakeClock

AGREEMENTS = ["kor-jpn-gsomia-2016"]


def _refusals(node: Node) -> list[str]:
    return [
        json.loads(r.detail)["reason"]
        for r in node.store.audit(kind="peer.register")
        if r.outcome == "refused"
    ]


def _tampered(signed: dict[str, Any], **changes: Any) -> dict[str, Any]:
    text = signed["payload"]
    document = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    raw = json.dumps({**document, **changes}, sort_keys=True, separators=(",", ":")).encode()
    return {**signed, "payload": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


def test_a_tampered_or_unsigned_document_is_refused_audited_and_the_registered_one_kept(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    kor, jpn, _ = kor_jpn
    signed = jpn.exchange.identity()
    kor.exchange.register_peer(None, signed, AGREEMENTS)
    registered = kor.exchange.peer("JPN")
    assert registered is not None
    forged = _tampered(signed, endpoint="https://attacker.example")
    with pytest.raises(InvalidInputError, match="do not verify"):
        kor.exchange.register_peer(None, forged, AGREEMENTS)
    unsigned = json.loads(base64.urlsafe_b64decode(signed["payload"] + "=="))
    with pytest.raises(InvalidInputError, match="not signed"):
        kor.exchange.register_peer(None, unsigned, AGREEMENTS)
    assert kor.exchange.peer("JPN") == registered  # nothing changed
    reasons = _refusals(kor)
    assert len(reasons) == 2
    assert "do not verify" in reasons[0]
    assert "not signed" in reasons[1]


def test_rotation_replay_and_replace_through_registration(kor_jpn: tuple[Node, Node, FakeClock]) -> None:
    kor, jpn, clock = kor_jpn
    first = jpn.exchange.identity()
    kor.exchange.register_peer(None, first, AGREEMENTS)
    clock.advance(seconds=60)
    rotated = jpn.exchange.rotate_keys(None, timedelta(hours=1))  # signed by the new key and the old
    kor.exchange.register_peer(None, rotated, AGREEMENTS)
    newest, _ = jpn.ring.signing_key(clock.now)
    peer = kor.exchange.peer("JPN")
    assert peer is not None
    assert newest in {e.kid for e in peer.keys}
    with pytest.raises(InvalidInputError, match="older document replayed"):
        kor.exchange.register_peer(None, first, AGREEMENTS)
    # the overlap ends; JPN rotates again and KOR never registered the document in between
    clock.advance(seconds=2 * 3600)
    jpn.exchange.rotate_keys(None, timedelta(hours=1))
    clock.advance(seconds=2 * 3600)
    later = jpn.exchange.identity()  # signed only by a key KOR never registered
    with pytest.raises(InvalidInputError, match="signed by none of the keys registered for JPN"):
        kor.exchange.register_peer(None, later, AGREEMENTS)
    kor.exchange.register_peer(None, later, AGREEMENTS, replace=True)  # checked out of band
    record = json.loads(kor.store.audit(kind="peer.register")[-1].detail)
    assert record["replaced"] is True
    again = kor.exchange.peer("JPN")
    assert again is not None
    assert jpn.ring.signing_key(clock.now)[0] in {e.kid for e in again.keys}
