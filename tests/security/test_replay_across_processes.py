"""Attack: a network attacker captures KOR's first link handshake message to JPN and replays it to
the other process of JPN's node (behind one endpoint, a balancer would pick either). The second
process must not answer it either: what one process answered, every process of the node knows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.reliability.processes import serve, stop
from tests.security._live import audit, identity, ring
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from gsomia.demo.network import NetNode, build, free_port
from gsomia.store import LinkHellos, Store
from gsomia.stream._link import initiate


def _answered(endpoint: str, first: bytes) -> bool:
    """Whether the node answers ``first``. A hello it refuses ends the connection at once, and one it
    neither answers nor refuses at the gate's handshake deadline: so the wait is long (a loaded node
    answering late is still an answer), and it ends as soon as the node answers or closes."""
    with connect(endpoint.replace("http", "ws") + "/stream/link", compression=None, open_timeout=10) as ws:
        ws.send(first)
        try:
            ws.recv(timeout=60)
        except (ConnectionClosed, TimeoutError):
            return False
        return True


def test_a_hello_answered_by_one_process_is_refused_by_the_other(tmp_path: Path) -> None:
    members = {m.party: m for m in build(tmp_path / "net")}
    kor, jpn = members["KOR"], members["JPN"]
    other = NetNode("JPN", jpn.directory, free_port())  # a second process of the same JPN node
    processes = [serve(jpn), serve(other)]
    try:
        first, _ = initiate(ring(kor), identity(jpn), datetime.now(UTC))
        assert _answered(jpn.endpoint, first)  # the genuine first sight, at one process
        assert not _answered(other.endpoint, first)  # replayed to the other: no answer
        assert not _answered(jpn.endpoint, first)  # nor again at the first
        fresh, _ = initiate(ring(kor), identity(jpn), datetime.now(UTC))
        assert _answered(other.endpoint, fresh)  # a new hello (a new ephemeral key) is answered
        refused = [
            r
            for r in audit(jpn, "stream.link")
            if r["outcome"] == "refused" and r["detail"]["error"] == "replayed-handshake"
        ]
        assert refused  # the replay is on the record
    finally:
        for process in processes:
            stop(process)


def test_the_answered_hellos_are_forgotten_after_the_memory_window(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    store.migrate()
    hellos = LinkHellos(store)
    try:
        assert hellos.first_sight("aa", 1_000_000, 600_000_000)
        assert not hellos.first_sight("aa", 2_000_000, 600_000_000)  # within the window: a replay
        assert hellos.first_sight("bb", 700_000_000, 600_000_000)  # forgets what is older than the window
        assert hellos.first_sight("aa", 700_000_001, 600_000_000)
        with store._read() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM link_hellos").scalar_one() == 2
    finally:
        store.close()
