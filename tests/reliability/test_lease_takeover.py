"""Two processes of one node on PostgreSQL, its outbox in full flow to two peers: the delivery is
shared peer by peer (``deliver:JPN`` and ``deliver:USA`` held by different processes, both peers
receiving at once); SIGKILL the process holding JPN's delivery, and the other takes it over within
seconds; every item arrives exactly once at each peer (ids and payload hashes compared), every
outbox entry is settled with a receipt, and every node's audit log verifies.

The flow is kept going by an officer releasing items in chunks from a process of their own (this
test's) on the same database while the node's processes serve, before, during and after the kill:
a backlog queued once is delivered in seconds on a quiet machine, before the split or the kill
could be seen mid-flow."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy
from tests.conftest import postgres_schema
from tests.reliability.processes import kill, serve, stop, wait_for

from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config
from gsomia.node._config import update_settings
from gsomia.store import ItemFilter, LeaseStore, Store

CHUNK = 100  # items per release round of the officer, each to JPN and to USA
BACKLOG = 400  # the officer releases more only while fewer entries than this wait at KOR
PEERS = ("JPN", "USA")


class _Officer:
    """KOR's release officer at work beside the serving processes: items ingested and released
    to JPN and to USA a chunk at a time, through a node of this process on KOR's database."""

    def __init__(self, directory: Path) -> None:
        self.node = Node(load_config(directory))
        self.officer = self.node.people.person("officer")
        self.label = {
            "originator": "KOR",
            "classification": "군사III급비밀",
            "releasable_to": list(PEERS),
            "purpose": "threat-assessment",
            "topics": ["dprk-missile"],
            "created": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
        }
        self.count = 0

    def release(self, count: int = CHUNK) -> None:
        ids = [f"k{n:05d}" for n in range(self.count, self.count + count)]
        self.node.items.ingest_many(
            self.officer, [NewIngest(self.label, _payload(i), "json", i) for i in ids]
        )
        self.count += count
        for peer in PEERS:
            released = self.node.exchange.release_many(self.officer, ids, peer)
            assert not released.refused
            assert len(released.entries) == len(ids)

    def keep_busy(self, url: str) -> None:
        """Another chunk if the backlog ran low: the flow never runs dry while the test watches."""
        if _scalar(url, "SELECT count(*) FROM outbox WHERE kind = 'item' AND state <> 'delivered'") < BACKLOG:
            self.release()

    def expected(self) -> dict[str, str]:
        """Every item released: id -> the SHA-256 of its payload."""
        return {f"k{n:05d}": hashlib.sha256(_payload(f"k{n:05d}")).hexdigest() for n in range(self.count)}

    def close(self) -> None:
        self.node.close()


def _payload(item_id: str) -> bytes:
    return json.dumps({"n": int(item_id[1:])}).encode()


def _scalar(url: str, sql: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(sql).scalar_one())
    finally:
        engine.dispose()


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]
    finally:
        engine.dispose()


def _delivering(url: str) -> dict[str, int]:
    """Per peer, the pid of the process holding its delivery's lease now (``deliver:PEER``)."""
    store = Store(url)
    try:
        leases = LeaseStore(store)
        return {r.name.split(":")[1]: int(r.holder.split("/")[1]) for r in leases.running("deliver:")}
    finally:
        store.close()


def _received(directory: Path, count: int) -> dict[str, str]:
    """The KOR items a receiving node holds (``count`` expected): id -> the SHA-256 of its opened
    payload."""
    receiver = Node(load_config(directory))
    try:
        rows = receiver.store.list_items(ItemFilter(originator="KOR"), 0, count + 10, with_payload=True)
        return {
            r.id: hashlib.sha256(receiver.cipher.open(r.id, r.label, r.payload)).hexdigest() for r in rows
        }
    finally:
        receiver.close()


def _second_process(member: network.NetNode) -> subprocess.Popen[bytes]:
    """Another ``node serve`` of the same node (same directory and database), on a port of its own."""
    return serve(network.NetNode(member.party, member.directory, network.free_port()), sender=True)


_PENDING = {
    peer: f"SELECT count(*) FROM outbox WHERE kind = 'item' AND recipient = '{peer}' AND state <> 'delivered'"  # noqa: S608 - our own fixed parties
    for peer in PEERS
}


def _pending(url: str, peer: str) -> int:
    """How many of KOR's item entries for ``peer`` wait (not yet delivered)."""
    return _scalar(url, _PENDING[peer])


def test_two_processes_deliver_to_different_peers_and_a_killed_ones_peer_is_taken_over(
    tmp_path: Path, postgres_status: str | None
) -> None:
    with postgres_schema(postgres_status) as kor_url:
        members = {m.party: m for m in network.build(tmp_path / "net", database_urls={"KOR": kor_url})}
        kor = members["KOR"]
        # the default five seconds: a round starved for seconds on a loaded machine is no death
        update_settings(kor.directory, lease_seconds=5.0)
        dbs = {p: f"sqlite:///{members[p].directory / 'gsomia.db'}" for p in PEERS}
        processes: list[subprocess.Popen[bytes]] = []
        officer = _Officer(kor.directory)
        try:
            processes += [serve(members[p]) for p in PEERS]
            first = serve(kor, sender=True)
            processes.append(first)
            second = _second_process(kor)
            processes.append(second)
            pids = {first.pid, second.pid}
            officer.release()
            # at once: readings in a row with each process holding one peer's delivery throughout, and
            # both peers holding more items at the last than at the first
            readings: list[tuple[dict[str, int], dict[str, int]]] = []

            def both_at_once() -> bool:
                officer.keep_busy(kor_url)
                readings.append(
                    (_delivering(kor_url), {p: _scalar(dbs[p], "SELECT count(*) FROM items") for p in PEERS})
                )
                split, after = readings[-1]
                if set(split) != set(PEERS) or set(split.values()) != pids:
                    return False
                since = len(readings) - 1  # the first reading of this split, unchanged since
                while since > 0 and readings[since - 1][0] == split:
                    since -= 1
                before = readings[since][1]
                return all(after[p] > before[p] for p in PEERS)

            try:
                wait_for(both_at_once, 300, "each process delivering to one peer, both at once")
            except AssertionError as exc:
                leases = _rows(kor_url, "SELECT name, holder, epoch, expires_us FROM leases")
                raise AssertionError(f"{exc}: processes {pids}, leases {leases}, {readings[-3:]}") from None
            split = readings[-1][0]
            holder = first if split["JPN"] == first.pid else second
            survivor = second if holder is first else first
            # a backlog for JPN big enough to be mid-flow at the kill, and JPN seen receiving from it
            officer.release(3 * CHUNK)
            received = _scalar(dbs["JPN"], "SELECT count(*) FROM items")
            wait_for(
                lambda: _scalar(dbs["JPN"], "SELECT count(*) FROM items") > received, 120, "JPN receiving"
            )
            kill(holder)  # mid-flow: a batch may be on the wire, received and not yet settled
            assert _pending(kor_url, "JPN") > 0, "JPN's delivery ended before the kill"
            officer.release()  # released after the kill: only the survivor can deliver these
            # the lease's five seconds, a third of them to count again, and a loaded machine's delays:
            # waited on, never timed (how fast depends on the machine's load, not on the node)
            wait_for(
                lambda: _delivering(kor_url) == dict.fromkeys(PEERS, survivor.pid),
                120,
                "the survivor taking the killed process's peer over",
            )
            try:
                wait_for(
                    lambda: sum(_pending(kor_url, p) for p in PEERS) == 0, 300, "every outbox entry delivered"
                )
            except AssertionError:
                engine = sqlalchemy.create_engine(kor_url)
                with engine.connect() as conn:
                    states = conn.exec_driver_sql(
                        "SELECT recipient, state, attempts, last_error, count(*)"
                        " FROM outbox GROUP BY 1, 2, 3, 4"
                    ).all()
                engine.dispose()
                raise AssertionError(f"outbox: {states}") from None
        finally:
            officer.close()
            for process in processes:
                stop(process)
        assert _scalar(kor_url, "SELECT count(*) FROM outbox WHERE kind = 'item' AND receipt IS NULL") == 0
        assert _scalar(kor_url, "SELECT epoch FROM leases WHERE name = 'deliver:JPN'") >= 2
        expected = officer.expected()
        count = len(expected)
        for peer in PEERS:
            directory = members[peer].directory
            assert _received(directory, count) == expected  # every item, its own payload, at each peer
            receiver = Node(load_config(directory))
            try:
                inventory = [r for item_id in expected for r in receiver.store.inventory(item_id)]
                received_once = [r for r in inventory if r.kind == "received"]
            finally:
                receiver.close()
            assert len(received_once) == count  # each received once: a resent envelope got its first receipt
            assert _scalar(dbs[peer], "SELECT count(*) FROM inbox WHERE kind = 'item'") == count
        for member in members.values():
            verify = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-m", "gsomia", "audit", "verify", "--dir", str(member.directory)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert verify.returncode == 0, verify.stdout + verify.stderr
