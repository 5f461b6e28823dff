"""Attack: an administrator lowers KOR's envelope floor while this node's clock is set back.

The setting's instant is what a replay is measured against: a COSE envelope of KOR's raises the
floor again only if it was sealed more than the skew after the setting. Made on a clock set back,
that instant was before envelopes KOR sealed (and this node saw the effects of) before the setting,
so one of them replayed after the clock is put right undid the lowering. The setting now takes
effect from the latest instant the node's envelope-version rows were changed at, where that is later
than its clock: a clock set back below what the store already recorded does not move the setting
back (docs/SECURITY.md, "The envelope versions a node opens"). What it cannot know, no record of
the store being later, is described there.
"""

from __future__ import annotations

from datetime import timedelta

from tests.exchange.test_exchange import Net, net
from tests.security.test_envelope_downgrade import _answers, _kor_floor, _kor_sent_cose, _odd

__all__ = ["net"]


def test_a_lowering_made_on_a_clock_set_back_below_the_raise_is_not_undone_by_a_replay(net: Net) -> None:
    start = net.clock.now
    net.clock.now = start - timedelta(minutes=2)
    before = _odd(net, "KOR", "c-before", jose=False)  # sealed by KOR before its raise; never delivered
    net.clock.now = start
    _kor_sent_cose(net)  # KOR's COSE raises its floor at (about) ``start``
    assert _kor_floor(net) == (2, "sent")
    net.clock.now = start - timedelta(minutes=20)  # JPN's clock set back
    net.nodes["JPN"].exchange.set_envelope_versions(None, "KOR", 1)
    net.clock.now = start + timedelta(minutes=1)  # put right
    assert _answers(net, [before]) == ["unknown message kind"]  # opened: inside its lifetime
    assert _kor_floor(net) == (1, "set"), "a replay from before the lowering undid it"
    net.clock.now = start + timedelta(minutes=7)  # the control: KOR's fresh COSE raises it
    assert _answers(net, [_odd(net, "KOR", "c-fresh", jose=False)]) == ["unknown message kind"]
    assert _kor_floor(net) == (2, "sent")
