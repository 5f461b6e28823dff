"""The audit log under concurrency: writers and every reader of the tree, in several processes.

Two ``gsomia node serve`` processes on ONE database (each running the node's loop, which integrates
and signs: two writers of the tree), a third process appending records and integrating as well,
clients ingesting items through both APIs, and the readers: ``GET /audit/head`` (signature and
consistency proof between successive heads), ``GET /audit/inclusion`` (proof checked against the
head it names), the dashboard's audit page, and a process running ``gsomia audit verify``, ``head``
and ``prove``. Before the fix a reader integrated too, outside any lock: a poller made the log lose
leaves (``leaf 802 is missing``) and answer 409. Here every request must succeed, and at the end
``gsomia audit verify`` must pass with every record in the tree exactly once.

The default suite runs it for a few seconds on SQLite and on PostgreSQL; ``-m slow`` for 60 s.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.audit._proofs import check_proof
from tests.node_fixtures import kor_label
from tests.reliability.processes import serve

from gsomia.audit import parse_head
from gsomia.core.merkle import verify_consistency
from gsomia.crypto.envelope import verify_origin
from gsomia.crypto.keys import PeerIdentity
from gsomia.demo import network
from gsomia.node import Node, init_node_dir
from gsomia.node._config import update_settings

WORKER = Path(__file__).with_name("_stress_worker.py")


def _serve(directory: Path, port: int) -> subprocess.Popen[bytes]:
    return serve(network.NetNode("KOR", directory, port), sender=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Load:
    """Client threads of this process against the served node; they count and keep every failure."""

    def __init__(self, endpoints: list[str], token: str, identity: PeerIdentity, seconds: float) -> None:
        self.endpoints = endpoints
        self.auth = {"Authorization": f"Bearer {token}"}
        self.identity = identity
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        # the window starts once every client thread (an ingester, a reader per endpoint) is set up
        # (logged in): on a loaded machine the set-up alone took the whole window, and a reader that
        # never read would check nothing
        self.started = threading.Barrier(1 + len(endpoints), action=self._start)
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._token = token

    def _start(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def _fail(self, what: str, response: httpx.Response | None = None, problem: str = "") -> None:
        with self._lock:
            body = f"{response.status_code} {response.text[:300]}" if response is not None else problem
            self.failures.append(f"{what}: {body}")

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def ingest(self) -> None:
        """Items posted through both APIs, alternately: each is audit records written by the API."""
        n = 0
        with httpx.Client(timeout=30, headers=self.auth) as client:
            self.started.wait(120)
            while time.monotonic() < self.deadline:
                base = self.endpoints[n % len(self.endpoints)]
                item = f"stress-{n}-{random.getrandbits(32):08x}"
                body = {"id": item, "label": kor_label(), "payload": {"n": n}}
                got = client.post(f"{base}/items", json=body)
                self._count("POST /items")
                if got.status_code != 201:
                    self._fail("POST /items", got)
                n += 1

    def _head(self, client: httpx.Client, base: str) -> tuple[int, bytes] | None:
        got = client.get(f"{base}/audit/head")
        self._count("GET /audit/head")
        if got.status_code != 200:
            self._fail("GET /audit/head", got)
            return None
        body = got.json()
        try:
            signer, content = verify_origin(body["jws"], {"KOR": self.identity}.get, datetime.now(UTC))
            party, size, root, _ = parse_head(content)
        except Exception as exc:
            self._fail("GET /audit/head", problem=f"the head does not verify: {exc}")
            return None
        if (signer, party, size, root.hex()) != ("KOR", "KOR", body["size"], body["root"]):
            self._fail("GET /audit/head", problem="the signed head does not say what the answer says")
            return None
        return size, root

    def read(self, base: str, dashboard: str) -> None:
        """Heads (each checked against the last by a consistency proof), inclusion proofs of entries
        the head covers, and the dashboard's audit page, round and round."""
        last: tuple[int, bytes] | None = None
        with (
            httpx.Client(timeout=30) as public,
            httpx.Client(timeout=30, headers=self.auth) as admin,
            httpx.Client(timeout=30, base_url=base) as browser,
        ):
            self._login(browser, dashboard)
            self.started.wait(120)
            while time.monotonic() < self.deadline:
                head = self._head(public, base)
                if head is None:
                    continue
                if last is not None and head[0] < last[0]:
                    self._fail("GET /audit/head", problem=f"the head went back from {last[0]} to {head[0]}")
                elif last is not None and head[0] > last[0]:
                    got = public.get(
                        f"{base}/audit/consistency", params={"first": last[0], "second": head[0]}
                    )
                    self._count("GET /audit/consistency")
                    if got.status_code != 200:
                        self._fail("GET /audit/consistency", got)
                    else:
                        try:
                            proof = [bytes.fromhex(h) for h in got.json()["proof"]]
                            verify_consistency(last[0], head[0], last[1], head[1], proof)
                        except Exception as exc:
                            self._fail("GET /audit/consistency", problem=f"does not verify: {exc}")
                last = head
                self._inclusion(public, admin, base)
                page = browser.get(f"{dashboard}/audit")
                self._count("GET dashboard audit")
                if page.status_code != 200 or 'id="head' not in page.text:
                    self._fail("GET dashboard audit", page)

    def _inclusion(self, public: httpx.Client, admin: httpx.Client, base: str) -> None:
        records = admin.get(
            f"{base}/audit/log", params={"kind": "envelope.received", "limit": 200, "since": 0}
        )
        self._count("GET /audit/log")
        if records.status_code != 200:
            self._fail("GET /audit/log", records)
            return
        covered = [r for r in records.json() if r["leaf_index"] is not None]
        if not covered:
            return
        entry = random.choice(covered)["entry_id"]  # noqa: S311 - which entry, not a secret
        got = public.get(f"{base}/audit/inclusion", params={"entry": entry})
        self._count("GET /audit/inclusion")
        if got.status_code == 404 and "not yet under a signed tree head" in got.text:
            return  # integrated after the latest head: the next head covers it (not a failure)
        if got.status_code != 200:
            self._fail("GET /audit/inclusion", got)
            return
        proof = got.json()
        try:
            _, content = verify_origin(proof["head"], {"KOR": self.identity}.get, datetime.now(UTC))
            _, size, root, _ = parse_head(content)
            check_proof(proof, root, size)
        except Exception as exc:
            self._fail("GET /audit/inclusion", problem=f"the proof does not verify: {exc}")

    def _login(self, browser: httpx.Client, dashboard: str) -> None:
        got = browser.post(
            f"{dashboard}/login",
            data={"token": self._token, "next": f"{dashboard}/audit"},
            headers={"Origin": str(browser.base_url).rstrip("/")},
        )
        assert got.status_code == 303, got.text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", *args], capture_output=True, text=True, timeout=600, check=False
    )


def stress(directory: Path, database_url: str, seconds: float) -> dict[str, Any]:
    ports = [network.free_port(), network.free_port()]
    endpoints = [f"http://127.0.0.1:{p}" for p in ports]
    init_node_dir(directory, "KOR", database_url, endpoint=endpoints[0])
    # the readers poll the public head and inclusion routes as fast as they can, from one address:
    # out of the reach of its budget for requests without credentials (tests/security/test_rate_limit.py)
    config = update_settings(directory, public_rate_limit="10000000/minute")
    node = Node(config)
    node.people.add_person(
        None,
        {
            "id": "ops",
            "name": "Ops",
            "nationality": "KOR",
            "clearance": "군사II급비밀",
            "need_to_know": ["dprk-missile"],
            "roles": ["analyst", "administrator", "security_officer"],
        },
    )
    token = node.credentials.issue(None, "ops", days=1)[1]
    identity = PeerIdentity.from_signed(node.exchange.identity(), datetime.now(UTC))
    node.close()

    servers = [_serve(directory, port) for port in ports]
    try:
        # the dashboard lives under the node's own path: its old entry says where
        dashboard = httpx.get(f"{endpoints[0]}/ui/login").headers["location"].split("/login")[0]
        workers = [
            subprocess.Popen(  # noqa: S603 - our own script
                [sys.executable, str(WORKER), role, str(directory), str(seconds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for role in ("writer", "cli")
        ]
        for worker in workers:  # all start together: each says when it is ready, then waits for "go"
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == b"ready", worker.stderr
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write(b"go\n")
            worker.stdin.flush()
        load = Load(endpoints, token, identity, seconds)
        threads = [threading.Thread(target=load.ingest)]
        threads += [threading.Thread(target=load.read, args=(base, dashboard)) for base in endpoints]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 120)
        results = {}
        for role, worker in zip(("writer", "cli"), workers, strict=True):
            out, err = worker.communicate(timeout=seconds + 120)
            assert worker.returncode == 0, err.decode()[-2000:]
            results[role] = json.loads(out.decode().strip().splitlines()[-1])
    finally:
        for server in servers:
            _stop(server)

    # the servers are down: what is still pending is integrated by the operator's command (a writer)
    integrated = _cli("audit", "integrate", "--dir", str(directory), "--json")
    assert integrated.returncode == 0, integrated.stderr
    verified = _cli("audit", "verify", "--dir", str(directory), "--json")
    report = json.loads(verified.stdout)
    node = Node.open(directory, migrate=False)
    try:
        records = len(node.store.audit(limit=10_000_000))
    finally:
        node.close()
    failures = load.failures + results["writer"]["failures"] + results["cli"]["failures"]
    return {
        "exit": verified.returncode,
        "report": report,
        "records": records,
        "requests": dict(load.counts),
        "writer": {k: v for k, v in results["writer"].items() if k != "failures"},
        "cli": {k: v for k, v in results["cli"].items() if k != "failures"},
        "failures": failures,
    }


def _check(outcome: dict[str, Any]) -> None:
    print(json.dumps({k: v for k, v in outcome.items() if k != "failures"}, indent=1))
    assert outcome["failures"] == [], "\n".join(outcome["failures"][:20])
    assert outcome["exit"] == 0, outcome["report"]
    assert outcome["report"]["ok"] is True, outcome["report"]
    # every record is in the tree, exactly once, and nothing is left pending
    assert outcome["report"]["entries"] == outcome["records"]
    assert outcome["report"]["pending"] == 0
    assert outcome["requests"]["GET /audit/head"] > 0
    assert outcome["requests"]["GET dashboard audit"] > 0
    assert outcome["requests"]["POST /items"] > 0
    assert outcome["writer"]["appended"] > 0
    assert outcome["cli"]["verify"] > 0


def test_the_log_stays_whole_under_writers_and_readers_in_several_processes(
    tmp_path: Path, store_url: str
) -> None:
    _check(stress(tmp_path / "kor", store_url, seconds=5))


@pytest.mark.slow
def test_the_log_stays_whole_for_a_minute_of_writers_and_readers(tmp_path: Path, store_url: str) -> None:
    _check(stress(tmp_path / "kor", store_url, seconds=60))
