"""Attack: the lowered floor. An administrator lowered KOR's envelope floor to 1 (KOR went back to a
release that seals JOSE); from then on only KOR's own genuine COSE envelope, addressed to this node
and sealed more than the allowed skew after the setting, raises it again (docs/SECURITY.md, "The
envelope versions a node opens"). ``test_envelope_downgrade.py`` holds the replays from before the
setting and the batch rules; here the adversary's other levers: a process whose copy of the rows
predates the setting (the store's conditional write must hold the line), KOR's envelope to another
party replayed here (beyond its scope), another partner's COSE (the wrong party), this node's clock
set back, and a person who may not set the floor trying to undo the lowering or a raise.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net
from tests.security._nets import three_parties
from tests.security.test_envelope_downgrade import _answers, _kor_floor, _kor_sent_cose, _odd

from gsomia.crypto.envelope import seal
from gsomia.errors import AccessDenied

__all__ = ["net"]
SKEW = timedelta(minutes=5)  # the allowed clock skew (the exchange's default)


def _lowered(net: Net) -> None:
    """KOR's COSE raised its floor to 2; a minute later the operator lowers it to 1, and a minute
    passes."""
    _kor_sent_cose(net)
    assert _kor_floor(net) == (2, "sent")
    net.clock.advance(seconds=60)
    net.nodes["JPN"].exchange.set_envelope_versions(None, "KOR", 1)
    net.clock.advance(seconds=60)


def _jose_heard(net: Net, msg_id: str) -> bool:
    """Whether JPN still opens a JOSE envelope of KOR's (the lowering stands) or refuses it."""
    (answer,) = _answers(net, [_odd(net, "KOR", msg_id)])
    assert answer in ("unknown message kind", "envelope refused"), answer
    return answer == "unknown message kind"


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """The three-party network, on SQLite files or on one PostgreSQL schema per party."""
    yield from three_parties(request.param, tmp_path / "net", postgres_status)


@pytest.mark.parametrize("copy", ["no-row", "an-earlier-lowering"])
def test_a_process_whose_copy_predates_the_lowering_raises_nothing_on_a_replay(
    both: Net, copy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process's copy of the rows was read before another process lowered KOR (its generation
    not moved yet), so the copy does not stop the raise: ``no-row``, read before KOR's row existed;
    ``an-earlier-lowering``, read after an earlier lowering that KOR's fresh COSE then undid, before
    the operator lowered it again. A genuine COSE envelope of KOR's sealed before the (last) lowering
    and never received is replayed: it opens, and the store's conditional write must keep the
    administrator's setting (one conditional statement, on SQLite and on PostgreSQL)."""
    net = both
    jpn = net.nodes["JPN"].exchange
    snapshot = jpn.envelope_versions()
    if copy == "an-earlier-lowering":
        jpn.set_envelope_versions(None, "KOR", 1)
        net.clock.advance(minutes=6)
        snapshot = jpn.envelope_versions()
        assert (snapshot["KOR"].lowest, snapshot["KOR"].cause) == (1, "set")
    unseen = _odd(net, "KOR", "c-unseen", jose=False)  # sealed before the (last) setting
    _lowered(net)
    monkeypatch.setattr(jpn, "_held_versions", lambda: dict(snapshot))
    assert _answers(net, [unseen]) == ["unknown message kind"]  # opened and verified
    assert _kor_floor(net) == (1, "set"), "a stale copy let a replay undo the lowering"
    assert _jose_heard(net, "j-heard")
    net.clock.advance(minutes=6)  # the control: KOR's fresh COSE through the same stale copy raises it
    assert _answers(net, [_odd(net, "KOR", "c-fresh", jose=False)]) == ["unknown message kind"]
    assert _kor_floor(net) == (2, "sent")


def test_kor_s_envelope_to_another_party_replayed_here_never_raises_the_floor(net: Net) -> None:
    """KOR's genuine, fresh COSE envelope addressed to USA (sealed well after the lowering) handed
    to JPN: refused (it is not JPN's), so it raises nothing; KOR's fresh one to JPN does."""
    _lowered(net)
    net.clock.advance(minutes=6)  # past the skew: one addressed to JPN would raise it
    kor = net.nodes["KOR"].exchange
    usa = kor.peer("USA")
    assert usa is not None
    to_usa = seal(
        kor.ring, usa, {"kind": "nonsense"}, msg_id="c-usa", at=net.clock.now, ttl=timedelta(minutes=10)
    )
    assert _answers(net, [to_usa]) == ["envelope refused"]
    assert _kor_floor(net) == (1, "set")
    assert _jose_heard(net, "j-heard")
    assert _answers(net, [_odd(net, "KOR", "c-jpn", jose=False)]) == ["unknown message kind"]  # control
    assert _kor_floor(net) == (2, "sent")
    assert not _jose_heard(net, "j-refused")


def test_another_partner_s_cose_raises_its_own_floor_never_the_lowered_one(net: Net) -> None:
    """USA's genuine COSE after KOR's lowering raises USA's floor, and KOR's stays as set."""
    _lowered(net)
    net.clock.advance(minutes=6)
    assert _answers(net, [_odd(net, "USA", "c-usa", jose=False)]) == ["unknown message kind"]
    rows = net.nodes["JPN"].exchange.envelope_versions()
    assert (rows["USA"].lowest, rows["USA"].cause) == (2, "sent")
    assert (rows["KOR"].lowest, rows["KOR"].cause) == (1, "set")
    assert _jose_heard(net, "j-heard")


def test_a_replay_after_this_node_s_clock_was_set_back_raises_nothing(net: Net) -> None:
    """After the lowering, JPN's clock is stepped back to before it, so that an envelope of KOR's
    sealed before the setting is inside its lifetime again: it opens and raises nothing (the
    setting's instant and the envelope's are both what they were; the clock now is not asked)."""
    start = net.clock.now
    unseen = _odd(net, "KOR", "c-unseen", jose=False)
    _lowered(net)
    net.clock.now = start + timedelta(seconds=10)
    assert _answers(net, [unseen]) == ["unknown message kind"]
    assert _kor_floor(net) == (1, "set")
    assert _jose_heard(net, "j-heard")


@pytest.mark.parametrize(("who", "lowest"), [("officer", 2), ("analyst", 2), ("officer", 1), ("analyst", 1)])
def test_no_one_but_an_administrator_or_security_officer_undoes_or_redoes_a_lowering(
    net: Net, who: str, lowest: int
) -> None:
    """A release officer or an analyst of JPN sets KOR's floor: refused and audited, and the row
    stays as the administrator set it (or, after KOR's fresh COSE, as KOR raised it)."""
    _lowered(net)
    jpn = net.nodes["JPN"]
    person = jpn.people.person(who)
    with pytest.raises(AccessDenied):
        jpn.exchange.set_envelope_versions(person, "KOR", lowest)
    assert _kor_floor(net) == (1, "set")
    net.clock.advance(minutes=6)
    assert _answers(net, [_odd(net, "KOR", "c-fresh", jose=False)]) == ["unknown message kind"]
    with pytest.raises(AccessDenied):
        jpn.exchange.set_envelope_versions(person, "KOR", 1)
    assert _kor_floor(net) == (2, "sent")
    refused: list[Any] = jpn.store.audit(kind="authz.envelope.versions", limit=100)
    assert [(r.actor, r.outcome) for r in refused] == [(who, "refused")] * 2
