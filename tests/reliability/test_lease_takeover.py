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

import subprocess
from pathlib import Path

from tests.conftest import postgres_schema
from tests.reliability.processes import (
    Officer,
    audit_verify,
    delivery_holders,
    kill,
    received,
    received_once,
    rows,
    scalar,
    serve,
    stop,
    wait_for,
)

from gsomia.demo import network
from gsomia.demo.network import free_port
from gsomia.node._config import update_settings

CHUNK = 100  # items per release round of the officer, each to JPN and to USA
BACKLOG = 400  # the officer releases more only while fewer entries than this wait at KOR
PEERS = ("JPN", "USA")


def _keep_busy(officer: Officer, url: str) -> None:
    """Another chunk if the backlog ran low: the flow never runs dry while the test watches."""
    if scalar(url, "SELECT count(*) FROM outbox WHERE kind = 'item' AND state <> 'delivered'") < BACKLOG:
        officer.release(CHUNK)


_PENDING = {
    peer: f"SELECT count(*) FROM outbox WHERE kind = 'item' AND recipient = '{peer}' AND state <> 'delivered'"  # noqa: S608 - our own fixed parties
    for peer in PEERS
}


def _pending(url: str, peer: str) -> int:
    """How many of KOR's item entries for ``peer`` wait (not yet delivered)."""
    return scalar(url, _PENDING[peer])


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
        officer = Officer(kor.directory, PEERS)
        try:
            processes += [serve(members[p]) for p in PEERS]
            first = serve(kor, sender=True)
            processes.append(first)
            second = serve(kor, port=free_port(), sender=True)  # another process of the same node
            processes.append(second)
            pids = {first.pid, second.pid}
            officer.release(CHUNK)
            # at once: readings in a row with each process holding one peer's delivery throughout, and
            # both peers holding more items at the last than at the first
            readings: list[tuple[dict[str, int], dict[str, int]]] = []

            def both_at_once() -> bool:
                _keep_busy(officer, kor_url)
                holding = {p: scalar(dbs[p], "SELECT count(*) FROM items") for p in PEERS}
                readings.append((delivery_holders(kor_url), holding))
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
                leases = rows(kor_url, "SELECT name, holder, epoch, expires_us FROM leases")
                raise AssertionError(f"{exc}: processes {pids}, leases {leases}, {readings[-3:]}") from None
            split = readings[-1][0]
            holder = first if split["JPN"] == first.pid else second
            survivor = second if holder is first else first
            # a backlog for JPN big enough to be mid-flow at the kill, and JPN seen receiving from it
            officer.release(3 * CHUNK)
            before = scalar(dbs["JPN"], "SELECT count(*) FROM items")
            wait_for(lambda: scalar(dbs["JPN"], "SELECT count(*) FROM items") > before, 120, "JPN receiving")
            kill(holder)  # mid-flow: a batch may be on the wire, received and not yet settled
            assert _pending(kor_url, "JPN") > 0, "JPN's delivery ended before the kill"
            officer.release(CHUNK)  # released after the kill: only the survivor can deliver these
            # the lease's five seconds, a third of them to count again, and a loaded machine's delays:
            # waited on, never timed (how fast depends on the machine's load, not on the node)
            wait_for(
                lambda: delivery_holders(kor_url) == dict.fromkeys(PEERS, survivor.pid),
                120,
                "the survivor taking the killed process's peer over",
            )
            try:
                wait_for(
                    lambda: sum(_pending(kor_url, p) for p in PEERS) == 0, 300, "every outbox entry delivered"
                )
            except AssertionError:
                states = rows(
                    kor_url,
                    "SELECT recipient, state, attempts, last_error, count(*) FROM outbox GROUP BY 1, 2, 3, 4",
                )
                raise AssertionError(f"outbox: {states}") from None
        finally:
            officer.close()
            for process in processes:
                stop(process)
        # every item receipted: its own receipt, or its batch's (stored once, named by receipt_id)
        unreceipted = (
            "SELECT count(*) FROM outbox WHERE kind = 'item' AND receipt IS NULL AND receipt_id IS NULL"
        )
        assert scalar(kor_url, unreceipted) == 0
        assert scalar(kor_url, "SELECT epoch FROM leases WHERE name = 'deliver:JPN'") >= 2
        expected = officer.expected()
        count = len(expected)
        for peer in PEERS:
            directory = members[peer].directory
            assert received(directory, "KOR", count) == expected  # every item, its own payload, at each peer
            # each received once: a resent envelope got its first receipt
            assert received_once(directory, list(expected)) == count
            assert scalar(dbs[peer], "SELECT count(*) FROM inbox WHERE kind = 'item'") == count
        audit_verify(*members.values())
