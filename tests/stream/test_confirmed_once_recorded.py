"""A receiver confirms a window root to its sender (``ACK``) only once its audit record of that root
(``stream.batch`` ``verified``) is committed.

The confirmation tells the sender it need not send those tracks again (a sender handing tracks
between processes acknowledges them at its bus then). Before, the record went in the next commit of
the receiver's audit lane, not waited for, and the ACK was sent at once: a receiver killed between
the two had confirmed tracks the record vouching for them never reached the store, and the sender,
told they were taken, never sent them again. Now a crash before the commit leaves the window
unconfirmed: the sender sends it again (dropped as duplicates, recorded then). Here JPN's commits of
those records take a second each, and every confirmation any sender reads must find its record
committed already.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.stream.test_slow_commits import _crossing

from gsomia.node import Node
from gsomia.store import AuditRow
from gsomia.stream import _service

_SLOW_S = 1.0  # each of JPN's commits that holds a verified root's record


def _slowed(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **named: Any) -> Any:
        rows = [r for a in args if isinstance(a, list) for r in a if isinstance(r, AuditRow)]
        if any(r.kind == "stream.batch" and r.outcome == "verified" for r in rows):
            time.sleep(_SLOW_S)
        return method(*args, **named)

    return wrapped


class _Watched:
    """``ACK_BODY`` whose ``unpack`` (a sender reading a confirmation) calls ``seen`` first."""

    def __init__(self, inner: Any, seen: Callable[[], None]) -> None:
        self.inner, self.seen, self.size = inner, seen, inner.size

    def pack(self, received: int) -> bytes:
        return bytes(self.inner.pack(received))

    def unpack(self, body: bytes) -> tuple[int]:
        self.seen()
        return tuple(self.inner.unpack(body))  # type: ignore[return-value]


def _verified(nodes: dict[str, Node]) -> int:
    return sum(
        1
        for node in nodes.values()
        for r in node.store.audit(after_seq=0, kind="stream.batch", limit=100_000)
        if r.outcome == "verified"
    )


def test_a_window_is_confirmed_only_once_its_verified_record_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _crossing(tmp_path) as (nodes, cross):
        jpn = nodes["JPN"].store
        for name in ("append_audit", "remember_signed_arrivals"):
            monkeypatch.setattr(jpn, name, _slowed(getattr(jpn, name)))
        lock = threading.Lock()
        confirmations: list[tuple[int, int]] = []  # (confirmations read so far, records committed then)

        def seen() -> None:
            committed = _verified(nodes)
            with lock:
                confirmations.append((len(confirmations) + 1, committed))

        monkeypatch.setattr(_service, "ACK_BODY", _Watched(_service.ACK_BODY, seen))
        got = cross(20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(confirmations) < 3:
            time.sleep(0.1)
        with lock:
            read = list(confirmations)
    assert len(got) == 20
    assert len(read) >= 3, "the windows are confirmed, only later"
    early = [(n, committed) for n, committed in read if committed < n]
    assert not early, f"confirmations read before their records were committed: {early[:5]}"
