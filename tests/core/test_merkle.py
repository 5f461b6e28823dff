"""RFC 9162 Merkle trees against an independent, naive reference written straight from the RFC."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gsomia.core.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    range_hash,
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
