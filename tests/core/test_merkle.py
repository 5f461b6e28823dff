"""RFC 9162 Merkle trees against an independent, naive reference written straight from the RFC."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.merkle import (
    EMPTY_ROOT,
    Frontier,
    TreeHead,
    baseline_for,
    compare_heads,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from gsomia.errors import ProofError

# --- the reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1, recursively on the data itself ---


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + mth(d[:k]) + mth(d[k:])).digest()


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def source(d: list[bytes]):  # type: ignore[no-untyped-def]
    def node(level: int, index: int) -> bytes:
        return mth(d[index << level : (index + 1) << level])

    return node


leaves = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@given(data=st.lists(st.binary(max_size=8), max_size=300))
def test_the_root_of_a_whole_batch_is_the_rfc_root(data: list[bytes]) -> None:
    """``tree_root`` (level by level, an odd node carried up) is RFC 9162's root at every size."""
    assert tree_root([leaf_hash(leaf) for leaf in data]) == mth(data)


@given(data=leaves)
def test_frontier_root_matches_the_rfc_definition(data: list[bytes]) -> None:
    frontier = Frontier()
    completed = {}
    for n, leaf in enumerate(data, start=1):
        for level, index, h in frontier.append(leaf_hash(leaf)):
            completed[(level, index)] = h
        assert frontier.root() == mth(data[:n])
    for (level, index), h in completed.items():
        assert h == mth(data[index << level : (index + 1) << level])
    assert range_hash(0, len(data), lambda lv, ix: completed[(lv, ix)]) == mth(data)
    assert Frontier(frontier.size, frontier.hashes).root() == frontier.root()


@given(data=leaves, cut=st.integers(min_value=0, max_value=70), start=st.integers(min_value=0, max_value=40))
def test_extend_is_append_leaf_by_leaf(data: list[bytes], cut: int, start: int) -> None:
    """The writer's batch path: the same subtrees, in the same order, and the same frontier, from
    any starting size (a frontier continued from the store) and split anywhere into batches."""
    before = [leaf_hash(bytes([k])) for k in range(start)]
    one, many = Frontier(), Frontier()
    for h in before:
        one.append(h)
        many.append(h)
    hashes = [leaf_hash(leaf) for leaf in data]
    expected = [c for h in hashes for c in one.append(h)]
    got = many.extend(hashes[:cut]) + many.extend(hashes[cut:])
    assert got == expected
    assert (many.size, many.hashes) == (one.size, one.hashes)
    assert many.root() == mth([bytes([k]) for k in range(start)] + data)
    without = Frontier()
    for h in before:
        without.append(h)
    inner = without.extend(hashes[:cut], with_leaves=False) + without.extend(hashes[cut:], with_leaves=False)
    assert inner == [c for c in expected if c[0] > 0]  # the writer's: leaves are kept with the records
    assert (without.size, without.hashes) == (one.size, one.hashes)


@given(data=leaves, pick=st.integers(min_value=0))
@settings(max_examples=200)
def test_inclusion_proofs_match_the_rfc_and_verify(data: list[bytes], pick: int) -> None:
    m = pick % len(data)
    proof = inclusion_proof(m, len(data), source(data))
    assert proof == path(m, data)
    verify_inclusion(leaf_hash(data[m]), m, len(data), proof, mth(data))


@given(data=leaves, pick=st.integers(min_value=0), flip=st.integers(min_value=0))
@settings(max_examples=200)
def test_any_altered_inclusion_proof_fails(data: list[bytes], pick: int, flip: int) -> None:
    m = pick % len(data)
    proof = path(m, data)
    root = mth(data)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(data[m] + b"x"), m, len(data), proof, root)
    if proof:
        i = flip % len(proof)
        bad = [*proof[:i], bytes([proof[i][0] ^ 1]) + proof[i][1:], *proof[i + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(data[m]), m, len(data), bad, root)
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash(data[m]), m, len(data), proof[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(data[m]), m, len(data), [*proof, root], root)


@given(data=leaves, pick=st.integers(min_value=0))
@settings(max_examples=200)
def test_consistency_proofs_match_the_rfc_and_verify(data: list[bytes], pick: int) -> None:
    n = len(data)
    m = pick % n + 1
    proof = consistency_proof(m, n, source(data))
    assert proof == ([] if m == n else subproof(m, data, True))
    verify_consistency(m, n, mth(data[:m]), mth(data), proof)


@given(data=leaves, pick=st.integers(min_value=0), flip=st.integers(min_value=0))
@settings(max_examples=200)
def test_any_altered_consistency_proof_or_forked_root_fails(data: list[bytes], pick: int, flip: int) -> None:
    n = len(data)
    m = pick % n + 1
    proof = subproof(m, data, True) if m < n else []
    forked = mth([*data[: m - 1], data[m - 1] + b"fork"])
    with pytest.raises(ProofError):
        verify_consistency(m, n, forked, mth(data), proof)
    if proof:
        i = flip % len(proof)
        bad = [*proof[:i], bytes([proof[i][0] ^ 1]) + proof[i][1:], *proof[i + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(m, n, mth(data[:m]), mth(data), bad)


def test_known_sizes_and_errors() -> None:
    assert Frontier().root() == EMPTY_ROOT
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b"a"), 3, 3, [], b"")
    with pytest.raises(ProofError):
        verify_consistency(0, 3, b"", b"", [])
    with pytest.raises(ProofError):
        Frontier(3, [EMPTY_ROOT])
    with pytest.raises(ProofError, match="rewritten"):
        verify_consistency(4, 4, b"a" * 32, b"b" * 32, [])


# --- two signed heads of one log compared (the monitors' gossip, issue 14 §4) ---


@given(data=leaves, a=st.integers(min_value=0), b=st.integers(min_value=0))
@settings(max_examples=200)
def test_two_heads_of_one_honest_log_never_compare_as_a_fork(data: list[bytes], a: int, b: int) -> None:
    n = len(data)
    first, second = a % (n + 1), b % (n + 1)
    one, other = TreeHead(first, mth(data[:first])), TreeHead(second, mth(data[:second]))
    comparison = compare_heads(one, other)
    assert comparison == compare_heads(other, one)  # the order they arrive in says nothing
    assert comparison.old.size <= comparison.new.size
    if first == second or min(first, second) == 0:
        assert comparison.verdict == "same"
        comparison.check([])
    else:
        assert comparison.verdict == "proof"
        proof = consistency_proof(comparison.old.size, comparison.new.size, source(data))
        comparison.check(proof)


@given(data=leaves, a=st.integers(min_value=0), b=st.integers(min_value=0))
@settings(max_examples=200)
def test_a_split_view_compares_as_a_fork_or_fails_every_proof(data: list[bytes], a: int, b: int) -> None:
    """The log shown to one partner and the log shown to another differ in one entry: the same
    size is a fork outright; different sizes fail the proof the honest-looking log would serve."""
    n = len(data)
    m = a % n + 1
    other = [*data[: m - 1], data[m - 1] + b"split", *data[m:]]
    size = m + b % (n - m + 1)  # a size the two views share an altered entry under
    shown = TreeHead(size, mth(data[:size]))
    split = TreeHead(size, mth(other[:size]))
    assert compare_heads(shown, split).verdict == "fork"
    with pytest.raises(ProofError):
        compare_heads(shown, split).check([])
    if m < n:
        later = TreeHead(n, mth(other))
        comparison = compare_heads(TreeHead(m, mth(data[:m])), later)
        assert comparison.verdict == "proof"
        with pytest.raises(ProofError):
            comparison.check(consistency_proof(m, n, source(other)))


def test_a_non_empty_log_under_the_empty_root_is_a_fork() -> None:
    empty, bogus = TreeHead(0, EMPTY_ROOT), TreeHead(0, b"\x01" * 32)
    later = TreeHead(3, b"\x02" * 32)
    assert compare_heads(empty, later).verdict == "same"
    assert compare_heads(later, bogus).verdict == "fork"
    assert compare_heads(bogus, empty).verdict == "fork"


def test_the_baseline_is_the_same_size_else_the_nearest_below_else_above() -> None:
    held = [TreeHead(s, bytes([s]) * 32) for s in (4, 9, 16)]
    assert baseline_for(TreeHead(9, b"\x00" * 32), held) == held[1]
    assert baseline_for(TreeHead(12, b"\x00" * 32), held) == held[1]
    assert baseline_for(TreeHead(20, b"\x00" * 32), held) == held[2]
    assert baseline_for(TreeHead(2, b"\x00" * 32), held) == held[0]
    assert baseline_for(TreeHead(2, b"\x00" * 32), list(reversed(held))) == held[0]
    assert baseline_for(TreeHead(12, b"\x00" * 32), list(reversed(held))) == held[1]
    assert baseline_for(TreeHead(5, b"\x00" * 32), []) is None
