"""The adversary against signed identity documents (issue 17 §3, after 8ca60ef): what a holder of a
partner's old signing key, still valid in a rotation's overlap, may not do to the registration; and
payloads built to crash or to mean two things to two readers."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.node_fixtures import add
from typer.testing import CliRunner

from gsomia.api import create_app
from gsomia.cli import app
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import EnvelopeError, GsomiaError, InvalidInputError
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
ENDPOINT = "https://kor-1.gsomia.example"
PIN = "A" * 42 + "E"
ATTACKER_PIN = "B" * 42 + "E"
AGREEMENTS = ["kor-jpn-gsomia-2016"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(keys: list[tuple[str, Any]], payload: bytes) -> dict[str, Any]:
    """A well-formed JWS general JSON serialization of ``payload`` by each (kid, private key)."""
    text = _b64(payload)
    members = []
    for kid, key in keys:
        protected = _b64(json.dumps({"alg": "EdDSA", "kid": kid}).encode())
        members.append({"protected": protected, "signature": _b64(key.sign(f"{protected}.{text}".encode()))})
    return {"payload": text, "signatures": members}


def _document(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()


def _refusal(signed: Any, at: datetime, known: PeerIdentity | None = None) -> str:
    with pytest.raises(InvalidInputError) as caught:
        PeerIdentity.from_signed(signed, at, lambda _party: known)
    return str(caught.value)


@pytest.fixture
def kor(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "kor.json", "KOR", "kor-1", T0)


def _rotated(kor: KeyRing) -> tuple[PeerIdentity, PeerIdentity, tuple[str, Any], datetime]:
    """KOR registered, then rotated (the new document registered): the first registration, the
    successor, the old signing key (still in its overlap) and an instant inside the overlap."""
    first = PeerIdentity.from_signed(kor.signed_identity(ENDPOINT, T0, (PIN,)), T0)
    old = kor.signing_key(T0)
    rotated_at = T0 + timedelta(days=30)
    kor.rotate(rotated_at, timedelta(days=2))
    successor = PeerIdentity.from_signed(
        kor.signed_identity(ENDPOINT, rotated_at + timedelta(minutes=1), (PIN,)),
        rotated_at + timedelta(minutes=2),
        lambda _party: first,
    )
    return first, successor, old, rotated_at + timedelta(hours=1)


def test_an_old_key_in_its_overlap_cannot_roll_the_succession_back(kor: KeyRing) -> None:
    """The old key's holder (the reason for rotating, perhaps) drops the new key and swaps the TLS
    pin for its own certificate, signing alone a document issued after the registered one."""
    first, successor, old, now = _rotated(kor)
    rollback = {**first.to_document(), "tls": [ATTACKER_PIN], "issued": now.isoformat()}
    message = _refusal(_signed([old], _document(rollback)), now, successor)
    assert "newest" in message, message


def test_an_old_key_cannot_backdate_the_new_key_to_sign_alone(kor: KeyRing) -> None:
    """A key's validity is not part of its id (the RFC 7638 thumbprint): the same forger names the
    new key too, with a not_before earlier than the old key's, so that the old key looks newest."""
    _first, successor, old, now = _rotated(kor)
    document = successor.to_document()
    new_kid = kor.signing_key(now)[0]
    for jwk in document["keys"]:
        if jwk["kid"] == new_kid:
            jwk["nbf"] = (T0 - timedelta(days=1)).isoformat()
    forged = {**document, "tls": [ATTACKER_PIN], "issued": now.isoformat()}
    message = _refusal(_signed([old], _document(forged)), now, successor)
    assert "newest" in message, message


def test_the_legitimate_successions_still_pass(kor: KeyRing) -> None:
    """What the rule must keep: a rotation over the registered document, and the next document once
    the successor is registered (both signed as the node signs, by every key valid)."""
    _first, successor, _old, now = _rotated(kor)
    later = kor.signed_identity(ENDPOINT, now, (ATTACKER_PIN,))
    assert PeerIdentity.from_signed(later, now, lambda _party: successor).tls == (ATTACKER_PIN,)


def test_a_vouching_signature_that_does_not_verify_vouches_for_nothing(kor: KeyRing, tmp_path: Path) -> None:
    """A forger's own key signs (validly, as the newest), and a member claims KOR's registered key
    with a signature that does not verify: every member must verify, not any one of them (else the
    registered key's id alone would vouch and the forger would take KOR's registration over)."""
    registered = PeerIdentity.from_signed(kor.signed_identity(ENDPOINT, T0, (PIN,)), T0)
    now = T0 + timedelta(days=2)
    forger = KeyRing.create(tmp_path / "forger.json", "KOR", "kor-1", T0 + timedelta(days=1))
    own = forger.identity("https://attacker.example", (ATTACKER_PIN,))
    kor_keys = [k for k in registered.to_document()["keys"] if k["use"] == "sig"]
    payload = _document({**own, "keys": own["keys"] + kor_keys, "issued": now.isoformat()})
    signed = _signed([forger.signing_key(now)], payload)
    claimed = _b64(json.dumps({"alg": "EdDSA", "kid": kor_keys[0]["kid"]}).encode())
    bogus = {"protected": claimed, "signature": _b64(bytes(64))}
    for members in ([*signed["signatures"], bogus], [bogus, *signed["signatures"]]):
        message = _refusal({**signed, "signatures": members}, now, registered)
        assert "do not verify" in message, message


def _restated(document: dict[str, Any], kid: str, **validity: str) -> dict[str, Any]:
    """``document`` with key ``kid``'s validity members restated."""
    return {**document, "keys": [{**k, **validity} if k["kid"] == kid else k for k in document["keys"]]}


def test_a_registered_key_past_its_end_vouches_for_nothing_whatever_the_document_says(kor: KeyRing) -> None:
    """A leaked old key, ended here after its overlap: the forger's document restates its end a year
    on (so that, by the document alone, it is valid and the newest); what this node registered
    decides."""
    _first, successor, old, _ = _rotated(kor)
    later = T0 + timedelta(days=40)  # the old key's overlap ended on day 32
    forged = _restated(
        {**_first.to_document(), "tls": [ATTACKER_PIN], "issued": later.isoformat()},
        old[0],
        exp=(T0 + timedelta(days=400)).isoformat(),
    )
    message = _refusal(_signed([old], _document(forged)), later, successor)
    assert "signed by none of the keys registered for KOR" in message, message


def test_a_registered_key_not_yet_valid_vouches_for_nothing_whatever_the_document_says(
    kor: KeyRing, tmp_path: Path
) -> None:
    """A key KOR published ahead (valid from next month) leaks before its time: a document signed
    with it alone, restating it as valid already, is vouched for by nothing registered now."""
    ahead = KeyRing.create(tmp_path / "ahead.json", "KOR", "kor-1", T0 + timedelta(days=30))
    current = PeerIdentity.from_signed(kor.signed_identity(ENDPOINT, T0, (PIN,)), T0)
    ahead_key = next(e for e in PeerIdentity.from_document(ahead.identity(ENDPOINT)).keys if e.use == "sig")
    registered = PeerIdentity(
        current.party, current.node, current.endpoint, (*current.keys, ahead_key), current.tls, current.issued
    )
    now = T0 + timedelta(days=1)
    leaked = ahead.signing_key(T0 + timedelta(days=30))
    forged = _restated(
        {**registered.to_document(), "tls": [ATTACKER_PIN], "issued": now.isoformat()},
        ahead_key.kid,
        nbf=T0.isoformat(),
    )
    forged["keys"] = [k for k in forged["keys"] if k["use"] == "enc" or k["kid"] == ahead_key.kid]
    message = _refusal(_signed([leaked], _document(forged)), now, registered)
    assert "signed by none of the keys registered for KOR" in message, message


def test_a_deeply_nested_payload_is_refused_as_bad_input(kor: KeyRing) -> None:
    """A payload of 40,000 opening brackets (well inside the size bound) is bad input, not a crash."""
    kid, key = kor.signing_key(T0)
    message = _refusal(_signed([(kid, key)], b"[" * 40_000), T0)
    assert "payload" in message, message


def test_a_payload_naming_a_member_twice_is_refused(kor: KeyRing) -> None:
    """A duplicate member means one thing to a reader that keeps the first and another to one that
    keeps the last (Python, jq): the pins a person checks out of band may not be the pins used."""
    kid, key = kor.signing_key(T0)
    honest = json.loads(base64.urlsafe_b64decode(kor.signed_identity(ENDPOINT, T0, (PIN,))["payload"] + "=="))
    raw = _document(honest)[:-1] + b',"tls":["' + ATTACKER_PIN.encode() + b'"]}'
    message = _refusal(_signed([(kid, key)], raw), T0)
    assert "twice" in message, message


def test_a_rollback_through_registration_is_refused_audited_and_the_successor_kept(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    kor, jpn, clock = kor_jpn
    jpn.exchange.register_peer(None, kor.exchange.identity(), AGREEMENTS)
    registered = jpn.exchange.peer("KOR")
    assert registered is not None
    old = kor.ring.signing_key(clock.now)
    clock.advance(seconds=60)
    jpn.exchange.register_peer(None, kor.exchange.rotate_keys(None, timedelta(days=1)), AGREEMENTS)
    successor = jpn.exchange.peer("KOR")
    assert successor is not None
    clock.advance(seconds=60)
    rollback = {**registered.to_document(), "tls": [ATTACKER_PIN], "issued": clock.now.isoformat()}
    with pytest.raises(InvalidInputError, match="newest"):
        jpn.exchange.register_peer(None, _signed([old], _document(rollback)), AGREEMENTS)
    assert jpn.exchange.peer("KOR") == successor
    refusals = [r for r in jpn.store.audit(kind="peer.register") if r.outcome == "refused"]
    assert len(refusals) == 1
    assert "newest" in json.loads(refusals[0].detail)["reason"]


def _api(node: Node, method: str, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {token}"} if token else {})}

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
            return await client.request(method, url, headers=headers, **kwargs)

    return asyncio.run(run())


def test_replace_over_the_api_is_for_administrators_only(
    kor_jpn: tuple[Node, Node, FakeClock], tmp_path: Path
) -> None:
    """A security officer (who may revoke keys) cannot take a partner's document afresh."""
    kor, jpn, clock = kor_jpn
    jpn.exchange.register_peer(None, kor.exchange.identity(), AGREEMENTS)
    registered = jpn.exchange.peer("KOR")
    officer = add(jpn, "officer", "JPN", "秘", [], ["security_officer"])
    admin = add(jpn, "admin", "JPN", None, [], ["administrator"])
    token = jpn.credentials.issue(None, officer.id)[1]
    clock.advance(seconds=60)
    other = make_node(tmp_path / "other-kor", "KOR", clock=clock)
    try:
        body = {"document": other.exchange.identity(), "agreements": AGREEMENTS, "replace": True}
    finally:
        other.close()
    assert _api(jpn, "POST", "/peers", token, json=body).status_code == 403
    assert jpn.exchange.peer("KOR") == registered
    admin_token = jpn.credentials.issue(None, admin.id)[1]
    assert _api(jpn, "POST", "/peers", admin_token, json=body).status_code == 201  # the floor: it can


def test_a_deeply_nested_request_is_bad_input_over_the_api(kor_jpn: tuple[Node, Node, FakeClock]) -> None:
    """100,000 nested arrays in a body well inside the size bound: a 4xx naming it, no 500."""
    _kor, jpn, _clock = kor_jpn
    admin = add(jpn, "admin", "JPN", None, [], ["administrator"])
    token = jpn.credentials.issue(None, admin.id)[1]
    body = b'{"document": ' + b"[" * 100_000 + b"]" * 100_000 + b', "agreements": ["kor-jpn-gsomia-2016"]}'
    response = _api(jpn, "POST", "/peers", token, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text


def test_a_deeply_nested_identity_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """``gsomia peer add`` on a file of 100,000 nested arrays: the file named, no traceback."""
    runner = CliRunner()
    directory = tmp_path / "jpn"
    init = runner.invoke(app, ["node", "init", "--party", "JPN", "--dir", str(directory)])
    assert init.exit_code == 0, init.stderr
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    result = runner.invoke(
        app,
        ["peer", "add", "--dir", str(directory), "--identity", str(deep), "--agreement", AGREEMENTS[0]],
    )
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert "deep.json" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def two_processes(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node, Node, FakeClock]]:
    """KOR, and JPN as two processes on one store (each its own caches), KOR registered at JPN."""
    clock = FakeClock()
    kor = make_node(tmp_path / "kor", "KOR", clock=clock)
    jpn = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    other = Node(jpn.config, clock=clock)
    try:
        jpn.exchange.register_peer(None, kor.exchange.identity(), AGREEMENTS)
        yield kor, jpn, other, clock
    finally:
        other.close()
        jpn.close()
        kor.close()


def _between_read_and_write(
    node: Node, monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[], None]
) -> None:
    """``meanwhile`` runs (once) after ``node`` read the registered peer and decided, before it writes."""
    real = node.exchange.fed.put_peer
    pending = [meanwhile]

    def put_peer(*args: Any, **kwargs: Any) -> Any:
        while pending:
            pending.pop()()
        return real(*args, **kwargs)

    monkeypatch.setattr(node.exchange.fed, "put_peer", put_peer)


def test_a_revocation_in_another_process_survives_a_registration_racing_it(
    two_processes: tuple[Node, Node, Node, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A security officer revokes KOR's leaked key in one process while an administrator registers
    KOR's next document (naming that key) in another: the revocation must not be written over."""
    kor, jpn, other, clock = two_processes
    kid, _ = kor.ring.signing_key(clock.now)
    clock.advance(seconds=60)
    kor.exchange.rotate_keys(None, timedelta(days=1))
    clock.advance(seconds=60)
    document = kor.exchange.identity()  # names the old key, signed by it and the new one
    _between_read_and_write(
        jpn, monkeypatch, lambda: other.exchange.revoke_peer_key(None, "KOR", kid, clock.now)
    )
    # decided again on what is there now: the revoked key vouches for nothing, and KOR's new key
    # was never registered here (the document is taken, if at all, afresh after an out-of-band check)
    with pytest.raises(InvalidInputError, match="signed by none of the keys registered for KOR"):
        jpn.exchange.register_peer(None, document, AGREEMENTS)
    jpn.kernel.peers.invalidate()
    held = jpn.exchange.peer("KOR")
    assert held is not None
    entry = next(e for e in held.keys if e.kid == kid)
    assert entry.revoked_at is not None, "the revocation was written over"


def test_an_older_document_registered_in_a_race_does_not_replace_a_newer_one(
    two_processes: tuple[Node, Node, Node, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes each check a document against the same registration; the older one written last
    would roll the succession back (its replay check passed against what it read)."""
    kor, jpn, other, clock = two_processes
    clock.advance(seconds=60)
    older = kor.exchange.identity()
    clock.advance(seconds=60)
    newer = kor.exchange.identity()
    _between_read_and_write(jpn, monkeypatch, lambda: other.exchange.register_peer(None, newer, AGREEMENTS))
    with pytest.raises(GsomiaError, match="older document replayed"):
        jpn.exchange.register_peer(None, older, AGREEMENTS)
    jpn.kernel.peers.invalidate()
    held = jpn.exchange.peer("KOR")
    assert held is not None
    assert held.issued == clock.now


def test_a_key_revoked_here_stays_revoked_after_a_document_that_left_it_out(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    """'A key this node revoked stays revoked, whatever the new document says': JPN revokes KOR's
    leaked old key; KOR's next document no longer names it; a document naming it again, taken
    afresh with replace (the leaked key's holder's, say), must not bring it back usable."""
    kor, jpn, clock = kor_jpn
    first = kor.exchange.identity()
    jpn.exchange.register_peer(None, first, AGREEMENTS)
    leaked = kor.ring.signing_key(clock.now)
    clock.advance(seconds=60)
    jpn.exchange.register_peer(None, kor.exchange.rotate_keys(None, timedelta(hours=1)), AGREEMENTS)
    jpn.exchange.revoke_peer_key(None, "KOR", leaked[0], clock.now)
    clock.advance(seconds=2 * 3600)  # the overlap is over: KOR's next document names the new keys only
    current = jpn.exchange.peer("KOR")
    assert current is not None
    newest = kor.ring.signing_key(clock.now)
    kept = [k for k in current.to_document()["keys"] if k["kid"] != leaked[0]]
    later = {**current.to_document(), "keys": kept, "issued": clock.now.isoformat()}
    jpn.exchange.register_peer(None, _signed([newest], _document(later)), AGREEMENTS)
    clock.advance(seconds=60)
    comeback = {**PeerIdentity.from_signed(first, clock.now).to_document(), "issued": clock.now.isoformat()}
    comeback = {**comeback, "keys": [{**k, "exp": None} for k in comeback["keys"]]}
    jpn.exchange.register_peer(None, _signed([leaked], _document(comeback)), AGREEMENTS, replace=True)
    held = jpn.exchange.peer("KOR")
    assert held is not None
    with pytest.raises(EnvelopeError) as refused:
        held.verification_key(leaked[0], clock.now)
    assert refused.value.detail == "revoked-key"
