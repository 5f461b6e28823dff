"""Run ``gsomia`` with a pause before each acknowledgement of a handed track (a test hook).

``python -c "from tests.stream._hold_acks import main; main()" PAUSE ARGS...`` runs the CLI with
``ARGS``; while the file ``PAUSE`` exists, the process holding an outbound link waits before it
acknowledges, at the bus, a handed track its partner has already confirmed, and writes its pid to
``PAUSE.reached`` when it first does. A test can then kill it exactly between the partner's
confirmation and the acknowledgement, without racing a timer.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
from pathlib import Path
from typing import Any


def install(pause: Path) -> None:
    from gsomia.stream import _bus

    acknowledge = _bus.NatsBus._ack

    async def paused(self: _bus.NatsBus, message: Any) -> None:
        if pause.exists():
            reached = pause.with_name(pause.name + ".reached")
            reached.write_text(str(os.getpid()), encoding="utf-8")
            while pause.exists():
                await asyncio.sleep(0.05)
        await acknowledge(self, message)

    _bus.NatsBus._ack = paused  # type: ignore[method-assign]


def main() -> None:
    install(Path(sys.argv[1]))
    sys.argv = ["gsomia", *sys.argv[2:]]
    runpy.run_module("gsomia", run_name="__main__", alter_sys=True)
