"""Attack on the duties through time (issue 22 §7): a recall refused by the holder for clock skew must not
be lost. The sender's clock runs 10 minutes ahead; the holder refuses the envelope ("not yet valid")
and says only that it may be tried again. The recall is retried in a fresh envelope (the originator's
inner signature unchanged) and applies once the clock is put right; a message given up on can be
resent by an officer.

JPN runs as a node process with its sender (its acknowledgements travel back on their own); KOR is in
this process on a clock it can set ahead, serving its API on its port.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.reliability.processes import count, wait_for
from tests.security._live import Processes

from gsomia.demo import network
from gsomia.errors import AccessDenied, InvalidInputError
from gsomia.exchange import HttpTransport
from gsomia.node import Node, load_config

AHEAD = timedelta(minutes=10)


class SettableClock:
    """The machine's clock, off by ``offset``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, SettableClock, network.NetNode]]:
    clock = SettableClock()
    clock.offset = -timedelta(hours=1)  # keys made an hour back
    members = {m.party: m for m in network.build(tmp_path_factory.mktemp("retries") / "net", clock=clock)}
    clock.offset = timedelta(0)
    kor = Node(load_config(members["KOR"].directory), clock=clock)
    try:
        with Processes(members["JPN"], sender=True), network.serve_in_threads({"KOR": kor}, [members["KOR"]]):
            yield kor, clock, members["JPN"]
    finally:
        kor.close()


def _released(kor: Node, item_id: str) -> None:
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
    }
    kor.ingest(None, label=label, payload=b'{"track": 1}', item_id=item_id)
    entry = kor.exchange.release(kor.person("officer"), item_id, "JPN")
    with HttpTransport(timeout=10) as http:
        kor.exchange.deliver_due(http)
    settled = kor.exchange.fed.outbox_entry(entry.msg_id)
    assert settled is not None
    assert settled.state == "delivered"


def _recall_entry(kor: Node, item_id: str) -> str:
    (entry,) = [e for e in kor.exchange.fed.outbox() if e.kind == "duty" and e.item_id == item_id]
    return entry.msg_id


def _withdrawn_at_jpn(jpn: network.NetNode, item_id: str) -> bool:
    sql = f"SELECT count(*) FROM items WHERE id = '{item_id}' AND state = 'recalled'"  # noqa: S608 - test ids
    return count(jpn.directory, sql) == 1


def test_a_recall_refused_for_clock_skew_is_retried_and_applies_once_the_clock_is_right(
    net: tuple[Node, SettableClock, network.NetNode],
) -> None:
    kor, clock, jpn = net
    _released(kor, "skew-recall")
    clock.offset = AHEAD
    kor.duties.recall(kor.person("officer"), "skew-recall", "withdrawn")
    msg_id = _recall_entry(kor, "skew-recall")
    first = kor.exchange.fed.outbox_entry(msg_id)
    assert first is not None
    with HttpTransport(timeout=10) as http:
        kor.exchange.deliver_due(http)
        refused = kor.exchange.fed.outbox_entry(msg_id)
        assert refused is not None
        assert refused.state == "pending"  # not given up: refused for now
        assert refused.last_error == "JPN refused for now: envelope refused"
        assert not _withdrawn_at_jpn(jpn, "skew-recall")
        clock.offset = timedelta(0)  # the operator puts KOR's clock right
        kor.exchange.deliver_due(http)  # due at once, though it was set for 10 minutes "later"
    done = kor.exchange.fed.outbox_entry(msg_id)
    assert done is not None
    assert done.state == "delivered"
    assert done.envelope != first.envelope  # a fresh envelope ...
    assert _withdrawn_at_jpn(jpn, "skew-recall")  # ... carrying the originator's signed recall

    def answered() -> bool:
        (ack,) = kor.duties.label_status(kor.person("officer"), "skew-recall")["changes"][0]["acks"]
        return bool(ack["state"] == "withdrawn")

    wait_for(answered, 30, "JPN's acknowledgement")


def test_an_officer_resends_a_duty_given_up_on(net: tuple[Node, SettableClock, network.NetNode]) -> None:
    kor, clock, jpn = net
    officer = kor.person("officer")
    _released(kor, "resent-recall")
    clock.offset = AHEAD
    kor.duties.recall(officer, "resent-recall", "withdrawn")
    msg_id = _recall_entry(kor, "resent-recall")
    retry_for = kor.exchange.settlement.retry_for
    kor.exchange.settlement.retry_for = timedelta(0)  # this node retries nothing refused for now
    try:
        with HttpTransport(timeout=10) as http:
            kor.exchange.deliver_due(http)
    finally:
        kor.exchange.settlement.retry_for = retry_for
    given_up = kor.exchange.fed.outbox_entry(msg_id)
    assert given_up is not None
    assert given_up.state == "undeliverable"
    clock.offset = timedelta(0)
    # an item is never resent (it is released again, decided anew), nor a message still pending
    item_entry = next(
        e for e in kor.exchange.fed.outbox() if e.kind == "item" and e.item_id == "resent-recall"
    )
    with pytest.raises(InvalidInputError, match="release it again"):
        kor.exchange.resend(officer, item_entry.msg_id)
    analyst = kor.person("analyst")  # a reader, no officer
    with pytest.raises(AccessDenied):
        kor.exchange.resend(analyst, msg_id)
    resent = kor.exchange.resend(officer, msg_id)
    assert (resent.state, resent.msg_id) == ("pending", msg_id)
    assert resent.last_error == "resent by officer"
    with pytest.raises(InvalidInputError, match="only an undeliverable one"):
        kor.exchange.resend(officer, msg_id)
    with HttpTransport(timeout=10) as http:
        kor.exchange.deliver_due(http)
    deadline = time.monotonic() + 120
    while not _withdrawn_at_jpn(jpn, "resent-recall") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _withdrawn_at_jpn(jpn, "resent-recall")
    # the refusals (an item; a message still pending) and the resend, each audited
    assert [r.outcome for r in kor.store.audit(kind="outbox.resend")] == ["refused", "allowed", "refused"]
