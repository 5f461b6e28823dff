"""Operating a node: /metrics for Prometheus (an administrator's only; the outbox's depth and lag
per peer, the audit log's lag, the leases, refusals), a request id on every answer and one JSON
log line per request, naming the actor and never the token."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from tests.node_fixtures import serving

from gsomia._logs import JsonFormatter
from gsomia.api import create_app
from gsomia.api._observe import RequestObserver, request_histogram
from gsomia.demo import network
from gsomia.node import Node
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, 9, tzinfo=UTC)


@pytest.fixture
def kor(tmp_path: Path) -> Iterator[tuple[Node, dict[str, str], FakeClock]]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = NOW
    nodes = network.open_nodes(members, clock)
    tokens = {who: nodes["KOR"].credentials.issue(None, who)[1] for who in ("admin", "officer", "analyst")}
    yield nodes["KOR"], tokens, clock
    for node in nodes.values():
        node.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _release(node: Node, item_id: str) -> None:
    officer = node.people.person("officer")
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (node.clock() - timedelta(hours=1)).isoformat(),
    }
    node.items.ingest(officer, label=label, payload=b'{"track": 1}', item_id=item_id)
    node.exchange.release(officer, item_id, "JPN")


def test_metrics_are_an_administrators_and_a_refusal_is_counted(
    kor: tuple[Node, dict[str, str], FakeClock],
) -> None:
    node, tokens, _ = kor
    answers: list[httpx.Response] = []

    async def script(client: httpx.AsyncClient) -> None:
        answers.append(await client.get("/metrics"))
        answers.append(await client.get("/metrics", headers={"Authorization": f"Bearer {tokens['analyst']}"}))
        answers.append(await client.get("/metrics", headers={"Authorization": f"Bearer {tokens['admin']}"}))

    serving(create_app(node), script)
    assert [a.status_code for a in answers[:2]] == [401, 403]
    answer = answers[2]
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = _samples(answer.text)
    assert (
        samples[("gsomia_refusals_total", (("error", "AccessDenied"), ("kind", "authz.metrics.read")))] == 1
    )
    assert [r.kind for r in node.store.audit(kind="authz.metrics.read")] == ["authz.metrics.read"]


def _scrape(node: Node, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    texts: list[str] = []

    async def script(client: httpx.AsyncClient) -> None:
        answer = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        texts.append(answer.text)

    serving(create_app(node), script)
    return _samples(texts[0])


def test_outbox_depth_and_lag_per_peer_and_the_audit_logs_lag(
    kor: tuple[Node, dict[str, str], FakeClock],
) -> None:
    node, tokens, clock = kor
    _release(node, "k1")
    _release(node, "k2")
    clock.advance(seconds=30)
    samples = _scrape(node, tokens["admin"])
    assert samples[("gsomia_outbox_depth", (("peer", "JPN"),))] == 2
    assert samples[("gsomia_outbox_depth", (("peer", "USA"),))] == 0  # a registered peer with nothing waiting
    assert samples[("gsomia_outbox_lag_seconds", (("peer", "JPN"),))] == pytest.approx(30)
    assert samples[("gsomia_outbox_lag_seconds", (("peer", "USA"),))] == 0
    assert samples[("gsomia_audit_unintegrated", ())] > 0
    assert samples[("gsomia_audit_integration_lag_seconds", ())] >= 30
    node.audit.integrate()
    assert _scrape(node, tokens["admin"])[("gsomia_audit_integration_lag_seconds", ())] < 30


def test_the_process_reports_the_leases_it_holds(kor: tuple[Node, dict[str, str], FakeClock]) -> None:
    node, tokens, _ = kor
    seen: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]] = []

    async def script(client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 120
        while True:
            answer = await client.get("/metrics", headers={"Authorization": f"Bearer {tokens['admin']}"})
            samples = _samples(answer.text)
            if all(
                samples.get(("gsomia_lease_held", (("lease", n),))) == 1
                for n in ("outbox", "audit", "gossip")
            ):
                seen.append(samples)
                return
            assert time.monotonic() < deadline, answer.text
            await asyncio.sleep(0.1)

    serving(create_app(node, sender=True, sender_interval=0.05), script)
    samples = seen[0]
    holders = [labels for name, labels in samples if name == "gsomia_lease_holder"]
    assert {dict(labels)["lease"] for labels in holders} == {"outbox", "audit", "gossip"}
    assert samples[("gsomia_lease_epoch", (("lease", "outbox"),))] == 1


def test_every_answer_has_a_request_id_and_one_json_line_naming_the_actor_not_the_token(
    kor: tuple[Node, dict[str, str], FakeClock],
) -> None:
    node, tokens, _ = kor
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("gsomia.request")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        token = tokens["officer"]
        answers: list[httpx.Response] = []

        async def script(client: httpx.AsyncClient) -> None:
            auth = {"Authorization": f"Bearer {token}", "X-Request-ID": "trace-42"}
            answers.append(await client.get("/items/nothing-here", headers=auth))
            answers.append(await client.get("/healthz", headers={"X-Request-ID": 'a b" <script>'}))
            answers.append(await client.get("/healthz", headers={"X-Request-ID": "x" * 65}))

        serving(create_app(node), script)
        mine, forged, long = answers
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert mine.headers["x-request-id"] == "trace-42"
    assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])  # not echoed: a new id
    assert re.fullmatch(r"[0-9a-f]{32}", long.headers["x-request-id"])
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    first = next(r for r in logged if r["request_id"] == "trace-42")
    assert first["actor"] == "officer"
    assert first["route"] == "/items/{item_id}"  # the template: bounded, no ids of items
    assert first["status"] == mine.status_code == 404
    assert first["level"] == "info"
    assert "duration_ms" in first
    assert token not in lines.getvalue()
    assert "nothing-here" not in lines.getvalue()
    assert {r["request_id"] for r in logged} == {
        "trace-42",
        forged.headers["x-request-id"],
        long.headers["x-request-id"],
    }


def test_new_request_ids_are_each_new_128_random_bits_past_each_batch_of_them() -> None:
    """Ids are made from one random read for many (``_IDS_AT_ONCE``): over three batches' worth of
    requests, each answer's id is 32 hex digits and none is given twice, in this observer or in
    another one."""
    from gsomia.api._observe import _IDS_AT_ONCE

    async def answer(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def ids(observer: RequestObserver, count: int) -> list[str]:
        given: list[str] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                given.append(dict(message["headers"])[b"x-request-id"].decode())

        async def run() -> None:
            for _ in range(count):
                scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
                await observer(scope, lambda: None, send)

        asyncio.run(run())
        return given

    made = ids(RequestObserver(answer, request_histogram(CollectorRegistry())), 3 * _IDS_AT_ONCE + 1)
    other = ids(RequestObserver(answer, request_histogram(CollectorRegistry())), _IDS_AT_ONCE)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made + other)
    assert len(set(made + other)) == len(made) + len(other)


def test_a_json_answer_is_no_store_unless_it_says_otherwise_and_every_answer_has_its_id() -> None:
    """The one middleware's one copy of the headers (it was two middlewares' two): a JSON answer (its
    first ``Content-Type``, any of the three JSON types, any case) gets ``no-store`` when it sets no
    ``Cache-Control``; one that sets its own keeps it alone; no other answer gets one; each its id."""
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    def answering(headers: list[tuple[bytes, bytes]]) -> Any:
        async def app(_scope: Any, _receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})

        return app

    cases = [
        ([(b"content-type", b"application/json")], True),
        ([(b"Content-Type", b"application/problem+json; charset=utf-8")], True),
        ([(b"content-type", b" application/taxii+json;version=2.1")], True),
        ([(b"content-type", b"application/json"), (b"Cache-Control", b"max-age=60")], False),
        ([(b"content-type", b"text/html"), (b"content-type", b"application/json")], False),
        ([(b"content-type", b"text/event-stream")], False),
        ([], False),
    ]
    for headers, no_store in cases:
        given = list(headers)
        observer = RequestObserver(answering(headers), request_histogram(CollectorRegistry()))
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-request-id", b"id-1")]}
        sent.clear()
        asyncio.run(observer(scope, _nothing, send))
        out = sent[0]["headers"]
        assert headers == given  # the app's own list is not changed
        assert out[: len(headers)] == headers
        assert out[-1] == (b"x-request-id", b"id-1")
        assert ((b"cache-control", b"no-store") in out) is no_store, headers
        assert len(out) == len(headers) + 1 + no_store
        assert sent[1] == {"type": "http.response.body", "body": b"{}"}


async def _nothing() -> Any:
    return {"type": "http.disconnect"}
