"""Real nodes as processes on loopback, for the fault tests: start, kill, restart, and look inside."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy

from gsomia.demo import network
from gsomia.exchange import HttpTransport
from gsomia.node import Node


def serve(
    member: network.NetNode,
    *,
    sender: bool = False,
    extra: tuple[str, ...] = (),
    verify: ssl.SSLContext | bool = True,
) -> subprocess.Popen[bytes]:
    """``gsomia node serve`` for ``member`` in its own process, answering on its port when this
    returns. Its output goes to ``serve-<port>.log`` in the node's directory, named when it stops
    before answering (reported at once) or does not answer within :data:`network.START_S`."""
    log_path = member.directory / f"serve-{member.port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            [
                sys.executable,
                "-m",
                "gsomia",
                "node",
                "serve",
                "--dir",
                str(member.directory),
                "--port",
                str(member.port),
                "--sender" if sender else "--no-sender",
                *extra,
            ],
            stdout=log,
            stderr=log,
        )
    try:
        network._wait_healthy(
            member.endpoint, network.START_S, verify, alive=lambda: process.poll() is None, log=log_path
        )
    except BaseException:
        kill(process)
        raise
    return process


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


def count(directory: Path, sql: str) -> int:
    """One number from a node's SQLite database, read beside the running process (WAL)."""
    engine = sqlalchemy.create_engine(f"sqlite:///{directory / 'gsomia.db'}")
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar_one())
    finally:
        engine.dispose()


def held(directory: Path) -> int:
    return count(directory, "SELECT count(*) FROM items")


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
