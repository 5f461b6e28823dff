"""A hub's proofs for the tracks it passes on: each range's hash made once per group, the proofs
the same as RFC 9162's, whatever order the tracks are asked for in."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gsomia.core.merkle import Frontier, inclusion_proof, leaf_hash, verify_inclusion
from gsomia.errors import ProofError
from gsomia.stream._origin import Entry, Group, VerifiedGroup


def _group(size: int) -> tuple[VerifiedGroup, bytes]:
    messages = [f'{{"n":{i}}}'.encode() for i in range(size)]
    leaves = [leaf_hash(m) for m in messages]
    frontier = Frontier()
    nodes: dict[tuple[int, int], bytes] = {}
    for leaf in leaves:
        for level, index, value in frontier.append(leaf):
            nodes[(level, index)] = value
    entries = tuple(Entry(i, (), m) for i, m in enumerate(messages))
    verified = VerifiedGroup("KOR", datetime(2026, 1, 1, tzinfo=UTC), Group(b"x", size, entries), leaves)
    return verified, frontier.root()


def _lookup(nodes: dict[tuple[int, int], bytes]) -> Callable[[int, int], bytes]:
    return lambda level, index: nodes[(level, index)]


def test_each_proof_is_rfc9162s_and_verifies_in_any_order() -> None:
    for size in (*range(1, 40), 127, 256, 300):
        for order in (range(size), reversed(range(size)), range(1, size, 2)):
            verified, root = _group(size)
            frontier_nodes: dict[tuple[int, int], bytes] = {}
            frontier = Frontier()
            for leaf in (leaf_hash(e.message) for e in verified.entries):
                for level, index, value in frontier.append(leaf):
                    frontier_nodes[(level, index)] = value
            for i in order:
                entry = verified.entries[i]
                proof = verified.proof(entry)
                assert list(proof) == inclusion_proof(i, size, _lookup(frontier_nodes))
                verify_inclusion(leaf_hash(entry.message), i, size, proof, root)


def test_a_proof_does_not_prove_another_track() -> None:
    verified, root = _group(9)
    a, b = verified.entries[2], verified.entries[5]
    verified.proof(a)  # the ranges it shares with b's are made and kept
    try:
        verify_inclusion(leaf_hash(b.message), a.index, 9, verified.proof(a), root)
    except ProofError:  # b is not leaf 2
        return
    raise AssertionError("another track's leaf verified under a's proof")
