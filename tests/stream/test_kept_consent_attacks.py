"""Adversarial review of the authorisations a stream hub keeps (issue 18's kept decisions).

KOR authorises the USA hub, on a link, to pass its missile tracks on to JPN; the hub verifies that
signed authorisation once, when it arrives, and keeps it in memory. Then KOR's key that signed it
stops being usable: a rotation's overlap runs out, or KOR's key is revoked at the hub. From then on
the authorisation no longer verifies at the hub, and the exchange's decision (which verifies every
consent it counts, at the instant it decides) does not count it: the hub's kept decisions must give
the same answer. Before the fix the hub went on relaying KOR's tracks to JPN on the authorisation
kept, verified once, for as long as the process ran."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.duties.conftest import Net, _net

from gsomia._codec import consent_content
from gsomia.core.policy import Consent, ConsentKind, ReleaseDecision
from gsomia.core.relay import MISSILE_WARNING
from gsomia.crypto.envelope import EnvelopeError, sign_origin, verify_origin
from gsomia.stream import StreamService

OVERLAP = timedelta(seconds=10)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    yield from _net(tmp_path)


def _hub_decides(net: Net, change: str) -> tuple[ReleaseDecision, ReleaseDecision, str]:
    """The USA hub's decision to pass a KOR track on to JPN, on KOR's authorisation received and
    kept, before and after ``change`` (``"ended"``: KOR rotates and the old key's overlap runs out;
    ``"revoked"``: the USA revokes KOR's signing key); and the authorisation."""
    kor, usa = net.nodes["KOR"], net.nodes["USA"]
    now = net.clock.now
    consent = Consent(ConsentKind.TRACK_RELAY, "KOR", "JPN", now, "standing authorisation", hub="USA")
    jws = sign_origin(kor.ring, consent_content(consent, uuid.uuid4().hex), now)
    label = usa.catalogue.label(
        originator="KOR", classification="군사II급비밀", releasable_to=["JPN", "USA"],
        purpose=MISSILE_WARNING, topics=["dprk-missile"], created=now - timedelta(minutes=1),
    )  # fmt: skip

    async def run() -> tuple[ReleaseDecision, ReleaseDecision]:
        service = StreamService(usa)
        try:
            unauthorised, _ = await service._decide_received(label, "KOR-t0", "KOR", "USA", "JPN", now)
            assert not unauthorised.allowed  # the hub passes KOR's tracks on only on its authorisation
            service._keep_consent(jws, "KOR")  # as _receive_consent keeps it from KOR's link
            before, _ = await service._decide_received(label, "KOR-t1", "KOR", "USA", "JPN", net.clock.now)
            if change == "ended":
                document = kor.exchange.rotate_keys(None, OVERLAP)
                usa.exchange.register_peer(None, document, sorted(usa.exchange.links("KOR")))
                net.clock.advance(seconds=OVERLAP.total_seconds() + 1)
            else:
                peer = usa.exchange.peer("KOR")
                assert peer is not None
                kid = next(k.kid for k in peer.keys if k.use == "sig")
                usa.exchange.revoke_peer_key(None, "KOR", kid, net.clock.now)
                net.clock.advance(seconds=1)
            after, _ = await service._decide_received(label, "KOR-t2", "KOR", "USA", "JPN", net.clock.now)
            return before, after
        finally:
            await service.close()

    before, after = asyncio.run(run())
    return before, after, jws


@pytest.mark.parametrize("change", ["ended", "revoked"])
def test_a_hubs_kept_authorisation_stops_counting_when_its_signing_key_does(net: Net, change: str) -> None:
    before, after, jws = _hub_decides(net, change)
    assert before.allowed  # on KOR's authorisation, verified when it came
    # the reference: verified at this instant, the authorisation does not verify at the hub
    usa = net.nodes["USA"]
    with pytest.raises(EnvelopeError):
        verify_origin(jws, usa.exchange.peer, net.clock.now, own=usa.ring)
    assert not after.allowed  # the kept authorisation is not counted either
