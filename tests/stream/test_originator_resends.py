"""Attack: the originator replays its own updates to a direct partner, each time under a new signature.

An originator's node sends an update again, re-signed, only when its link changed hands before the
partner confirmed it: what the new holder's hand-off consumer gives again, the same queue and the
same bound as a hub's (``HANDOFF_RESENDS`` within 60 s). The partner drops each such update as a
duplicate (it is shown once), but each costs it commits; before, an originator's duplicates were
not counted, so KOR could re-sign and send its old updates to JPN for ever. Now they are counted
in JPN's store with a hub's, and past the bound the link is refused as ``replayed-batch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.stream._kor_jpn import kor_jpn_nodes, kor_messages, resent_to, resigned

from gsomia.node import Node
from gsomia.stream._bus import HANDOFF_RESENDS
from gsomia.testing import FakeClock

LEAVES = 128  # updates a batch of KOR's holds


@pytest.fixture
def kor_jpn(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node, FakeClock]]:
    yield from kor_jpn_nodes(tmp_path, store_url)


def test_an_originator_resending_its_updates_under_new_signatures_loses_its_link(
    kor_jpn: tuple[Node, Node, FakeClock],
) -> None:
    """KOR sends its batch, then the same updates again and again, each time re-signed (a new batch,
    signed a millisecond later), every frame under a window root. JPN takes each update once and
    drops the rest as duplicates, until they are more than a redelivery can be within 60 s: then
    the link is refused as ``replayed-batch``, the count named."""
    kor, jpn, clock = kor_jpn
    messages = kor_messages(kor, LEAVES, "KOR-again")
    batches = HANDOFF_RESENDS // LEAVES + 3  # the first, then past the bound by more than a batch

    refused, shown = resent_to(jpn, kor, resigned(kor, clock, messages, batches))
    assert refused.detail == "replayed-batch"
    assert "more than a redelivery can" in str(refused)
    counted = int(str(refused).split("sent again ")[1].split(" ")[0])
    assert HANDOFF_RESENDS < counted <= HANDOFF_RESENDS + LEAVES
    assert shown == LEAVES  # each update once
