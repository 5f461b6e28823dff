"""Adversarial review of what a node keeps verified past the end of the key that verified it.

A partner's signing key ends by its date (a rotation's overlap runs out): from then on nothing it
signed verifies at this node. What the node keeps as verified between two moves of its store's
counters (the assurances on file, the stream's plans and decisions made on them, a stream link's
session key) must stop counting at that instant, though no counter moves: it carries the end and is
checked against the instant it is asked at. Before the fix, JPN's kept assurances went on counting
KOR's assurance after KOR's key had ended, its kept plan went on sending KOR tracks, and a link
opened with KOR's ended key went on carrying them."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.duties.conftest import Net, _net
from tests.node_fixtures import LinkWire

from gsomia.core.ballistics import track_updates
from gsomia.core.policy import ReleaseRequest
from gsomia.core.relay import MISSILE_WARNING, RelayPlan
from gsomia.crypto.envelope import EnvelopeError, verify_origin
from gsomia.store import PEERS
from gsomia.stream import StreamService, launches
from gsomia.stream._link import BatchSigner, accept, initiate
from gsomia.stream._service import _decided_under, _OutLink

OVERLAP = timedelta(seconds=10)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _kid(jws: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(jws.split(".")[0] + "=="))["kid"])


def _kor_rotates(net: Net) -> set[str]:
    """KOR rotates its keys, the old ones ending after ``OVERLAP``; JPN registers KOR's new document
    (the store's peers counter moves now, and not when the old key ends). The kids of the old key
    KOR's assurances at JPN are signed with."""
    jpn, kor = net.nodes["JPN"], net.nodes["KOR"]
    kids = {_kid(r.jws) for r in jpn.exchange.assurance_store.all() if r.party == "KOR"}
    assert kids
    document = kor.exchange.rotate_keys(None, OVERLAP)
    jpn.exchange.register_peer(None, document, sorted(jpn.exchange.links("KOR")))
    return kids


def test_kept_assurances_stop_counting_when_the_key_that_signed_them_ends(net: Net) -> None:
    jpn = net.nodes["JPN"]
    _kor_rotates(net)
    kept = jpn.exchange.assurances_on_file()  # kept, read after the registration
    assert [a for a in kept if a.party == "KOR"]

    net.clock.advance(seconds=OVERLAP.total_seconds() + 1)
    # the reference: verified afresh at this instant, KOR's assurance does not verify
    rows = [r for r in jpn.exchange.assurance_store.all() if r.party == "KOR"]
    for row in rows:
        with pytest.raises(EnvelopeError):
            verify_origin(row.jws, jpn.exchange.peer, net.clock.now, own=jpn.ring)
    # the kept path gives the same answer, though no counter moved
    assert not [a for a in jpn.exchange.assurances_on_file() if a.party == "KOR"]
    # and a decision at this instant on the tuple kept before does not count it either
    label = jpn.kernel.catalogue.label(
        originator="JPN", classification="極秘", releasable_to=["KOR"], purpose=MISSILE_WARNING,
        topics=["dprk-missile"], created=net.clock.now - timedelta(hours=1),
    )  # fmt: skip
    request = ReleaseRequest(label, "JPN", "KOR", MISSILE_WARNING, assurances=kept)
    decision = jpn.kernel.engine.decide(request, at=net.clock.now)
    assert not decision.allowed
    assert "assurance" in {c.rule for c in decision.failed()}
    plainly = jpn.kernel.engine.decide_plainly(request, at=net.clock.now)
    assert decision.allowed == plainly.allowed


def test_a_plan_kept_before_a_partners_key_ends_no_longer_counts_its_assurance(net: Net) -> None:
    jpn = net.nodes["JPN"]
    launch = launches(2019)[8]
    flight = track_updates(
        launch.fly(), track_id="JPN-key-end", originator="JPN",
        launched=net.clock.now - timedelta(seconds=20), missile_class=launch.missile_class,
    )  # fmt: skip
    update = next(u for u in flight if u.points)
    _kor_rotates(net)

    async def run() -> tuple[RelayPlan, RelayPlan]:
        service = StreamService(jpn)
        try:
            label = service._label(update)
            before = await service._plan(update, label, net.clock.now, _decided_under(service.kernel.watch))
            net.clock.advance(seconds=OVERLAP.total_seconds() + 1)
            after = await service._plan(update, label, net.clock.now, _decided_under(service.kernel.watch))
            return before, after
        finally:
            await service.close()

    before, after = asyncio.run(run())
    assert "KOR" in {r.recipient for r in before.allowed()}
    assert "KOR" not in {r.recipient for r in after.allowed()}  # KOR's assurance no longer verifies


def test_a_link_opened_with_a_partners_key_ends_when_that_key_ends(net: Net) -> None:
    jpn, kor = net.nodes["JPN"], net.nodes["KOR"]

    async def run() -> tuple[bool, bool]:
        service = StreamService(jpn)
        try:
            peer = jpn.exchange.peer("KOR")
            assert peer is not None
            first, finish = initiate(jpn.ring, peer, net.clock.now)
            answer, _ = accept(kor.ring, kor.kernel.peers.peer, first, net.clock.now)
            kid = peer.encryption_key(net.clock.now)[0]  # the key the session was opened with
            generation = jpn.kernel.watch.generation(PEERS)
            link = _OutLink(LinkWire(), finish(answer), BatchSigner(jpn.ring, "KOR"), kid, generation)  # type: ignore[arg-type]
            _kor_rotates(net)  # the peers counter moves: the old key is checked, still in its overlap
            during = service._still_pinned("KOR", link)
            net.clock.advance(seconds=OVERLAP.total_seconds() + 1)  # no counter moves now
            after = service._still_pinned("KOR", link)
            return during, after
        finally:
            await service.close()

    during, after = asyncio.run(run())
    assert during
    assert not after  # the key the session was opened with ended: the link is opened anew
