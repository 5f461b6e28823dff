"""An authenticated, encrypted session per link between two nodes, and signed batch roots.

Handshake: the Noise protocol framework, pattern KK (``Noise_KK_25519_ChaChaPoly_SHA256``,
via the ``noiseprotocol`` library over ``cryptography``). KK fits the federation exactly:
each side already holds the other's static X25519 key, pinned with its identity document,
so both are authenticated in one round trip; the ephemeral keys of both sides give forward
secrecy. The initiator's hello (parties and key ids) is the Noise prologue, so a changed
hello fails the handshake.

Frames: ``seq (8 bytes, big-endian) | type (1 byte) | ChaCha20-Poly1305 ciphertext``. A
``TRACKS`` frame carries a burst of track messages under their originators' signed Merkle
roots (``_origin``), so a burst costs one seal, one open and one WebSocket message instead of
one per track. (Type ``TRACK``, a lone unsigned track, is no longer sent; a receiver refuses
it.) The
header is the AEAD's associated data and the nonce is Noise's counter, which equals ``seq``
(TLS 1.3 record style): the receiver checks ``seq`` before decrypting, so a replayed frame
(``seq`` below the next expected), a gap (a frame dropped, or one arriving early) and a
tampered frame (AEAD failure) are each refused with their own code, and the link closes.
Rekeying (Noise ``REKEY``) follows a ``REKEY`` frame, after ``rekey_frames`` frames or
``rekey_seconds`` seconds, whichever comes first. The initiator's first frame is ``READY``
(empty): key confirmation, so the responder knows the caller holds the session keys (a replayed
hello cannot make one) before it counts the link as open.

The other way, the responder seals ``ACK`` frames (its own counter, the session's other cipher):
after each window root it verified, how many frames it has received and taken (each track of them
kept, passed on or refused). The initiator only then counts what those frames carried as delivered.

Non-repudiation: the AEAD authenticates the link, not the sender to a third party, so the
sender signs (Ed25519, its node key, a compact JWS) an RFC 9162 Merkle root over the track
frames of each window of at most 50 ms; the receiver recomputes the root over what it got
and verifies the signature. Both sides record the signed root in their audit logs.
"""

from __future__ import annotations

import collections
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from noise.connection import Keypair, NoiseConnection
from noise.exceptions import NoiseInvalidMessage

from gsomia._codec import canonical
from gsomia.core.merkle import Frontier, leaf_hash
from gsomia.crypto.envelope import sign_origin, verify_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import EnvelopeError, LinkError

__all__ = [
    "ACK",
    "ACK_BODY",
    "BATCH",
    "CLOSE",
    "CONSENT",
    "PROTOCOL",
    "READY",
    "REKEY",
    "TRACK",
    "TRACKS",
    "BatchSigner",
    "BatchVerifier",
    "Frame",
    "LinkSession",
    "SignedBatch",
    "accept",
    "initiate",
]

PROTOCOL = b"Noise_KK_25519_ChaChaPoly_SHA256"
TRACK, BATCH, REKEY, CONSENT, CLOSE, TRACKS, READY, ACK = 1, 2, 3, 4, 5, 6, 7, 8
_TYPES = frozenset({TRACK, BATCH, REKEY, CONSENT, CLOSE, TRACKS, READY, ACK})
ACK_BODY = struct.Struct(">Q")  # an ACK frame's body: the frames received and taken so far
_HEADER = struct.Struct(">QB")
_TAG = 16
WINDOW_S = 0.05  # a signed batch root covers at most 50 ms of frames


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame opened on a link: its sequence number, type and plaintext."""

    seq: int
    kind: int
    body: bytes


def _raw_private(ring: KeyRing, at: datetime) -> bytes:
    kid = ring.encryption_kid(at)
    return ring.decryption_key(kid, at).private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _raw_public(peer: PeerIdentity, at: datetime) -> tuple[str, bytes]:
    kid, key = peer.encryption_key(at)
    return kid, key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class LinkSession:
    """One established link: seals frames one way, opens them the other, counts and rekeys."""

    __slots__ = (
        "_noise",
        "_recv_seq",
        "_rekeyed_at",
        "_send_seq",
        "_since_rekey",
        "local",
        "peer",
        "rekey_frames",
        "rekey_seconds",
    )

    def __init__(
        self, noise: NoiseConnection, local: str, peer: str, rekey_frames: int, rekey_seconds: float
    ) -> None:
        self._noise = noise
        self.local = local
        self.peer = peer
        self._send_seq = 0
        self._recv_seq = 0
        self._since_rekey = 0
        self._rekeyed_at: float | None = None
        self.rekey_frames = rekey_frames
        self.rekey_seconds = rekey_seconds

    @property
    def sent(self) -> int:
        return self._send_seq

    @property
    def received(self) -> int:
        return self._recv_seq

    def _seal_one(self, kind: int, body: bytes) -> bytes:
        header = _HEADER.pack(self._send_seq, kind)
        ciphertext = self._noise.noise_protocol.cipher_state_encrypt.encrypt_with_ad(header, body)
        self._send_seq += 1
        return header + bytes(ciphertext)

    def seal(self, kind: int, body: bytes, now: float) -> list[bytes]:
        """The wire frames for one message: a ``REKEY`` frame first when one is due."""
        out = []
        if self._rekeyed_at is None:
            self._rekeyed_at = now
        if self._since_rekey >= self.rekey_frames or now - self._rekeyed_at >= self.rekey_seconds:
            out.append(self._seal_one(REKEY, b""))
            self._noise.rekey_outbound_cipher()
            self._since_rekey = 0
            self._rekeyed_at = now
        out.append(self._seal_one(kind, body))
        self._since_rekey += 1
        return out

    def open(self, data: bytes) -> Frame | None:
        """The frame's plaintext; ``None`` for a ``REKEY`` frame (handled here). Raises ``LinkError``."""
        if len(data) < _HEADER.size + _TAG:
            raise LinkError("malformed", f"a frame from {self.peer} is too short to be one")
        seq, kind = _HEADER.unpack_from(data)
        if seq < self._recv_seq:
            raise LinkError(
                "replayed", f"frame {seq} from {self.peer} was already received (expected {self._recv_seq})"
            )
        if seq > self._recv_seq:
            raise LinkError(
                "gap",
                f"frame {seq} from {self.peer} arrived while {self._recv_seq} is missing "
                "(dropped or out of order)",
            )
        if kind not in _TYPES:
            raise LinkError("malformed", f"frame {seq} from {self.peer} has unknown type {kind}")
        try:
            body: bytes = self._noise.noise_protocol.cipher_state_decrypt.decrypt_with_ad(
                data[: _HEADER.size], data[_HEADER.size :]
            )
        except (InvalidTag, NoiseInvalidMessage) as exc:
            raise LinkError("tampered", f"frame {seq} from {self.peer} failed authentication") from exc
        self._recv_seq += 1
        if kind == REKEY:
            self._noise.rekey_inbound_cipher()
            return None
        return Frame(seq, kind, body)


def _hello(sender: str, recipient: str, sender_kid: str, recipient_kid: str) -> bytes:
    return canonical({"v": 1, "proto": PROTOCOL.decode(), "from": sender, "to": recipient,
                      "from_kid": sender_kid, "to_kid": recipient_kid}).encode()  # fmt: skip


def initiate(ring: KeyRing, peer: PeerIdentity, at: datetime) -> tuple[bytes, Callable[..., LinkSession]]:
    """The initiator's first message (hello and Noise message 1) and how to finish on the answer."""
    peer_kid, peer_public = _raw_public(peer, at)
    hello = _hello(ring.party, peer.party, ring.encryption_kid(at), peer_kid)
    noise = NoiseConnection.from_name(PROTOCOL)
    noise.set_as_initiator()
    noise.set_keypair_from_private_bytes(Keypair.STATIC, _raw_private(ring, at))
    noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, peer_public)
    noise.set_prologue(hello)
    noise.start_handshake()
    first = struct.pack(">H", len(hello)) + hello + noise.write_message(b"")

    def finish(answer: bytes, *, rekey_frames: int = 100_000, rekey_seconds: float = 60.0) -> LinkSession:
        try:
            noise.read_message(answer)
        except Exception as exc:  # noiseprotocol raises its own and cryptography's errors
            raise LinkError("handshake-failed", f"{peer.party} did not complete the link handshake") from exc
        if not noise.handshake_finished:
            raise LinkError("handshake-failed", f"{peer.party}'s answer did not finish the handshake")
        return LinkSession(noise, ring.party, peer.party, rekey_frames, rekey_seconds)

    return first, finish


def accept(
    ring: KeyRing,
    peers: Callable[[str], PeerIdentity | None],
    first: bytes,
    at: datetime,
    *,
    rekey_frames: int = 100_000,
    rekey_seconds: float = 60.0,
) -> tuple[bytes, LinkSession]:
    """The responder: check the hello against the pinned identity, answer, and open the session."""
    try:
        (size,) = struct.unpack_from(">H", first)
        hello = json.loads(first[2 : 2 + size])
        sender, recipient = str(hello["from"]), str(hello["to"])
        sender_kid, own_kid = str(hello["from_kid"]), str(hello["to_kid"])
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise LinkError("malformed", "the link hello is malformed") from exc
    if hello.get("v") != 1 or hello.get("proto") != PROTOCOL.decode() or recipient != ring.party:
        raise LinkError("handshake-failed", f"the link hello is not for {ring.party} on {PROTOCOL.decode()}")
    peer = peers(sender)
    if peer is None:
        raise LinkError("unknown-peer", f"{sender} is not a registered peer of {ring.party}")
    try:
        pinned_kid, public = _raw_public(peer, at)
        own_private = _raw_private(ring, at)
    except EnvelopeError as exc:
        raise LinkError("handshake-failed", f"no usable encryption key for the link with {sender}") from exc
    if pinned_kid != sender_kid or own_kid != ring.encryption_kid(at):
        raise LinkError("handshake-failed", f"{sender}'s hello names keys that are not the pinned ones")
    noise = NoiseConnection.from_name(PROTOCOL)
    noise.set_as_responder()
    noise.set_keypair_from_private_bytes(Keypair.STATIC, own_private)
    noise.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, public)
    noise.set_prologue(first[2 : 2 + size])
    noise.start_handshake()
    try:
        noise.read_message(first[2 + size :])
        answer = noise.write_message(b"")
    except Exception as exc:  # noiseprotocol raises its own and cryptography's errors
        raise LinkError("handshake-failed", f"{sender}'s link handshake did not verify") from exc
    return answer, LinkSession(noise, ring.party, sender, rekey_frames, rekey_seconds)


@dataclass(frozen=True, slots=True)
class SignedBatch:
    """A window's signed Merkle root: what both audit logs record."""

    sender: str
    recipient: str
    first_seq: int
    count: int
    root: str
    jws: str

    def audit_detail(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "recipient": self.recipient,
            "first_seq": self.first_seq,
            "count": self.count,
            "root": self.root,
            "jws": self.jws,
        }


def _batch_content(sender: str, recipient: str, first_seq: int, count: int, root: str, at: datetime) -> bytes:
    return canonical(
        {
            "v": 1,
            "kind": "stream-batch",
            "sender": sender,
            "recipient": recipient,
            "first_seq": first_seq,
            "count": count,
            "root": root,
            "at": at.isoformat(),
        }
    ).encode()


class BatchSigner:
    """The sender's side: hash each track frame in; close the window with a signed root."""

    __slots__ = ("_first", "_frontier", "_opened", "recipient", "ring")

    def __init__(self, ring: KeyRing, recipient: str) -> None:
        self.ring = ring
        self.recipient = recipient
        self._frontier = Frontier()
        self._first = 0
        self._opened: float | None = None

    def add(self, seq: int, body: bytes, now: float) -> None:
        if self._frontier.size == 0:
            self._first = seq
            self._opened = now
        self._frontier.append(leaf_hash(body))

    def due(self, now: float) -> bool:
        return self._opened is not None and now - self._opened >= WINDOW_S

    @property
    def pending(self) -> int:
        return self._frontier.size

    def close(self, at: datetime) -> SignedBatch | None:
        """The window's signed root (``None`` if the window is empty); a new window starts."""
        count = self._frontier.size
        if count == 0:
            return None
        root = self._frontier.root().hex()
        content = _batch_content(self.ring.party, self.recipient, self._first, count, root, at)
        jws = sign_origin(self.ring, content, at)
        self._frontier = Frontier()
        self._opened = None
        return SignedBatch(self.ring.party, self.recipient, self._first, count, root, jws)


class BatchVerifier:
    """The receiver's side: hash each track frame in; check the sender's signed roots against them.

    A root may come after frames of the sender's next window (its sender's root waits for its own
    audit record while the next window's tracks flow): each root is matched to its window by the
    frames it names, its first frame (``first_seq``) and their count, which must be the oldest frames
    not yet covered, in order. The leaf hashes of the frames not yet covered are kept until then,
    with what the caller marked each with (its deadline's start, :meth:`oldest`)."""

    __slots__ = ("_pending", "covered", "local", "peers")

    def __init__(self, local: str, peers: Callable[[str], PeerIdentity | None]) -> None:
        self.local = local
        self.peers = peers
        self._pending: collections.deque[tuple[int, bytes, Any]] = collections.deque()
        # one past the last frame a verified root covers: what the receiver may confirm, no further
        # (the next window's frames received before that root are not covered by it)
        self.covered = 0

    def add(self, seq: int, body: bytes, mark: Any = None) -> None:
        self._pending.append((seq, leaf_hash(body), mark))

    @property
    def pending(self) -> int:
        """The frames received that no verified root covers yet."""
        return len(self._pending)

    def oldest(self) -> Any:
        """The mark of the oldest frame not yet covered (``None`` if every frame is)."""
        return self._pending[0][2] if self._pending else None

    def verify(self, jws: str, sender: str, at: datetime) -> SignedBatch:
        """The batch, if signed by ``sender`` over exactly the oldest frames not yet covered, as many
        as it names, from the first it names; else ``LinkError``. Those frames are then covered."""
        try:
            issuer, content = verify_origin(jws, self.peers, at)
            data = json.loads(content)
        except (EnvelopeError, ValueError) as exc:
            raise LinkError(
                "bad-batch-signature", f"{sender}'s batch root signature does not verify"
            ) from exc
        pending = self._pending
        first, count = data.get("first_seq"), data.get("count")
        expected_first = pending[0][0] if pending else None
        # a window out of order, twice, or naming frames not received (or more than were) is refused
        named = (
            type(first) is int
            and type(count) is int
            and first == expected_first
            and 0 < count <= len(pending)
        )
        frontier = Frontier()
        if named:
            for index in range(count):
                frontier.append(pending[index][1])
        root = frontier.root().hex() if named else ""
        expected = (sender, self.local, root)
        got = (issuer, data.get("recipient"), data.get("root"))
        if not named or data.get("kind") != "stream-batch" or data.get("sender") != issuer or got != expected:
            raise LinkError(
                "bad-batch-signature",
                f"{sender}'s signed batch does not match the frames received "
                f"(signed {first}+{count}, received {expected_first}+{len(pending)} not yet covered)",
            )
        for _ in range(count):
            last = pending.popleft()[0]
        self.covered = last + 1
        return SignedBatch(issuer, self.local, first, count, root, jws)
