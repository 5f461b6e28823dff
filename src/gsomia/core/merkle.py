"""RFC 9162 Merkle trees: leaf and node hashes, roots, inclusion and consistency proofs.

Pure: hashes of stored subtrees come from a ``NodeSource`` the caller passes in, so the
same code builds proofs from an in-memory list in the tests and from the store's node
table in a node. Leaves and interior nodes are domain-separated (0x00 / 0x01 prefixes),
as RFC 9162 §2.1.1 requires. Verification raises ``ProofError``; it never returns False.

Subtrees are named by (level, index): the perfect subtree of 2**level leaves starting at
leaf ``index * 2**level``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gsomia.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "Frontier",
    "HeadComparison",
    "NodeSource",
    "TreeHead",
    "baseline_for",
    "compare_heads",
    "consistency_proof",
    "consistency_subtrees",
    "inclusion_proof",
    "inclusion_subtrees",
    "leaf_hash",
    "node_hash",
    "range_hash",
    "subtrees_needed",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

NodeSource = Callable[[int, int], bytes]
"""(level, index) -> the hash of that perfect subtree."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def tree_root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree of ``leaves`` (leaf hashes, in order): ``Frontier``'s root after
    appending each, made level by level (each level's pairs hashed, an odd last node carried up
    unchanged, which is RFC 9162's split at the largest power of two below the size), with no
    subtree kept: for a caller that needs only the root of a whole batch."""
    level = list(leaves)
    if not level:
        return EMPTY_ROOT
    sha = hashlib.sha256
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if odd is not None:
            level.append(odd)
    return level[0]


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (size >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def _is_perfect(start: int, end: int) -> tuple[int, int] | None:
    size = end - start
    if size & (size - 1) == 0 and start % size == 0:
        level = size.bit_length() - 1
        return level, start >> level
    return None


def _pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees whose hashes make up MTH(D[start:end]), left to right."""
    out: list[tuple[int, int]] = []
    while True:
        perfect = _is_perfect(start, end)
        if perfect is not None:
            out.append(perfect)
            return out
        k = _split(end - start)
        left = _is_perfect(start, start + k)
        if left is None:
            raise ProofError(f"[{start}, {end}) is not a subtree of an RFC 9162 tree")
        out.append(left)
        start += k


def range_hash(start: int, end: int, node: NodeSource) -> bytes:
    """MTH(D[start:end]) for a range that is a subtree of some RFC 9162 tree."""
    if end <= start:
        return EMPTY_ROOT
    pieces = [node(level, index) for level, index in _pieces(start, end)]
    acc = pieces[-1]
    for left in reversed(pieces[:-1]):
        acc = node_hash(left, acc)
    return acc


def _ranges_inclusion(index: int, start: int, end: int, out: list[tuple[int, int]]) -> None:
    if end - start <= 1:
        return
    k = _split(end - start)
    if index < start + k:
        _ranges_inclusion(index, start, start + k, out)
        out.append((start + k, end))
    else:
        _ranges_inclusion(index, start + k, end, out)
        out.append((start, start + k))


def inclusion_subtrees(index: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges whose hashes form PATH(index, D[size]), in proof order."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    out: list[tuple[int, int]] = []
    _ranges_inclusion(index, 0, size, out)
    return out


def _ranges_consistency(m: int, start: int, end: int, complete: bool, out: list[tuple[int, int]]) -> None:
    if start + m == end:
        if not complete:
            out.append((start, end))
        return
    k = _split(end - start)
    if m <= k:
        _ranges_consistency(m, start, start + k, complete, out)
        out.append((start + k, end))
    else:
        _ranges_consistency(m - k, start + k, end, False, out)
        out.append((start, start + k))


def consistency_subtrees(old: int, new: int) -> list[tuple[int, int]]:
    """The (start, end) ranges whose hashes form PROOF(old, D[new]), in proof order."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency proof from {old} to {new}")
    out: list[tuple[int, int]] = []
    if old < new:
        _ranges_consistency(old, 0, new, True, out)
    return out


def subtrees_needed(ranges: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Every (level, index) whose hash the ranges need: fetch them in one go."""
    return {piece for start, end in ranges for piece in _pieces(start, end)}


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    return [range_hash(a, b, node) for a, b in inclusion_subtrees(index, size)]


def consistency_proof(old: int, new: int, node: NodeSource) -> list[bytes]:
    return [range_hash(a, b, node) for a, b in consistency_subtrees(old, new)]


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2; raises ``ProofError`` unless ``leaf`` is entry ``index`` of the tree ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf {index} is not in a tree of {size}")
    fn, sn = index, size - 1
    acc = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the tree allows")
        if fn & 1 or fn == sn:
            acc = node_hash(p, acc)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            acc = node_hash(acc, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or acc != root:
        raise ProofError(f"leaf {index} is not included in the tree of size {size} with that root")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2; raises ``ProofError`` unless the tree ``old_root`` is a prefix of ``new_root``."""
    if not 0 < old <= new:
        raise ProofError(f"no consistency between sizes {old} and {new}")
    if old == new:
        if proof or old_root != new_root:
            raise ProofError("the same size with a different root: the log was rewritten")
        return
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node of the path
        path.insert(0, old_root)
    if not path:
        raise ProofError("empty consistency proof")
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the trees allow")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise ProofError(
            f"the tree of size {new} does not extend the tree of size {old}: a fork or a rewrite"
        )


class Frontier:
    """The right edge of a growing tree: the roots of its perfect subtrees, largest first.

    ``append`` returns every subtree it completes, (level, index, hash), for the caller to
    keep; ``root`` is the tree head. O(log n) per leaf, nothing else held in memory.
    """

    __slots__ = ("_hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ProofError(
                f"a frontier of size {size} has {bin(size).count('1')} subtrees, not {len(hashes)}"
            )
        self.size = size
        self._hashes = list(hashes)

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        index = self.size
        completed = [(0, index, leaf)]
        acc = leaf
        level = 0
        while (self.size >> level) & 1:
            acc = node_hash(self._hashes.pop(), acc)
            level += 1
            completed.append((level, index >> level, acc))
        self._hashes.append(acc)
        self.size += 1
        return completed

    def extend(self, leaves: Iterable[bytes], *, with_leaves: bool = True) -> list[tuple[int, int, bytes]]:
        """``append`` for many leaves: every subtree completed, in order, without a list per leaf.

        ``with_leaves=False`` leaves out the level-0 subtrees (the leaves themselves, which the caller
        keeps elsewhere): only the interior nodes completed, in the same order."""
        completed: list[tuple[int, int, bytes]] = []
        add = completed.append
        hashes = self._hashes
        pop, push = hashes.pop, hashes.append
        sha = hashlib.sha256
        size = self.size
        for leaf in leaves:
            if with_leaves:
                add((0, size, leaf))
            acc = leaf
            level = 0
            while (size >> level) & 1:
                acc = sha(b"\x01" + pop() + acc).digest()  # node_hash
                level += 1
                add((level, size >> level, acc))
            push(acc)
            size += 1
        self.size = size
        return completed

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            acc = node_hash(left, acc)
        return acc


# --- two signed heads of one log, side by side (the monitors' gossip, issue 14 §4) ---


@dataclass(frozen=True, slots=True)
class TreeHead:
    """What a signed tree head commits to: the log's size and its root."""

    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class HeadComparison:
    """What two heads of one log say about each other, the smaller first (``old``).

    ``verdict`` is ``same`` (one head twice), ``fork`` (two trees that cannot both be the log:
    the same size with two roots, or a non-empty size under the empty tree's root) or ``proof``
    (sizes differ: only a consistency proof from ``old.size`` to ``new.size`` can tell).
    """

    verdict: str
    old: TreeHead
    new: TreeHead

    def check(self, proof: Sequence[bytes]) -> None:
        """Raise ``ProofError`` unless ``proof`` shows ``new`` extends ``old`` (or they agree)."""
        if self.verdict == "fork":
            raise ProofError(f"two roots for size {self.old.size}: a fork")
        if self.verdict == "same":
            return
        verify_consistency(self.old.size, self.new.size, self.old.root, self.new.root, proof)


def compare_heads(a: TreeHead, b: TreeHead) -> HeadComparison:
    """Compare two heads of the same log (RFC 9162 §8.1.4: a monitor's check of two STHs)."""
    old, new = (a, b) if (a.size, a.root) <= (b.size, b.root) else (b, a)
    if old.size == new.size:
        return HeadComparison("same" if old.root == new.root else "fork", old, new)
    if old.size == 0:  # every tree extends the empty one, whose root is fixed
        return HeadComparison("same" if old.root == EMPTY_ROOT else "fork", old, new)
    return HeadComparison("proof", old, new)


def baseline_for(head: TreeHead, held: Iterable[TreeHead]) -> TreeHead | None:
    """The held head to check ``head`` against: one of the same size if any, else the largest
    smaller one, else the smallest larger one (the shortest consistency proof either way)."""
    best: TreeHead | None = None
    for h in held:
        if h.size == head.size:
            return h
        if best is None:
            best = h
        elif h.size < head.size:
            if best.size > head.size or h.size > best.size:
                best = h
        elif best.size > head.size and h.size < best.size:
            best = h
    return best
