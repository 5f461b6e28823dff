"""SIGKILL the receiver in the middle of 2,000 items, restart it: every item arrives exactly once."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy

from gsomia import network
from gsomia.node import NewIngest, Node, load_config
from gsomia.store import ItemFilter

COUNT = 2000


def _serve(member: network.NetNode) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
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
            "--no-sender",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _held(directory: Path) -> int:
    engine = sqlalchemy.create_engine(f"sqlite:///{directory / 'gsomia.db'}")
    with engine.connect() as conn:
        count = int(conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one())
    engine.dispose()
    return count


def test_receiver_killed_mid_stream_gets_every_item_exactly_once(tmp_path: Path) -> None:
    members = network.build(tmp_path / "net")
    kor_member, jpn_member = members[0], members[1]
    kor = Node(load_config(kor_member.directory))
    officer = kor.person("officer")
    payloads = {f"k{n:04d}": f'{{"n": {n}, "pad": "{"x" * 200}"}}'.encode() for n in range(COUNT)}
    label = {
        "originator": "KOR",
        "classification": "군사III급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": "2024-01-01T00:00:00+09:00",
    }
    ids = list(payloads)
    for start in range(0, COUNT, 500):
        kor.ingest_many(officer, [NewIngest(label, payloads[i], item_id=i) for i in ids[start : start + 500]])
    for item_id in ids:
        kor.exchange.release(officer, item_id, "JPN")

    receiver = _serve(jpn_member)
    network._wait_healthy(jpn_member.endpoint, 30)
    stop = threading.Event()

    def deliver() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                if not kor.exchange.deliver_due(client, limit=200):
                    time.sleep(0.05)

    sender = threading.Thread(target=deliver, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while _held(jpn_member.directory) < COUNT // 3:
            assert time.monotonic() < deadline, "delivery did not start"
            time.sleep(0.02)
        os.kill(receiver.pid, signal.SIGKILL)  # mid-stream, no warning
        receiver.wait()
        killed_at = _held(jpn_member.directory)
        assert 0 < killed_at < COUNT
        time.sleep(0.5)  # the sender meets a dead peer and backs off
        receiver = _serve(jpn_member)
        network._wait_healthy(jpn_member.endpoint, 30)
        deadline = time.monotonic() + 90
        while kor.exchange.fed.outbox(state="pending", limit=1):
            assert time.monotonic() < deadline, "the outbox did not drain after the restart"
            time.sleep(0.1)
    finally:
        stop.set()
        sender.join(timeout=10)
        receiver.terminate()
        receiver.wait(timeout=10)

    outbox = kor.exchange.fed.outbox(limit=COUNT + 10)
    assert len(outbox) == COUNT
    assert {e.state for e in outbox} == {"delivered"}
    assert all(e.receipt for e in outbox)
    jpn = Node(load_config(jpn_member.directory))
    reader = jpn.person("officer")
    held = {row.id for row in jpn.store.list_items(ItemFilter(), 0, COUNT + 10)}
    assert held == set(ids)  # every item, none twice (ids are unique in the store)
    for item_id in ids[:: COUNT // 50]:
        _, payload = jpn.read(reader, item_id)
        assert hashlib.sha256(payload).digest() == hashlib.sha256(payloads[item_id]).digest()
    inbox = jpn.exchange.fed
    assert all(inbox.inbox_entry(e.msg_id) is not None for e in outbox)
    jpn.close()
    kor.close()
