"""Reviews that fall due and scheduled downgrades (issue 20 §3): the originator's queue, and a
downgrade declared ahead that applies itself when due, here and at the holder, once. An insider
tries to schedule on another's item, to upgrade, to schedule in the past; an author disabled
before the instant does not change anything."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.duties.conftest import Net

from gsomia.errors import InvalidInputError, NotFoundError
from gsomia.exchange import MemoryTransport


def test_the_queue_lists_the_originators_items_whose_review_is_due(net: Net) -> None:
    now = net.clock.now
    net.own_item("KOR", "due", review=(now - timedelta(minutes=5)).isoformat())
    net.own_item("KOR", "later", review=(now + timedelta(days=3)).isoformat())
    net.own_item("KOR", "never")
    kor = net.nodes["KOR"]
    assert [i.id for i in kor.duties.reviews_due(net.officer("KOR"))] == ["due"]
    assert [i.id for i in kor.duties.reviews_due(net.officer("KOR"), now + timedelta(days=4))] == [
        "due",
        "later",
    ]
    low = net.person("KOR", "low", "대외비", ["release_officer"])
    assert kor.duties.reviews_due(low) == []  # cleared below the items: nothing of them


def test_a_scheduled_downgrade_applies_itself_when_due_here_and_at_the_holder(net: Net) -> None:
    net.own_item("KOR", "k1")
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    kor.exchange.release(net.officer("KOR"), "k1", "JPN")
    net.deliver()
    at = net.clock.now + timedelta(hours=2)
    entry = kor.duties.schedule_downgrade(net.officer("KOR"), "k1", "군사III급비밀", at, "briefing is public")
    assert entry.state == "pending"
    runtime = kor.runtime(MemoryTransport(net.nodes))
    runtime.round()  # not due yet: nothing changes
    assert kor.duties.scheduled(net.officer("KOR"), "k1")[0].state == "pending"
    net.clock.advance(hours=2)
    runtime.round()  # due: applied as a reclassification by its author, and its duty message sent
    runtime.stop()
    assert [s.state for s in kor.duties.scheduled(net.officer("KOR"), "k1")] == ["applied"]
    assert kor.items.read(net.officer("KOR"), "k1")[0].label.classification == "군사III급비밀"
    net.deliver()
    held, _ = jpn.items.read(net.officer("JPN"), "k1")
    assert held.label.classification == "군사III급비밀"
    assert kor.duties.apply_due_downgrades() == []  # applied once


def test_only_the_originator_schedules_only_downgrades_only_ahead(net: Net) -> None:
    net.own_item("KOR", "k1")
    kor, jpn = net.nodes["KOR"], net.nodes["JPN"]
    kor.exchange.release(net.officer("KOR"), "k1", "JPN")
    net.deliver()
    later = net.clock.now + timedelta(hours=1)
    with pytest.raises(InvalidInputError):
        jpn.duties.schedule_downgrade(net.officer("JPN"), "k1", "秘", later, "mine now")
    with pytest.raises(InvalidInputError, match="only downgrades"):
        kor.duties.schedule_downgrade(net.officer("KOR"), "k1", "군사I급비밀", later, "up")
    with pytest.raises(InvalidInputError, match="not in the future"):
        kor.duties.schedule_downgrade(net.officer("KOR"), "k1", "군사III급비밀", net.clock.now, "now")
    with pytest.raises(InvalidInputError, match="reason"):
        kor.duties.schedule_downgrade(net.officer("KOR"), "k1", "군사III급비밀", later, " ")
    with pytest.raises(NotFoundError):
        kor.duties.scheduled(net.person("KOR", "low", "대외비", ["release_officer"]), "k1")
    refused = [a for a in net.audit("KOR", "item.schedule-downgrade") if a["outcome"] == "refused"]
    assert len(refused) == 3


def test_a_downgrade_whose_author_was_disabled_fails_and_changes_nothing(net: Net) -> None:
    net.own_item("KOR", "k1")
    kor = net.nodes["KOR"]
    author = net.person("KOR", "author", "군사I급비밀", ["release_officer"])
    kor.duties.schedule_downgrade(
        author, "k1", "군사III급비밀", net.clock.now + timedelta(hours=1), "planned"
    )
    kor.people.set_active(None, "author", False)
    net.clock.advance(hours=1, seconds=1)
    (done,) = kor.duties.apply_due_downgrades()
    assert done.state == "failed"
    assert done.note
    assert kor.items.read(net.officer("KOR"), "k1")[0].label.classification == "군사II급비밀"


def test_reviews_and_scheduling_over_the_api_and_the_command_line(net: Net) -> None:
    import asyncio
    import json as _json

    import httpx
    from typer.testing import CliRunner

    from gsomia.api import create_app
    from gsomia.cli import app as cli

    now = net.clock.now
    net.own_item("KOR", "due", review=(now - timedelta(minutes=5)).isoformat())
    kor = net.nodes["KOR"]
    token = kor.credentials.issue(None, "officer")[1]
    web = create_app(kor)

    def call(method: str, url: str, **kw: object) -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=web)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                return await client.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kw)  # type: ignore[arg-type]

        return asyncio.run(run())

    assert [i["id"] for i in call("GET", "/reviews").json()] == ["due"]
    later = (now + timedelta(hours=1)).isoformat()
    made = call(
        "POST",
        "/items/due/scheduled-downgrades",
        json={"classification": "군사III급비밀", "at": later, "reason": "reviewed"},
    )
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "pending"
    bad = call(
        "POST", "/items/due/scheduled-downgrades", json={"classification": "군사III급비밀", "at": later}
    )
    assert bad.status_code == 422
    assert [s["state"] for s in call("GET", "/items/due/scheduled-downgrades").json()] == ["pending"]
    kor_dir = str(next(m.directory for m in net.members if m.party == "KOR"))
    done = CliRunner().invoke(cli, ["duty", "reviews", "--dir", kor_dir, "--as", "officer", "--json"])
    assert done.exit_code == 0, done.stderr
    assert [i["id"] for i in _json.loads(done.stdout)] == ["due"]
