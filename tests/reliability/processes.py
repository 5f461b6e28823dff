"""Real nodes as processes on loopback, for the fault tests: start, kill, restart, and look inside.

Also what the tests of a node on several processes share: the NATS server and HAProxy they need,
an SSE consumer of the track stream, a release officer keeping an outbox in flow beside the
serving processes, and what a receiver holds (ids and payload hashes) when the flow has ended.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy

from gsomia.demo import network
from gsomia.exchange import HttpTransport
from gsomia.node import NewIngest, Node, load_config
from gsomia.store import ItemFilter, LeaseStore, Store

NATS = os.environ.get("GSOMIA_TEST_NATS_URL", "nats://127.0.0.1:4222")


def _required(what: str, absent: str) -> None:
    """Skip for want of a service, or fail under ``GSOMIA_REQUIRE_SERVICES=1`` (CI has them all)."""
    if os.environ.get("GSOMIA_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} is required (GSOMIA_REQUIRE_SERVICES=1) but {absent}")
    pytest.skip(f"{what} {absent}")


def nats_up() -> bool:
    host, port = NATS.removeprefix("nats://").split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def require_nats() -> None:
    if not nats_up():
        _required("NATS", f"is absent at {NATS}")


def require_haproxy() -> None:
    if shutil.which("haproxy") is None:
        _required("HAProxy", "is not installed")


def balancer(config: Path) -> subprocess.Popen[bytes]:
    """The distribution's HAProxy in the foreground on ``config`` (``network.balancer_config``)."""
    haproxy = shutil.which("haproxy")
    assert haproxy is not None
    return subprocess.Popen(  # noqa: S603 - the distribution's haproxy, our configuration
        [haproxy, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def at(member: network.NetNode, port: int | None) -> network.NetNode:
    """``member`` as served by a process on ``port`` (another process of the same node), or as is."""
    return member if port is None else network.NetNode(member.party, member.directory, port, member.tls)


def spawn(
    member: network.NetNode,
    *,
    sender: bool = False,
    extra: tuple[str, ...] = (),
    nats: bool = False,
) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` for ``member`` started in its own process (its stream on :data:`NATS`
    with ``nats``), not waited for: see :func:`answering`. Its output goes to ``serve-<port>.log``
    in the node's directory."""
    if nats:
        extra = (*extra, "--stream-nats", NATS)
    with open(member.directory / f"serve-{member.port}.log", "ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            network.serve_command(member, "--sender" if sender else "--no-sender", *extra),
            stdout=log,
            stderr=log,
        )


def answering(
    process: subprocess.Popen[bytes], member: network.NetNode, verify: ssl.SSLContext | bool = True
) -> subprocess.Popen[bytes]:
    """``process`` (serving ``member``) once it answers on the member's port; killed, and its log
    named, if it stops first (reported at once) or does not answer within :data:`network.START_S`."""
    try:
        network._wait_healthy(
            member.endpoint,
            network.START_S,
            verify,
            alive=lambda: process.poll() is None,
            log=member.directory / f"serve-{member.port}.log",
        )
    except BaseException:
        kill(process)
        raise
    return process


def serve(
    member: network.NetNode,
    *,
    sender: bool = False,
    extra: tuple[str, ...] = (),
    verify: ssl.SSLContext | bool = True,
    port: int | None = None,
    nats: bool = False,
) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` for ``member`` in its own process (on ``port``: another process of the
    same node), answering when this returns (:func:`spawn`, :func:`answering`)."""
    member = at(member, port)
    return answering(spawn(member, sender=sender, extra=extra, nats=nats), member, verify)


def serve_all(
    starts: Sequence[tuple[network.NetNode, bool]], *, nats: bool = False
) -> list[subprocess.Popen[bytes]]:
    """Several ``node serve`` processes over plain HTTP, each (member on its port, sender), started
    at once and waited for together: on a loaded machine each takes tens of seconds to start, which one after
    another would add up. If one does not start, none is left running."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        for member, sender in starts:
            started.append(spawn(member, sender=sender, nats=nats))
        for process, (member, _) in zip(started, starts, strict=True):
            answering(process, member)
    except BaseException:
        for process in started:
            kill(process)
        raise
    return started


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no warning, no clean shutdown, whatever was in flight is cut."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill(process)


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    """What ``sql`` reads from the database at ``url``, beside the node's running processes."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def scalar(url: str, sql: str) -> int:
    """One number from the database at ``url``, read beside the node's running processes."""
    ((value,),) = rows(url, sql)
    return int(value)


def count(directory: Path, sql: str) -> int:
    """One number from a node's SQLite database, read beside the running process (WAL)."""
    return scalar(f"sqlite:///{directory / 'gsomia.db'}", sql)


def held(directory: Path) -> int:
    return count(directory, "SELECT count(*) FROM items")


def delivery_holders(url: str) -> dict[str, int]:
    """Per peer, the pid of the process of the node on ``url`` (PostgreSQL) that holds its
    delivery's lease now (``deliver:PEER``)."""
    store = Store(url)
    try:
        leases = LeaseStore(store)
        return {r.name.split(":")[1]: int(r.holder.split("/")[1]) for r in leases.running("deliver:")}
    finally:
        store.close()


def received(directory: Path, originator: str, count: int) -> dict[str, str]:
    """The items of ``originator`` a node holds (``count`` expected): id -> the SHA-256 of its
    opened payload."""
    receiver = Node(load_config(directory))
    try:
        found = receiver.store.list_items(ItemFilter(originator=originator), 0, count + 10, with_payload=True)
        return {
            r.id: hashlib.sha256(receiver.cipher.open(r.id, r.label, r.payload)).hexdigest() for r in found
        }
    finally:
        receiver.close()


def received_once(directory: Path, item_ids: Sequence[str]) -> int:
    """How many ``received`` rows a node's inventory holds for ``item_ids`` (one each: exactly once)."""
    receiver = Node(load_config(directory))
    try:
        return sum(1 for i in item_ids for r in receiver.store.inventory(i) if r.kind == "received")
    finally:
        receiver.close()


def audit_verify(*members: network.NetNode) -> None:
    """``gsomia audit verify`` on each member's node, as processes of their own run side by side:
    each log must verify."""
    running = [
        subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [sys.executable, "-m", "gsomia", "audit", "verify", "--dir", str(m.directory)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for m in members
    ]
    for member, process in zip(members, running, strict=True):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{member.party}: {output}"


class Officer:
    """KOR's release officer at work beside the node's serving processes: items ingested and
    released to each of ``peers`` (through the hub ``via`` if given) a chunk at a time, through a
    node of this process on KOR's database. Item ``n`` is ``k{n:05d}``, its payload ``{"n": n}``."""

    def __init__(self, directory: Path, peers: Sequence[str], *, via: str | None = None) -> None:
        self.node = Node(load_config(directory))
        self.officer = self.node.people.person("officer")
        self.peers = tuple(peers)
        self.via = via
        self.label = {
            "originator": "KOR",
            "classification": "군사III급비밀",
            "releasable_to": [*peers, *([via] if via else [])],
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        }
        self.count = 0

    @staticmethod
    def payload(item_id: str) -> bytes:
        return json.dumps({"n": int(item_id[1:])}).encode()

    def release(self, count: int) -> None:
        ids = [f"k{n:05d}" for n in range(self.count, self.count + count)]
        self.node.items.ingest_many(
            self.officer, [NewIngest(self.label, self.payload(i), "json", i) for i in ids]
        )
        self.count += count
        for peer in self.peers:
            released = self.node.exchange.release_many(
                self.officer, ids, peer, via=self.via, authorise_relay=self.via is not None
            )
            assert not released.refused, released.refused
            assert len(released.entries) == len(ids)

    def expected(self) -> dict[str, str]:
        """Every item released: id -> the SHA-256 of its payload."""
        ids = (f"k{n:05d}" for n in range(self.count))
        return {i: hashlib.sha256(self.payload(i)).hexdigest() for i in ids}

    def close(self) -> None:
        self.node.close()


class Reader:
    """An SSE consumer of ``/stream/tracks/sse`` in a thread: (event id, track) as they come, from
    after ``after`` if given (``Last-Event-ID``); it ends when the process under it dies."""

    def __init__(self, endpoint: str, token: str, after: int | None = None) -> None:
        self.events: list[tuple[int, dict[str, Any]]] = []
        self.status: int | None = None
        headers = {"Authorization": f"Bearer {token}"}
        if after is not None:
            headers["Last-Event-ID"] = str(after)
        self._thread = threading.Thread(target=self._run, args=(endpoint, headers), daemon=True)
        self._thread.start()
        wait_for(lambda: self.status is not None, 20, "the stream answering")

    def _run(self, endpoint: str, headers: dict[str, str]) -> None:
        try:
            timeout = httpx.Timeout(10, read=30)
            with httpx.stream(
                "GET", f"{endpoint}/stream/tracks/sse", headers=headers, timeout=timeout
            ) as answer:
                self.status = answer.status_code
                event: dict[str, str] = {}
                for line in answer.iter_lines():
                    if line.startswith(("id: ", "data: ")):
                        key, _, value = line.partition(": ")
                        event[key] = value
                    elif not line and "data" in event:
                        self.events.append((int(event["id"]), json.loads(event["data"])))
                        event = {}
        except httpx.HTTPError:
            return  # the process under the stream died


def audit(node: Node, kind: str) -> list[dict[str, Any]]:
    return [
        {"outcome": r.outcome, "subject": r.subject, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind)
    ]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        time.sleep(0.05)


@contextmanager
def delivering(node: Node, limit: int = 200) -> Iterator[None]:
    """``node``'s delivery loop in a thread of this process (as ``serve --sender`` runs it), for the block."""
    stop_event = threading.Event()

    def loop() -> None:
        with HttpTransport(timeout=5) as transport:
            while not stop_event.is_set():
                if not node.exchange.deliver_due(transport, limit=limit):
                    time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True, name=f"deliver-{node.party}")
    thread.start()
    try:
        yield
    finally:
        stop_event.set()
        thread.join(timeout=20)


class Partition:
    """A TCP relay on loopback between a node and a partner's port, which can be cut and healed.

    Cut, it closes every connection through it and every new one at once (the sender sees
    the network fail, not a refusal); healed, it relays again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._cut = threading.Event()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="partition")
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def heal(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for sock in (source, sink):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
