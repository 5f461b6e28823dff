"""Adversarial review of the stream's kept plans and decisions (issue 18): they are made on the
assurances on file, which count only those whose signer's key verifies (fail closed), read again
when the assurances, the peers' keys or this node's keys change. A plan or decision kept across a
partner's key revoked must not go on counting the assurance that key signed (before the fix, JPN's
plan kept the track going to KOR after KOR's assurance had stopped counting at JPN)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.duties.conftest import Net, _net

from gsomia.core.ballistics import track_updates
from gsomia.core.relay import RelayPlan
from gsomia.stream import StreamService, launches
from gsomia.stream._service import _decided_under


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def test_a_plan_kept_before_a_partners_key_is_revoked_no_longer_counts_its_assurance(net: Net) -> None:
    jpn = net.nodes["JPN"]
    now = net.clock.now
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(), track_id="JPN-keys", originator="JPN", launched=now - timedelta(seconds=20),
        missile_class=launch.missile_class,
    )  # fmt: skip
    update = next(u for u in flight if u.points)
    # KOR's assurance (Art. 7(5)) is what lets JPN provide to KOR
    assert [a for a in jpn.exchange.assurances_on_file() if a.party == "KOR"]

    kids = {
        json.loads(base64.urlsafe_b64decode(r.jws.split(".")[0] + "=="))["kid"]
        for r in jpn.exchange.assurance_store.all()
        if r.party == "KOR"
    }

    async def run() -> tuple[RelayPlan, RelayPlan]:
        service = StreamService(jpn)
        try:
            label = service._label(update)
            before = await service._plan(update, label, now, _decided_under(service.kernel.watch))
            # KOR's key that signed its assurance is revoked at JPN (the diplomatic channel's word)
            for kid in kids:
                jpn.exchange.revoke_peer_key(None, "KOR", kid, now - timedelta(seconds=1))
            assert not [a for a in jpn.exchange.assurances_on_file() if a.party == "KOR"]
            after = await service._plan(
                update, label, now + timedelta(seconds=1), _decided_under(service.kernel.watch)
            )
            return before, after
        finally:
            await service.close()

    before, after = asyncio.run(run())
    assert "KOR" in {r.recipient for r in before.allowed()}
    assert "KOR" not in {r.recipient for r in after.allowed()}  # its assurance no longer counts
