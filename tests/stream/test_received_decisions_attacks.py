"""Adversarial review of the stream's kept decisions at a receiver (issue 18 looked at the receive
path's memo of the label held, keyed by the kept decision's instant): a decision kept per (label,
hub, recipient) until its next event must not outlive an equivalence change stored after it was
made, by this process or another: from the change's instant the tracks are decided, and marked, on
the table with the change (before the fix, JPN kept marking KOR's Class II tracks 極秘 an hour past
the instant KOR's change made them 特定秘密)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import make_request
from tests.duties.conftest import Net, _net
from tests.exchange.test_equivalence_changes import HOUR, _change, _send, _signed
from tests.node_fixtures import missile_label

from gsomia.core.policy import ReleaseDecision
from gsomia.stream import StreamService


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def test_a_receivers_kept_decision_follows_an_equivalence_change_stored_after_it(net: Net) -> None:
    jpn = net.nodes["JPN"]
    start = net.clock.now
    label = missile_label(jpn.catalogue, start - timedelta(minutes=1))

    async def run() -> list[ReleaseDecision]:
        service = StreamService(jpn)
        try:
            decided = []
            for at in (start, start + 2 * HOUR):
                if at != start:  # KOR's change (Class II is 特定秘密 from an hour on) stored at JPN
                    answer = _send(net, "KOR", "JPN", _signed(net, "KOR", _change(net)), "plans-1")
                    assert answer["status"] == "applied"
                    net.clock.now = at
                decision, _ = await service._decide_received(label, "KOR-t1", "KOR", None, "JPN", at)
                decided.append(decision)
            return decided
        finally:
            await service.close()

    before, after = asyncio.run(run())
    assert before.allowed
    assert after.allowed
    assert before.marking is not None
    assert before.marking.classification == "極秘"
    # the engine over the changed table, asked on its own, marks it 特定秘密 from the change's instant
    request = make_request(jpn.catalogue, purpose="missile-warning", created=start - timedelta(minutes=1))
    plain = jpn.engine.decide(replace(request, label=label), at=start + 2 * HOUR)
    assert plain.marking is not None
    assert plain.marking.classification == "特定秘密"
    assert after.marking is not None
    assert after.marking.classification == "特定秘密"  # not the decision kept from before the change
