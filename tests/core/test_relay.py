"""Relay plans: decided before the first emission, held until the next agreement event."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.conftest import kst

from gsomia import Catalogue, ReleaseEngine
from gsomia.core.policy import Consent, ConsentKind
from gsomia.core.relay import next_event_after, plan_relay
from gsomia.kernel import node_hubs


def _label(catalogue: Catalogue, at: datetime):  # type: ignore[no-untyped-def]
    return catalogue.label(
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=["JPN", "USA"],
        purpose="missile-warning",
        topics=["dprk-missile"],
        created=at,
    )


HUBS = ("USA",)  # KOR's hubs as its agreements name them (TISA: the USA relays)
STANDING = Consent(ConsentKind.HUB_RELAY, "KOR", "JPN", kst(2015, 1, 1), "standing authorisation", hub="USA")


def test_before_gsomia_korea_reaches_japan_only_through_the_usa_with_authorisation(
    catalogue: Catalogue, engine: ReleaseEngine
) -> None:
    at = kst(2016, 8, 3, 7, 50)
    assert node_hubs(catalogue, "KOR") == HUBS  # what a node plans with: the hub from the data
    plan = plan_relay(
        engine, catalogue, _label(catalogue, at), "KOR", ["JPN", "USA"], at=at, consents=[STANDING], hubs=HUBS
    )
    routes = {r.recipient: r for r in plan.routes}
    assert routes["JPN"].allowed
    assert routes["JPN"].name == "via USA"
    assert routes["JPN"].decision.agreement == "tisa-2014"
    assert routes["USA"].name == "direct"
    assert plan.valid_until == kst(2016, 11, 23)  # GSOMIA enters into force then
    bare = plan_relay(engine, catalogue, _label(catalogue, at), "KOR", ["JPN"], at=at, hubs=HUBS)
    assert not bare.routes[0].allowed
    assert any("authorisation" in c.reason for d in bare.routes[0].refused for c in d.failed())


def test_under_gsomia_the_route_is_direct(catalogue: Catalogue, engine: ReleaseEngine) -> None:
    at = kst(2019, 8, 24, 6, 45)
    plan = plan_relay(engine, catalogue, _label(catalogue, at), "KOR", ["JPN"], at=at, hubs=HUBS)
    assert plan.routes[0].name == "direct"
    assert plan.routes[0].decision.agreement == "kor-jpn-gsomia-2016"
    assert plan.holds_at(at.timestamp())
    assert not plan.holds_at(plan.valid_until_ts)


def test_a_termination_ends_the_plan_at_its_instant(catalogue: Catalogue) -> None:
    gsomia = catalogue.agreement("kor-jpn-gsomia-2016")
    ended = kst(2019, 11, 23)
    what_if = catalogue.replacing(gsomia.what_if(without=["2019-11-22-notice-suspended"]))
    at = ended - timedelta(minutes=2)
    plan = plan_relay(ReleaseEngine(what_if), what_if, _label(what_if, at), "KOR", ["JPN"], at=at, hubs=HUBS)
    assert plan.routes[0].allowed
    assert plan.valid_until == ended
    after = plan_relay(
        ReleaseEngine(what_if), what_if, _label(what_if, at), "KOR", ["JPN"], at=ended, hubs=HUBS
    )
    assert not after.routes[0].allowed


def test_the_next_event_counts_consents_and_ignores_the_past(catalogue: Catalogue) -> None:
    at = kst(2030, 1, 1)
    assert next_event_after(catalogue, ["KOR", "JPN"], [], at) is None
    expiring = Consent(ConsentKind.HUB_RELAY, "KOR", "JPN", kst(2015, 1, 1), "r", expires=kst(2031, 1, 1))
    assert next_event_after(catalogue, ["KOR"], [expiring], at) == kst(2031, 1, 1)
