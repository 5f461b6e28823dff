"""A hub of several processes (issue 17): the USA, the TISA hub, runs as two processes on PostgreSQL
and NATS JetStream behind HAProxy, and relays KOR's tracks to JPN (in a what-if where KOR reaches JPN
only through it). Whichever process KOR's link lands on passes each track to JPN over the one link
the lease ``link:JPN`` gives one of them. SIGKILL that holder mid-way: the other takes the lease,
KOR's link reconnects through the balancer, and the relaying goes on; JPN gets no track twice."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
from tests.conftest import postgres_schema
from tests.reliability.processes import (
    Reader,
    balancer,
    kill,
    require_haproxy,
    require_nats,
    serve,
    stop,
    wait_for,
)
from tests.security._live import tisa_only
from tests.stream.test_link_lease import _link_holder

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import _wait_healthy, balancer_config, free_port
from gsomia.stream import launches, replay


def test_a_hub_of_two_processes_relays_on_when_the_holder_of_its_onward_link_dies(
    tmp_path: Path, postgres_status: str | None
) -> None:
    require_nats()
    require_haproxy()
    with postgres_schema(postgres_status) as usa_url:
        members = {m.party: m for m in tisa_only(tmp_path, database_urls={"USA": usa_url})}
        kor, jpn, usa = members["KOR"], members["JPN"], members["USA"]
        tokens = {
            p: json.loads((m.directory / "tokens.json").read_text(encoding="utf-8"))
            for p, m in members.items()
        }
        officer = {"Authorization": f"Bearer {tokens['KOR']['officer']}"}
        launch = launches(2019)[0]
        updates = [track_update_to_json(u) for u in replay(launch, originator="KOR", every_s=10)]
        assert len(updates) >= 12
        ports = [free_port(), free_port()]
        config = tmp_path / "haproxy.cfg"
        config.write_text(balancer_config({usa: ports}), encoding="utf-8")
        running = [serve(kor)]
        hub: dict[int, subprocess.Popen[bytes]] = {}
        haproxy: subprocess.Popen[bytes] | None = None
        try:  # whatever started is stopped, even if a later process does not start
            running.append(serve(jpn))
            for port in ports:
                hub[port] = serve(usa, port=port, nats=True)
            haproxy = balancer(config)
            _wait_healthy(usa.endpoint, 120)
            reader = Reader(jpn.endpoint, tokens["JPN"]["analyst"])
            assert reader.status == 200
            authorised = httpx.post(
                f"{kor.endpoint}/stream/authorisations",
                json={"recipient": "JPN", "hub": "USA"},
                headers=officer,
                timeout=30,
            )
            assert authorised.status_code == 201, authorised.text

            def publish(update: dict[str, object]) -> None:
                answer = httpx.post(f"{kor.endpoint}/stream/tracks", json=update, headers=officer, timeout=30)
                assert answer.status_code == 202, answer.text

            wait_for(lambda: _link_holder(usa_url) is not None, 60, "a hub process taking the link to JPN")
            for update in updates[:6]:
                publish(update)
            wait_for(lambda: len(reader.events) >= 6, 60, "JPN receiving KOR's tracks through the hub")
            assert {t["route"] for _, t in reader.events} == {"via USA"}

            holder = _link_holder(usa_url)
            (killed,) = [port for port, p in hub.items() if p.pid == holder]
            kill(hub[killed])  # mid-way: the hub process that holds the onward link to JPN
            (survivor,) = [port for port in ports if port != killed]
            wait_for(
                lambda: _link_holder(usa_url) == hub[survivor].pid,
                60,
                "the other hub process taking the link",
            )
            # KOR's link to the hub may have run through the killed process: a track published while
            # it reconnects through the balancer is lost with the link (never queued); probe until
            # one comes through, then the relaying must go on whole
            probes = 0
            while not any(t["track_id"].startswith("probe-") for _, t in reader.events):
                assert probes < 20, "no track came through the hub after the kill"
                publish({**updates[0], "track_id": f"probe-{probes}"})
                probes += 1
                try:
                    wait_for(
                        lambda: any(t["track_id"].startswith("probe-") for _, t in reader.events),
                        10,
                        "a probe",
                    )
                except AssertionError:
                    continue
            for update in updates[6:12]:
                publish(update)
            wait_for(
                lambda: sum(1 for _, t in reader.events if not t["track_id"].startswith("probe-")) >= 12,
                60,
                "JPN receiving the tracks after the kill",
            )
        finally:
            if haproxy is not None:
                stop(haproxy)
            for process in (*hub.values(), *running):
                stop(process)
    tracks = [t for _, t in reader.events if not t["track_id"].startswith("probe-")]
    assert sorted(t["update_ts"] for t in tracks) == [u["update_ts"] for u in updates[:12]]  # each once
    probed = [t["track_id"] for _, t in reader.events if t["track_id"].startswith("probe-")]
    assert len(probed) == len(set(probed))  # none twice either
    assert {t["route"] for t in tracks} == {"via USA"}
