"""Two OS processes of one node working on its one store at the same time: what each runs, started
with ``multiprocessing``'s spawn (a fresh interpreter, nothing shared but the store and the
synchronisation handed over). Every wait is bounded (:data:`WAIT_S`): a process whose partner never
comes fails instead of hanging the test.

- :func:`deliver`: one process of KOR delivering KOR's outbox to JPN (a JPN node of its own process
  on JPN's store answering), in step with the other (``together``: both push each batch at once
  and settle it at once) or overtaken by it (``first``: its first batch is answered by JPN, then it
  waits for the other process, ``second``, to deliver and settle everything before settling).
- :func:`import_receipts`: one process of KOR applying a receipts file, the two processes having
  both read the entries as exported before either settles.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gsomia.crypto.keys import PeerIdentity
from gsomia.exchange import MemoryTransport, Transfer
from gsomia.node import Node, load_config
from gsomia.testing import FakeClock

WAIT_S = 120.0  # the longest a process waits for the other (which may still be starting, under load)


class _Stepped(MemoryTransport):
    """Each push waits until the other process pushes its own (``together``), or (``first``) the
    first push, once answered, waits for the other process to settle everything before it returns."""

    def __init__(self, jpn: Node, mode: str, sync: dict[str, Any]) -> None:
        super().__init__({"JPN": jpn})
        self.mode, self.sync = mode, sync
        self.pushes = 0

    def push(self, peer: PeerIdentity, envelopes: Sequence[str]) -> list[Any]:
        self.pushes += 1
        if self.mode == "together":
            self.sync["push"].wait(WAIT_S)
        answers = super().push(peer, envelopes)
        if self.mode == "first" and self.pushes == 1:
            self.sync["answered"].set()  # JPN holds this batch; this process has not settled it
            if not self.sync["settled"].wait(WAIT_S):
                raise TimeoutError("the other process did not settle within the wait")
        return answers


def _in_step(settle: Callable[..., list[str]], sync: dict[str, Any]) -> Callable[..., list[str]]:
    def settle_many(outcomes: Sequence[dict[str, Any]], *, now_us: int, **more: Any) -> list[str]:
        sync["settle"].wait(WAIT_S)  # both processes read these entries as they were; both settle now
        return settle(outcomes, now_us=now_us, **more)

    return settle_many


def _open(directory: str, at: str) -> Node:
    return Node(load_config(Path(directory)), clock=FakeClock(datetime.fromisoformat(at)))


def deliver(kor_dir: str, jpn_dir: str, at: str, mode: str, sync: dict[str, Any], out: Any) -> None:
    """KOR's outbox delivered to JPN by this process (``mode``: together, first or second); puts
    (``ok``, this process's deliveries as (message id, state)) or (``error``, the traceback) on
    ``out``."""
    try:
        kor, jpn = _open(kor_dir, at), _open(jpn_dir, at)
        try:
            if mode == "together":
                kor.exchange.fed.settle_many = _in_step(kor.exchange.fed.settle_many, sync)  # type: ignore[method-assign]
            if mode == "second" and not sync["answered"].wait(WAIT_S):
                raise TimeoutError("the first process's batch was not answered within the wait")
            done = kor.exchange.deliver_due(_Stepped(jpn, mode, sync))
            if mode == "second":
                sync["settled"].set()
            out.put(("ok", [(d.msg_id, d.state) for d in done]))
        finally:
            kor.close()
            jpn.close()
    except BaseException:
        for name in ("push", "settle"):  # the other process stops waiting at once
            if name in sync:
                sync[name].abort()
        for name in ("answered", "settled"):
            if name in sync:
                sync[name].set()
        out.put(("error", traceback.format_exc()))


def import_receipts(kor_dir: str, at: str, text: str, sync: dict[str, Any], out: Any) -> None:
    """``text`` (a receipts file) applied at KOR by this process, the other process having read the
    same entries as exported before either settles; puts (``ok``, (delivered, already)) or
    (``error``, the traceback) on ``out``."""
    try:
        kor = _open(kor_dir, at)
        try:
            kor.exchange.fed.settle_many = _in_step(kor.exchange.fed.settle_many, sync)  # type: ignore[method-assign]
            applied = Transfer(kor.exchange).import_receipts(text)
            out.put(("ok", (sorted(applied.delivered), sorted(applied.already))))
        finally:
            kor.close()
    except BaseException:
        sync["settle"].abort()
        out.put(("error", traceback.format_exc()))
