"""Attack: the same update sent again with its instant spelt another way.

A received update is known by the originator, the recipient, the track and its instant. The instant
was keyed as the text the originator wrote, so ``…Z`` and ``…+00:00``, another offset, or more
fraction digits made the same update a second key: shown again to every reader, and not counted
as the duplicate it is. The key is now the instant as parsed at the boundary (microseconds since the
epoch), the same on SQLite and PostgreSQL (the replay memory is the store's)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from tests.stream._kor_jpn import kor_jpn_nodes, kor_messages, resent_to

from gsomia.node import Node
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock


@pytest.fixture
def kor_jpn(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node, FakeClock]]:
    yield from kor_jpn_nodes(tmp_path, store_url)


def spellings(text: str) -> list[str]:
    """``text`` (an instant with its offset) and four other spellings of the same instant."""
    at = datetime.fromisoformat(text).replace(microsecond=250_000)
    utc = at.astimezone(UTC)
    return [
        at.isoformat(),
        utc.isoformat(),  # +00:00
        utc.isoformat().replace("+00:00", "Z"),
        utc.isoformat(timespec="milliseconds"),  # three fraction digits, not six
        at.astimezone(timezone(timedelta(hours=-5))).isoformat(),  # another offset
    ]


def test_an_update_respelt_is_one_update_shown_once(kor_jpn: tuple[Node, Node, FakeClock]) -> None:
    kor, jpn, clock = kor_jpn
    message = orjson.loads(kor_messages(kor, 1, "KOR-respelt")[0])
    variants = [
        orjson.dumps({**message, "track": {**message["track"], "update_ts": spelt}})
        for spelt in spellings(message["track"]["update_ts"])
    ]

    def bodies() -> Iterator[bytes]:
        for variant in variants:  # each in a batch of its own, signed anew (as KOR would resend it)
            clock.advance(milliseconds=1)
            yield sign_batch(kor.ring, [variant], clock())

    refused, shown = resent_to(jpn, kor, bodies())
    assert refused.detail == "unsigned"  # the link kept to the end: duplicates under the bound
    assert shown == 1, f"the same update shown {shown} times"
    duplicates = [
        json.loads(r.detail)
        for r in jpn.store.audit(kind="stream.receive", limit=100)
        if r.outcome == "duplicate"
    ]
    assert sum(d["count"] for d in duplicates) == len(variants) - 1
