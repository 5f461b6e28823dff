"""Originator-signed batches of tracks: the originator's signature covers every track end to end.

A link's AEAD and its signed window roots (``_link``) prove what the *previous hop* sent. They
say nothing about who wrote a track: a hub that relays KOR's tracks to JPN could write tracks
of its own, label them as KOR's, and send them on its authenticated link. So the originator
signs its own tracks, and every node checks that signature before it reads a track:

- The originator hashes each batch of its own track messages (those leaving in one link
  frame: one signature per burst, none per track) into an RFC 9162 Merkle tree
  (:mod:`gsomia.core.merkle`) and signs the root: a compact JWS, EdDSA with its node key,
  ``typ`` ``gsomia-tracks+jws`` (:func:`gsomia.crypto.envelope.sign_origin`), over
  ``{"v", "kind": "track-batch", "originator", "size", "root", "at"}``.
- A message is the exact bytes the originator hashed: the track, its label, the originator,
  the recipient and the hub (``via``). So the signature also fixes where each track may go:
  a hub cannot send a track addressed to it on to anyone else.
- A hub relays the signed root unchanged with the messages addressed through it, each with
  its RFC 9162 inclusion proof (the hub computes them from the batch it received whole).
- A receiver verifies the signature (the key of the party in its header, pinned with that
  party's identity document) and each message's inclusion, *before* it parses the track;
  then the track's label must name the signer as originator. Anything else refuses the link.
- Each track of a signed batch is read once: the receiver remembers in its store the batch (the
  SHA-256 of the signed content) and the leaves that arrived, for as long as the batch's signature
  is fresh (``max_clock_skew`` either side). The originator's own link sending any of them again
  refuses the link (``replayed-batch``); a hub's are dropped as duplicates, counted and audited
  (its queue hands a relayed track again after a takeover, under the same signature), as are an
  originator's updates sent again under a new signature, up to what the sender's JetStream could
  hand again (``HANDOFF_RESENDS`` within any 60 s, a sender's together, counted in the store):
  past that, refused as ``replayed-batch`` too. After
  that window the batch is refused as ``stale-batch``.

Wire: the body of a ``TRACKS`` frame is one or more groups, each a signed root and some of
its messages::

    group := u16 jws length | jws | u32 tree size | u16 count | entry * count
    entry := u32 leaf index | u8 proof length | proof (32 bytes each) | u32 length | message

A group the originator makes holds its whole batch in order without proofs: the receiver
recomputes the root. A group a hub relays holds some of the batch, each message with its proof.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson

from gsomia._codec import canonical
from gsomia.core.merkle import (
    Frontier,
    inclusion_subtrees,
    leaf_hash,
    range_hash,
    tree_root,
    verify_inclusion,
)
from gsomia.crypto.envelope import TRACKS_TYPE, sign_origin, verify_origin
from gsomia.crypto.keys import KeyRing, PeerIdentity
from gsomia.errors import EnvelopeError, LinkError, ProofError

__all__ = [
    "MAX_BATCH",
    "Entry",
    "Group",
    "VerifiedGroup",
    "decode_groups",
    "encode_group",
    "sign_batch",
    "verify_group",
]

MAX_BATCH = 4096  # messages under one signed root (a sender makes at most 256)
_MAX_PROOF = MAX_BATCH.bit_length()  # hashes in an inclusion proof of a tree of MAX_BATCH
_HASH = 32
_GROUP = struct.Struct(">IH")  # tree size, count
_ENTRY = struct.Struct(">IB")  # leaf index, proof length
_WHOLE_ENTRY = struct.Struct(">IBI")  # leaf index, proof length 0, message length: an entry of a whole batch
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_KIND = "track-batch"


@dataclass(frozen=True, slots=True)
class Entry:
    """One message of a group: its leaf index in the signed tree, its proof (empty in a whole batch)."""

    index: int
    proof: tuple[bytes, ...]
    message: bytes


@dataclass(frozen=True, slots=True)
class Group:
    """A signed root and some of the messages under it, as read from a frame (nothing checked yet)."""

    jws: bytes
    size: int
    entries: tuple[Entry, ...]

    @property
    def whole(self) -> bool:
        """Every message of the batch, in order, without proofs: the root is recomputed."""
        return len(self.entries) == self.size and all(
            e.index == i and not e.proof for i, e in enumerate(self.entries)
        )


class VerifiedGroup:
    """A group whose originator's signature and inclusions verified: its messages may be read."""

    __slots__ = ("_leaves", "_nodes", "_ranges", "batch", "entries", "jws", "originator", "signed_at", "size")

    def __init__(
        self,
        originator: str,
        signed_at: datetime,
        group: Group,
        leaves: list[bytes] | None,
        batch: str = "",
    ) -> None:
        self.originator = originator
        self.signed_at = signed_at
        self.batch = batch  # SHA-256 (hex) of the signed content: the batch, however its JWS is spelt
        self.jws = group.jws
        self.size = group.size
        self.entries = group.entries
        self._leaves = leaves  # the whole batch's leaf hashes, to prove a part of it to the next node
        self._nodes: dict[tuple[int, int], bytes] | None = None
        self._ranges: dict[tuple[int, int], bytes] = {}  # (start, end) -> its hash, once made

    def proof(self, entry: Entry) -> tuple[bytes, ...]:
        """``entry``'s inclusion proof, for a hub passing it on without the rest of the batch."""
        if self._leaves is None:
            return entry.proof  # a part of a batch arrives with its proofs; they travel on unchanged
        if self._nodes is None:
            frontier, nodes = Frontier(), {}
            for leaf in self._leaves:
                for level, index, value in frontier.append(leaf):
                    nodes[(level, index)] = value
            self._nodes = nodes
        subtrees, ranges = self._nodes, self._ranges
        proof = []
        for start, end in inclusion_subtrees(entry.index, self.size):
            # a range's hash is the same in every proof that holds it: the proofs of a group's
            # tracks share most of theirs (the upper levels), each made once
            made = ranges.get((start, end))
            if made is None:
                made = ranges[(start, end)] = range_hash(start, end, lambda level, i: subtrees[(level, i)])
            proof.append(made)
        return tuple(proof)


def _content(originator: str, size: int, root: bytes, at: datetime) -> bytes:
    return canonical(
        {"v": 1, "kind": _KIND, "originator": originator, "size": size, "root": root.hex(),
         "at": at.isoformat()}
    ).encode()  # fmt: skip


def encode_group(jws: bytes, size: int, entries: Sequence[Entry]) -> bytes:
    """One group's bytes (see the module's docstring)."""
    parts = [_U16.pack(len(jws)), jws, _GROUP.pack(size, len(entries))]
    for entry in entries:
        parts += [_ENTRY.pack(entry.index, len(entry.proof)), *entry.proof, _U32.pack(len(entry.message))]
        parts.append(entry.message)
    return b"".join(parts)


def sign_batch(ring: KeyRing, messages: Sequence[bytes], at: datetime) -> bytes:
    """A group of this node's own ``messages``: the Merkle root of all of them, signed, and the messages."""
    if not 0 < len(messages) <= MAX_BATCH:
        raise LinkError("malformed", f"a signed batch holds 1 to {MAX_BATCH} tracks, not {len(messages)}")
    root = tree_root([leaf_hash(message) for message in messages])
    jws = sign_origin(ring, _content(ring.party, len(messages), root, at), at, typ=TRACKS_TYPE)
    parts = [_U16.pack(len(jws)), jws.encode(), _GROUP.pack(len(messages), len(messages))]
    pack, add = _WHOLE_ENTRY.pack, parts.append
    for index, message in enumerate(messages):
        add(pack(index, 0, len(message)))
        add(message)
    return b"".join(parts)


def decode_groups(body: bytes, peer: str) -> list[Group]:
    """The groups of a ``TRACKS`` frame body; ``LinkError`` (``malformed``) if it is not made of them."""
    groups: list[Group] = []
    offset, end = 0, len(body)
    view = memoryview(body)

    def malformed(what: str) -> LinkError:
        return LinkError("malformed", f"a batch of tracks from {peer} {what}")

    try:
        while offset < end:
            (jws_length,) = _U16.unpack_from(body, offset)
            offset += _U16.size
            if jws_length == 0 or offset + jws_length > end:
                raise malformed("has a signature of a wrong length")
            jws = bytes(view[offset : offset + jws_length])
            offset += jws_length
            size, count = _GROUP.unpack_from(body, offset)
            offset += _GROUP.size
            if not 0 < count <= size <= MAX_BATCH:
                raise malformed(f"claims {count} of {size} tracks under one root")
            entries: list[Entry] = []
            last = -1
            for _ in range(count):
                index, proof_length = _ENTRY.unpack_from(body, offset)
                offset += _ENTRY.size
                if index <= last or index >= size or proof_length > _MAX_PROOF:
                    raise malformed("has a track out of place in its batch")
                last = index
                if proof_length:  # a relayed part of a batch: each message with its proof
                    proof: tuple[bytes, ...] = tuple(
                        bytes(view[offset + i * _HASH : offset + (i + 1) * _HASH])
                        for i in range(proof_length)
                    )
                    offset += proof_length * _HASH
                else:
                    proof = ()
                (length,) = _U32.unpack_from(body, offset)
                offset += _U32.size
                if length == 0 or offset + length > end:
                    raise malformed("has a track of a wrong length")
                entries.append(Entry(index, proof, body[offset : offset + length]))
                offset += length
            groups.append(Group(jws, size, tuple(entries)))
    except struct.error as exc:
        raise malformed("ends inside a length") from exc
    if not groups:
        raise malformed("is empty")
    return groups


def verify_group(
    group: Group,
    identities: Callable[[str], PeerIdentity | None],
    at: datetime,
    max_age: timedelta,
) -> VerifiedGroup:
    """``group`` if its originator's signature verifies and covers each of its messages; else ``LinkError``.

    ``bad-origin-signature``: no valid signature of a registered party's key over a track batch;
    ``stale-batch``: signed more than ``max_age`` before or after ``at`` (a late warning is not a
    live one); ``not-included``: a message the signed root does not cover.
    """
    try:
        originator, content = verify_origin(group.jws.decode("ascii"), identities, at, typ=TRACKS_TYPE)
        data = orjson.loads(content)
        signed_at = datetime.fromisoformat(data["at"])
        root = bytes.fromhex(data["root"])
        valid = (
            type(data) is dict
            and data["kind"] == _KIND
            and data["v"] == 1
            and data["originator"] == originator
            and data["size"] == group.size
            and signed_at.utcoffset() is not None
        )
    except (EnvelopeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:  # JSONDecodeError too
        raise LinkError(
            "bad-origin-signature", "a batch of tracks carries no valid originator signature"
        ) from exc
    if not valid:
        raise LinkError("bad-origin-signature", f"{originator}'s signature is not over this batch of tracks")
    if abs(at - signed_at) > max_age:
        raise LinkError(
            "stale-batch", f"a batch of {originator}'s tracks was signed at {signed_at.isoformat()}, "
            f"more than {max_age} from {at.isoformat()}"
        )  # fmt: skip
    leaves = [leaf_hash(entry.message) for entry in group.entries]
    if group.whole:
        if tree_root(leaves) != root:
            raise LinkError("not-included", f"the tracks sent are not the batch {originator} signed")
        return VerifiedGroup(originator, signed_at, group, leaves, hashlib.sha256(content).hexdigest())
    for leaf, entry in zip(leaves, group.entries, strict=True):
        try:
            verify_inclusion(leaf, entry.index, group.size, entry.proof, root)
        except ProofError as exc:
            raise LinkError(
                "not-included", f"track {entry.index} is not in the batch {originator} signed"
            ) from exc
    return VerifiedGroup(originator, signed_at, group, None, hashlib.sha256(content).hexdigest())
