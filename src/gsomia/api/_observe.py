"""Operating a node's process: the request middleware (a request id, one JSON log line per
request, the request counters) and ``/metrics`` for Prometheus.

The gauges are read from the store when scraped (the outbox's backlog and delivery lag per peer,
the audit records waiting for the Merkle log, each partner's last tree head, the leases' holders),
so every process of a node reports the same; the counters are this process's (requests, stream
tracks, refusals), which the monitoring sums across processes.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gsomia._logs import request_context
from gsomia.core.instants import epoch_us
from gsomia.node import Node
from gsomia.stream import StreamService

__all__ = ["NodeCollector", "RequestObserver", "name_actor"]

_log = logging.getLogger("gsomia.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def name_actor(actor: str) -> None:
    """Name the authenticated person in the current request's log line."""
    context = request_context.get()
    if context is not None:
        context["actor"] = actor


_JSON_TYPES = (b"application/json", b"application/problem+json", b"application/taxii+json")
_NO_STORE = (b"cache-control", b"no-store")


def _answer_headers(given: Iterable[tuple[bytes, bytes]], request_id: bytes) -> list[tuple[bytes, bytes]]:
    """A response's headers with the request's id, and ``Cache-Control: no-store`` when it is JSON
    (its first ``Content-Type``) that sets no ``Cache-Control`` of its own: what a node answers a
    person (items, labels, people, tokens) must not stay in a browser's or a proxy's cache."""
    headers = list(given)  # ASGI allows any iterable: read once
    kind = None
    cached = False
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-type":
            if kind is None:
                kind = value
        elif lower == b"cache-control":
            cached = True
    if not cached and kind is not None and kind.split(b";", 1)[0].strip().startswith(_JSON_TYPES):
        headers.append(_NO_STORE)
    headers.append((b"x-request-id", request_id))
    return headers


class RequestObserver:
    """Each HTTP request: an id (the caller's ``X-Request-ID`` when well formed, else a new one),
    echoed in the response; one log line when it ends (method, route template, status, duration,
    actor; never the query string, a header's value or a body); its duration in ``histogram``; and
    ``Cache-Control: no-store`` on a JSON answer that sets none (:func:`_answer_headers`). One
    middleware, one copy of each response's headers: two (this and a no-store one of its own) each
    copied and searched them (issue 18, benchmarks/JOURNAL.md, bench_load, 2026-12-08)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram
        # the histogram's series by (method, route template, status): its ``labels`` look-up (a lock,
        # the labels checked) each request cost as much as the rest of this middleware (issue 18);
        # no more series than the histogram itself keeps
        self._series: dict[tuple[str, str, str], Any] = {}
        self._ids: list[str] = []  # new request ids not yet given, made _IDS_AT_ONCE at a time

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:  # the last one given, as a dict of the headers has it
            if name == b"x-request-id":
                given = value
        text = given.decode("latin-1")
        request_id = text if _REQUEST_ID.fullmatch(text) else self._new_id()
        id_bytes = request_id.encode()
        context = {"request_id": request_id}
        token = request_context.set(context)
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": _answer_headers(message.get("headers", ()), id_bytes)}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"  # bounded: the app's routes
            key = (scope["method"], template, str(status))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self.histogram.labels(*key)
            series.observe(elapsed)
            _log.info(
                "%s %s %d",
                scope["method"],
                template,
                status,
                extra={"route": template, "status": status, "duration_ms": round(elapsed * 1000, 2)},
            )
            request_context.reset(token)

    def _new_id(self) -> str:
        """A new request id: 128 random bits written as 32 hex digits (uuid4's text, without its
        object), from one ``os.urandom`` read for ``_IDS_AT_ONCE`` ids. A read a request was a system
        call on the event loop that let go of the interpreter lock, which a read thread then held
        until its next turn (issue 18, benchmarks/JOURNAL.md, bench_load's thirteenth pass). Each id is
        given once (``list.pop`` is atomic); ids are never derived from one another."""
        try:
            return self._ids.pop()
        except IndexError:
            digits = os.urandom(16 * _IDS_AT_ONCE).hex()
            made = [digits[k : k + 32] for k in range(0, len(digits), 32)]
            request_id = made.pop()
            self._ids = made
            return request_id


_IDS_AT_ONCE = 256


def request_histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "gsomia_http_request_duration_seconds",
        "HTTP requests this process answered, by method, route template and status",
        ["method", "route", "status"],
        registry=registry,
    )


class NodeCollector(Collector):
    """The node's gauges (from the store) and this process's counters, read at each scrape."""

    def __init__(self, node: Node, stream: StreamService, runtime: Callable[[], Any]) -> None:
        self.node = node
        self.stream = stream
        self.runtime = runtime  # the process's NodeRuntime, or None when it runs no background work

    def collect(self) -> Iterable[Metric]:
        now_us = epoch_us(self.node.clock())
        yield from self._outbox(now_us)
        yield from self._audit(now_us)
        yield from self._leases()
        yield from self._listening()
        yield from self._stream()
        refusals = CounterMetricFamily(
            "gsomia_refusals",
            "Refusals this process recorded, by audit kind and error",
            labels=["kind", "error"],
        )
        for (kind, error), count in sorted(self.node.kernel.refusals.counts().items()):
            refusals.add_metric([kind, error], count)
        yield refusals

    def _outbox(self, now_us: int) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "gsomia_outbox_depth", "Outbox entries waiting for delivery, per next hop", labels=["peer"]
        )
        lag = GaugeMetricFamily(
            "gsomia_outbox_lag_seconds",
            "How long the oldest waiting outbox entry has waited, per next hop (0: none waits)",
            labels=["peer"],
        )
        for peer, entry in self.node.metrics.outbox().items():
            depth.add_metric([peer], entry.count)
            oldest = entry.oldest_us
            lag.add_metric([peer], max(0.0, (now_us - oldest) / 1e6) if oldest is not None else 0.0)
        yield depth
        yield lag

    def _audit(self, now_us: int) -> Iterable[Metric]:
        waiting = self.node.metrics.unintegrated()
        yield GaugeMetricFamily(
            "gsomia_audit_unintegrated", "Audit records not yet in the Merkle log", value=waiting.count
        )
        lag = 0.0 if waiting.oldest_us is None else max(0.0, (now_us - waiting.oldest_us) / 1e6)
        yield GaugeMetricFamily(
            "gsomia_audit_integration_lag_seconds",
            "How long the oldest audit record not yet in the Merkle log has waited",
            value=lag,
        )
        age = GaugeMetricFamily(
            "gsomia_partner_head_age_seconds",
            "Time since each partner's newest signed tree head was received",
            labels=["partner"],
        )
        for partner, received_us in sorted(self.node.metrics.partner_heads().items()):
            age.add_metric([partner], max(0.0, (now_us - received_us) / 1e6))
        yield age

    def _leases(self) -> Iterable[Metric]:
        runtime = self.runtime()
        here = GaugeMetricFamily(
            "gsomia_lease_held",
            "1 when this process holds the lease of a kind of background work (or of a stream link)",
            labels=["lease"],
        )
        held = {} if runtime is None else {n: lease.epoch is not None for n, lease in runtime.leases.items()}
        if self.stream.leases_links:  # each outbound stream link's lease (a node of several processes)
            held.update({f"link:{p}": self.stream.holds_link(p) for p in self.stream.recipients})
        for name, holds in sorted(held.items()):
            here.add_metric([name], 1.0 if holds else 0.0)
        yield here
        holders = GaugeMetricFamily(
            "gsomia_lease_holder",
            "The process holding each running lease (1) and its epoch, as the store has them",
            labels=["lease", "holder"],
        )
        epochs = GaugeMetricFamily(
            "gsomia_lease_epoch", "Each lease's epoch (a new holder moves it on)", labels=["lease"]
        )
        stored = self.node.metrics.leases()
        for row in stored.leases:
            if row.expires_us > stored.now_us:
                holders.add_metric([row.name, row.holder], 1.0)
            epochs.add_metric([row.name], row.epoch)
        yield holders
        yield epochs

    def _listening(self) -> Iterable[Metric]:
        watch = self.node.kernel.watch
        yield CounterMetricFamily(
            "gsomia_change_reads",
            "Reads of the store's generation counters by this process's caches (polls, and reads "
            "a change here or a notification asked for)",
            value=watch.reads,
        )
        yield GaugeMetricFamily(
            "gsomia_change_poll_interval_seconds",
            "The seconds between two polls of the generation counters now: 5 while the listener is "
            "connected (a safety net: notifications tell of each change), 0.25 otherwise",
            value=watch.interval,
        )
        listener = watch.listener
        if listener is None:  # SQLite (one process), or not serving: polling only, nothing to watch
            return
        yield GaugeMetricFamily(
            "gsomia_change_listener_connected",
            "1 while this process LISTENs for the node's changes on PostgreSQL (0: reconnecting; the "
            "caches poll the store every 250 ms meanwhile)",
            value=1.0 if listener.connected.is_set() else 0.0,
        )

    def _stream(self) -> Iterable[Metric]:
        stats = self.stream.stats
        for name, value, text in (
            ("published", stats.published, "Tracks published at this process"),
            ("received", stats.received, "Tracks received from partners' links"),
            ("relayed", stats.relayed, "Tracks relayed on (a hub)"),
            ("emitted", stats.emitted, "Tracks emitted to this node's consumers"),
            ("refused", stats.refused, "Tracks refused"),
            ("link_errors", stats.link_errors, "Stream link failures"),
            ("dropped", stats.dropped, "Tracks consumers lost, more than the bus holds behind for them"),
        ):
            yield CounterMetricFamily(f"gsomia_stream_{name}", text, value=value)
        sent = CounterMetricFamily("gsomia_stream_sent", "Tracks sent, per partner link", labels=["peer"])
        for peer, count in sorted(stats.sent.items()):
            sent.add_metric([peer], count)
        yield sent
        frames = CounterMetricFamily(
            "gsomia_stream_frames",
            "Frames of tracks sent, per partner link (tracks a frame: sent / frames)",
            labels=["peer"],
        )
        for peer, count in sorted(stats.frames.items()):
            frames.add_metric([peer], count)
        yield frames


def metrics_registry(
    node: Node, stream: StreamService, runtime: Callable[[], Any]
) -> tuple[CollectorRegistry, Histogram]:
    """A registry of its own for one app (several apps may share a process: the tests)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node, stream, runtime))
    return registry, request_histogram(registry)
