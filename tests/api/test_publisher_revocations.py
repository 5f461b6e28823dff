"""A publisher's open feed (``/stream/tracks/publish``) stops publishing once what let it open is
taken away, by another process of the node: its API token revoked or expired, its person disabled
or no longer a release officer. The next message is not published (no consumer gets its track), the
feed is closed 1008 naming the refusal, and the refusal is audited once; another publisher's feed
goes on. Before, the feed checked its token and role when it opened only, and published on.

An idle feed (one that sends nothing after the change) is closed as well, within about a second, as
an idle consumer's stream is: before, its standing was checked only when a message came, so a feed
holding still kept its connection (and its revoked token's standing) open indefinitely."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.stream._consuming import serve_node
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from gsomia.core.tracks import track_update_to_json
from gsomia.node import Node
from gsomia.stream import launches, replay
from gsomia.testing import FakeClock

# the counters are read every 0.25 s and an open feed looks at them every 0.1 s: a change is seen
# within this, with room for a loaded machine
_SEEN_S = 1.5
_GSOMIA = Path(sys.executable).with_name("gsomia")

# run in another process: the person's record rewritten as any writer of the people table does (the
# people counter moved in the same transaction), their release officer's role taken away
_DEMOTE = """
import sys
from dataclasses import replace
from pathlib import Path
from gsomia._codec import canonical, person_to_dict
from gsomia.core.access import Role
from gsomia.core.instants import epoch_us
from gsomia.node import Node
from gsomia.node._config import load_config

node = Node(load_config(Path(sys.argv[1])))
person = node.people.person(sys.argv[2])
demoted = replace(person, roles=frozenset({Role.ANALYST}))
node.kernel.store.update_person(person.id, canonical(person_to_dict(demoted)), epoch_us(node.kernel.clock()))
node.close()
"""


def _cli(*args: str) -> None:
    subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [str(_GSOMIA), *args], check=True, timeout=120, stdout=subprocess.DEVNULL
    )


def _demote(directory: Path, person_id: str) -> None:
    subprocess.run(  # noqa: S603 - our own code, fixed arguments
        [sys.executable, "-c", _DEMOTE, str(directory), person_id], check=True, timeout=120
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    yield from serve_node(tmp_path / "jpn")


@pytest.fixture
def served_fake(tmp_path: Path) -> Iterator[tuple[Node, str]]:
    """The same on a clock the test moves (it stands still otherwise)."""
    yield from serve_node(tmp_path / "jpn", FakeClock(datetime.now(UTC)))


def _add(node: Node, person_id: str, roles: list[str]) -> None:
    node.people.add_person(
        None,
        {"id": person_id, "name": person_id, "nationality": "JPN", "clearance": "特定秘密",
         "need_to_know": ["dprk-missile"], "roles": roles},
    )  # fmt: skip


_UPDATE = track_update_to_json(replay(launches(2019)[2], originator="JPN", every_s=20)[0])


def _track(track_id: str) -> str:
    return json.dumps(dict(_UPDATE, track_id=track_id))


def _received_until(consumer: ClientConnection, last: str) -> list[str]:
    """The track ids the consumer gets up to ``last`` (each wait bounded; ``last`` must come)."""
    got: list[str] = []
    until = time.monotonic() + 15
    while last not in got:
        assert time.monotonic() < until, f"{last} never reached the consumer (got {got})"
        got.append(json.loads(consumer.recv(timeout=10))["track_id"])
    return got


def _refusals(node: Node, kind: str, actor: str, *, wait: bool = True) -> list[dict[str, Any]]:
    """``actor``'s refusals of ``kind`` on file, once one is written (``wait``: bounded), and a
    moment after it: a second record would be written with the first."""
    until = time.monotonic() + (5 if wait else 0)
    while True:
        found = [
            {"actor": r.actor, **json.loads(r.detail)}
            for r in node.store.audit(kind=kind)
            if r.outcome == "refused" and r.actor == actor
        ]
        if found or time.monotonic() > until:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    return [
        {"actor": r.actor, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind)
        if r.outcome == "refused" and r.actor == actor
    ]


@dataclass
class _Cut:
    got: list[str]  # what the consumer received after the change, up to the other publisher's track
    late: set[str]  # what kato sent once the change had had time to be seen: none may be published
    code: int
    reason: str


def _cut_off(base: str, tokens: tuple[str, str, str], change: Callable[[], None], *, idle: bool) -> _Cut:
    """``kato`` and ``ito`` publish over their open feeds while ``sato`` follows; ``change`` is made
    (by another process); then kato goes on sending, a message every 20 ms (``idle``: sends
    nothing), and once kato's feed is closed (it must be, within 10 s), ito sends one. What sato got
    from then on, what kato sent late, and kato's close frame."""
    kato, ito, sato = tokens
    ws = base.replace("http", "ws")

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    with (
        connect(f"{ws}/stream/tracks/ws", additional_headers=bearer(sato)) as consumer,
        connect(f"{ws}/stream/tracks/publish", additional_headers=bearer(kato)) as cut,
        connect(f"{ws}/stream/tracks/publish", additional_headers=bearer(ito)) as other,
    ):
        time.sleep(0.3)  # all open
        cut.send(_track("kato-0"))
        other.send(_track("ito-0"))
        assert set(_received_until(consumer, "ito-0")) >= {"kato-0", "ito-0"}, "both published before"
        change()
        changed, late = time.monotonic(), set()
        try:
            if idle:
                answer = cut.recv(timeout=_SEEN_S + 3)
                pytest.fail(f"the feed answered {answer!r} rather than closing")
            for n in range(1, 500):  # flowing: the feed's own check before each message
                if time.monotonic() - changed > _SEEN_S:
                    late.add(f"kato-{n}")
                cut.send(_track(f"kato-{n}"))
                time.sleep(0.02)
            pytest.fail("the feed stayed open (its messages published) after the change")
        except ConnectionClosed as closed:
            rcvd = closed.rcvd
        except TimeoutError:
            pytest.fail("the idle feed stayed open after the change")
        assert rcvd is not None, "closed without a close frame"
        other.send(_track("ito-1"))  # the publisher nothing happened to goes on
        got = _received_until(consumer, "ito-1")
    return _Cut(got, late, rcvd.code, rcvd.reason)


def _officers(node: Node, days: int = 1) -> tuple[str, tuple[str, str, str]]:
    """kato's token's id; kato's and ito's tokens (release officers, ``days`` long for kato, a
    month for ito) and sato's (an analyst, a month)."""
    _add(node, "kato", ["release_officer"])
    _add(node, "ito", ["release_officer"])
    _add(node, "sato", ["analyst"])
    token_id, kato, _ = node.credentials.issue(None, "kato", days=days)
    ito = node.credentials.issue(None, "ito", days=30)[1]
    sato = node.credentials.issue(None, "sato", days=30)[1]
    return token_id, (kato, ito, sato)


_KINDS = ("stream.publish", "authz.stream.publish")  # the token's refusal, the person's


def _check_cut(node: Node, cut: _Cut, named: str, kind: str, error: str) -> None:
    """kato's message after the change was not published, the feed closed 1008 naming ``named``, and
    its refusal audited once: one record of ``kind`` with ``error``, none of the other kind."""
    assert not cut.late & set(cut.got), "a message sent after the change was seen was published"
    assert cut.code == 1008
    assert named in cut.reason
    refusals = _refusals(node, kind, "kato")
    assert len(refusals) == 1, f"the refusal that closed the feed is audited once: {refusals}"
    assert refusals[0]["error"] == error
    other = next(k for k in _KINDS if k != kind)
    assert _refusals(node, other, "kato", wait=False) == [], "refused a second time, as the other"


_IDLE = pytest.mark.parametrize("idle", [False, True], ids=["sending", "idle"])


@_IDLE
def test_a_feed_whose_token_another_process_revokes_publishes_no_more(
    served: tuple[Node, str], idle: bool
) -> None:
    node, base = served
    token_id, tokens = _officers(node)
    directory = str(node.config.directory)
    revoke = ("person", "revoke-token", "--dir", directory, token_id)
    cut = _cut_off(base, tokens, lambda: _cli(*revoke), idle=idle)
    _check_cut(node, cut, "revoked", "stream.publish", "AuthenticationError")


@_IDLE
def test_a_feed_whose_person_another_process_disables_publishes_no_more(
    served: tuple[Node, str], idle: bool
) -> None:
    """Disabling revokes the person's tokens too: the person's own refusal comes first (a disabled
    person holds no role), not their token's."""
    node, base = served
    _, tokens = _officers(node)
    directory = str(node.config.directory)
    cut = _cut_off(base, tokens, lambda: _cli("person", "disable", "--dir", directory, "kato"), idle=idle)
    _check_cut(node, cut, "release_officer", "authz.stream.publish", "AccessDenied")


@_IDLE
def test_a_feed_whose_person_another_process_demotes_publishes_no_more(
    served: tuple[Node, str], idle: bool
) -> None:
    node, base = served
    _, tokens = _officers(node)
    cut = _cut_off(base, tokens, lambda: _demote(node.config.directory, "kato"), idle=idle)
    _check_cut(node, cut, "release_officer", "authz.stream.publish", "AccessDenied")


@_IDLE
def test_a_feed_whose_token_expires_publishes_no_more(served_fake: tuple[Node, str], idle: bool) -> None:
    """kato's token lasts a day, ito's and sato's a month; the node's clock passes two days."""
    node, base = served_fake
    _, tokens = _officers(node, days=1)
    clock = node.kernel.clock
    assert isinstance(clock, FakeClock)
    cut = _cut_off(base, tokens, lambda: clock.advance(days=2), idle=idle)
    _check_cut(node, cut, "expired", "stream.publish", "AuthenticationError")
