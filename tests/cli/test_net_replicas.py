"""``gsomia net up --replicas 2``: each node as two processes behind HAProxy on PostgreSQL and NATS
JetStream. Both processes answer through the node's one endpoint, each request under its own id
in their JSON logs; SIGKILL one and the node keeps answering, its background work taken over by
the other; ``net down`` stops every process and the balancer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import POSTGRES_URL, network_schemas, require_postgres
from tests.reliability.processes import NATS, require_haproxy, require_nats

from gsomia.demo.network import PARTIES, trust


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", *args], capture_output=True, text=True, timeout=1800
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _logged_ids(path: Path) -> set[str]:
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            ids.add(json.loads(line).get("request_id", ""))
    return ids


def test_two_processes_per_node_behind_haproxy(tmp_path: Path, postgres_status: str | None) -> None:
    require_postgres(postgres_status)
    require_haproxy()
    require_nats()
    directory = tmp_path / "net"
    with network_schemas(directory):  # net up finds them made; dropped whatever happens
        up = _cli("net", "up", "--dir", str(directory), "--database-url", POSTGRES_URL,
                  "--nats", NATS, "--replicas", "2", "--json")  # fmt: skip
        running: list[dict[str, Any]] = []
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            running = json.loads(up.stdout)
            assert sorted(n["party"] for n in running) == sorted(PARTIES * 2)
            kor = [n for n in running if n["party"] == "KOR"]
            endpoint = kor[0]["endpoint"]
            assert endpoint.startswith("https://")  # TLS passed through the balancer to each process
            verify = trust(directory)
            assert {n["endpoint"] for n in kor} == {endpoint}  # one endpoint for the node
            assert len({n["pid"] for n in kor}) == 2
            sent = {f"through-lb-{n}" for n in range(12)}
            for request_id in sorted(sent):
                answer = httpx.get(
                    f"{endpoint}/healthz", headers={"X-Request-ID": request_id}, timeout=5, verify=verify
                )
                assert answer.status_code == 200
                assert answer.headers["x-request-id"] == request_id
            kor_dir = Path(kor[0]["dir"])
            logged = time.monotonic() + 60  # each log line is written as its request ends
            while True:
                first, second = (_logged_ids(kor_dir / f"serve-{n}.log") & sent for n in (0, 1))
                if first | second == sent or time.monotonic() > logged:
                    break
                time.sleep(0.1)
            assert first  # both processes answered
            assert second
            assert first | second == sent
            assert not first & second  # each request answered once

            os.kill(kor[0]["pid"], signal.SIGKILL)
            # gone, not dying: a dying process's socket still completes handshakes, and with TLS passed
            # through (mode tcp) the balancer cannot retry a connection the process reset after accepting
            gone = time.monotonic() + 60
            while _alive(kor[0]["pid"]):
                assert time.monotonic() < gone
                time.sleep(0.05)
            for _ in range(20):  # the balancer sends nothing more to the dead process
                assert httpx.get(f"{endpoint}/healthz", timeout=5, verify=verify).status_code == 200
            admin = json.loads((kor_dir / "tokens.json").read_text(encoding="utf-8"))["admin"]
            survivor = kor[1]["pid"]
            deadline = time.monotonic() + 120  # the lease's time, then the survivor's next ask
            while True:
                text = httpx.get(
                    f"{endpoint}/metrics",
                    headers={"Authorization": f"Bearer {admin}"},
                    timeout=5,
                    verify=verify,
                ).text
                holders = {
                    int(line.split('holder="')[1].split("/")[1])
                    for line in text.splitlines()
                    if line.startswith("gsomia_lease_holder{")
                }
                if holders == {survivor}:
                    break
                assert time.monotonic() < deadline, text
                time.sleep(0.5)
            state = json.loads((directory / "net.json").read_text(encoding="utf-8"))
            balancer = state["balancer"]["pid"]
        finally:
            down = _cli("net", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(_alive(n["pid"]) for n in running)
    assert not _alive(balancer)


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--replicas", "2"], "--database-url"),
        (["--replicas", "2", "--database-url", POSTGRES_URL], "--nats"),
        (["--replicas", "0"], "--replicas"),
        (["--replicas", "99"], "--replicas"),
    ],
)
def test_replicas_without_the_shared_truth_are_refused_before_anything_starts(
    tmp_path: Path, extra: list[str], named: str
) -> None:
    refused = _cli("net", "up", "--dir", str(tmp_path / "net"), *extra)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert named in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "net").exists()  # nothing built, nothing started
