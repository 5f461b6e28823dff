"""Clock skew between nodes: within the allowed skew an envelope is accepted, beyond it refused and audited.

JPN runs as its own process on the machine's clock, allowing 120 s of skew
(``max_clock_skew_seconds`` in its node.toml). KOR sends from this process with its clock
set a few minutes off the machine's, as a partner whose clock drifted would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.reliability.livenet import SUMMARIES
from tests.reliability.processes import audit, serve, stop

from gsomia.demo import network
from gsomia.errors import ConfigError
from gsomia.exchange import HttpTransport
from gsomia.node import Node, init_node_dir, load_config

ALLOWED_S = 120
LABEL = {
    "originator": "KOR",
    "classification": "군사III급비밀",
    "releasable_to": ["JPN"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-01-01T00:00:00+09:00",
}


class SkewedClock:
    """The machine's clock, off by ``offset``."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def _allow_skew(directory: Path, seconds: int | str) -> None:
    path = directory / "node.toml"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = [f"max_clock_skew_seconds = {seconds}" if s.startswith("max_clock_skew") else s for s in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def skewed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, SkewedClock, Path]]:
    clock = SkewedClock()
    clock.offset = -timedelta(hours=1)  # keys made an hour back, so a clock running behind can still sign
    members = network.build(tmp_path_factory.mktemp("net"), clock=clock)
    kor_m, jpn_m = members[0], members[1]
    _allow_skew(jpn_m.directory, ALLOWED_S)
    receiver = serve(jpn_m)
    kor = Node(load_config(kor_m.directory), clock=clock)
    try:
        yield kor, clock, jpn_m.directory
    finally:
        kor.close()
        stop(receiver)


# (KOR's clock against the machine's, what JPN does, the audited reason)
CASES = [
    (timedelta(seconds=0), "delivered", None),
    (timedelta(seconds=90), "delivered", None),  # ahead, within the 120 s allowed
    (-timedelta(minutes=3), "delivered", None),  # behind: issued 3 min ago, valid for 24 h
    (timedelta(seconds=200), "undeliverable", "not-yet-valid"),  # ahead beyond the skew
    (timedelta(minutes=5), "undeliverable", "not-yet-valid"),
]
_SEEN: list[str] = []


@pytest.mark.parametrize(
    ("offset", "state", "reason"), CASES, ids=[f"{c[0].total_seconds():+g}s" for c in CASES]
)
def test_envelopes_within_the_allowed_skew_are_accepted_and_beyond_it_refused_with_the_reason(
    skewed: tuple[Node, SkewedClock, Path], offset: timedelta, state: str, reason: str | None
) -> None:
    kor, clock, jpn_dir = skewed
    item_id = f"skew{int(offset.total_seconds()):+d}".replace("+", "ahead").replace("-", "behind")
    clock.offset = offset
    kor.items.ingest(kor.people.person("officer"), label=LABEL, payload=b'{"n": 1}', item_id=item_id)
    entry = kor.exchange.release(kor.people.person("officer"), item_id, "JPN")
    with HttpTransport() as transport:
        results = kor.exchange.deliver_due(transport)
    assert [(r.msg_id, r.state) for r in results] == [(entry.msg_id, state)]
    jpn = Node(load_config(jpn_dir))  # read beside the running process
    try:
        held = jpn.store.get_item(item_id) is not None
        refusals = [r for r in audit(jpn, "envelope.refused") if r.get("reason") == reason]
    finally:
        jpn.close()
    assert held == (state == "delivered")
    sent = kor.exchange.fed.outbox_entry(entry.msg_id)
    assert sent is not None
    assert sent.state == state
    if reason is None:
        line = f"  KOR {offset.total_seconds():+5.0f} s: accepted and stored"
    else:
        assert sent.last_error == "JPN refused: envelope refused"  # the sender learns nothing more
        last = refusals[-1]  # JPN's log says what and by how much
        assert last["outcome"] == "refused"
        ahead = re.search(r", (\d+) s ahead of this node's ", last["note"])
        assert ahead is not None
        assert abs(int(ahead[1]) - offset.total_seconds()) <= 2  # iat is in whole seconds
        assert f"allowed clock skew {ALLOWED_S} s" in last["note"]
        line = f"  KOR {offset.total_seconds():+5.0f} s: refused; JPN audited {reason}: {last['note']}"
    _SEEN.append(line)
    if len(_SEEN) == len(CASES):
        SUMMARIES.append((f"clock skew: JPN allows {ALLOWED_S} s", list(_SEEN)))


def test_the_allowed_skew_is_read_from_node_toml_and_checked(tmp_path: Path) -> None:
    config = init_node_dir(tmp_path / "n", "JPN")
    assert config.max_clock_skew == timedelta(seconds=300)  # the default written by init
    _allow_skew(config.directory, 45)
    assert load_config(config.directory).max_clock_skew == timedelta(seconds=45)
    for bad in ("-1", "3601", "1.5", '"60"'):
        _allow_skew(config.directory, bad)
        with pytest.raises(ConfigError, match="max_clock_skew_seconds"):
            load_config(config.directory)
