"""Adversarial review of a hub that cannot pass an item on (issue 18's batched receive: a batch's one
receipt names every message taken). USA is the TISA hub between KOR and JPN, but its link with JPN is
no longer registered for TISA (Art. 9): a KOR item for JPN through USA must be refused at USA as a
whole, with nothing of it kept there: no copy held, no inbox row, no "allowed" record, no receipt
naming it. KOR then counts no copy at USA, and a copy held there without KOR knowing would escape
KOR's destruction and recall duties."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.exchange.test_exchange import Net, net, own_item

__all__ = ["net"]


def test_a_hub_that_cannot_pass_an_item_on_keeps_nothing_of_it(net: Net) -> None:
    net.clock.now = datetime(2016, 11, 22, tzinfo=UTC)  # before GSOMIA: only TISA through the US
    kor, usa = net.nodes["KOR"], net.nodes["USA"]
    assert "tisa-2014" in usa.exchange.links("JPN")
    onward = sorted(usa.exchange.links("JPN") - {"tisa-2014"})
    usa.exchange.register_peer(None, net.nodes["JPN"].exchange.identity(), onward, replace=True)
    assert "tisa-2014" not in usa.exchange.links("JPN")
    for item_id in ("h1", "h2"):
        own_item(net, "KOR", item_id)
    kor.exchange.release_many(net.officer("KOR"), ["h1", "h2"], "JPN", via="USA", authorise_relay=True)
    results = net.deliver()
    assert {r.state for r in results} == {"undeliverable"}
    assert all("Art. 9" in (r.detail or "") for r in results)
    for item_id in ("h1", "h2"):
        assert usa.store.get_item(item_id) is None  # no copy held at the hub
    allowed = [r for r in net.audit("USA", "envelope.received") if r["outcome"] == "allowed"]
    assert allowed == []
    assert usa.exchange.fed.outbox() == []
    entries = {e.item_id: e for e in kor.exchange.outbox(None)}
    assert all(not e.receipt for e in entries.values())  # no receipt names a message refused
