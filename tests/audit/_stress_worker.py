"""A process of the audit log's stress test (``test_audit_stress.py``), run as a script:

    python _stress_worker.py writer DIR SECONDS   # records appended as the inbox writes them, and
                                                  # this process integrating too: a third writer
    python _stress_worker.py cli DIR SECONDS      # the CLI's readers: audit verify, head, prove

Each prints one JSON line at the end: what it did and every failure it saw.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from gsomia.cli import app
from gsomia.core.instants import epoch_us
from gsomia.core.merkle import leaf_hash, verify_inclusion
from gsomia.node import Node
from gsomia.store import AuditRow


def writer(directory: Path, seconds: float) -> dict[str, Any]:
    """Append ``envelope.received`` records (what a partner may ask an inclusion proof of) in small
    transactions and in batches (which become leaves under the tree's lock as they are written), and
    every half second integrate and sign from this process as well."""
    node = Node.open(directory, migrate=False)
    appended = integrated = rounds = 0
    failures: list[str] = []
    deadline = time.monotonic() + seconds
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            now = epoch_us(node.clock())
            batch = [
                AuditRow(
                    now,
                    "envelope.received",
                    "JPN",
                    uuid.uuid4().hex,
                    "allowed",
                    json.dumps({"msg_id": uuid.uuid4().hex, "n": appended + i}),
                )
                # a request's few records (integrated later), or now and then a batch (leaves as it
                # is written, under the tree's lock)
                for i in range(random.randint(32, 40) if random.random() < 0.1 else random.randint(1, 8))  # noqa: S311
            ]
            try:
                node.store.append_audit(batch)
                appended += len(batch)
                if time.monotonic() - last >= 0.5:
                    last = time.monotonic()
                    rounds += 1
                    while count := node.audit.integrate():
                        integrated += count
                    node.audit.sign_head()
            except Exception as exc:  # every failure is the test's finding, not this process's end
                failures.append(f"writer: {type(exc).__name__}: {exc}")
            time.sleep(0.005)
    finally:
        node.close()
    return {"appended": appended, "integrated": integrated, "rounds": rounds, "failures": failures}


def cli(directory: Path, seconds: float) -> dict[str, Any]:
    """``gsomia audit verify``, ``head`` and ``prove`` against the running node, over and over."""
    runner = CliRunner()
    where = ["--dir", str(directory)]
    counts = {"verify": 0, "head": 0, "prove": 0}
    failures: list[str] = []
    deadline = time.monotonic() + seconds

    def run(*args: str) -> Any:
        result = runner.invoke(app, [*args, *where, "--json"])
        if result.exit_code != 0:
            failures.append(f"{' '.join(args[:2])}: exit {result.exit_code}: {result.output.strip()[:300]}")
            return None
        return json.loads(result.stdout)

    while time.monotonic() < deadline:
        report = run("audit", "verify")
        counts["verify"] += 1
        if report is not None and not report["ok"]:
            failures.append(f"audit verify: {report['problem']}")
        head = run("audit", "head")
        counts["head"] += 1
        records = run("audit", "log", "--kind", "envelope.received", "--limit", "200")
        known = [r for r in records or [] if r["leaf_index"] is not None]
        if head is None or not known:
            continue
        entry = random.choice(known)  # noqa: S311
        proof = run("audit", "prove", entry["entry_id"], "--wait", "5")
        counts["prove"] += 1
        if proof is None:
            continue
        payload = json.loads(_jws_payload(proof["head"]))
        try:
            verify_inclusion(
                leaf_hash(proof["leaf_data"].encode()),
                proof["leaf_index"],
                proof["size"],
                [bytes.fromhex(h) for h in proof["proof"]],
                bytes.fromhex(payload["root"]),
            )
        except Exception as exc:
            failures.append(f"audit prove: the proof does not verify: {exc}")
    return {**counts, "failures": failures}


def _jws_payload(jws: str) -> bytes:
    import base64

    part = jws.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


if __name__ == "__main__":
    role, where, seconds = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    print("ready", flush=True)  # imported: the test starts every process's clock at once
    sys.stdin.readline()
    print(json.dumps((writer if role == "writer" else cli)(where, seconds)))
