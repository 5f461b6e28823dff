"""Two OS processes of one KOR node deliver the same outbox to JPN at the same time, on the node's one
store (a SQLite file; a PostgreSQL schema): each JPN answer comes from a JPN node of the delivering
process, on JPN's one store, so JPN receives the same batches from two processes at once too.

``together``: both read the outbox, push each batch at the same instant and settle it at the same
instant (two compare-and-sets racing in two transactions). ``taken-over``: the first process's
batch is on the wire and answered when the second reads the outbox (a lease taken over mid-batch),
delivers and settles everything; the first then settles what it heard (its compare-and-set loses)
and goes on with the rest of its run, already delivered.

Either way: each item is held once at JPN (one ``received`` inventory row, one inbox row), each
entry is delivered with one ``sent`` inventory row and exactly one ``envelope.delivered`` record
(written by the process whose compare-and-set won: ``test_settled_once.py`` interleaves the same in
one process), and both audit logs verify. Every wait is bounded: the processes' (``WAIT_S``) and the
joins (``JOIN_S``), after which they are killed and the test fails.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.exchange.test_exchange import KST_2024, Net, own_item, released_to_jpn
from tests.security._nets import three_parties_prepared
from tests.security._two_senders import WAIT_S, deliver, import_receipts
from tests.tallied import tallied

from gsomia.exchange import Transfer
from gsomia.node import Node, load_config
from gsomia.store import ItemFilter

FILED = 20  # items in the transfer file
COUNT = 150  # two batches of KOR's outbox (of 100): the pipeline, not a single push
JOIN_S = 2 * WAIT_S + 60  # each answer waited for at most this long; then the processes are killed


@pytest.fixture(params=["sqlite", "postgresql"])
def released(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None
) -> Iterator[tuple[Net, list[str]]]:
    """The three-party network (SQLite files, or a PostgreSQL schema per party) with KOR's items
    released to JPN and not yet delivered (their message ids); its nodes closed before the processes
    start."""
    items = [f"p{n:04d}" for n in range(COUNT)]
    yield from three_parties_prepared(
        request.param, tmp_path / "net", postgres_status, lambda net: released_to_jpn(net, items)
    )


def _run(net: Net, modes: tuple[str, str]) -> list[list[tuple[str, str]]]:
    """``deliver`` in two spawned processes (one per mode): what each delivered."""
    context = multiprocessing.get_context("spawn")
    sync = {
        "push": context.Barrier(2),
        "settle": context.Barrier(2),
        "answered": context.Event(),
        "settled": context.Event(),
    }
    out = context.Queue()
    directory = {m.party: str(m.directory) for m in net.members}
    at = KST_2024.isoformat()
    return _bounded(
        context, deliver, [(directory["KOR"], directory["JPN"], at, mode, sync, out) for mode in modes], out
    )


def _bounded(context: Any, target: Any, argses: list[tuple[Any, ...]], out: Any) -> list[Any]:
    """``target`` in one spawned process per ``argses``, each answer (put on ``out``) waited for
    within ``JOIN_S``: what each answered, or the test fails with the tracebacks (a process still
    running then is killed)."""
    processes = [context.Process(target=target, args=args) for args in argses]
    for process in processes:
        process.start()
    results: list[tuple[str, Any]] = []
    try:
        for _ in processes:
            results.append(out.get(timeout=JOIN_S))
    except queue.Empty:
        pytest.fail(f"a process gave no answer within {JOIN_S:g} s: {results}")
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
                process.join(timeout=10)
    errors = [detail for status, detail in results if status != "ok"]
    assert not errors, "\n".join(errors)
    assert [p.exitcode for p in processes] == [0] * len(processes)
    return [detail for _, detail in results]


def _audit(node: Node, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.detail) for r in node.store.audit(kind=kind, limit=10 * COUNT)]


@pytest.mark.parametrize(
    "modes", [("together", "together"), ("first", "second")], ids=["together", "taken-over"]
)
def test_two_processes_delivering_one_outbox_deliver_and_audit_each_entry_once(
    released: tuple[Net, list[str]], modes: tuple[str, str]
) -> None:
    net, msg_ids = released
    runs = _run(net, modes)
    # each process sent every entry and heard a receipt for each, but answers only what it settled:
    # together, each entry once (before, each process counted every entry "delivered")
    assert sorted(m for run in runs for m, _ in run) == sorted(msg_ids)
    assert {state for run in runs for _, state in run} == {"delivered"}
    members = {m.party: m for m in net.members}
    kor = Node(load_config(members["KOR"].directory), clock=net.clock)
    jpn = Node(load_config(members["JPN"].directory), clock=net.clock)
    try:
        entries = [kor.exchange.fed.outbox_entry(m) for m in msg_ids]
        assert all(e is not None and e.state == "delivered" and (e.receipt or e.receipt_id) for e in entries)
        # one settling record per entry, by the process whose compare-and-set won
        assert sorted(r["msg_id"] for r in _audit(kor, "envelope.delivered")) == sorted(msg_ids)
        items = [f"p{n:04d}" for n in range(COUNT)]
        assert [sum(r.kind == "sent" for r in kor.store.inventory(i)) for i in items] == [1] * COUNT
        # JPN holds each item once, whichever process's push it took
        held = jpn.store.list_items(ItemFilter(originator="KOR"), 0, 2 * COUNT)
        assert sorted(r.id for r in held) == items
        assert [sum(r.kind == "received" for r in jpn.store.inventory(i)) for i in items] == [1] * COUNT
        if modes == ("first", "second"):  # the second copy of each reached JPN and was taken as one
            # audited in bounded space (the kernel's tally; the processes' clocks stand still): the
            # minute's first 10 a record each, every one counted
            own, audited = tallied(jpn, net.clock, "envelope.duplicate")
            assert (len(own), audited) == (10, len(msg_ids))
            assert {r["msg_id"] for r in own} <= set(msg_ids)
        assert kor.audit.verify().ok
        assert jpn.audit.verify().ok
    finally:
        kor.close()
        jpn.close()


def _exported_and_imported(net: Net) -> tuple[list[str], str]:
    """KOR's items exported by file to JPN and imported there: the entries' message ids and JPN's
    receipts file."""
    for n in range(FILED):
        own_item(net, "KOR", f"f{n:03d}")
    out = Transfer(net.nodes["KOR"].exchange).export(net.officer("KOR"), "JPN")
    assert out.text is not None
    got = Transfer(net.nodes["JPN"].exchange).import_file(out.text)
    assert {r["status"] for r in got.results} == {"stored"}
    return [e.msg_id for e in out.entries], got.receipts_text


@pytest.fixture(params=["sqlite", "postgresql"])
def receipts(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None
) -> Iterator[tuple[Net, list[str], str]]:
    """The three-party network with KOR's items exported by file to JPN and imported there: the
    entries' message ids and JPN's receipts file, not yet applied at KOR; the nodes closed."""
    directory = tmp_path / "net"
    for net, (msg_ids, text) in three_parties_prepared(
        request.param, directory, postgres_status, _exported_and_imported
    ):
        yield net, msg_ids, text


def test_two_processes_applying_one_receipts_file_each_count_what_it_settled(
    receipts: tuple[Net, list[str], str],
) -> None:
    """Both processes read every entry as exported before either settles: the one whose
    compare-and-set wins counts them delivered, the other already delivered, in what it answers and
    in its ``transfer.receipts`` record (each counted what it tried: twice the file's entries)."""
    net, msg_ids, text = receipts
    context = multiprocessing.get_context("spawn")
    sync = {"settle": context.Barrier(2)}
    out = context.Queue()
    kor_dir = str(next(m.directory for m in net.members if m.party == "KOR"))
    results = _bounded(
        context, import_receipts, [(kor_dir, KST_2024.isoformat(), text, sync, out) for _ in range(2)], out
    )
    (won, lost), (won_too, lost_too) = results
    assert sorted(won + won_too) == sorted(msg_ids)  # each entry settled by one of them
    assert sorted(won + lost) == sorted(won_too + lost_too) == sorted(msg_ids)
    kor = Node(load_config(Path(kor_dir)), clock=net.clock)
    try:
        summaries = sorted((r["delivered"], r["already"]) for r in _audit(kor, "transfer.receipts"))
        assert summaries == sorted((len(d), len(a)) for d, a in results)
        assert sorted(r["msg_id"] for r in _audit(kor, "envelope.delivered")) == sorted(msg_ids)
        assert all((e := kor.exchange.fed.outbox_entry(m)) and e.state == "delivered" for m in msg_ids)
        assert kor.audit.verify().ok
    finally:
        kor.close()
