"""Every track once, as the receiver sees it, when an outbound link changes hands (issue 17).

A node of several processes sends each partner's tracks from one process, the link's lease holder;
the others hand their tracks to it through JetStream. The holder acknowledges a handed track only
once the partner confirmed the frame that carried it (an ``ACK`` after the hop's window root), so a
holder killed before that leaves the track to the next holder, which sends it again under a new
signature. The receiver keeps each update once: it remembers, in its store (every process of it),
the identity of every update it took (originator, recipient, track, update instant; the signer's
identity, so nobody else's signature can make a genuine update look like one seen before).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from tests.conftest import kst, postgres_schema
from tests.reliability.processes import NATS, Reader, audit, kill, require_nats, serve, stop, wait_for
from tests.stream.test_link_lease import _link_holder

from gsomia._codec import label_to_dict
from gsomia.core.tracks import track_update_to_json
from gsomia.demo import network
from gsomia.demo.network import NetNode, _wait_healthy, build, free_port
from gsomia.errors import LinkError, StoreError
from gsomia.node import Node, load_config
from gsomia.store import SignedArrival, Store
from gsomia.store import _memoryfile as memoryfile
from gsomia.store._store import _FORGET_STEP_US
from gsomia.stream import StreamService, launches, replay
from gsomia.stream._link import ACK, ACK_BODY, BATCH, TRACKS, BatchSigner, initiate
from gsomia.stream._origin import sign_batch
from gsomia.testing import FakeClock, make_node

ROOT = Path(__file__).resolve().parents[2]


def _serve_pausing(member: NetNode, port: int, pause: Path) -> subprocess.Popen[bytes]:
    """``node serve`` on NATS, with the pause before each acknowledgement of a handed track."""
    process = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-c", "from tests.stream._hold_acks import main; main()", str(pause),
         "node", "serve", "--dir", str(member.directory), "--port", str(port), "--no-sender",
         "--stream-nats", NATS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", 120)
    except BaseException:
        kill(process)
        raise
    return process


def _duplicates_at(directory: Path) -> int:
    """How many updates the node dropped as received before (its audit records)."""
    node = Node(load_config(directory))
    try:
        rows = audit(node, "stream.receive")
    finally:
        node.close()
    return sum(int(r["count"]) for r in rows if r["outcome"] == "duplicate")


def test_a_holder_killed_between_the_partners_confirmation_and_its_ack_costs_no_duplicate(
    tmp_path: Path, postgres_status: str | None
) -> None:
    require_nats()
    pause = tmp_path / "pause"
    reached = tmp_path / "pause.reached"
    with postgres_schema(postgres_status) as kor_url:
        members = {m.party: m for m in build(tmp_path / "net", database_urls={"KOR": kor_url})}
        kor, jpn = members["KOR"], members["JPN"]
        kor_tokens = json.loads((kor.directory / "tokens.json").read_text(encoding="utf-8"))
        jpn_tokens = json.loads((jpn.directory / "tokens.json").read_text(encoding="utf-8"))
        officer = {"Authorization": f"Bearer {kor_tokens['officer']}"}
        updates = [track_update_to_json(u) for u in replay(launches(2019)[0], originator="KOR", every_s=10)]
        assert len(updates) >= 12
        pause.touch()  # from the start: the holder confirms nothing at the bus until the test says
        partner = serve(jpn)
        ports = [kor.port, free_port()]
        processes: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for port in ports:  # inside the try: a process that does not start leaves none behind
                processes[port] = _serve_pausing(kor, port, pause)
            reader = Reader(jpn.endpoint, jpn_tokens["analyst"])
            assert reader.status == 200
            wait_for(lambda: _link_holder(kor_url) is not None, 60, "a process taking the link's lease")
            holder = _link_holder(kor_url)
            (held,) = [port for port, p in processes.items() if p.pid == holder]
            (other,) = [port for port in ports if port != held]

            def publish(port: int, update: dict[str, object]) -> None:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/stream/tracks", json=update, headers=officer, timeout=30
                )
                assert answer.status_code == 202, answer.text
                assert {r["recipient"] for r in answer.json()["routes"]} >= {"JPN"}

            first = updates[:6]
            for update in first:  # handed to the holder, which sends them on its link
                publish(other, update)
            wait_for(lambda: len(reader.events) >= len(first), 60, "JPN receiving the handed tracks")
            # JPN confirmed the frames (ACK after the window root): the holder is about to
            # acknowledge them at the bus, and waits there
            wait_for(reached.exists, 60, "the holder reaching its acknowledgement")
            assert reached.read_text(encoding="utf-8") == str(holder)
            kill(processes[held])  # between JPN's confirmation and the holder's acknowledgement
            pause.unlink()
            wait_for(
                lambda: _link_holder(kor_url) == processes[other].pid, 60, "the other process taking the link"
            )
            # the new holder sends the six again (never acknowledged), each under a new signature;
            # JPN drops every one of them as received before
            wait_for(lambda: _duplicates_at(jpn.directory) >= len(first), 90, "the resend reaching JPN")
            rest = updates[6:12]
            for update in rest:
                publish(other, update)
            wait_for(lambda: len(reader.events) >= 12, 60, "the tracks after the takeover")
            # (more than six if a confirmation took longer than JetStream's 3 s wait for the
            # acknowledgement, on a loaded machine: it gave the track again, and JPN dropped it again)
            assert _duplicates_at(jpn.directory) >= len(first)
        finally:
            for process in processes.values():
                stop(process)
            stop(partner)
    got = [t["update_ts"] for _, t in reader.events]
    assert sorted(got) == [u["update_ts"] for u in updates[:12]]  # each once, the resend none twice
    assert len(set(got)) == len(got)


# --- in one process: the receiver's side, driven frame by frame ---


@pytest.fixture
def pair(tmp_path: Path) -> Any:
    clock = FakeClock(kst(2024, 3, 1))
    nodes = {
        "KOR": make_node(tmp_path / "kor", "KOR", clock=clock),
        "JPN": make_node(tmp_path / "jpn", "JPN", clock=clock),
        "USA": make_node(tmp_path / "usa", "USA", clock=clock),
    }
    for node in nodes.values():
        for other in nodes.values():
            if other is not node:
                shared = sorted(
                    a.id for a in node.catalogue.agreements_of(node.party) if other.party in a.parties
                )
                node.exchange.register_peer(None, other.exchange.identity(), shared)
    network.assure(nodes)
    yield nodes, tmp_path, clock
    for node in nodes.values():
        node.close()


def _message(sender: Node, track: dict[str, Any], recipient: str = "JPN") -> bytes:
    label = StreamService(sender).stream_label()
    return orjson.dumps(
        {"track": track, "label": label_to_dict(label), "originator": sender.party, "recipient": recipient,
         "via": None}
    )  # fmt: skip


def _track(n: int, track_id: str = "KOR-t") -> dict[str, Any]:
    update = replay(launches(2019)[0], originator="KOR", every_s=10)[n]
    return {**track_update_to_json(update), "track_id": track_id}


async def _opened(
    sender: Node, service: StreamService
) -> tuple[asyncio.Queue[bytes], asyncio.Queue[bytes], asyncio.Task[None], Any]:
    """A link from ``sender`` to ``service``, its handshake done: the queue into the receiver, the
    queue out of it, the receiver's task and the sender's session."""
    inbound: asyncio.Queue[bytes] = asyncio.Queue()
    outbound: asyncio.Queue[bytes] = asyncio.Queue()
    peer = sender.exchange.peer(service.party)
    assert peer is not None
    first, finish = initiate(sender.ring, peer, sender.clock())
    await inbound.put(first)
    task = asyncio.create_task(service.serve_link(inbound.get, outbound.put))
    return inbound, outbound, task, finish(await outbound.get())


async def _link(sender: Node, service: StreamService, bodies: list[bytes]) -> list[int]:
    """A link from ``sender`` to ``service``: each body a TRACKS frame closed by its window root;
    returns what the receiver confirmed after each root (its ACK frames)."""
    inbound, outbound, task, session = await _opened(sender, service)
    signer = BatchSigner(sender.ring, service.party)
    confirmed: list[int] = []
    for body in bodies:
        for wire in session.seal(TRACKS, body, 0.0):
            await inbound.put(wire)
        signer.add(session.sent - 1, body, 0.0)
        batch = signer.close(sender.clock())
        assert batch is not None
        for wire in session.seal(BATCH, batch.jws.encode(), 0.0):
            await inbound.put(wire)
        frame = session.open(await asyncio.wait_for(outbound.get(), 30))
        assert frame is not None
        assert frame.kind == ACK
        confirmed.append(ACK_BODY.unpack(frame.body)[0])
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return confirmed


def test_an_update_sent_again_under_a_new_signature_is_kept_once_by_every_process(pair: Any) -> None:
    nodes, directory, clock = pair
    kor = nodes["KOR"]
    other = Node(load_config(directory / "jpn"), clock=clock)  # a second process of JPN, same store
    a, b = _track(0), _track(1)

    async def run() -> tuple[StreamService, StreamService, list[int], list[int]]:
        first, second = StreamService(nodes["JPN"]), StreamService(other)
        got_first = await _link(kor, first, [sign_batch(kor.ring, [_message(kor, a)], kor.clock())])
        # the link's new holder at KOR sends ``a`` again with ``b``, under a new signature, and to
        # JPN's other process; and ``b`` twice in one batch
        again = sign_batch(kor.ring, [_message(kor, a), _message(kor, b), _message(kor, b)], kor.clock())
        got_second = await _link(kor, second, [again])
        return first, second, got_first, got_second

    try:
        first, second, got_first, got_second = asyncio.run(run())
        rows = audit(other, "stream.receive")
    finally:
        other.close()
    assert got_first == [2]  # TRACKS and BATCH: confirmed up to there
    assert got_second == [2]
    assert (first.stats.emitted, second.stats.emitted) == (1, 1)  # a at the first, b at the second
    assert second.stats.duplicates == 2
    (dropped,) = [r for r in rows if r["outcome"] == "duplicate"]
    assert dropped["subject"] == "KOR"
    assert dropped["count"] == 2
    assert sorted(dropped["tracks"]) == sorted([f"KOR-t@{a['update_ts']}", f"KOR-t@{b['update_ts']}"])


async def _refused(sender: Node, service: StreamService, bodies: list[bytes]) -> BaseException | None:
    """A link from ``sender`` to ``service`` that sends TRACKS frames (``bodies``) and no window root;
    what ended the link (``None``: it stayed open until its sender left). A refusal ends the wait as
    soon as it comes; the wait is long, past the root's deadline, for a commit slowed by a loaded
    machine (the refusal of what was read still comes first, ``_serve_frames``)."""
    inbound, _, task, session = await _opened(sender, service)
    for body in bodies:
        for wire in session.seal(TRACKS, body, 0.0):
            await inbound.put(wire)
    done, _ = await asyncio.wait({task}, timeout=60)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return None
    return task.exception()


def test_a_replay_in_the_same_commit_as_its_original_is_refused(pair: Any, monkeypatch: Any) -> None:
    """A signed batch and its replay in one frame (a TRACKS body holds one group or more): the
    receiver's group commit records both arrivals in one transaction, checks the second against
    the first, and refuses it as ``replayed-batch``; the track is shown once."""
    nodes, _, _ = pair
    kor, jpn = nodes["KOR"], nodes["JPN"]
    body = sign_batch(kor.ring, [_message(kor, _track(0))], kor.clock())
    commits: list[int] = []
    remember = jpn.store.remember_signed_arrivals

    def counted(arrivals: Any, *rest: Any, **named: Any) -> Any:
        commits.append(len(arrivals))
        return remember(arrivals, *rest, **named)

    monkeypatch.setattr(jpn.store, "remember_signed_arrivals", counted)
    service = StreamService(jpn)
    ended = asyncio.run(_refused(kor, service, [body + body]))
    assert isinstance(ended, LinkError)
    assert ended.detail == "replayed-batch"
    assert commits == [2]  # the original and its replay in one transaction
    assert service.stats.emitted == 1
    refused = [r for r in audit(jpn, "stream.link") if r["outcome"] == "refused"]
    assert [(r["subject"], r["error"]) for r in refused] == [("KOR", "replayed-batch")]


def test_a_batch_one_process_received_is_a_replay_at_another(pair: Any) -> None:
    """The replay memory is the store's: a batch taken by one process of JPN, sent again to another
    process of JPN (same store), is refused there as ``replayed-batch`` and not shown."""
    nodes, directory, clock = pair
    kor = nodes["KOR"]
    other = Node(load_config(directory / "jpn"), clock=clock)  # a second process of JPN, same store
    body = sign_batch(kor.ring, [_message(kor, _track(0))], kor.clock())

    async def run() -> tuple[StreamService, StreamService, list[int], BaseException | None]:
        first, second = StreamService(nodes["JPN"]), StreamService(other)
        confirmed = await _link(kor, first, [body])
        return first, second, confirmed, await _refused(kor, second, [body])

    try:
        first, second, confirmed, ended = asyncio.run(run())
    finally:
        other.close()
    assert confirmed == [2]
    assert first.stats.emitted == 1
    assert isinstance(ended, LinkError)
    assert ended.detail == "replayed-batch"
    assert second.stats.emitted == 0


def test_the_store_checks_the_arrivals_of_one_commit_in_order(store_url: str) -> None:
    """Both stores: in one transaction, an arrival repeating an earlier one's leaf is a replay
    (nothing of it recorded), one repeating an earlier one's update under another batch names it,
    and a failed arrival does not keep the others out."""
    store = Store(store_url)
    store.migrate()

    def arrival(batch: str, leaves: list[int], tracks: list[str], at: int) -> SignedArrival:
        return SignedArrival(batch, "KOR", tuple(leaves), tuple(tracks), at, at)

    try:
        answers = store.remember_signed_arrivals(
            [
                arrival("A", [0, 1], ["a0", "a1"], 10),
                arrival("A", [1], ["fresh"], 11),  # a replay of A's leaf 1, in the same commit
                arrival("B", [0], ["a1", "b0"], 12),  # a1 again, under another signature
                arrival("C", [0], ["fresh"], 13),  # the replay above recorded nothing
            ],
            0,
        )
        assert answers == [([], set()), ([1], set()), ([], {"a1"}), ([], set())]
        assert store.remember_signed_arrivals([arrival("B", [0], [], 14)], 0) == [([0], set())]
    finally:
        store.close()


def test_another_partys_update_of_the_same_track_id_and_instant_is_not_a_duplicate(pair: Any) -> None:
    """The identity is the signer's: the USA's own track, named and timed as KOR's, is the USA's,
    and does not keep KOR's genuine update out (nor does KOR's keep out the USA's)."""
    nodes, _, _ = pair
    kor, usa = nodes["KOR"], nodes["USA"]
    track = _track(0)
    usa_track = {**track, "originator": "USA"}

    async def run() -> StreamService:
        service = StreamService(nodes["JPN"])
        await _link(usa, service, [sign_batch(usa.ring, [_message(usa, usa_track)], usa.clock())])
        await _link(kor, service, [sign_batch(kor.ring, [_message(kor, track)], kor.clock())])
        return service

    service = asyncio.run(run())
    assert service.stats.duplicates == 0
    assert service.stats.emitted == 2


def test_the_store_forgets_an_update_after_the_window(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    minute = int(timedelta(minutes=1).total_seconds() * 1_000_000)
    try:
        assert store.remember_signed_tracks("b1", "KOR", [0], 0, -minute, ["k"]) == ([], set())
        assert store.remember_signed_tracks("b2", "KOR", [0], minute, 0, ["k", "l"]) == ([], {"k"})
        assert store.remember_signed_tracks("b2", "KOR", [0], minute, 0, ["k"]) == ([0], set())  # replay
        # past the window ("k" seen at 0, forgotten before 1 minute and a bit): new again
        assert store.remember_signed_tracks("b3", "KOR", [0], 3 * minute, minute // 2, ["k"]) == ([], set())
    finally:
        store.close()


def test_the_store_forgets_what_is_before_the_bound_and_nothing_after_it(tmp_path: Path) -> None:
    """The replay memory forgets a row once a commit's bound is a step (``_FORGET_STEP_US``) past the
    bound it last forgot before, never before the bound passed it: a bound that has not moved (or
    moved back, or less than a step on) forgets nothing, and a replay inside the window is refused."""
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    second, step = 1_000_000, _FORGET_STEP_US
    try:
        assert store.remember_signed_tracks("b1", "KOR", [0], 0, 0, ["k"]) == ([], set())
        # the bound has not moved past "k" (seen at 0): still seen, its batch still a replay
        assert store.remember_signed_tracks("b2", "KOR", [0], 10, 0, ["k"]) == ([], {"k"})
        assert store.remember_signed_tracks("b1", "KOR", [0], 20, -second, ["x"]) == ([0], set())
        # the bound past it, less than a step on: not yet forgotten (kept longer, never shorter)
        assert store.remember_signed_tracks("b4", "KOR", [0], 25, step - 1, ["k"]) == ([], {"k"})
        # a step on: forgotten, as the window says
        assert store.remember_signed_tracks("b3", "KOR", [0], 2 * step, step, ["k"]) == ([], set())
        # what was recorded after the bound stays: its replay is refused, the bound a step on as well
        assert store.remember_signed_tracks("b3", "KOR", [0], 3 * step, 2 * step, ["y"]) == ([0], set())
        assert store.remember_signed_tracks("b5", "KOR", [0], 3 * step, 2 * step, ["k"]) == ([], {"k"})
    finally:
        store.close()


def test_a_store_failure_in_the_replay_memory_is_a_store_error_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds SQLite's lock past the busy timeout: the group commit fails as a
    ``StoreError`` (the links waiting on it fail closed), and none of its arrivals is recorded."""
    import sqlite3

    path = tmp_path / "store.db"
    monkeypatch.setattr(memoryfile, "_BUSY_MS", 100)
    store = Store(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    store.migrate()
    arrival = SignedArrival("A", "KOR", (0,), ("a0",), 10, 10)
    # the file the memory's commits take the write lock of: its own where the boot is known
    store.remember_signed_arrivals([SignedArrival("B", "KOR", (0,), (), 5, 5)], 0)
    memory = store._replay_file()
    other = sqlite3.connect(memory.path if memory is not None else path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError):
            store.remember_signed_arrivals([arrival], 0)
        other.execute("ROLLBACK")
        assert store.remember_signed_arrivals([arrival], 0) == [([], set())]
        assert store.remember_signed_arrivals([arrival], 0) == [([0], set())]
    finally:
        other.close()
        store.close()


def test_the_store_tells_every_replayed_leaf_and_repeated_update_of_a_large_batch(store_url: str) -> None:
    """Both stores, past one IN list's worth (500): a batch of 1,200 leaves recorded; the same batch
    again, with only its last leaf, is a replay naming that leaf; a new batch repeating 3 updates
    among 1,100 new ones names exactly those 3, and records the rest."""
    store = Store(store_url)
    store.migrate()
    try:
        first = [f"u{i}" for i in range(1200)]
        assert store.remember_signed_tracks("B1", "KOR", range(1200), 10, 0, first) == ([], set())
        assert store.remember_signed_tracks("B1", "KOR", [1199], 11, 0, ["fresh"]) == ([1199], set())
        again = ["u5", "u700", "u1199"]
        second = again + [f"v{i}" for i in range(1100)]
        assert store.remember_signed_tracks("B2", "KOR", range(1103), 12, 0, second) == ([], set(again))
        # "fresh" was not recorded by the refused replay of B1; now it is
        assert store.remember_signed_tracks("B3", "KOR", [0], 13, 0, ["v1099", "fresh"]) == ([], {"v1099"})
        assert store.remember_signed_tracks("B4", "KOR", [0], 14, 0, ["fresh"]) == ([], {"fresh"})
    finally:
        store.close()
