"""Audit entry ids made in batches (b0ee737, attack review of issue 18) are unique across the processes
of one node: forked workers (whatever state the parent's id making had before the fork) making
batches in the same milliseconds share no id, nor any id's random part. A generator whose state a
fork copies (a seeded PRNG, a pool of random bytes read ahead) would hand two processes the same
ids, which the unique index would then refuse as a failed audit write."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from gsomia.store._store import new_entry_id, new_entry_ids


def _make(start: float) -> list[str]:
    while time.time() < start:  # every worker starts in the same millisecond
        pass
    return [*new_entry_ids(2000), *new_entry_ids(1), new_entry_id()]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="fork only")
def test_forked_processes_making_batches_at_once_share_no_id() -> None:
    new_entry_ids(10)  # the parent made ids before forking
    new_entry_id()
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        batches = pool.map(_make, [time.time() + 0.3] * 3)
    every = [e for batch in batches for e in batch]
    assert len(every) == 3 * 2002
    assert len(set(every)) == len(every)
    assert len({e[13:] for e in every}) == len(every)  # the random parts too, the milliseconds apart
