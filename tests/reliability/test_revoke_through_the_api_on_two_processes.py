"""Issue 17's check through the API: JPN runs as two ``node serve`` processes on one PostgreSQL
schema. Its security officer revokes KOR's leaked signing key through process A's API
(``POST /peers/KOR/keys/{kid}/revoke``); within a second process B refuses an envelope signed with
that key, which it accepted just before, and audits the refusal. B polls the store only every 5 s
while it listens (its metrics say so), so it is the commit's notification that tells it.

The adversary holds KOR's key ring (KOR's node is built, not served). Cheap enough for the default
suite: two processes, no load balancer (each is asked directly), no NATS. Skips without PostgreSQL,
fails without it under ``GSOMIA_REQUIRE_SERVICES=1``."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
from tests.conftest import postgres_schema
from tests.reliability.processes import at, serve_all, stop
from tests.security._live import audit, deliver, forged_item, tokens

from gsomia.demo.network import build, free_port
from gsomia.node import Node

GSOMIA = "kor-jpn-gsomia-2016"
SECOND = 1.0  # the promise: a change in the store is in force in every process within this


def _security_officer(directory: Path) -> str:
    """A security officer registered at the node in ``directory``: their API token."""
    node = Node.open(directory, migrate=False)
    try:
        person = {"id": "inoue", "name": "Inoue", "nationality": "JPN", "roles": ["security_officer"]}
        node.people.add_person(None, person)
        return node.credentials.issue(None, "inoue")[1]
    finally:
        node.close()


def _metric(endpoint: str, admin: str, name: str) -> float:
    scraped = httpx.get(f"{endpoint}/metrics", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert scraped.status_code == 200, scraped.text
    (line,) = [x for x in scraped.text.splitlines() if x.startswith(f"{name} ")]
    return float(line.split()[1])


def test_a_key_revoked_through_one_processes_api_is_refused_by_the_other_within_a_second(
    tmp_path: Path, postgres_status: str | None
) -> None:
    with postgres_schema(postgres_status) as jpn_url:
        members = {m.party: m for m in build(tmp_path / "net", database_urls={"JPN": jpn_url})}
        kor, jpn = members["KOR"], members["JPN"]
        officer = _security_officer(jpn.directory)
        admin = tokens(jpn)["admin"]
        a, b = at(jpn, free_port()), at(jpn, free_port())
        running: list[subprocess.Popen[bytes]] = []
        leaked = Node.open(kor.directory, migrate=False)  # the adversary's copy of KOR's keys
        try:
            running += serve_all([(a, False), (b, False)])
            kid, _ = leaked.ring.signing_key(leaked.clock())

            def envelope(item_id: str) -> str:
                return forged_item(leaked, "JPN", item_id, agreement=GSOMIA, classification="군사II급비밀")

            for name, process in (("a", a), ("b", b)):  # each process has the key in use
                assert deliver(process, envelope(f"before-{name}"))["status"] == "stored"
            # B listens, so polls only every 5 s: within a second, only the notification can tell it
            assert _metric(b.endpoint, admin, "gsomia_change_listener_connected") == 1.0
            assert _metric(b.endpoint, admin, "gsomia_change_poll_interval_seconds") == 5.0

            revoked = httpx.post(
                f"{a.endpoint}/peers/KOR/keys/{kid}/revoke",
                json={},
                headers={"Authorization": f"Bearer {officer}"},
                timeout=30,
            )
            assert revoked.status_code == 200, revoked.text
            assert revoked.json()["changed"] is True
            time.sleep(SECOND)
            result = deliver(b, envelope("after-b"))
            assert (result["status"], result["receipt"]) == ("refused", None)
            assert result["reason"] == "envelope refused"  # the sender learns nothing more
            assert deliver(a, envelope("after-a"))["status"] == "refused"

            again = httpx.post(  # the same revocation through B: nothing to change
                f"{b.endpoint}/peers/KOR/keys/{kid}/revoke",
                json={},
                headers={"Authorization": f"Bearer {officer}"},
                timeout=30,
            )
            assert (again.status_code, again.json()["changed"]) == (200, False), again.text
            refusals = [r for r in audit(a, "envelope.refused") if r["detail"].get("reason") == "revoked-key"]
            assert len(refusals) == 2, refusals  # one per envelope sent after, whichever process
            changes = audit(b, "key.revoke")
            assert [(c["actor"], c["outcome"], c["detail"]["kid"]) for c in changes] == [
                ("inoue", "allowed", kid)
            ]
        finally:
            leaked.close()
            for process in running:
                stop(process)
