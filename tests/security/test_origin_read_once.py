"""The inbox reads each item's originator signature once (issue 18): the prefetch's peek reads the
compact JWS as ``verify_origin`` reads it (``read_origin``) and hands what it read to the
verification, and a signature's protected header is parsed once per header text. A forged or
altered item in a batch is still refused, alone, with the reason the old reading gave; what the peek
cannot read strictly is never taken from the peek. And the batch's claims, clean by their bytes,
spare each message the walk for text no store can hold, which still refuses such a message alone."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net
from tests.security.test_batch_envelopes import _captured_batch, _opened_body, _sealed_by

from gsomia.crypto import envelope as envelope_module
from gsomia.crypto.envelope import (
    TRACKS_TYPE,
    EnvelopeError,
    open_envelope,
    read_origin,
    sign_origin,
    signed_payload,
    verify_origin,
)
from gsomia.errors import GsomiaError
from gsomia.exchange._inbox import _checked

__all__ = ["net"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _with_origin(message: dict[str, Any], origin: str) -> dict[str, Any]:
    return {**message, "body": {**message["body"], "origin": origin}}


def test_forged_and_misread_items_in_a_batch_are_refused_alone(net: Net) -> None:
    """Beside genuine items, one batch carries: an item whose signed payload was altered (its
    signature no longer covers it), one under a header whose bytes differ from the signed ones (the
    same JSON, one space more: the signature is over the bytes), one in base64url that is not
    strict (padded: the peek once decoded it leniently), one with another item's payload under a
    header seen (kept) before, and one the originator signed as a track batch, not an item. Each
    is refused with its reason and audited; only the genuine are stored and receipted."""
    ids = ["g1", "a1", "h1", "p1", "s1", "t1", "g2"]
    msg_ids, envelope = _captured_batch(net, ids)
    messages = _opened_body(net, envelope)["messages"]
    kor = net.nodes["KOR"].exchange
    origins = [m["body"]["origin"] for m in messages]
    header, _, signature = origins[1].split(".")
    content = json.loads(signed_payload(origins[1]))
    altered = _b64url(json.dumps({**content, "payload_type": "text"}, separators=(",", ":")).encode())
    spaced = _b64url(
        json.dumps(
            json.loads(base64.urlsafe_b64decode(origins[2].split(".")[0] + "==")), separators=(", ", ":")
        ).encode()
    )
    _, p2, s2 = origins[2].split(".")
    h3, p3, s3 = origins[3].split(".")
    p4 = origins[4].split(".")[1]
    tracks = sign_origin(kor.ring, signed_payload(origins[5]), net.clock.now, typ=TRACKS_TYPE)
    forged = [
        messages[0],
        _with_origin(messages[1], f"{header}.{altered}.{signature}"),
        _with_origin(messages[2], f"{spaced}.{p2}.{s2}"),
        _with_origin(messages[3], f"{h3}.{p3}{'=' * (-len(p3) % 4) or '=='}.{s3}"),
        _with_origin(messages[4], f"{header}.{p4}.{signature}"),  # s1's payload under a1's signature
        _with_origin(messages[5], tracks),
        messages[6],
    ]
    (answer,) = net.inbox("JPN", [_sealed_by(net, "KOR", {"kind": "batch", "messages": forged}, "read-once")])

    statuses = [r["status"] for r in answer["results"]]
    assert statuses == ["stored", "refused", "refused", "refused", "refused", "refused", "stored"], answer
    jpn = net.nodes["JPN"]
    assert jpn.store.existing_items(ids) == {"g1", "g2"}
    reasons = {r["msg_id"]: r["reason"] for r in net.audit("JPN", "envelope.refused")}
    assert reasons == {
        msg_ids[1]: "bad-origin-signature",
        msg_ids[2]: "bad-origin-signature",
        msg_ids[3]: "malformed",
        msg_ids[4]: "bad-origin-signature",
        msg_ids[5]: "malformed",
    }
    assert sorted(r["msg_id"] for r in net.audit("JPN", "envelope.received")) == sorted(
        [msg_ids[0], msg_ids[6]]
    )
    _, receipt = verify_origin(answer["receipt"], kor.kernel.peers.peer, net.clock.now)
    assert {e["msg_id"] for e in json.loads(receipt)["entries"]} == {msg_ids[0], msg_ids[6]}
    (again,) = net.inbox("JPN", [_sealed_by(net, "KOR", {"kind": "batch", "messages": messages}, "genuine")])
    # the genuine messages of the refused ones, sent again: stored now (nothing of them was kept)
    assert [r["status"] for r in again["results"]] == ["duplicate", *["stored"] * 5, "duplicate"]
    assert jpn.store.existing_items(ids) == set(ids)


def test_what_read_origin_read_verifies_as_the_text_does_and_only_as_its_type(net: Net) -> None:
    kor = net.nodes["KOR"].exchange
    peers = net.nodes["JPN"].exchange.kernel.peers.peer
    content = b'{"item":"x","v":1}'
    item = sign_origin(kor.ring, content, net.clock.now)
    assert verify_origin(read_origin(item), peers, net.clock.now) == verify_origin(item, peers, net.clock.now)
    tracks = sign_origin(kor.ring, content, net.clock.now, typ=TRACKS_TYPE)
    token = read_origin(tracks, typ=TRACKS_TYPE)
    assert verify_origin(token, peers, net.clock.now, typ=TRACKS_TYPE)[1] == content
    with pytest.raises(EnvelopeError) as refused:
        verify_origin(token, peers, net.clock.now)  # a track batch's signature handed in as an item's
    assert refused.value.detail == "malformed"
    with pytest.raises(EnvelopeError):
        read_origin(tracks)  # nor read as one


def test_a_header_parsed_once_is_still_checked_in_every_signature(net: Net) -> None:
    """The header kept by its bytes: another token under it is verified on its own signature, and a
    header refused once is refused every time (the checks are not kept, only the parse)."""
    kor = net.nodes["KOR"].exchange
    peers = net.nodes["JPN"].exchange.kernel.peers.peer
    first = sign_origin(kor.ring, b'{"n":1}', net.clock.now)
    second = sign_origin(kor.ring, b'{"n":2}', net.clock.now)
    header, _, signature = first.split(".")
    assert header == second.split(".")[0]
    verify_origin(first, peers, net.clock.now)
    with pytest.raises(EnvelopeError) as refused:
        verify_origin(f"{header}.{second.split('.')[1]}.{signature}", peers, net.clock.now)
    assert refused.value.detail == "bad-origin-signature"
    extra = json.loads(base64.urlsafe_b64decode(header + "=="))
    odd = _b64url(json.dumps({**extra, "crit": ["exp"]}).encode())
    for _ in range(2):
        with pytest.raises(EnvelopeError) as refused:
            verify_origin(f"{odd}.{first.split('.')[1]}.{signature}", peers, net.clock.now)
        assert refused.value.detail == "malformed"


def test_a_batch_holding_escaped_unstorable_text_is_walked_and_refuses_only_that_message(net: Net) -> None:
    """Clean claims (no NUL byte, no ``\\u`` escape, strict UTF-8) mark the opened envelope
    storable, and its messages skip the walk; one message holding a NUL (which JSON writes only as
    ``\\u0000``) makes the batch's claims not clean: every message is walked, that one refused."""
    msg_ids, envelope = _captured_batch(net, ["n1", "n2", "n3"])
    jpn = net.nodes["JPN"]
    opened = open_envelope(jpn.exchange.ring, envelope, jpn.exchange.kernel.peers.peer, net.clock.now)
    assert _checked(opened).storable
    messages = opened.body["messages"]
    nul = {**messages[1], "body": {**messages[1]["body"], "purpose": "threat\x00assessment"}}
    dirty = _sealed_by(net, "KOR", {"kind": "batch", "messages": [messages[0], nul, messages[2]]}, "nul")
    assert not _checked(
        open_envelope(jpn.exchange.ring, dirty, jpn.exchange.kernel.peers.peer, net.clock.now)
    ).storable
    (answer,) = net.inbox("JPN", [dirty])
    assert [r["status"] for r in answer["results"]] == ["stored", "refused", "stored"]
    assert answer["results"][1]["reason"].startswith("message.body.purpose: ")
    assert jpn.store.existing_items(["n1", "n2", "n3"]) == {"n1", "n3"}
    (refused,) = net.audit("JPN", "envelope.refused")
    assert refused["msg_id"] == msg_ids[1]


@pytest.mark.parametrize(
    "bad", ["threat\x00assessment", "threat\ud800assessment"], ids=["nul", "lone-surrogate"]
)
def test_the_open_leaves_the_check_to_the_inbox_which_still_refuses_the_message(
    net: Net, bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``open_envelope`` does not decide whether the claims are storable (it is not the hop's work,
    issue 18): what it opens says not known (``storable`` False) and carries the verified claims'
    bytes, read-only; the inbox decides on those bytes (``_checked``). A message whose text holds a
    NUL or a lone surrogate (JSON writes either only as a ``\\u`` escape) is refused alone, by its
    place, whichever way it comes: in a batch envelope, in an envelope of its own, and on the
    one-by-one path the inbox takes after a concurrent delivery."""
    _msg_ids, envelope = _captured_batch(net, ["c1", "c2", "c3", "c4"])
    jpn = net.nodes["JPN"]
    ring, peers = jpn.exchange.ring, jpn.exchange.kernel.peers.peer
    opened = open_envelope(ring, envelope, peers, net.clock.now)
    assert not opened.storable
    assert opened.claims is not None
    assert json.loads(bytes(opened.claims))["body"] == opened.body
    assert isinstance(opened.claims, bytes) or opened.claims.readonly
    messages = opened.body["messages"]
    dirty_message = {**messages[1], "body": {**messages[1]["body"], "purpose": bad}}
    again = {**dirty_message, "msg_id": "again"}
    with monkeypatch.context() as hostile:
        # a partner's own writer, which escapes what UTF-8 cannot encode (this node's seal refuses a
        # lone surrogate): the claims' bytes hold the text only as a \u escape
        hostile.setattr(
            envelope_module,
            "_canonical",
            lambda data: json.dumps(data, sort_keys=True, separators=(",", ":")).encode(),
        )
        batch = _sealed_by(
            net, "KOR", {"kind": "batch", "messages": [messages[0], dirty_message, messages[2]]}, "b"
        )
        alone = _sealed_by(net, "KOR", dirty_message["body"], "alone")
        retried = _sealed_by(net, "KOR", {"kind": "batch", "messages": [again, messages[3]]}, "retried")
    for text in (batch, alone):
        dirty = open_envelope(ring, text, peers, net.clock.now)
        assert not dirty.storable
        assert not _checked(dirty).storable

    (answer,) = net.inbox("JPN", [batch])
    assert [r["status"] for r in answer["results"]] == ["stored", "refused", "stored"]
    assert answer["results"][1]["reason"].startswith("message.body.purpose: ")
    (lone,) = net.inbox("JPN", [alone])
    assert lone["status"] == "refused"
    assert lone["reason"].startswith("message.body.purpose: ")
    assert jpn.store.existing_items(["c1", "c2", "c3"]) == {"c1", "c3"}

    # the same message once more beside a clean one, on the path after a concurrent delivery (the
    # batch's one commit loses; each message is then received in a transaction of its own)
    commit = jpn.exchange._commit
    lost: list[bool] = []

    def losing_once(accepted: Any) -> None:
        if not lost:
            lost.append(True)
            raise GsomiaError("a concurrent delivery took it first")
        commit(accepted)

    jpn.exchange._commit = losing_once  # type: ignore[method-assign]
    try:
        (answer,) = jpn.exchange.receive([retried])
    finally:
        del jpn.exchange._commit
    assert lost == [True]
    assert [r["status"] for r in answer["results"]] == ["refused", "stored"]
    assert answer["results"][0]["reason"].startswith("message.body.purpose: ")
    assert jpn.store.existing_items(["c1", "c2", "c3", "c4"]) == {"c1", "c3", "c4"}
    reasons = [r["reason"] for r in net.audit("JPN", "envelope.refused")]
    assert len(reasons) == 3
    assert all(r.startswith("message.body.purpose: ") for r in reasons)
