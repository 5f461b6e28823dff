"""Issue 17, shown whole: KOR and JPN each run as two ``node serve`` processes behind HAProxy, each
node on its own PostgreSQL schema with its track stream in NATS JetStream.

- KOR's officer releases 10,000 items to JPN; the KOR process holding the delivery lease for JPN
  (``deliver:JPN``) is killed with SIGKILL in the middle. The other process takes the lease over,
  and every item arrives at JPN exactly once (ids and SHA-256 of payloads compared).
- An analyst follows KOR's tracks over SSE on the process that is killed; tracks are published
  through the other process before the kill, while the analyst is away and after they are back.
  They reconnect to the other process with ``Last-Event-ID`` and miss no track and see none twice:
  the event ids are one sequence across both processes, the same an analyst on the other process
  saw throughout.
- While the survivor takes over, JPN's operator revokes the USA's signing key (told it leaked) with
  ``gsomia peer revoke-key``, a process of its own: within a second both serving processes of JPN
  refuse an envelope signed with it, which they accepted just before, and audit the refusal.
- ``gsomia audit verify`` is ok on every node afterwards.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import postgres_schema
from tests.reliability.processes import (
    Officer,
    Reader,
    at,
    audit_verify,
    balancer,
    delivery_holders,
    kill,
    received,
    received_once,
    require_haproxy,
    require_nats,
    rows,
    scalar,
    serve_all,
    stop,
    wait_for,
)
from tests.security._live import audit, deliver, forged_item, operator, tokens, until

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import NetNode, _wait_healthy, balancer_config, build, free_port
from gsomia.node import Node
from gsomia.stream import launches, replay

pytestmark = pytest.mark.slow

TOTAL = 10_000  # items KOR releases to JPN
CHUNK = 1_000  # items the officer releases at a time (the most one release takes)
USA_JPN = "usa-jpn-gsomia-2007"
SECOND = 1.0  # the promise: a change in the store is in force in every process within this

_FROM_KOR = "SELECT count(*) FROM items WHERE originator = 'KOR'"
_WAITING = "SELECT count(*) FROM outbox WHERE kind = 'item' AND state <> 'delivered'"
_OUTBOX = "SELECT kind, recipient, state, last_error, count(*) FROM outbox GROUP BY 1, 2, 3, 4"


class _Releasing:
    """The officer releasing ``TOTAL`` items a chunk at a time, in a thread beside the test: the flow
    goes on before, during and after the kill."""

    def __init__(self, officer: Officer) -> None:
        self.officer = officer
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="officer")
        self._thread.start()

    def _run(self) -> None:
        try:
            while self.officer.count < TOTAL:
                self.officer.release(CHUNK)
        except BaseException as exc:  # handed to the test by done()
            self.error = exc

    def done(self) -> bool:
        if self.error is not None:
            raise self.error
        return not self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(timeout=600)


def _publish(process: NetNode, officer_token: str, update: dict[str, Any]) -> None:
    answer = httpx.post(
        f"{process.endpoint}/stream/tracks",
        json=update,
        headers={"Authorization": f"Bearer {officer_token}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text


def _revoked_at_jpn_is_refused_by_both_processes(usa: NetNode, jpn: NetNode, jpns: list[NetNode]) -> None:
    """JPN's operator revokes the USA's signing key (told it leaked) beside JPN's serving processes;
    a second later each refuses what it stored just before, and says so in JPN's audit log. The
    USA's node does not run: its key ring is what the adversary holds."""
    leaked = Node.open(usa.directory, migrate=False)
    try:

        def envelope(item_id: str) -> str:
            return forged_item(
                leaked, "JPN", item_id, agreement="usa-jpn-gsomia-2007", classification="SECRET"
            )

        kid, _ = leaked.ring.signing_key(leaked.clock())
        for n, process in enumerate(jpns):  # each process has the key in use
            assert deliver(process, envelope(f"usa-before-{n}"))["status"] == "stored"
        operator("peer", "revoke-key", "--dir", str(jpn.directory), "--party", "USA", "--kid", kid)
        time.sleep(SECOND)
        for n, process in enumerate(jpns):
            result = deliver(process, envelope(f"usa-after-{n}"))
            assert (result["status"], result["receipt"]) == ("refused", None)
            assert result["reason"] == "envelope refused"  # the sender learns nothing more
    finally:
        leaked.close()
    refused = [r for r in audit(jpn, "envelope.refused") if r["detail"].get("reason") == "revoked-key"]
    assert len(refused) == len(jpns), refused  # one refusal audited per envelope sent after


def test_two_processes_per_node_kill_the_deliverer_in_10000_items(
    tmp_path: Path, postgres_status: str | None
) -> None:
    require_nats()
    require_haproxy()
    with postgres_schema(postgres_status) as kor_url, postgres_schema(postgres_status) as jpn_url:
        members = {
            m.party: m for m in build(tmp_path / "net", database_urls={"KOR": kor_url, "JPN": jpn_url})
        }
        kor, jpn, usa = members["KOR"], members["JPN"], members["USA"]  # the USA is built, not served
        kors = [at(kor, free_port()), at(kor, free_port())]
        jpns = [at(jpn, free_port()), at(jpn, free_port())]
        config = tmp_path / "haproxy.cfg"
        config.write_text(
            balancer_config({kor: [m.port for m in kors], jpn: [m.port for m in jpns]}), encoding="utf-8"
        )
        kor_tokens = tokens(kor)
        updates = [track_update_to_json(u) for u in replay(launches(2019)[0], originator="KOR", every_s=10)]
        assert len(updates) >= 7
        officer = Officer(kor.directory, ["JPN"])
        running: list[subprocess.Popen[bytes]] = []
        releasing: _Releasing | None = None
        try:  # whatever started is stopped, even if a later process does not start
            running.append(balancer(config))
            started = serve_all(
                [(jpns[0], False), (jpns[1], False), (kors[0], True), (kors[1], True)], nats=True
            )
            running += started
            by_pid = {p.pid: m for p, m in zip(started[2:], kors, strict=True)}
            process_of = {p.pid: p for p in started[2:]}
            for member in (kor, jpn):
                _wait_healthy(member.endpoint, 60)  # through the balancer
            # an analyst follows KOR's tracks on each process; tracks are published through the balancer
            readers = {pid: Reader(m.endpoint, kor_tokens["analyst"]) for pid, m in by_pid.items()}
            assert {r.status for r in readers.values()} == {200}
            for update in updates[:3]:
                _publish(kor, kor_tokens["officer"], update)
            wait_for(
                lambda: all(len(r.events) == 3 for r in readers.values()),
                60,
                "both analysts seeing the tracks",
            )
            releasing = _Releasing(officer)
            wait_for(lambda: scalar(jpn_url, _FROM_KOR) >= TOTAL // 4, 600, "a quarter of the items at JPN")
            holder = until(
                lambda: delivery_holders(kor_url).get("JPN"), "a KOR process delivering to JPN", 60
            )
            kill(process_of[holder])  # mid-flow: a batch may be on the wire, received and not yet settled
            at_kill = scalar(jpn_url, _FROM_KOR)
            assert at_kill < TOTAL
            assert scalar(kor_url, _WAITING) > 0 or not releasing.done(), "the flow ended before the kill"
            (survivor,) = [pid for pid in by_pid if pid != holder]
            first = readers[holder]  # the analyst on the killed process

            for update in updates[3:6]:  # published while the analyst is away
                _publish(by_pid[survivor], kor_tokens["officer"], update)
            resumed = Reader(by_pid[survivor].endpoint, kor_tokens["analyst"], after=first.events[-1][0])
            assert resumed.status == 200
            _publish(by_pid[survivor], kor_tokens["officer"], updates[6])  # the marker: seen last, once
            wait_for(
                lambda: all(
                    any(t["update_ts"] == updates[6]["update_ts"] for _, t in r.events)
                    for r in (resumed, readers[survivor])
                ),
                60,
                "the resumed analyst, and the one on the survivor throughout, reaching the marker",
            )

            _revoked_at_jpn_is_refused_by_both_processes(usa, jpn, jpns)

            # the lease's five seconds and a loaded machine's delays: waited on, never timed
            wait_for(
                lambda: delivery_holders(kor_url).get("JPN") == survivor,
                120,
                "the survivor taking the delivery to JPN over",
            )
            try:
                wait_for(
                    lambda: releasing.done() and scalar(kor_url, _WAITING) == 0, 1800, "every item delivered"
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}: KOR's outbox {rows(kor_url, _OUTBOX)}") from None
        finally:
            if releasing is not None:
                releasing.join()
            officer.close()
            for process in running:
                stop(process)
        assert officer.count == TOTAL
        # every item receipted: its own receipt, or its batch's (stored once, named by receipt_id)
        unreceipted = (
            "SELECT count(*) FROM outbox WHERE kind = 'item' AND receipt IS NULL AND receipt_id IS NULL"
        )
        assert scalar(kor_url, unreceipted) == 0
        assert scalar(kor_url, "SELECT epoch FROM leases WHERE name = 'deliver:JPN'") >= 2
        expected = officer.expected()
        assert received(jpn.directory, "KOR", TOTAL) == expected  # every item, its own payload
        assert received_once(jpn.directory, list(expected)) == TOTAL  # none twice
        assert scalar(jpn_url, "SELECT count(*) FROM inbox WHERE kind = 'item' AND sender = 'KOR'") == TOTAL
        audit_verify(kor, jpn, usa)

    seen = first.events + resumed.events
    assert [t["update_ts"] for _, t in seen] == [
        u["update_ts"] for u in updates[:7]
    ]  # none missed, none twice
    ids = [i for i, _ in seen]
    assert ids == list(range(ids[0], ids[0] + 7))  # one sequence of event ids, across both processes
    assert readers[survivor].events == seen  # the same ids and tracks to the analyst who never moved
