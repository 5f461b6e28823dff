"""What mutual TLS costs the exchange: items delivered per second over mTLS against plain HTTP.

What is measured
----------------
Two networks are built in a temporary directory with ``gsomia.demo.network.build``: one with TLS
(a local authority, a certificate per node, each identity document naming its node's certificate)
and one with plain HTTP. In each, JPN serves its API from a thread (uvicorn, as ``node serve``
does: with TLS, HTTPS asking for a client certificate and the peer routes held to a certificate a
registered identity names). KOR ingests ``--items`` items and queues a release of each to JPN;
one figure is the time of ``deliver_due`` rounds over ``HttpTransport`` until every one is
delivered with JPN's receipt (seal, POST /inbox in batches, JPN opens, decides, stores and signs a
receipt, KOR settles). The peer is the same delivery over plain HTTP, measured in the same run:
what is left between the two is TLS (handshakes on new connections, record encryption, the pin
checks on both sides). The two runs alternate ``--rounds`` times and the best of each is kept.

Target: mutual TLS costs at most a quarter of plain HTTP's throughput (ratio >= 0.75).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _rows import row  # benchmarks/ is on sys.path when run as a script (as the runner does)
from gsomia.demo.network import build, serve_in_threads
from gsomia.exchange import HttpTransport
from gsomia.node import Node, load_config

LABEL = {
    "originator": "KOR",
    "classification": "군사II급비밀",
    "releasable_to": ["JPN"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-01-01T00:00:00+09:00",
}
TARGET = 0.75


def _deliver(directory: Path, items: int, tls: bool, tag: str) -> float:
    """Seconds for KOR to deliver ``items`` queued releases to JPN (JPN serving from a thread)."""
    members = {m.party: m for m in build(directory, tls=tls)}
    kor = Node(load_config(members["KOR"].directory))
    jpn = Node(load_config(members["JPN"].directory))
    try:
        officer = kor.person("officer")
        for n in range(items):
            kor.ingest(officer, label=LABEL, payload=b'{"apogee_km": 950}', item_id=f"{tag}-{n}")
        kor.exchange.release_many(officer, [f"{tag}-{n}" for n in range(items)], "JPN")
        with serve_in_threads({"JPN": jpn}, [members["JPN"]]), HttpTransport(tls=kor.kernel.tls) as transport:
            start = time.perf_counter()
            delivered = 0
            deadline = time.monotonic() + 600
            while delivered < items:
                delivered += sum(1 for d in kor.exchange.deliver_due(transport) if d.state == "delivered")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {delivered} of {items} delivered in 600 s")
            return time.perf_counter() - start
    finally:
        kor.close()
        jpn.close()


def measure(items: int, rounds: int) -> dict[str, Any]:
    best = {"mtls": float("inf"), "plain": float("inf")}
    with tempfile.TemporaryDirectory(prefix="gsomia-bench-tls-") as tmp:
        for r in range(rounds):
            for kind in ("plain", "mtls"):
                seconds = _deliver(Path(tmp) / f"{kind}-{r}", items, kind == "mtls", f"{kind}{r}")
                best[kind] = min(best[kind], seconds)
                print(f"round {r}: {kind} {items / seconds:,.0f} items/s", file=sys.stderr)
    mtls, plain = items / best["mtls"], items / best["plain"]
    ratio = mtls / plain
    return {
        "items": items,
        "rounds": rounds,
        "rows": [
            row(
                "items delivered over mutual TLS",
                mtls,
                "items/s",
                target=f">= {TARGET}x plain HTTP",
                met=ratio >= TARGET,
                peer="plain HTTP",
                peer_value=plain,
                ratio=ratio,
            )
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--items", type=int, default=300, help="releases delivered per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each; the best is kept")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    result = measure(args.items, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    figure = result["rows"][0]
    print(
        f"{result['items']} items: mutual TLS {figure['value']:,.0f} items/s, plain HTTP "
        f"{figure['peer_value']:,.0f} items/s ({figure['ratio']:.2f}x; target {figure['target']})"
    )


if __name__ == "__main__":
    main()
