"""Adversarial probes of the COSE hop's kept header tables (issue 18, attack review): the tables hold
only what a kid's header bytes decode to, never a key, so a key revoked or rotated while they are
warm is refused as it is cold, and a hop sealed by a forger who names the real sender's kid (kids
are thumbprints: a kid cannot be reused with another key) does not verify."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import cbor2
import pytest
from tests.crypto.test_cose import AT, BODY, TTL, Net, refusal, wrapped

from gsomia.crypto import envelope as env
from gsomia.crypto.envelope import open_envelope, seal
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import ConfigError


def _warm(net: Net) -> None:
    assert net.open(net.sealed()).body == BODY
    assert env._HEADERS
    assert env._RECIPIENT_PROTECTED
    assert env._SIGN1_PROTECTED


def test_a_key_revoked_or_rotated_away_while_the_tables_are_warm_is_refused(tmp_path: Path) -> None:
    net = Net(tmp_path)
    _warm(net)
    text = net.sealed()
    jpn, kor = net.rings["JPN"], net.rings["KOR"]
    enc_kid = jpn.encryption_kid(AT)
    sig_kid = kor.signing_key(AT)[0]
    assert enc_kid in env._RECIPIENT_PROTECTED
    assert sig_kid in env._SIGN1_PROTECTED
    # the receiver's own encryption key revoked before the instant: the kept recipient header opens nothing
    revoked = jpn.revoked(enc_kid, AT - timedelta(seconds=1))
    assert refusal(lambda: open_envelope(revoked, text, net.peers.get, AT)) == "revoked-key"
    # the sender's signing key revoked in its identity as this node holds it
    peers = {**net.peers, "KOR": net.peers["KOR"].with_revoked(sig_kid, AT - timedelta(seconds=1))}
    assert refusal(lambda: open_envelope(jpn, text, peers.get, AT)) == "revoked-key"
    # the receiver rotated, the overlap over: the old kid's hop is refused, a hop to the new kid opens
    rotated = jpn.rotated(AT - timedelta(days=2), timedelta(days=1))
    assert refusal(lambda: open_envelope(rotated, text, net.peers.get, AT)) in {
        "key-not-valid",
        "unknown-key",
    }
    new_peer = PeerIdentity.from_document(rotated.identity("https://jpn.example"))
    fresh = seal(kor, new_peer, BODY, msg_id="msg-0002", at=AT, ttl=TTL)
    assert open_envelope(rotated, fresh, net.peers.get, AT).body == BODY
    assert net.open(text).body == BODY  # the ring as it was still opens it: nothing else changed


def test_a_forger_naming_the_senders_kid_with_its_own_key_is_refused_with_the_tables_warm(
    tmp_path: Path,
) -> None:
    net = Net(tmp_path)
    _warm(net)
    kor = net.rings["KOR"]
    sig_kid = kor.signing_key(AT)[0]
    forger = KeyRing.generate(tmp_path / "forger.json", "KOR", "kor-1", AT - timedelta(days=30))
    document = forger.to_document()
    for key in document["keys"]:
        if key["use"] == "sig":
            key["kid"] = sig_kid  # the real sender's kid on the forger's key
    with pytest.raises(ConfigError, match="thumbprint"):  # no ring or identity pairs a kid with another key
        KeyRing.from_document(document, tmp_path / "forged.json")
    # so the forger writes the hop itself: the sender's kid in the (kept) COSE_Sign1 header, its own key
    routing, claims = env._hop_claims(forger, net.peers["JPN"], BODY, "msg-0003", AT, TTL)
    recipient_kid, recipient_key = net.peers["JPN"]._encrypter(AT)
    message = env._cose_hop(routing, claims, sig_kid, forger._signer(AT)[1], recipient_kid, recipient_key)
    assert refusal(lambda: net.open(wrapped(message))) == "bad-signature"
    # the forger's own kid under the sender's name: no such key of the sender's
    text = seal(forger, net.peers["JPN"], BODY, msg_id="msg-0004", at=AT, ttl=TTL)
    assert refusal(lambda: net.open(text)) == "unknown-key"
    assert net.open(net.sealed()).body == BODY


@pytest.mark.parametrize("table", ["sign1", "recipient"])
def test_a_header_refused_is_never_kept_and_a_kept_one_answers_as_read(
    tmp_path: Path, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kids read from the two per-key protected headers are kept by the header's bytes
    (``_SIGN1_KIDS``, ``_RECIPIENT_KIDS``): a kept answer is the reading's (the same kid), and a
    header naming the same kid with another algorithm, another type or a member more is refused
    ``malformed`` each time it comes, the tables warm, and never kept."""
    net = Net(tmp_path)
    _warm(net)
    kor = net.rings["KOR"]
    kid, signer = kor._signer(AT)
    recipient_kid, recipient_key = net.peers["JPN"]._encrypter(AT)
    assert env._SIGN1_KIDS[env._SIGN1_PROTECTED[kid]] == kid
    assert env._RECIPIENT_KIDS[env._RECIPIENT_PROTECTED[recipient_kid]] == recipient_kid
    if table == "sign1":
        name, kept, named = "_sign1_protected", env._SIGN1_KIDS, kid.encode()
        bad = [
            {1: -7, 4: named, 16: env.HOP_COSE_TYPE},  # ES256
            {1: -8, 4: named, 16: "application/other+json"},
            {1: -8, 4: named, 16: env.HOP_COSE_TYPE, 5: b"x"},
            {1: -8, 4: named},
        ]
    else:
        name, kept, named = "_recipient_protected", env._RECIPIENT_KIDS, recipient_kid.encode()
        bad = [{1: -31, 4: named}, {1: -25, 4: named, 5: b"x"}, {1: -25}]  # ECDH-SS; a member more; no kid
    for header in bad:
        protected = cbor2.dumps(header, canonical=True)
        with monkeypatch.context() as forging:
            forging.setattr(env, name, lambda _kid, written=protected: written)
            routing, claims = env._hop_claims(kor, net.peers["JPN"], BODY, "msg-0005", AT, TTL)
            message = env._cose_hop(routing, claims, kid, signer, recipient_kid, recipient_key)
        for _ in range(2):
            assert refusal(lambda message=message: net.open(wrapped(message))) == "malformed"
        assert protected not in kept
    assert net.open(net.sealed()).body == BODY
