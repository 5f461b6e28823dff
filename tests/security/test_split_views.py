"""Attack: a partner shows its partners different logs (issue 14 §4), and a partner frames another.

The adversary holds KOR's key ring (KOR's node is hostile, or its key leaked) and plays KOR's
side of the head exchange: it hands JPN KOR's genuine signed tree head and the USA a head of the
same size over another log, both signed with KOR's key. Each partner alone checks a first head
and calls KOR's log consistent. Partners gossip the heads they hold of each other, as
Certificate Transparency monitors do: within a gossip interval both must find the two heads,
keep both as evidence, and call KOR forked in the API, the CLI and the dashboard until a
security officer acknowledges it.

The second adversary holds JPN's key ring and gossips to the USA heads "of KOR" it made itself:
the USA must refuse them (a head of KOR is KOR's only under KOR's signature) and keep nothing.

KOR, JPN and USA run as node processes (``gsomia node serve``; KOR without its sender, so the
adversary alone speaks for KOR's heads); the operators' commands run as separate processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.reliability.processes import serve, stop
from tests.security._live import identity, ring, tokens

from gsomia.audit import head_content, parse_head
from gsomia.crypto.envelope import seal, sign_origin, verify_origin
from gsomia.crypto.keys import KeyRing
from gsomia.demo.network import NetNode, build
from gsomia.node import Node
from gsomia.ui import dashboard_scope

INTERVAL = 5.0  # head_interval_seconds: how often each node shares, checks and gossips heads


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    members = {m.party: m for m in build(tmp_path_factory.mktemp("split") / "net")}
    guard = ""
    for party, member in members.items():
        node = Node.open(member.directory)
        try:
            node.people.add_person(None, {"id": "guard", "name": "security officer", "nationality": party,
                                   "roles": ["security_officer"]})  # fmt: skip
            if party == "JPN":
                guard = node.credentials.issue(None, "guard", days=1)[1]
                dashboard = dashboard_scope(node.ring).path
        finally:
            node.close()
    rings = {party: ring(member) for party, member in members.items()}
    running = [serve(members["KOR"], sender=False)]
    try:
        running += [serve(members[p], sender=True) for p in ("JPN", "USA")]
        yield {"members": members, "rings": rings, "guard": guard, "dashboard": dashboard}
    finally:
        for process in running:
            stop(process)


def _send(attacker: KeyRing, to: NetNode, body: dict[str, Any]) -> dict[str, Any]:
    """One envelope the attacker signs with the key it holds, posted to ``to``'s inbox."""
    now = datetime.now(UTC)
    envelope = seal(attacker, identity(to), body, msg_id=uuid.uuid4().hex, at=now, ttl=timedelta(hours=1))
    response = httpx.post(f"{to.endpoint}/inbox", json={"envelopes": [envelope]}, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    return result


def _get(member: NetNode, path: str, who: str = "admin", token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token or tokens(member)[who]}"}
    response = httpx.get(f"{member.endpoint}{path}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def _kor(member: NetNode) -> dict[str, Any] | None:
    return next((p for p in _get(member, "/audit/partners", "analyst") if p["party"] == "KOR"), None)


def _head_size(member: NetNode) -> int:
    """The size of the member's latest signed tree head (its head loop signs one each round)."""
    return int(httpx.get(f"{member.endpoint}/audit/head", timeout=10).json()["size"])


def _wait(what: str, check: Any, seconds: float = 90) -> float:
    """Poll until ``check()`` holds; the seconds it took."""
    begun = time.monotonic()
    while not check():
        assert time.monotonic() - begun < seconds, f"{what} within {seconds} s"
        time.sleep(0.2)
    return time.monotonic() - begun


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "gsomia", *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_a_partner_cannot_frame_kor_with_heads_kor_did_not_sign(net: dict[str, Any]) -> None:
    """JPN's key holder gossips to the USA a "KOR" head it signed itself, and one under KOR's
    header with JPN's signature: both refused whole and audited; the USA keeps nothing of KOR."""
    members, rings = net["members"], net["rings"]
    jpn, usa = rings["JPN"], members["USA"]
    now = datetime.now(UTC)
    own = sign_origin(jpn, head_content("KOR", 40, b"\x01" * 32, now), now)
    kor_header = sign_origin(rings["KOR"], head_content("KOR", 40, b"\x02" * 32, now), now).split(".")[0]
    _, payload, signature = own.split(".")
    for forged in (own, f"{kor_header}.{payload}.{signature}"):
        result = _send(jpn, usa, {"kind": "head-gossip", "heads": [forged]})
        assert result["status"] == "refused", result
    refused = _get(usa, "/audit/log?kind=envelope.refused&limit=1000")
    assert len([r for r in refused if r["actor"] == "JPN" and "does not verify" in json.dumps(r)]) == 2
    assert _kor(usa) is None  # nothing of KOR kept: no head, no fork
    assert _get(usa, "/audit/forks") == []


def test_a_split_view_is_found_by_both_partners_and_stays_forked_until_acknowledged(
    net: dict[str, Any],
) -> None:
    members, rings = net["members"], net["rings"]
    kor, jpn, usa = members["KOR"], members["JPN"], members["USA"]
    genuine = httpx.get(f"{kor.endpoint}/audit/head", timeout=10).json()
    now = datetime.now(UTC)
    split = sign_origin(rings["KOR"], head_content("KOR", genuine["size"], b"\x5a" * 32, now), now)
    assert _send(rings["KOR"], jpn, {"kind": "tree-head", "head": genuine["jws"]})["status"] == "recorded"
    assert _send(rings["KOR"], usa, {"kind": "tree-head", "head": split})["status"] == "recorded"

    shown = time.monotonic()

    def forked() -> bool:
        return all((_kor(m) or {}).get("status") == "forked" for m in (jpn, usa))

    # the partners gossip the heads they hold: both find the fork within a gossip interval or so
    _wait("both partners finding the fork", forked)
    took = time.monotonic() - shown
    sys.stderr.write(f"split view found by both partners {took:.1f} s after KOR showed the two heads\n")
    # each alone checked what it was shown and found nothing wrong with it: only the gossip told
    for member in (jpn, usa):
        checked = _get(member, "/audit/log?kind=audit.partner-consistent&limit=1000")
        assert [r for r in checked if r["actor"] == "KOR" and r["subject"] == str(genuine["size"])]

    # both signed heads kept as evidence, verifiable by anyone holding KOR's published key
    guard = net["guard"]
    (fork,) = _get(jpn, "/audit/forks?party=KOR", token=guard)
    assert fork["verified"] is True
    assert fork["shown_by"] == "USA"
    assert {h["jws"] for h in fork["heads"]} == {genuine["jws"], split}
    kor_identity = identity(kor)
    heads = [parse_head(verify_origin(h["jws"], {"KOR": kor_identity}.get, now)[1]) for h in fork["heads"]]
    assert heads[0][0] == heads[1][0] == "KOR"
    assert heads[0][1] == heads[1][1] == genuine["size"]
    assert heads[0][2] != heads[1][2]
    assert len(_get(usa, "/audit/forks?party=KOR")) == 1  # the USA kept its own evidence

    # the CLI, beside the serving node, and the dashboard say so too
    shown = _cli("audit", "partners", "--dir", str(jpn.directory), "--json")
    assert shown.returncode == 0, shown.stderr
    assert next(p for p in json.loads(shown.stdout) if p["party"] == "KOR")["status"] == "forked"
    with httpx.Client(base_url=jpn.endpoint, timeout=10) as browser:
        login = browser.post(
            f"{net['dashboard']}/login",
            content=f"token={tokens(jpn)['analyst']}",
            headers={"content-type": "application/x-www-form-urlencoded", "origin": jpn.endpoint},
        )
        assert login.status_code == 303
        page = browser.get(f"{net['dashboard']}/audit").text
    assert 'data-party="KOR" data-status="forked"' in page

    # no one but a security officer acknowledges it, and a refusal is audited
    for who in ("admin", "officer", "analyst"):
        refused = httpx.post(
            f"{jpn.endpoint}/audit/partners/KOR/acknowledge",
            json={"note": "nothing to see"},
            headers={"Authorization": f"Bearer {tokens(jpn)[who]}"},
            timeout=10,
        )
        assert refused.status_code == 403, refused.text
    cli_refused = _cli(
        "audit", "acknowledge", "KOR", "--dir", str(jpn.directory), "--as", "admin", "--note", "x"
    )
    assert cli_refused.returncode == 2
    assert len(_get(jpn, "/audit/log?kind=authz.audit.acknowledge-fork")) == 4
    # a round of JPN's head loop later (it signs a head over the refusals just audited): still forked
    signed = _head_size(jpn)
    _wait("JPN's next round of its head loop", lambda: _head_size(jpn) > signed)
    assert _kor(jpn)["status"] == "forked"

    answered = httpx.post(
        f"{jpn.endpoint}/audit/partners/KOR/acknowledge",
        json={"note": "raised with KOR's liaison; heads kept", "through": fork["id"]},
        headers={"Authorization": f"Bearer {guard}"},
        timeout=10,
    )
    assert answered.status_code == 200, answered.text
    assert answered.json()["acknowledged"] == [fork["id"]]
    assert _kor(jpn)["status"] != "forked"
    (acknowledged,) = _get(jpn, "/audit/log?kind=audit.fork-acknowledged")
    assert acknowledged["actor"] == "guard"
    # the USA's status is its own: still forked there, acknowledged through its CLI
    assert _kor(usa)["status"] == "forked"
    done = _cli("audit", "acknowledge", "KOR", "--dir", str(usa.directory), "--as", "guard", "--note", "seen")
    assert done.returncode == 0, done.stderr
    assert _kor(usa)["status"] != "forked"
    assert len(_get(jpn, "/audit/forks?party=KOR", token=guard)) == 1  # the evidence stays
