"""Attack: a downgrade to the JOSE hop. The exchange seals COSE (``gsomia-envelope/3``); the JOSE hop
(``/1``) was still opened from anyone, for ever, so a stale partner or an attacker replaying a
captured JOSE envelope kept that older path live. Now the store keeps the envelope versions this node
opens from each partner: once a partner's COSE envelope has opened, its JOSE envelopes are refused
unopened (``downgrade``); after an administrator's cut-off, JOSE is refused from everyone
(``retired-version``), and a clock set back does not undo it. The refusals are audited in bounded
space, every process of the node refuses alike (the store, not a process's memory), and an upgraded
sender seals an older envelope of its outbox again before it goes.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.exchange.test_exchange import Net, net, own_item
from tests.security._nets import three_parties
from tests.security._versions_child import receive_as

from gsomia.crypto.envelope import _seal_jose, open_envelope, seal
from gsomia.crypto.keys import KeyRing
from gsomia.errors import AccessDenied, ConflictError, InvalidInputError, NotFoundError
from gsomia.kernel import NodeContext

__all__ = ["net"]
RECORDED = NodeContext.REFUSALS_RECORDED
EVERY_PARTNER = "*"  # the row of every partner (gsomia.store.EVERY_PARTNER)
SOURCE = "192.0.2.7"
WAIT_S = 180  # a spawned process's answer, at most (then it is killed and the test fails)


def _sealed(net: Net, sender: str, body: dict[str, Any], msg_id: str, *, jose: bool) -> str:
    ring = net.nodes[sender].exchange.ring
    jpn = net.nodes[sender].exchange.peer("JPN")
    assert jpn is not None
    how = _seal_jose if jose else seal
    return how(ring, jpn, body, msg_id=msg_id, at=net.clock.now, ttl=timedelta(minutes=10))


def _odd(net: Net, sender: str, msg_id: str, *, jose: bool = True) -> str:
    """An envelope of ``sender``'s of a kind JPN does not know: answered ``unknown message kind`` if
    it opened, ``envelope refused`` if it did not."""
    return _sealed(net, sender, {"kind": "nonsense"}, msg_id, jose=jose)


def _answers(net: Net, texts: list[str]) -> list[str | None]:
    return [a["reason"] for a in net.nodes["JPN"].exchange.receive(texts, source=SOURCE)]


def _refusals(net: Net, code: str) -> list[dict[str, Any]]:
    rows = net.nodes["JPN"].store.audit(kind="envelope.refused", limit=1_000_000)
    return [d for d in (json.loads(r.detail) for r in rows) if d.get("reason") == code]


def _kor_sent_cose(net: Net) -> None:
    """KOR releases an item to JPN and delivers it, in COSE as every node seals now."""
    own_item(net, "KOR", "k-cose")
    net.nodes["KOR"].exchange.release(net.officer("KOR"), "k-cose", "JPN")
    assert [d.state for d in net.deliver()] == ["delivered"]


def test_a_jose_envelope_after_the_partners_cose_is_refused_unopened_and_audited(net: Net) -> None:
    jpn = net.nodes["JPN"]
    assert _answers(net, [_odd(net, "KOR", "j-before")]) == ["unknown message kind"]  # JOSE opened
    _kor_sent_cose(net)

    # KOR's genuine item message, re-sealed by KOR's own key in JOSE: refused before it is opened
    own_item(net, "KOR", "k-jose")
    entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), "k-jose", "JPN")
    body = open_envelope(jpn.exchange.ring, entry.envelope, jpn.exchange._identities, net.clock.now).body
    downgraded = _sealed(net, "KOR", body, entry.msg_id, jose=True)
    assert _answers(net, [downgraded, _odd(net, "KOR", "j-after")]) == ["envelope refused"] * 2
    assert jpn.store.get_item("k-jose") is None
    assert jpn.exchange.fed.inbox_entry(entry.msg_id) is None
    (first, *_) = _refusals(net, "downgrade")
    assert "from KOR, which has sealed COSE to this node since" in first["note"]
    row = jpn.exchange.envelope_versions()["KOR"]  # what the store holds: raised by KOR's COSE
    assert (row.lowest, row.cause, row.pending, row.by) == (
        2,
        "sent",
        False,
        net.nodes["KOR"].exchange.fed.outbox()[0].msg_id,
    )
    # the same message in COSE is taken: only the older format is refused
    assert [a["status"] for a in jpn.exchange.receive([entry.envelope], source=SOURCE)] == ["stored"]
    # USA never sent JPN COSE: its JOSE is still opened (the floor is KOR's alone)
    assert _answers(net, [_odd(net, "USA", "u-jose")]) == ["unknown message kind"]


def test_downgrade_refusals_are_audited_in_bounded_space_with_an_exact_count(net: Net) -> None:
    _kor_sent_cose(net)
    jpn = net.nodes["JPN"]
    before = len(jpn.store.audit(limit=1_000_000))
    flood = [_odd(net, "KOR", f"flood-{i}") for i in range(60)]
    assert _answers(net, flood[:30]) == ["envelope refused"] * 30
    assert _answers(net, flood[30:]) == ["envelope refused"] * 30
    assert len(_refusals(net, "downgrade")) == RECORDED
    net.clock.advance(seconds=61)
    jpn.kernel.close_refusal_tallies()
    tallies = [json.loads(r.detail) for r in jpn.store.audit(kind="refusal.tally", limit=1_000_000)]
    assert [(t["code"], t["count"]) for t in tallies if t["code"] == "downgrade"] == [("downgrade", 60)]
    assert len(jpn.store.audit(limit=1_000_000)) - before <= RECORDED + 6  # not 60


def test_after_the_cut_off_jose_is_refused_from_everyone_and_a_clock_set_back_does_not_undo_it(
    net: Net,
) -> None:
    jpn = net.nodes["JPN"].exchange
    start = net.clock.now
    cut_off = start + timedelta(hours=1)
    jpn.set_envelope_versions(None, EVERY_PARTNER, 2, cut_off)
    assert jpn.envelope_versions()[EVERY_PARTNER].pending
    assert _answers(net, [_odd(net, "USA", "u-1")]) == ["unknown message kind"]  # before it: opened

    net.clock.now = cut_off + timedelta(minutes=1)
    assert _answers(net, [_odd(net, "USA", "u-2"), _odd(net, "USA", "c-1", jose=False)]) == [
        "envelope refused",
        "unknown message kind",  # COSE is opened as ever
    ]
    assert "not opened from every partner since" in _refusals(net, "retired-version")[0]["note"]
    assert not jpn.envelope_versions()[EVERY_PARTNER].pending  # reached, in the store

    net.clock.now = start  # this node's clock stepped back before the cut-off
    assert _answers(net, [_odd(net, "USA", "u-3")]) == ["envelope refused"]


def test_an_administrator_sets_a_partners_lowest_and_bad_settings_are_refused(net: Net) -> None:
    jpn = net.nodes["JPN"].exchange
    jpn.set_envelope_versions(None, "USA", 3)
    assert _answers(net, [_odd(net, "USA", "u-1")]) == ["envelope refused"]
    jpn.set_envelope_versions(None, "USA", 1)  # lowered again: a partner back on an older release
    assert _answers(net, [_odd(net, "USA", "u-2")]) == ["unknown message kind"]
    for party, lowest, error in (
        ("USA", 4, InvalidInputError),
        ("USA", 0, InvalidInputError),
        ("FRA", 2, NotFoundError),
    ):
        with pytest.raises(error):
            jpn.set_envelope_versions(None, party, lowest)
    for later in (timedelta(days=1), -timedelta(days=1)):  # an earlier instant would be a false since
        with pytest.raises(InvalidInputError, match="every partner"):
            jpn.set_envelope_versions(None, "USA", 2, net.clock.now + later)
    with pytest.raises(AccessDenied):
        jpn.set_envelope_versions(net.officer("JPN"), "USA", 2)  # a release officer
    refused = net.nodes["JPN"].store.audit(kind="envelope.versions", limit=100)
    assert sum(r.outcome == "refused" for r in refused) == 5
    assert net.nodes["JPN"].store.audit(kind="authz.envelope.versions", limit=100)


@pytest.fixture(params=["sqlite", "postgresql"])
def both(request: pytest.FixtureRequest, tmp_path: Path, postgres_status: str | None) -> Iterator[Net]:
    """The three-party network, on SQLite files or on one PostgreSQL schema per party."""
    yield from three_parties(request.param, tmp_path / "net", postgres_status)


def _in_other_process(net: Net, texts: list[str]) -> list[dict[str, Any]]:
    """``texts`` received by a second process of JPN's node (a spawned OS process on its store)."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    directory = str(next(m.directory for m in net.members if m.party == "JPN"))
    process = context.Process(
        target=receive_as, args=(directory, net.clock.now.isoformat(), texts, SOURCE, out)
    )
    process.start()
    try:
        kind, answers = out.get(timeout=WAIT_S)
    except queue.Empty:
        pytest.fail(f"the second process did not answer within {WAIT_S} s")
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    assert kind == "answers", answers
    return list(answers)


def test_a_second_process_of_the_node_refuses_the_downgrade_the_first_recorded(both: Net) -> None:
    net = both
    _kor_sent_cose(net)  # recorded by this process
    (answer,) = _in_other_process(net, [_odd(net, "KOR", "j-other")])
    assert answer["reason"] == "envelope refused"
    assert _refusals(net, "downgrade")  # in the node's one audit log


def test_this_process_refuses_a_downgrade_another_process_recorded_meanwhile(both: Net) -> None:
    net = both
    assert _answers(net, [_odd(net, "KOR", "j-1")]) == ["unknown message kind"]  # this process read it
    (answer,) = _in_other_process(net, [_odd(net, "KOR", "c-other", jose=False)])  # KOR's COSE, there
    assert answer["reason"] == "unknown message kind"
    assert _answers(net, [_odd(net, "KOR", "j-2")]) == ["envelope refused"]  # here, at once


def test_an_upgraded_sender_seals_an_older_envelope_again_before_it_goes(net: Net) -> None:
    _kor_sent_cose(net)
    kor = net.nodes["KOR"].exchange
    own_item(net, "KOR", "k-stale")
    entry = kor.release(net.officer("KOR"), "k-stale", "JPN")
    jpn = net.nodes["JPN"].exchange
    body = open_envelope(jpn.ring, entry.envelope, jpn._identities, net.clock.now).body
    stale = _sealed(net, "KOR", body, entry.msg_id, jose=True)  # as sealed before an upgrade
    with kor.kernel.store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE outbox SET envelope = ? WHERE msg_id = ?", (stale, entry.msg_id))
    assert [d.state for d in net.deliver()] == ["delivered"]
    assert net.nodes["JPN"].store.get_item("k-stale") is not None
    assert not _refusals(net, "downgrade")


def test_an_envelope_naming_a_partner_that_does_not_verify_never_moves_its_lowest(
    net: Net, tmp_path: Path
) -> None:
    """Attack: someone who is not KOR seals COSE naming KOR (a key of its own under KOR's name and
    KOR's node name), and a genuine COSE envelope of KOR's is replayed after its lifetime once an
    administrator let KOR's JOSE be heard again. Neither opens, so neither raises KOR's lowest: KOR's
    JOSE is still opened after each. Only an envelope that opens and verifies raises it."""
    jpn = net.nodes["JPN"]
    peer = net.nodes["KOR"].exchange.peer("JPN")
    assert peer is not None
    forger = KeyRing.generate(tmp_path / "forger", "KOR", "kor-1", net.clock.now - timedelta(days=1))
    forged = seal(
        forger, peer, {"kind": "nonsense"}, msg_id="forged-1", at=net.clock.now, ttl=timedelta(minutes=10)
    )
    assert _answers(net, [forged]) == ["envelope refused"]
    assert "KOR" not in jpn.exchange.envelope_versions()
    assert _answers(net, [_odd(net, "KOR", "j-after-forgery")]) == ["unknown message kind"]  # JOSE opened

    own_item(net, "KOR", "k-old")
    genuine = net.nodes["KOR"].exchange.release(net.officer("KOR"), "k-old", "JPN").envelope
    jpn.exchange.set_envelope_versions(None, "KOR", 1)  # KOR went back to an older release
    net.clock.advance(days=2)  # the genuine envelope's lifetime and the skew are long past
    assert [a["reason"] for a in jpn.exchange.receive([genuine], source=SOURCE)] == ["envelope refused"]
    row = jpn.exchange.envelope_versions()["KOR"]
    assert (row.lowest, row.cause) == (1, "set")
    assert _answers(net, [_odd(net, "KOR", "j-after-replay")]) == ["unknown message kind"]
    # the control: the same kind of envelope, genuine and fresh, raises it
    assert _answers(net, [_odd(net, "KOR", "c-fresh", jose=False)]) == ["unknown message kind"]
    assert jpn.exchange.envelope_versions()["KOR"].lowest == 2
    assert _answers(net, [_odd(net, "KOR", "j-after-fresh")]) == ["envelope refused"]


def test_a_replayed_cose_envelope_from_before_a_lowering_does_not_raise_the_floor_again(net: Net) -> None:
    """An administrator lowered KOR's floor to 1 (KOR went back to a JOSE release): KOR's genuine COSE
    envelopes from before the setting, replayed (one a duplicate the inbox already holds, one never
    received), open and verify but raise nothing; KOR's fresh COSE sealed more than the allowed skew
    (5 minutes) after the setting does (one sealed sooner could be one opened before it)."""
    jpn = net.nodes["JPN"].exchange
    _kor_sent_cose(net)
    held = net.nodes["KOR"].exchange.fed.outbox()[0].envelope  # taken already: a duplicate now
    unseen = _odd(net, "KOR", "c-old", jose=False)  # sealed before the setting, never received
    net.clock.advance(seconds=60)
    jpn.set_envelope_versions(None, "KOR", 1)
    net.clock.advance(seconds=60)

    assert [a["status"] for a in jpn.receive([held], source=SOURCE)] == ["duplicate"]
    assert _answers(net, [unseen]) == ["unknown message kind"]  # opened and verified
    row = jpn.envelope_versions()["KOR"]
    assert (row.lowest, row.cause) == (1, "set")  # the administrator's setting stands
    assert _answers(net, [_odd(net, "KOR", "j-heard")]) == ["unknown message kind"]  # JOSE heard

    net.clock.advance(minutes=5)  # past the skew
    assert _answers(net, [_odd(net, "KOR", "c-new", jose=False)]) == ["unknown message kind"]
    row = jpn.envelope_versions()["KOR"]
    assert (row.lowest, row.cause, row.by) == (2, "sent", "c-new")  # issued after it: raised
    assert _answers(net, [_odd(net, "KOR", "j-refused")]) == ["envelope refused"]


def test_the_effective_floor_is_the_inbox_s_the_higher_of_the_partners_row_and_every_partners(
    net: Net,
) -> None:
    jpn = net.nodes["JPN"].exchange
    jpn.set_envelope_versions(None, "KOR", 1)
    jpn.set_envelope_versions(None, EVERY_PARTNER, 2, net.clock.now + timedelta(hours=1))
    rows = jpn.envelope_versions()
    assert (rows["KOR"].lowest, rows[EVERY_PARTNER].lowest) == (1, 2)
    assert jpn.envelope_floors(rows) == {"KOR": 1, EVERY_PARTNER: 1}  # the cut-off is not in force yet
    jpn.set_envelope_versions(None, EVERY_PARTNER, 3)
    rows = jpn.envelope_versions()
    assert jpn.envelope_floors(rows) == {"KOR": 3, EVERY_PARTNER: 3}  # KOR's row says 1: 3 is what holds
    assert _answers(net, [_odd(net, "KOR", "c-2", jose=False)]) == ["unknown message kind"]
    assert _answers(net, [_odd(net, "KOR", "j-1")]) == ["envelope refused"]  # as the floor says


# --- what raises the floor: a batch, a replay inside the skew, the one-by-one path ---

AHEAD = timedelta(minutes=2)  # KOR's clock ahead of JPN's, inside the skew (5 minutes): envelopes open


def _item_message(net: Net, item_id: str, *, at: Any = None) -> tuple[str, dict[str, Any], str]:
    """KOR's item ``item_id`` released to JPN (sealed with KOR's clock at ``at``, JPN's then put
    back): its envelope, the message's body as JPN opens it, and its message id. Not delivered."""
    start = net.clock.now
    net.clock.now = at or start
    try:
        own_item(net, "KOR", item_id)
        entry = net.nodes["KOR"].exchange.release(net.officer("KOR"), item_id, "JPN")
    finally:
        net.clock.now = start
    jpn = net.nodes["JPN"].exchange
    body = open_envelope(jpn.ring, entry.envelope, jpn._identities, at or start, jpn.skew).body
    return entry.envelope, body, entry.msg_id


def _batch(net: Net, messages: list[tuple[str, dict[str, Any]]], msg_id: str, *, at: Any = None) -> str:
    """A batch envelope of KOR's (its key, COSE) carrying ``messages`` (message id, body), sealed with
    KOR's clock at ``at``."""
    ring = net.nodes["KOR"].exchange.ring
    jpn = net.nodes["KOR"].exchange.peer("JPN")
    assert jpn is not None
    body = {"kind": "batch", "messages": [{"msg_id": m, "body": b} for m, b in messages]}
    return seal(ring, jpn, body, msg_id=msg_id, at=at or net.clock.now, ttl=timedelta(minutes=10))


def _kor_floor(net: Net) -> tuple[int, str]:
    row = net.nodes["JPN"].exchange.envelope_versions()["KOR"]
    return row.lowest, row.cause


@pytest.mark.parametrize("what", ["refused", "batch-held-and-refused", "held"])
def test_a_cose_envelope_replayed_inside_the_skew_after_a_lowering_does_not_raise_the_floor(
    net: Net, what: str
) -> None:
    """KOR's clock runs 2 minutes ahead (inside the skew): an envelope it sealed, received before an
    administrator lowered KOR to 1, claims an instant after the setting. Replayed after it, it must
    raise nothing. ``held``: its message is in the inbox (a duplicate). ``refused``: its message was
    refused, so no inbox row says it came before; ``batch-held-and-refused``: a batch of one message
    taken and one refused. On f55f697 the last two raised KOR back to 2: 'brings a message not held'
    is not 'never seen', and the issued-after-the-setting check trusted a clock ahead."""
    jpn = net.nodes["JPN"].exchange
    ahead = net.clock.now + AHEAD
    if what == "held":
        replayed, _, _ = _item_message(net, "k-ahead", at=ahead)
        assert [a["status"] for a in jpn.receive([replayed], source=SOURCE)] == ["stored"]
    elif what == "refused":
        _kor_sent_cose(net)
        start = net.clock.now
        net.clock.now = ahead  # KOR's clock, for its seal
        try:
            replayed = _odd(net, "KOR", "c-ahead", jose=False)
        finally:
            net.clock.now = start
        assert _answers(net, [replayed]) == ["unknown message kind"]
    else:
        envelope, body, msg_id = _item_message(net, "k-held", at=ahead)
        assert [a["status"] for a in jpn.receive([envelope], source=SOURCE)] == ["stored"]
        replayed = _batch(net, [(msg_id, body), ("m-bad", {"kind": "item"})], "b-ahead", at=ahead)
        (answer,) = jpn.receive([replayed], source=SOURCE)
        assert [r["status"] for r in answer["results"]] == ["duplicate", "refused"]
    assert _kor_floor(net) == (2, "sent")  # raised by what came before the lowering
    net.clock.advance(seconds=30)
    jpn.set_envelope_versions(None, "KOR", 1)  # before the replayed envelope's claimed instant
    net.clock.advance(seconds=30)

    jpn.receive([replayed], source=SOURCE)
    assert _kor_floor(net) == (1, "set"), "a replay undid the administrator's lowering"
    assert _answers(net, [_odd(net, "KOR", "j-heard")]) == ["unknown message kind"]  # JOSE heard


def test_a_batch_raises_the_floor_when_any_message_it_brings_is_new_and_none_when_all_are_held(
    net: Net,
) -> None:
    """The rule for a batch: one envelope, one act of KOR's key, one issued_at. Sealed more than the
    skew after the administrator's setting it cannot be one received before it; it raises the floor
    if it brings any message not held (KOR's outbox resending a message JPN took, beside a new one),
    and nothing if every message it brings is held (a duplicate, however new its envelope)."""
    jpn = net.nodes["JPN"].exchange
    envelope, held_body, held_id = _item_message(net, "k-1")
    assert [a["status"] for a in jpn.receive([envelope], source=SOURCE)] == ["stored"]
    jpn.set_envelope_versions(None, "KOR", 1)
    net.clock.advance(minutes=6)  # past the skew
    _, new_body, new_id = _item_message(net, "k-2")

    (answer,) = jpn.receive([_batch(net, [(held_id, held_body)], "b-held")], source=SOURCE)
    assert [r["status"] for r in answer["results"]] == ["duplicate"]
    assert _kor_floor(net) == (1, "set")  # every message held: nothing raised

    (answer,) = jpn.receive(
        [_batch(net, [(held_id, held_body), (new_id, new_body)], "b-mixed")], source=SOURCE
    )
    assert [r["status"] for r in answer["results"]] == ["duplicate", "stored"]
    row = jpn.envelope_versions()["KOR"]
    assert (row.lowest, row.cause, row.by) == (2, "sent", "b-mixed")  # one new message: raised
    assert _answers(net, [_odd(net, "KOR", "j-refused")]) == ["envelope refused"]


def test_a_receive_settled_one_by_one_after_a_concurrent_delivery_still_raises_the_floor(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox's batch commit meets a concurrent delivery (here: its first commit refused as the
    store refuses a message id committed meanwhile) and settles each envelope on its own; that path
    raises nothing itself. The floor is raised all the same: by the receive's first pass, before
    its commit (the envelope verified and brought a message not held then)."""
    jpn = net.nodes["JPN"].exchange
    envelope, _, msg_id = _item_message(net, "k-race")
    commit = jpn._commit
    calls: list[int] = []

    def first_conflicts(accepted: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConflictError("inbox: message id committed meanwhile")
        commit(accepted)

    monkeypatch.setattr(jpn, "_commit", first_conflicts)
    assert [a["status"] for a in jpn.receive([envelope], source=SOURCE)] == ["stored"]
    assert len(calls) == 2  # the batch commit, then the one-by-one path's
    row = jpn.envelope_versions()["KOR"]
    assert (row.lowest, row.cause, row.by) == (2, "sent", msg_id)
    assert _answers(net, [_odd(net, "KOR", "j-refused")]) == ["envelope refused"]
