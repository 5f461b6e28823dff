"""Key rings and identity documents: persistence, rotation, revocation, strict reading of peers."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.crypto.envelope import EnvelopeError
from gsomia.crypto.keys import KeyRing, PeerIdentity, PublicKeyEntry
from gsomia.errors import ConfigError, InstantError, InvalidInputError, NotFoundError

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T1 = T0 + timedelta(days=90)
OVERLAP = timedelta(hours=6)
MICRO = timedelta(microseconds=1)
ENDPOINT = "https://kor-1.gsomia.example"


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys.json", "KOR", "kor-1", T0)


def detail(call: Callable[..., object], *args: object) -> str:
    """The detail of the EnvelopeError that ``call(*args)`` must raise."""
    with pytest.raises(EnvelopeError) as caught:
        call(*args)
    return caught.value.detail


def kids(ring: KeyRing) -> tuple[str, str]:
    return ring.signing_key(T0)[0], ring.encryption_kid(T0)


def raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


# --------------------------------------------------------------------------- the file


def test_create_then_load_gives_the_same_keys(ring: KeyRing) -> None:
    loaded = KeyRing.load(ring.path)
    assert (loaded.party, loaded.node) == ("KOR", "kor-1")
    assert loaded.entries == ring.entries
    sig_kid, sig = ring.signing_key(T0)
    loaded_kid, loaded_sig = loaded.signing_key(T0)
    assert loaded_kid == sig_kid
    assert raw(loaded_sig.public_key()) == raw(sig.public_key())
    assert loaded.encryption_kid(T0) == ring.encryption_kid(T0)
    enc_kid = ring.encryption_kid(T0)
    assert raw(loaded.decryption_key(enc_kid, T0).public_key()) == raw(
        ring.decryption_key(enc_kid, T0).public_key()
    )


def test_create_makes_one_signing_and_one_encryption_key(ring: KeyRing) -> None:
    assert sorted(e.use for e in ring.entries) == ["enc", "sig"]
    assert isinstance(ring.signing_key(T0)[1], Ed25519PrivateKey)
    assert isinstance(ring.decryption_key(ring.encryption_kid(T0), T0), X25519PrivateKey)
    assert all(e.not_before == T0 and e.not_after is None and e.revoked_at is None for e in ring.entries)


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("open_umask")
def test_the_file_is_readable_by_its_owner_only_even_with_an_open_umask(tmp_path: Path) -> None:
    ring = KeyRing.create(tmp_path / "keys.json", "KOR", "kor-1", T0)
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600
    ring.rotate(T1, OVERLAP)
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600
    ring.revoke(ring.signing_key(T1)[0], T1 + OVERLAP)
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"], "no temporary file is left behind"


def test_create_refuses_to_overwrite_an_existing_file(ring: KeyRing) -> None:
    before = ring.path.read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite") as caught:
        KeyRing.create(ring.path, "KOR", "kor-1", T1)
    assert str(ring.path) in str(caught.value)
    assert ring.path.read_bytes() == before


def test_create_refuses_to_write_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text("precious")
    (tmp_path / "keys.json").symlink_to(target)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        KeyRing.create(tmp_path / "keys.json", "KOR", "kor-1", T0)
    assert target.read_text() == "precious"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_load_refuses_a_file_open_to_group_or_others(ring: KeyRing, mode: int) -> None:
    ring.path.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        KeyRing.load(ring.path)
    assert str(ring.path) in str(caught.value)


def rewrite(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def swap_d(doc: dict[str, Any]) -> None:
    doc["keys"][0]["d"], doc["keys"][1]["d"] = doc["keys"][1]["d"], doc["keys"][0]["d"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda doc: doc.update(format="gsomia-keyring/9"), "format"),
        (lambda doc: doc.update(party="Korea"), "party"),
        (lambda doc: doc.pop("node"), "node"),
        (lambda doc: doc["keys"][0].pop("d"), "keys[0].d"),
        (swap_d, "keys[0].d"),
        (lambda doc: doc["keys"][1].update(kid="not-the-thumbprint"), "keys[1].kid"),
        (lambda doc: doc["keys"][0].update(nbf="yesterday"), "keys[0].nbf"),
    ],
)
def test_load_names_the_file_and_the_field(
    ring: KeyRing, change: Callable[[dict[str, Any]], object], field: str
) -> None:
    rewrite(ring.path, change)
    with pytest.raises(ConfigError) as caught:
        KeyRing.load(ring.path)
    assert str(ring.path) in str(caught.value)
    assert field in str(caught.value)


@pytest.mark.parametrize("content", ["", "{", "[]", '"keys"', "[" * 100_000])
def test_load_refuses_junk_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        KeyRing.load(path)
    assert str(path) in str(caught.value)


def test_load_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.json"):
        KeyRing.load(tmp_path / "nowhere.json")


def test_instants_without_an_offset_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InstantError):
        KeyRing.create(tmp_path / "keys.json", "KOR", "kor-1", datetime(2024, 1, 1))  # naive on purpose


def test_key_ids_are_rfc7638_thumbprints(ring: KeyRing) -> None:
    for jwk in ring.identity(ENDPOINT)["keys"]:
        canonical = json.dumps({"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).digest()
        assert jwk["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


# --------------------------------------------------------------------------- validity, rotation, revocation


def test_keys_are_not_valid_before_their_start(ring: KeyRing) -> None:
    _, enc = kids(ring)
    assert detail(ring.decryption_key, enc, T0 - MICRO) == "key-not-valid"
    with pytest.raises(ConfigError, match="no signing key"):
        ring.signing_key(T0 - MICRO)
    with pytest.raises(ConfigError, match="no encryption key"):
        ring.encryption_kid(T0 - MICRO)


def test_unknown_key_ids_and_keys_of_the_wrong_use_are_unknown(ring: KeyRing) -> None:
    sig, _ = kids(ring)
    assert detail(ring.decryption_key, "no-such-kid", T0) == "unknown-key"
    assert detail(ring.decryption_key, sig, T0) == "unknown-key"
    peer = PeerIdentity.from_document(ring.identity(ENDPOINT))
    assert detail(peer.verification_key, "no-such-kid", T0) == "unknown-key"
    assert detail(peer.verification_key, ring.encryption_kid(T0), T0) == "unknown-key"


def test_rotation_keeps_the_old_keys_inside_the_overlap_and_refuses_them_after(ring: KeyRing) -> None:
    old_sig, old_enc = kids(ring)
    ring.rotate(T1, OVERLAP)
    new_sig, _ = ring.signing_key(T1)
    new_enc = ring.encryption_kid(T1)
    assert {new_sig, new_enc}.isdisjoint({old_sig, old_enc})
    assert ring.signing_key(T1 - MICRO)[0] == old_sig
    assert ring.encryption_kid(T1 - MICRO) == old_enc

    for current in (ring, KeyRing.load(ring.path)):  # the rotation was persisted
        peer = PeerIdentity.from_document(current.identity(ENDPOINT))
        last = T1 + OVERLAP - MICRO
        current.decryption_key(old_enc, last)
        peer.verification_key(old_sig, last)
        assert detail(current.decryption_key, old_enc, T1 + OVERLAP) == "key-not-valid"
        assert detail(peer.verification_key, old_sig, T1 + OVERLAP) == "key-not-valid"
        current.decryption_key(new_enc, T1 + OVERLAP)
        peer.verification_key(new_sig, T1 + OVERLAP)
        assert peer.encryption_key(T1)[0] == new_enc
        assert peer.encryption_key(T1 - MICRO)[0] == old_enc


def test_rotation_refuses_to_go_back_in_time_or_a_negative_overlap(ring: KeyRing) -> None:
    ring.rotate(T1, OVERLAP)
    with pytest.raises(ConfigError, match="cannot rotate"):
        ring.rotate(T1 - MICRO, OVERLAP)
    with pytest.raises(ConfigError, match="overlap"):
        ring.rotate(T1 + OVERLAP, -MICRO)


def test_a_second_rotation_shortens_an_earlier_overlap(ring: KeyRing) -> None:
    old_sig, _ = kids(ring)
    ring.rotate(T1, timedelta(days=30))
    ring.rotate(T1 + timedelta(days=1), timedelta(hours=1))
    peer = PeerIdentity.from_document(ring.identity(ENDPOINT))
    ends = {e.kid: e.not_after for e in peer.keys}
    assert ends[old_sig] == T1 + timedelta(days=1, hours=1)


def test_revocation_is_refused_from_its_instant_and_accepted_one_microsecond_before(ring: KeyRing) -> None:
    sig, enc = kids(ring)
    revoked = T0 + timedelta(days=10)
    ring.revoke(enc, revoked)
    ring.revoke(sig, revoked)
    for current in (ring, KeyRing.load(ring.path)):  # the revocation was persisted
        current.decryption_key(enc, revoked - MICRO)
        assert detail(current.decryption_key, enc, revoked) == "revoked-key"
        assert detail(current.decryption_key, enc, revoked + OVERLAP) == "revoked-key"
        assert current.signing_key(revoked - MICRO)[0] == sig
        with pytest.raises(ConfigError, match="no signing key"):
            current.signing_key(revoked)
    doc = ring.identity(ENDPOINT)
    assert {k["kid"]: k["revoked_at"] for k in doc["keys"]} == {
        sig: revoked.isoformat(),
        enc: revoked.isoformat(),
    }
    peer = PeerIdentity.from_document(doc)
    peer.verification_key(sig, revoked - MICRO)
    assert detail(peer.verification_key, sig, revoked) == "revoked-key"
    assert detail(peer.encryption_key, revoked) == "revoked-key"


def test_an_earlier_revocation_stands(ring: KeyRing) -> None:
    _, enc = kids(ring)
    first = T0 + timedelta(days=1)
    ring.revoke(enc, first)
    ring.revoke(enc, first + timedelta(days=1))
    assert detail(ring.decryption_key, enc, first) == "revoked-key"


def test_revoking_a_key_that_is_not_there_is_not_found(ring: KeyRing) -> None:
    with pytest.raises(NotFoundError):
        ring.revoke("no-such-kid", T1)
    with pytest.raises(NotFoundError):
        PeerIdentity.from_document(ring.identity(ENDPOINT)).with_revoked("no-such-kid", T1)


def test_a_revoked_newest_key_falls_back_to_an_older_one_still_valid(ring: KeyRing) -> None:
    _, old_enc = kids(ring)
    ring.rotate(T1, OVERLAP)
    new_enc = ring.encryption_kid(T1)
    peer = PeerIdentity.from_document(ring.identity(ENDPOINT)).with_revoked(new_enc, T1)
    assert peer.encryption_key(T1)[0] == old_enc
    assert detail(peer.encryption_key, T1 + OVERLAP) == "revoked-key"
    assert detail(peer.encryption_key, T0 - MICRO) == "key-not-valid"


def test_with_revoked_leaves_the_original_alone(ring: KeyRing) -> None:
    sig, _ = kids(ring)
    peer = PeerIdentity.from_document(ring.identity(ENDPOINT))
    revoked = peer.with_revoked(sig, T1)
    peer.verification_key(sig, T1)
    assert detail(revoked.verification_key, sig, T1) == "revoked-key"
    assert PeerIdentity.from_document(revoked.to_document()) == revoked


# --------------------------------------------------------------------------- identity documents


def test_identity_document_round_trips(ring: KeyRing) -> None:
    ring.rotate(T1, OVERLAP)
    ring.revoke(ring.encryption_kid(T0), T0 + timedelta(days=1))
    doc = ring.identity(ENDPOINT)
    assert list(doc) == ["format", "party", "node", "endpoint", "keys"]
    assert doc["format"] == "gsomia-identity/1"
    assert (doc["party"], doc["node"], doc["endpoint"]) == ("KOR", "kor-1", ENDPOINT)
    peer = PeerIdentity.from_document(json.loads(json.dumps(doc)))
    assert peer.to_document() == doc
    assert PeerIdentity.from_document(peer.to_document()) == peer
    assert {e.kid for e in peer.keys} == {e.kid for e in ring.entries}
    assert hash(peer) == hash(PeerIdentity.from_document(doc))


def test_identity_document_holds_public_jwks_only(ring: KeyRing) -> None:
    doc = ring.identity(ENDPOINT)
    private = ring.path.read_text()
    for jwk in doc["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg", "nbf", "exp", "revoked_at"}
        assert jwk["kty"] == "OKP"
        assert (jwk["use"], jwk["crv"], jwk["alg"]) in {
            ("sig", "Ed25519", "EdDSA"),
            ("enc", "X25519", "ECDH-ES"),
        }
        assert jwk["nbf"] == T0.isoformat()
        assert jwk["exp"] is None
        assert jwk["revoked_at"] is None
    secrets = [k["d"] for k in json.loads(private)["keys"]]
    assert all(secret not in json.dumps(doc) for secret in secrets)


def test_public_key_entries_check_their_own_consistency() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(InvalidInputError, match="thumbprint"):
        PublicKeyEntry("made-up", "sig", public, T0)
    with pytest.raises(InvalidInputError, match="must be X25519"):
        PublicKeyEntry("made-up", "enc", public, T0)


def zero_x25519_point(doc: dict[str, Any]) -> None:
    jwk = next(k for k in doc["keys"] if k["use"] == "enc")
    jwk["x"] = "A" * 43


def first(use: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def pick(doc: dict[str, Any]) -> dict[str, Any]:
        return next(k for k in doc["keys"] if k["use"] == use)

    return pick


SIG = first("sig")
ENC = first("enc")


def index(doc: dict[str, Any], use: str) -> int:
    return next(i for i, k in enumerate(doc["keys"]) if k["use"] == use)


# Each mutation of a good document, and the field the refusal must name ({sig}/{enc}: that key's index).
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("wrong format", lambda d: d.update(format="gsomia-identity/2"), "format"),
    ("no format", lambda d: d.pop("format"), "format"),
    ("unknown member", lambda d: d.update(extra=1), "extra"),
    ("party not a trigraph", lambda d: d.update(party="Korea"), "party"),
    ("party lower case", lambda d: d.update(party="kor"), "party"),
    ("party missing", lambda d: d.pop("party"), "party"),
    ("node empty", lambda d: d.update(node=""), "node"),
    ("endpoint not text", lambda d: d.update(endpoint=5), "endpoint"),
    ("keys empty", lambda d: d.update(keys=[]), "keys"),
    ("keys not a list", lambda d: d.update(keys={"a": 1}), "keys"),
    ("key not an object", lambda d: d["keys"].append("jwk"), "keys[2]"),
    ("kty EC", lambda d: SIG(d).update(kty="EC"), "keys[{sig}].kty"),
    ("sig key on X25519", lambda d: SIG(d).update(crv="X25519"), "keys[{sig}].crv"),
    ("enc key on Ed25519", lambda d: ENC(d).update(crv="Ed25519"), "keys[{enc}].crv"),
    ("unknown use", lambda d: SIG(d).update(use="wrap"), "keys[{sig}].use"),
    ("use a list", lambda d: SIG(d).update(use=["sig"]), "keys[{sig}].use"),
    ("kty a list", lambda d: SIG(d).update(kty=["OKP"]), "keys[{sig}].kty"),
    ("wrong alg", lambda d: SIG(d).update(alg="ES256"), "keys[{sig}].alg"),
    ("enc alg", lambda d: ENC(d).update(alg="RSA-OAEP"), "keys[{enc}].alg"),
    ("x not base64url", lambda d: SIG(d).update(x="!" * 43), "keys[{sig}].x"),
    ("x padded", lambda d: SIG(d).update(x=SIG(d)["x"] + "="), "keys[{sig}].x"),
    ("x too short", lambda d: SIG(d).update(x=SIG(d)["x"][:-2]), "keys[{sig}].x"),
    ("x not a string", lambda d: SIG(d).update(x=12), "keys[{sig}].x"),
    ("x25519 low order point", zero_x25519_point, "keys[{enc}].x"),
    ("kid not the thumbprint", lambda d: SIG(d).update(kid="my-key"), "keys[{sig}].kid"),
    ("kid of the other key", lambda d: SIG(d).update(kid=ENC(d)["kid"]), "keys[{sig}].kid"),
    ("private member", lambda d: SIG(d).update(d="A" * 43), "keys[{sig}].d"),
    ("missing exp", lambda d: SIG(d).pop("exp"), "keys[{sig}].exp"),
    ("nbf not ISO", lambda d: SIG(d).update(nbf="March 2024"), "keys[{sig}].nbf"),
    ("nbf without offset", lambda d: SIG(d).update(nbf="2024-03-01T09:00:00"), "keys[{sig}].nbf"),
    ("nbf null", lambda d: SIG(d).update(nbf=None), "keys[{sig}].nbf"),
    ("exp before nbf", lambda d: SIG(d).update(exp="2020-01-01T00:00:00+00:00"), "keys[{sig}].exp"),
    ("exp a number", lambda d: SIG(d).update(exp=1_700_000_000), "keys[{sig}].exp"),
    ("revoked_at garbage", lambda d: ENC(d).update(revoked_at="soon"), "keys[{enc}].revoked_at"),
    ("duplicate key", lambda d: d["keys"].append(copy.deepcopy(SIG(d))), "keys[2].kid"),
    ("no encryption key", lambda d: d.update(keys=[SIG(d)]), "keys"),
    ("no signing key", lambda d: d.update(keys=[ENC(d)]), "keys"),
]


@pytest.mark.parametrize(
    ("change", "field"), [(m[1], m[2]) for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_identity_documents_are_refused_naming_the_field(
    ring: KeyRing, change: Callable[[dict[str, Any]], object], field: str
) -> None:
    doc = ring.identity(ENDPOINT)
    expected = field.format(sig=index(doc, "sig"), enc=index(doc, "enc"))
    change(doc)
    with pytest.raises(InvalidInputError) as caught:
        PeerIdentity.from_document(doc)
    message = str(caught.value)
    assert message.startswith("identity document: ")
    assert message.removeprefix("identity document: ").startswith(expected + ":"), message


@pytest.mark.parametrize("doc", [None, [], "gsomia-identity/1", 7])
def test_identity_documents_that_are_not_objects_are_refused(doc: object) -> None:
    with pytest.raises(InvalidInputError, match="identity document"):
        PeerIdentity.from_document(doc)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ring = KeyRing.create(tmp_path_factory.mktemp("doc") / "keys.json", "KOR", "kor-1", T0)
    return ring.identity(ENDPOINT)


@settings(max_examples=300, deadline=None)
@given(path=st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=3), value=JSON)
def test_a_document_with_any_value_anywhere_is_read_or_refused_with_invalid_input(
    document: dict[str, Any], path: list[int], value: Any
) -> None:
    """Replace one member (at any depth) by any JSON value: never an error other than InvalidInputError."""
    doc = copy.deepcopy(document)
    node: Any = doc
    for step in path[:-1]:
        members = list(node) if isinstance(node, dict) else list(range(len(node)))
        child = node[members[step % len(members)]]
        if not isinstance(child, (dict, list)) or not child:
            break
        node = child
    members = list(node) if isinstance(node, dict) else list(range(len(node)))
    node[members[path[-1] % len(members)]] = value
    try:
        PeerIdentity.from_document(doc)
    except InvalidInputError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("identity document: ")
