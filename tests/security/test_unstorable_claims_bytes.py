"""Attack: text no store holds, written by a partner's own writer in the ways the claims' bytes can
carry it, against the inbox's byte check (``storable_json``: no ``\\u`` escape, no NUL byte, strict
UTF-8, then no walk of the messages). JSON writes a NUL or a lone surrogate as a ``\\u`` escape; but
the standard parser, which reads what msgspec refuses, also takes a surrogate encoded in the bytes
themselves (``ED A0 80``, as CESU-8 writes it) and gives back a lone surrogate. Each must be refused
by its place, alone, nothing of it stored, in an envelope of its own and in a batch; a NUL escaped in
a key as well as in a value; and a text that only looks like an escape (a backslash before ``u``) is
stored as it is, not refused. Whoever moves or narrows the byte check (issue 18: out of the open, into
the inbox) must keep these.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net
from tests.security.test_batch_envelopes import _captured_batch, _opened_body, _sealed_by

from gsomia.crypto import envelope as envelope_module

__all__ = ["net"]
MARK = "MARK-7f3a"  # a text the hostile writer replaces, in the bytes, by what it means to send
RAW_SURROGATE = b"\xed\xa0\x80"  # U+D800 encoded as if it were a character (CESU-8)


def _hostile(replace_with: bytes) -> Callable[[dict[str, Any]], bytes]:
    """A partner's writer: the claims as JSON, with every ``MARK`` replaced in the bytes (it signs
    what it wrote: the node's own writer would refuse to write the text at all)."""

    def write(data: dict[str, Any]) -> bytes:
        written = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        return written.replace(MARK.encode(), replace_with)

    return write


def _with_purpose(message: dict[str, Any], purpose: str) -> dict[str, Any]:
    return {**message, "body": {**message["body"], "purpose": purpose}}


CASES = {
    # what KOR's writer puts in the item's purpose, in the bytes it signs
    "raw-surrogate": (f"threat{MARK}assessment", RAW_SURROGATE, "message.body.purpose: "),
    "escaped-nul": (f"threat{MARK}assessment", b"\\u0000", "message.body.purpose: "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unstorable_text_in_the_claims_bytes_is_refused_alone_by_its_place(
    net: Net, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    purpose, replace_with, place = CASES[case]
    _, envelope = _captured_batch(net, ["u1", "u2", "u3", "u4"])
    messages = _opened_body(net, envelope)["messages"]
    dirty = _with_purpose(messages[1], purpose)
    with monkeypatch.context() as hostile:
        hostile.setattr(envelope_module, "_canonical", _hostile(replace_with))
        batch = _sealed_by(net, "KOR", {"kind": "batch", "messages": [messages[0], dirty, messages[2]]}, "b")
        alone = _sealed_by(net, "KOR", _with_purpose(messages[3], purpose)["body"], messages[3]["msg_id"])

    (answer,) = net.inbox("JPN", [batch])
    assert [r["status"] for r in answer["results"]] == ["stored", "refused", "stored"], answer
    assert answer["results"][1]["reason"].startswith(place)
    (lone,) = net.inbox("JPN", [alone])
    assert (lone["status"], lone["reason"][: len(place)]) == ("refused", place), lone
    jpn = net.nodes["JPN"]
    assert jpn.store.existing_items(["u1", "u2", "u3", "u4"]) == {"u1", "u3"}
    assert jpn.exchange.fed.inbox_entry(dirty["msg_id"]) is None
    refused = [r for r in net.audit("JPN", "envelope.refused") if r.get("reason", "").startswith(place)]
    assert len(refused) == 2  # each by its place, no value written into the log
    assert not any("\ud800" in json.dumps(r) or "\\ud800" in json.dumps(r) for r in refused)


def test_a_nul_escaped_in_a_key_is_refused_by_its_place(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys are text too (the walk names the key's place, not its value)."""
    _, envelope = _captured_batch(net, ["k1", "k2"])
    messages = _opened_body(net, envelope)["messages"]
    body = messages[1]["body"]
    keyed = {**messages[1], "body": {**body, "route": {**body["route"], f"x{MARK}": "y"}}}
    with monkeypatch.context() as hostile:
        hostile.setattr(envelope_module, "_canonical", _hostile(b"\\u0000"))
        batch = _sealed_by(net, "KOR", {"kind": "batch", "messages": [messages[0], keyed]}, "b-key")
    (answer,) = net.inbox("JPN", [batch])
    assert [r["status"] for r in answer["results"]] == ["stored", "refused"], answer
    assert answer["results"][1]["reason"].startswith("message.body.route")
    assert net.nodes["JPN"].store.existing_items(["k1", "k2"]) == {"k1"}


def test_a_text_that_only_looks_like_an_escape_is_stored_as_it_is(net: Net) -> None:
    """A message id holding a backslash before ``u0000`` (written ``\\\\u0000``: no NUL) makes the byte
    check answer 'not known'; the walk then finds nothing, and the message is taken with its id as
    it is, not refused."""
    _, envelope = _captured_batch(net, ["e1", "e2"])
    messages = _opened_body(net, envelope)["messages"]
    odd_id = messages[1]["msg_id"][:16] + "\\u0000"  # a backslash, then 'u0000': text, no NUL
    batch = _sealed_by(
        net, "KOR", {"kind": "batch", "messages": [messages[0], {**messages[1], "msg_id": odd_id}]}, "b-esc"
    )
    (answer,) = net.inbox("JPN", [batch])
    assert [r["status"] for r in answer["results"]] == ["stored", "stored"], answer
    jpn = net.nodes["JPN"]
    assert jpn.store.existing_items(["e1", "e2"]) == {"e1", "e2"}
    assert jpn.exchange.fed.inbox_entry(odd_id) is not None
