"""The rows every benchmark's ``--json`` object carries, for ``python -m benchmarks`` to tabulate.

One row is one judged figure: what was measured, gsomia's value, the peer's value measured
in the same run (if the figure has a peer), the ratio, the target and whether it was met
(``None`` when the run was too small to judge it); optionally what the machine did meanwhile
(``machine``: the host's steal, the CPUs' other work, the load).
"""

from __future__ import annotations

from typing import Any

__all__ = ["row"]


def row(
    figure: str,
    value: float,
    unit: str,
    *,
    target: str,
    met: bool | None,
    peer: str | None = None,
    peer_value: float | None = None,
    ratio: float | None = None,
    machine: str | None = None,
) -> dict[str, Any]:
    """One row of the results table (the protocol between the runner and the scripts). ``machine``:
    what the machine did while the figure was measured (``_machine.describe_during``), listed by
    the runner under its table."""
    during = {} if machine is None else {"machine": machine}
    return during | {
        "figure": figure,
        "value": round(float(value), 3),
        "unit": unit,
        "peer": peer,
        "peer_value": None if peer_value is None else round(float(peer_value), 3),
        "ratio": None if ratio is None else round(float(ratio), 3),
        "target": target,
        "met": met,
    }
