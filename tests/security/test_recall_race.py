"""Attack: a recall races a release in flight (issue 22 §2).

KOR releases an item to JPN and recalls it while the release is being sent. The recall is
injected at every step of one send by KOR's sender: before the sender picks the entry up,
after it picked it up and before the HTTP call, after JPN answered and before the sender
settled, and with the send failing before or after JPN stored the item. Whatever the
interleaving, the recalled item must not stay (or arrive later) at JPN, KOR's entry must not go
back to ``pending`` and be sent after the recall, and KOR's label-status must show JPN's answer.

JPN runs as a node process (``gsomia node serve --sender``: its acknowledgements travel back on
their own); KOR is the node under test, in this process, serving its API on its port so JPN's
acknowledgements reach it, and sending through a transport that injects the recall.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from tests.reliability.processes import count, wait_for
from tests.security._live import Processes

from gsomia.crypto.keys import PeerIdentity
from gsomia.demo import network
from gsomia.errors import TransportError
from gsomia.exchange import HttpTransport, PeerTransport
from gsomia.node import Node

Step = Callable[[], None]


class Injecting(PeerTransport):
    """KOR's real HTTP transport with something done before and after the call, and optionally a
    failure the sender sees (before the envelopes left, or after JPN answered)."""

    def __init__(
        self, inner: HttpTransport, *, before: Step | None = None, after: Step | None = None, fail: str = ""
    ) -> None:
        self.inner, self.before, self.after, self.fail = inner, before, after, fail

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        if self.before is not None:
            self.before()
        if self.fail == "before":
            raise TransportError("ConnectError: connection refused")
        answers = self.inner.push(peer, envelopes)
        if self.after is not None:
            self.after()
        if self.fail == "after":
            raise TransportError("ReadError: connection reset after the request was sent")
        return answers

    def consistency(self, peer: PeerIdentity, first: int, second: int) -> list[str]:
        return self.inner.consistency(peer, first, second)

    def inclusion(self, peer: PeerIdentity, entry: str) -> dict[str, Any]:
        return self.inner.inclusion(peer, entry)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, network.NetNode]]:
    members = {m.party: m for m in network.build(tmp_path_factory.mktemp("race") / "net")}
    kor = Node.open(members["KOR"].directory)
    try:
        with Processes(members["JPN"], sender=True), network.serve_in_threads({"KOR": kor}, [members["KOR"]]):
            yield kor, members["JPN"]
    finally:
        kor.close()


def _item(kor: Node, item_id: str) -> None:
    label = {
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ["JPN"],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (kor.clock() - timedelta(hours=1)).isoformat(),
    }
    kor.ingest(None, label=label, payload=b'{"track": 1}', item_id=item_id)


def _jpn_state(jpn: network.NetNode, item_id: str) -> str | None:
    if not count(jpn.directory, f"SELECT count(*) FROM items WHERE id = '{item_id}'"):  # noqa: S608 - test ids
        return None
    held = count(jpn.directory, f"SELECT count(*) FROM items WHERE id = '{item_id}' AND state = 'held'")  # noqa: S608
    return "held" if held else "withdrawn"


CASES = {
    # where the recall lands in KOR's send, and whether the send fails (before or after JPN stored it)
    "before-the-sender-picks-it-up": ("first", ""),
    "after-pick-up-before-the-http-call": ("before", ""),
    "after-jpn-answered-before-settling": ("after", ""),
    "before-a-send-that-fails-to-connect": ("before", "before"),
    "before-a-send-that-fails-after-jpn-stored-it": ("before", "after"),
    "after-jpn-stored-it-and-the-send-failed": ("after", "after"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_recall_injected_at_every_step_of_a_send_is_never_lost(
    net: tuple[Node, network.NetNode], case: str
) -> None:
    kor, jpn = net
    officer = kor.person("officer")
    item_id = f"race-{case}"
    where, fail = CASES[case]
    _item(kor, item_id)
    entry = kor.exchange.release(officer, item_id, "JPN")

    def recall() -> None:
        kor.duties.recall(officer, item_id, f"withdrawn ({case})")

    if where == "first":
        recall()
    with HttpTransport(timeout=10) as http:
        injecting = Injecting(
            http,
            before=recall if where == "before" else None,
            after=recall if where == "after" else None,
            fail=fail,
        )
        kor.exchange.deliver_due(injecting)
        # the entry a recall cancelled stays cancelled: never back to pending, never sent again
        settled = kor.exchange.fed.outbox_entry(entry.msg_id)
        assert settled is not None
        assert settled.state in ("undeliverable", "delivered"), settled
        assert settled.last_error is not None
        assert "recalled by the originator" in settled.last_error
        # everything else KOR has to send goes (the recall itself, retries)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            kor.exchange.deliver_due(http)
            if not [e for e in kor.exchange.fed.outbox(state="pending") if e.item_id == item_id]:
                break
            time.sleep(0.2)

    # JPN either never got the item or holds it withdrawn
    assert _jpn_state(jpn, item_id) in (None, "withdrawn")

    # and KOR hears back from JPN: its answer, not "pending" forever
    def answered() -> bool:
        status = kor.duties.label_status(officer, item_id)["changes"][-1]
        return "JPN" not in status["pending"]

    wait_for(answered, 30, f"JPN's answer to the recall of {item_id}")
    (change,) = kor.duties.label_status(officer, item_id)["changes"]
    (ack,) = change["acks"]
    assert ack["state"] in ("withdrawn", "not-held")
    assert (ack["state"] == "withdrawn") == (_jpn_state(jpn, item_id) == "withdrawn")
    # the item does not arrive later either: a sender round with everything due changes nothing
    with HttpTransport(timeout=10) as http:
        kor.exchange.deliver_due(http)
    assert _jpn_state(jpn, item_id) in (None, "withdrawn")
