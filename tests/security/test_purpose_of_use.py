"""Use only for the purpose provided (ROK–Japan GSOMIA Art. 6(b)): the node's one read decision
refuses a read for another purpose unless the originator consented to that purpose."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from tests.exchange.test_exchange import Net, own_item

from gsomia._codec import consent_content
from gsomia.api import create_app
from gsomia.core.access import Person
from gsomia.core.policy import Consent, ConsentKind
from gsomia.crypto.envelope import sign_origin
from gsomia.demo import network
from gsomia.errors import AccessDenied, InvalidInputError, NotFoundError
from gsomia.exchange import MemoryTransport
from gsomia.store import ItemFilter
from gsomia.testing import FakeClock

KST_2024 = datetime(2024, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = KST_2024
    nodes = network.open_nodes(members, clock)
    yield Net(nodes, members, clock, MemoryTransport(nodes))
    for node in nodes.values():
        node.close()


@pytest.fixture
def held(net: Net) -> Net:
    """KOR's k1 (provided for threat-assessment) delivered to JPN."""
    own_item(net, "KOR", "k1")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "k1", "JPN")
    net.deliver()
    return net


def _for(person: Person, purpose: str) -> Person:
    return replace(person, purpose=purpose)


def _refused_purpose(net: Net, item_id: str) -> str:
    rows = [
        r
        for r in net.nodes["JPN"].store.audit(kind="item.read")
        if (r.outcome, r.subject) == ("refused", item_id)
    ]
    checks = json.loads(rows[-1].detail)["checks"]
    return next(c["reason"] for c in checks if c["rule"] == "purpose" and not c["passed"])


def test_a_read_for_another_purpose_is_refused_like_an_unknown_item(held: Net) -> None:
    """Art. 6(b): the recipient uses the information only for the purpose it was provided for. A
    JPN reader stating another purpose is refused by the one read decision, with the words of an
    unknown item (issue 14 §6); the audit record says it was the purpose. The item's own purpose,
    stated or not, reads as before, and so does every entry point that states none."""
    jpn = held.nodes["JPN"]
    analyst = jpn.people.person("analyst")
    jpn.items.read(analyst, "k1")
    jpn.items.read(_for(analyst, "threat-assessment"), "k1")
    with pytest.raises(NotFoundError) as refused:
        jpn.items.read(_for(analyst, "targeting"), "k1")
    with pytest.raises(NotFoundError) as unknown:
        jpn.items.read(analyst, "no-such-item")
    assert str(refused.value).replace("k1", "X") == str(unknown.value).replace("no-such-item", "X")
    assert "reading it for 'targeting' needs KOR's consent" in _refused_purpose(held, "k1")
    assert jpn.items.list_items(_for(analyst, "targeting"), ItemFilter()).items == ()  # pages ask it too
    assert [i.id for i in jpn.items.list_items(analyst, ItemFilter()).items] == ["k1"]
    with pytest.raises(AccessDenied, match="purpose"):  # a derivative: refused as duty actions are (403)
        jpn.duties.derive(_for(jpn.people.person("officer"), "targeting"), "copy", ["k1"])


def test_the_originators_consent_unlocks_its_purpose_for_its_holder_only(held: Net) -> None:
    """Art. 6(b): "unless the providing party consents otherwise". KOR's signed consent to JPN
    using k1 for training reaches JPN's node; a JPN reader may then read (and copy) k1 for training,
    not for targeting; it names k1, so another KOR item stays refused for training."""
    jpn, kor = held.nodes["JPN"], held.nodes["KOR"]
    own_item(held, "KOR", "k2")
    kor.exchange.release(held.officer("KOR"), "k2", "JPN")
    kor.exchange.grant_purpose(held.officer("KOR"), "k1", "JPN", "training", "KOR MND letter 2024-17")
    held.deliver()
    training = _for(jpn.people.person("analyst"), "training")
    item, _ = jpn.items.read(training, "k1")
    assert item.id == "k1"
    with pytest.raises(NotFoundError):
        jpn.items.read(_for(jpn.people.person("analyst"), "targeting"), "k1")
    with pytest.raises(NotFoundError):
        jpn.items.read(training, "k2")
    jpn.duties.derive(_for(jpn.people.person("officer"), "training"), "copy", ["k1"], item_id="k1-copy")
    reasons = [
        c["reason"]
        for r in jpn.store.audit(kind="item.read")
        if r.outcome == "allowed" and r.subject == "k1"
        for c in json.loads(r.detail)["checks"]
        if c["rule"] == "purpose"
    ]
    assert any("KOR MND letter 2024-17" in r for r in reasons)


def test_a_page_decides_each_item_with_its_own_consents_never_from_a_shared_label(held: Net) -> None:
    """Issue 18: a page decides each label once, but where the item's own consents count (a reader
    stating another purpose) each item is decided on its own. k1 and k2 carry the same label; KOR's
    consent names k1 only: a page for training holds k1 and never k2, whichever comes first, and the
    same page for the item's own purpose holds both."""
    jpn, kor = held.nodes["JPN"], held.nodes["KOR"]
    own_item(held, "KOR", "k2")
    kor.exchange.release(held.officer("KOR"), "k2", "JPN")
    kor.exchange.grant_purpose(held.officer("KOR"), "k1", "JPN", "training", "KOR MND letter 2024-17")
    held.deliver()
    analyst = jpn.people.person("analyst")
    labels = {i.id: i.label for i in jpn.items.list_items(analyst, ItemFilter()).items}
    assert labels.keys() == {"k1", "k2"}
    assert labels["k1"].alternatives == labels["k2"].alternatives
    assert [i.id for i in jpn.items.list_items(_for(analyst, "training"), ItemFilter()).items] == ["k1"]
    assert [i.id for i in jpn.items.list_items(_for(analyst, "targeting"), ItemFilter()).items] == []


def test_a_consent_not_from_the_originator_unlocks_nothing(held: Net) -> None:
    """Art. 6(b): only the providing party consents. A consent in KOR's name signed by the USA, one
    the USA signs in its own name for KOR's item, and KOR's own passed on by the USA are refused by
    JPN's inbox; slipped into JPN's store, the USA's still unlocks nothing. KOR consents only for
    an item it originated and gave the holder."""
    jpn, usa, kor = held.nodes["JPN"], held.nodes["USA"], held.nodes["KOR"]
    now = held.clock.now
    to_jpn = usa.exchange.peer("JPN")
    assert to_jpn is not None
    in_kor_name = Consent(
        ConsentKind.NEW_PURPOSE, "KOR", "JPN", now, "forged", item="k1", purpose="targeting"
    )
    own_name = replace(in_kor_name, originator="USA")
    for consent in (in_kor_name, own_name):
        jws = sign_origin(usa.ring, consent_content(consent, "c" * 32), now)
        entry = usa.exchange.queue(
            to_jpn, {"kind": "purpose-consent", "consent": jws}, "purpose-consent", "k1", now
        )
        usa.exchange.enqueue([entry])
    held.deliver()
    refused = [r["reason"] for r in held.audit("JPN", "envelope.refused")]
    assert any("signed by USA, but speaks for KOR" in r for r in refused)
    assert any("USA originated no item 'k1'" in r for r in refused)
    row, _ = usa.exchange.sign_consent(own_name)
    jpn.exchange.fed.accept(consents=[row])
    with pytest.raises(NotFoundError):
        jpn.items.read(_for(jpn.people.person("analyst"), "targeting"), "k1")
    with pytest.raises(InvalidInputError, match="gave USA no item"):
        kor.exchange.grant_purpose(held.officer("KOR"), "k1", "USA", "training", "not given to the USA")
    with pytest.raises(InvalidInputError, match="only the originator KOR"):  # JPN holds k1, no more
        jpn.exchange.grant_purpose(held.officer("JPN"), "k1", "USA", "training", "not ours")


def test_an_api_caller_states_the_purpose_in_a_header(held: Net) -> None:
    """Art. 6(b) over the API: the Gsomia-Purpose header states the purpose of the request; without
    it each item is read for its own. Another purpose is answered as an unknown item (404); a
    malformed header is a 422 problem."""
    jpn = held.nodes["JPN"]
    token = jpn.credentials.issue(None, "analyst")[1]
    app = create_app(jpn)

    def get(url: str, **headers: str) -> httpx.Response:
        async def run() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as c:
                return await c.get(url, headers={"Authorization": f"Bearer {token}", **headers})

        return asyncio.run(run())

    assert get("/items/k1").status_code == 200
    assert get("/items/k1", **{"Gsomia-Purpose": "threat-assessment"}).status_code == 200
    other = get("/items/k1", **{"Gsomia-Purpose": "targeting"})
    unknown = get("/items/none-such")
    assert (other.status_code, unknown.status_code) == (404, 404)
    assert other.json()["detail"].replace("k1", "X") == unknown.json()["detail"].replace("none-such", "X")
    assert get("/items/k1", **{"Gsomia-Purpose": " "}).status_code == 422
