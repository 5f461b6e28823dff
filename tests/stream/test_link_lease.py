"""Two processes of one node on PostgreSQL and NATS JetStream: the outbound stream link to a
partner is run by one of them only (the holder of the lease ``link:JPN``); tracks published at
either process reach the partner over that one link. SIGKILL the holder: the other process takes
the lease within a few seconds, opens the link and the tracks keep arriving, none twice."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.conftest import kst, postgres_schema
from tests.reliability.processes import Reader, audit, kill, require_nats, serve, stop, wait_for

from gsomia.core.tracks import track_update_to_json
from gsomia.demo import network
from gsomia.demo.network import build, free_port
from gsomia.node import Node, load_config
from gsomia.store import LeaseStore, Store
from gsomia.stream import InProcessBus, NatsBus, StreamService, launches, replay
from gsomia.testing import FakeClock, make_node


def _link_holder(url: str) -> int | None:
    """The pid of the process holding the lease of KOR's link to JPN, if one holds it now."""
    store = Store(url)
    try:
        leases = LeaseStore(store)
        now = leases.now_us()
        held = [r for r in leases.leases() if r.name == "link:JPN" and r.expires_us > now]
        return int(held[0].holder.split("/")[1]) if held else None
    finally:
        store.close()


def _links_from_kor(directory: Path) -> int:
    """How many stream links from KOR the partner JPN opened (its audit records)."""
    node = Node(load_config(directory))
    try:
        rows = audit(node, "stream.link")
    finally:
        node.close()
    return sum(1 for r in rows if r["subject"] == "KOR" and r["outcome"] == "opened")


def test_one_process_runs_the_link_and_another_takes_it_over_when_it_dies(
    tmp_path: Path, postgres_status: str | None
) -> None:
    require_nats()
    with postgres_schema(postgres_status) as kor_url:
        members = {m.party: m for m in build(tmp_path / "net", database_urls={"KOR": kor_url})}
        kor, jpn = members["KOR"], members["JPN"]
        kor_tokens = json.loads((kor.directory / "tokens.json").read_text(encoding="utf-8"))
        jpn_tokens = json.loads((jpn.directory / "tokens.json").read_text(encoding="utf-8"))
        officer = {"Authorization": f"Bearer {kor_tokens['officer']}"}
        updates = [track_update_to_json(u) for u in replay(launches(2019)[0], originator="KOR", every_s=10)]
        assert len(updates) >= 12
        partner = serve(jpn)
        ports = [kor.port, free_port()]
        processes: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for port in ports:  # inside the try: a process that does not start leaves none behind
                processes[port] = serve(kor, port=port, nats=True)
            reader = Reader(jpn.endpoint, jpn_tokens["analyst"])
            assert reader.status == 200
            wait_for(lambda: _link_holder(kor_url) is not None, 20, "a process taking the link's lease")

            def publish(port: int, update: dict[str, object]) -> None:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/stream/tracks", json=update, headers=officer, timeout=10
                )
                assert answer.status_code == 202, answer.text

            first = updates[:6]
            for n, update in enumerate(first):  # at either process, in turn
                publish(ports[n % 2], update)
            wait_for(
                lambda: len(reader.events) >= len(first), 30, "JPN receiving the tracks of both processes"
            )
            assert _links_from_kor(jpn.directory) == 1  # one link from the node, not one per process

            holder = _link_holder(kor_url)
            (killed,) = [port for port, p in processes.items() if p.pid == holder]
            kill(processes[killed])
            (survivor,) = [port for port in ports if port != killed]
            wait_for(
                lambda: _link_holder(kor_url) == processes[survivor].pid,
                20,
                "the surviving process taking the link's lease",
            )
            rest = updates[6:12]
            for update in rest:
                publish(survivor, update)
            wait_for(lambda: len(reader.events) >= 12, 30, "the tracks arriving over the new holder's link")
            assert _links_from_kor(jpn.directory) == 2  # the killed holder's, then the survivor's
            admin = {"Authorization": f"Bearer {kor_tokens['admin']}"}
            metrics = httpx.get(f"http://127.0.0.1:{survivor}/metrics", headers=admin, timeout=10).text
            assert 'gsomia_lease_held{lease="link:JPN"} 1.0' in metrics
        finally:
            for process in processes.values():
                stop(process)
            stop(partner)
    got = [t["update_ts"] for _, t in reader.events]
    # every track, once, in the order published across both processes: the holder's own tracks go
    # through the node's handover stream too, so JetStream's order is the one order
    assert got == [u["update_ts"] for u in updates[:12]]


# --- in one process: the leases' wiring, the hand-over refusals (no NATS or PostgreSQL needed) ---


def _kor(tmp_path: Path) -> Node:
    kor = make_node(tmp_path / "kor", "KOR", clock=FakeClock(kst(2024, 3, 1)))
    jpn = make_node(tmp_path / "jpn", "JPN", clock=FakeClock(kst(2024, 3, 1)))
    kor.exchange.register_peer(None, jpn.exchange.identity(), ["kor-jpn-gsomia-2016"])
    network.assure({"KOR": kor, "JPN": jpn})  # JPN's assurance on file at KOR (Art. 7(5)): tracks may go
    jpn.close()
    return kor


def _unreachable() -> NatsBus:
    return NatsBus(
        "nats://127.0.0.1:1", stream=f"T_{uuid.uuid4().hex[:8]}", subject=f"t.{uuid.uuid4().hex[:8]}"
    )


def test_leased_links_need_the_nats_bus(tmp_path: Path) -> None:
    kor = _kor(tmp_path)
    try:
        with pytest.raises(ValueError, match="NATS"):
            StreamService(kor, InProcessBus(), link_leases=kor.link_lease)
        assert StreamService(kor).holds_link("JPN")  # one process: every link is its own
    finally:
        kor.close()


def test_one_service_of_two_holds_each_link_and_the_other_takes_it_when_released(tmp_path: Path) -> None:
    kor = _kor(tmp_path)
    other = Node(load_config(tmp_path / "kor"))  # a second process of the node, on the same store

    async def run() -> None:
        a = StreamService(kor, _unreachable(), link_leases=kor.link_lease)
        b = StreamService(other, _unreachable(), link_leases=other.link_lease)
        tasks = [asyncio.create_task(a._keep_leases())]
        try:
            await _until(lambda: a.holds_link("JPN"), "the first process taking the link")
            tasks.append(asyncio.create_task(b._keep_leases()))
            # b asked for JPN's lease once it goes on to the next partner's (they are asked in order)
            await _until(lambda: set(b._leases) == set(b.recipients), "the second process asking")
            assert a.holds_link("JPN")
            assert not b.holds_link("JPN")
            # the non-holder hands its track to the holder; with the bus away it is refused, audited,
            # and no link is opened here
            result = await b.publish(None, _update())
            assert all(r["recipient"] != "JPN" for r in result["routes"])
            assert not b._links
            tasks[0].cancel()
            await asyncio.gather(tasks[0], return_exceptions=True)
            for party in list(a._runners):
                await a._stop_runner(party)
            for lease in a._leases.values():
                lease.release()  # a clean stop: the other takes the link at its next look
            await _until(lambda: b.holds_link("JPN"), "the other process taking the link")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for service in (a, b):
                for party in list(service._runners):
                    await service._stop_runner(party)

    try:
        asyncio.run(run())
        failed = [
            r for r in audit(other, "stream.link") if r["outcome"] == "failed" and r["subject"] == "JPN"
        ]
        assert failed
        assert "unreachable" in failed[0]["reason"]
    finally:
        other.close()
        kor.close()


def test_a_malformed_handed_track_is_dropped_without_opening_the_link(tmp_path: Path) -> None:
    kor = _kor(tmp_path)

    async def run() -> StreamService:
        service = StreamService(kor, _unreachable(), link_leases=kor.link_lease)
        for junk in (b"", b"not json\nbody", b'{"k":3}\n', b'{"k":3,"a":null,"c":[],"g":true}\nnot a group'):
            await service._send_handed("JPN", junk)
        return service

    try:
        service = asyncio.run(run())
        assert not service._links
        assert service.stats.link_errors == 0
    finally:
        kor.close()


async def _until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:g} s"
        await asyncio.sleep(0.05)


def _update() -> dict[str, object]:
    return track_update_to_json(replay(launches(2019)[0], originator="KOR", every_s=30)[0])
