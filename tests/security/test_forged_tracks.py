"""Attack: a hostile hub forges missile tracks in the originator's name (issue 14 §1).

KOR authorises the USA hub to relay its missile tracks to JPN (TISA), then publishes. The
adversary is the USA node's operator: it holds USA's key ring (so it can open authenticated
links as USA) and the frames KOR sent it, KOR's signed authorisation among them, but none of
KOR's private keys. It opens a link to JPN and sends tracks it wrote itself, labelled as KOR's,
in every form it can make. JPN's analyst must receive none of them, and JPN's audit must show
each refusal. A genuine KOR track the hub relays unchanged still reaches the analyst.

KOR and JPN run as node processes (``gsomia node serve``); the hostile hub listens on USA's
registered port in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.security._live import (
    CONSENT,
    Consumer,
    HostileHub,
    Processes,
    audit,
    identity,
    post,
    ring,
    send_frames,
    tisa_only,
    tokens,
)
from tests.stream._updates import kor_message

from gsomia.core.tracks import track_update_to_json
from gsomia.demo.network import NetNode
from gsomia.stream import launches, replay
from gsomia.stream._link import TRACK, TRACKS
from gsomia.stream._origin import decode_groups

FORGED_ID = "KOR-forged-by-the-hub"


@pytest.fixture(scope="module")
def tisa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """KOR and JPN as processes, the hostile USA hub, and what KOR sent the hub after authorising it."""
    members = {m.party: m for m in tisa_only(tmp_path_factory.mktemp("tisa"))}
    with Processes(members["KOR"], members["JPN"]):
        peers = {"KOR": identity(members["KOR"]), "JPN": identity(members["JPN"])}
        with HostileHub(members["USA"], peers) as hub:
            analyst = Consumer(members["JPN"], tokens(members["JPN"])["analyst"])
            try:
                authorised = post(
                    members["KOR"], "/stream/authorisations", {"recipient": "JPN", "hub": "USA"}
                )
                assert authorised.status_code == 201, authorised.text
                genuine = track_update_to_json(replay(launches(2019)[10], originator="KOR", every_s=60)[1])
                published = post(members["KOR"], "/stream/tracks", genuine)
                assert published.status_code == 202, published.text
                assert {(r["recipient"], r["route"]) for r in published.json()["routes"]} == {
                    ("USA", "direct"),
                    ("JPN", "via USA"),
                }
                consent = hub.first(CONSENT)
                yield {
                    "members": members,
                    "hub": hub,
                    "analyst": analyst,
                    "consent": consent,
                    "genuine": genuine,
                }
            finally:
                analyst.close()


def _forged_message() -> bytes:
    """A track the hub wrote itself, labelled as KOR's, addressed to JPN through the hub."""
    return _message_for_jpn(FORGED_ID, 7)


def _refusals(jpn: NetNode, since: int) -> list[dict[str, Any]]:
    return [r for r in audit(jpn, "stream.link") if r["outcome"] == "refused" and r["seq"] > since]


def _last_seq(jpn: NetNode) -> int:
    return max((r["seq"] for r in audit(jpn, "stream.link")), default=0)


def _mount(
    tisa: dict[str, Any], body: bytes, kind: int = TRACKS, wait: float = 60.0
) -> tuple[tuple[int | None, str], list[Any]]:
    """USA opens a link to JPN, relays KOR's genuine authorisation, then sends ``body``."""
    jpn: NetNode = tisa["members"]["JPN"]
    since = _last_seq(jpn)
    frames = [(CONSENT, tisa["consent"]), (kind, body)]
    closed = send_frames(ring(tisa["members"]["USA"]), jpn, frames, wait=wait)
    deadline = time.monotonic() + (10 if closed[0] else 0)
    while not (refused := _refusals(jpn, since)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return closed, refused


def _shown(tisa: dict[str, Any], settle: float = 1.0) -> list[str]:
    time.sleep(settle)  # anything JPN accepted reaches its analyst within milliseconds
    return [t["track_id"] for t in tisa["analyst"].tracks if t["track_id"] == FORGED_ID]


def test_a_track_the_hub_wrote_without_any_signature_is_refused_and_audited(tisa: dict[str, Any]) -> None:
    """The hub sends its own track, labelled as KOR's, in a plain track frame (no signature)."""
    closed, refused = _mount(tisa, _forged_message(), kind=TRACK)
    assert _shown(tisa) == []
    assert closed == (1008, "unsigned")
    assert [(r["subject"], r["detail"]["error"]) for r in refused] == [("USA", "unsigned")]


def test_a_track_the_hub_signed_itself_in_kors_name_is_refused_and_audited(tisa: dict[str, Any]) -> None:
    """The hub signs a batch root over its own track with its own (genuine, registered) key."""
    from gsomia.stream._origin import sign_batch

    own = sign_batch(ring(tisa["members"]["USA"]), [_forged_message()], datetime.now(UTC))
    closed, refused = _mount(tisa, own)
    assert _shown(tisa) == []
    assert closed == (1008, "not-the-originator")
    assert [(r["subject"], r["detail"]["error"]) for r in refused] == [("USA", "not-the-originator")]


def test_a_track_slipped_under_kors_signed_root_is_refused_and_audited(tisa: dict[str, Any]) -> None:
    """The hub relays KOR's genuine signed root with its own track in place of KOR's, and proofs
    made up for it (every proof it could make is over KOR's real leaves, not its track)."""
    from gsomia.core.merkle import leaf_hash
    from gsomia.stream._origin import Entry, decode_groups, encode_group

    (group,) = decode_groups(tisa["hub"].first(TRACKS), "KOR")
    forged = _forged_message()
    for entry in group.entries:  # in the place of each of KOR's tracks, with its sibling's hash as proof
        sibling = next(e for e in group.entries if e is not entry)
        made_up = Entry(entry.index, (leaf_hash(sibling.message),), forged)
        closed, refused = _mount(tisa, encode_group(group.jws, group.size, [made_up]))
        assert closed == (1008, "not-included")
        assert [(r["subject"], r["detail"]["error"]) for r in refused] == [("USA", "not-included")]
    assert _shown(tisa) == []


def test_a_kor_track_addressed_to_the_hub_cannot_be_passed_on(tisa: dict[str, Any]) -> None:
    """KOR's genuine track for the USA itself (signed, included) is not the hub's to send to JPN."""
    from gsomia.stream._origin import Entry, decode_groups, encode_group, verify_group

    kor: NetNode = tisa["members"]["KOR"]
    shown = len(tisa["analyst"].tracks)
    (group,) = decode_groups(tisa["hub"].first(TRACKS), "KOR")
    verified = verify_group(group, {"KOR": identity(kor)}.get, datetime.now(UTC), timedelta(minutes=5))
    (for_usa,) = [e for e in group.entries if json.loads(e.message)["recipient"] == "USA"]
    relayed = Entry(for_usa.index, verified.proof(for_usa), for_usa.message)
    closed, refused = _mount(tisa, encode_group(group.jws, group.size, [relayed]))
    assert closed == (1008, "malformed")
    assert [(r["subject"], r["detail"]["error"]) for r in refused] == [("USA", "malformed")]
    time.sleep(1.0)
    assert len(tisa["analyst"].tracks) == shown


def test_a_genuine_kor_track_relayed_unchanged_reaches_the_analyst(tisa: dict[str, Any]) -> None:
    """The control: what KOR signed for JPN, relayed under KOR's root with its proof, is shown."""
    from gsomia.stream._origin import Entry, decode_groups, encode_group, verify_group

    kor: NetNode = tisa["members"]["KOR"]
    (group,) = decode_groups(tisa["hub"].first(TRACKS), "KOR")
    verified = verify_group(group, {"KOR": identity(kor)}.get, datetime.now(UTC), timedelta(minutes=5))
    (for_jpn,) = [e for e in group.entries if json.loads(e.message)["recipient"] == "JPN"]
    relayed = Entry(for_jpn.index, verified.proof(for_jpn), for_jpn.message)
    closed, refused = _mount(tisa, encode_group(group.jws, group.size, [relayed]), wait=1.0)
    assert refused == []
    assert closed == (None, "kept open")
    shown = tisa["analyst"].wait_for(1)
    assert [(t["track_id"], t["originator"], t["route"]) for t in shown] == [
        (tisa["genuine"]["track_id"], "KOR", "via USA")
    ]
    assert _shown(tisa, settle=0) == []


def test_a_genuine_kor_batch_relayed_again_is_shown_once_and_audited(tisa: dict[str, Any]) -> None:
    """The hub keeps what KOR signed and sends it to JPN again while the signature is still fresh
    (a hostile hub's replay, or a genuine hub's queue handing the track to its link's next holder):
    JPN shows the track once, drops the second sending as a duplicate (counted, audited) and keeps
    the link; the whole batch as KOR sent it, holding a track that is not the hub's to pass on, is
    refused as ``replayed-batch`` before any of its tracks is read (issue 14 section 1's residual)."""
    from gsomia.stream._origin import Entry, decode_groups, encode_group, verify_group

    kor: NetNode = tisa["members"]["KOR"]
    jpn: NetNode = tisa["members"]["JPN"]
    hub = tisa["hub"]
    before = len(hub.frames)
    fresh = track_update_to_json(
        replay(launches(2019)[11], originator="KOR", every_s=60, track_id="KOR-sent-once")[1]
    )
    assert post(kor, "/stream/tracks", fresh).status_code == 202
    deadline = time.monotonic() + 120
    while not (new := [b for k, b in hub.frames[before:] if k == TRACKS]) and time.monotonic() < deadline:
        time.sleep(0.05)
    (group,) = decode_groups(new[0], "KOR")
    verified = verify_group(group, {"KOR": identity(kor)}.get, datetime.now(UTC), timedelta(minutes=5))
    (for_jpn,) = [e for e in group.entries if json.loads(e.message)["recipient"] == "JPN"]
    relayed = encode_group(
        group.jws, group.size, [Entry(for_jpn.index, verified.proof(for_jpn), for_jpn.message)]
    )

    def shown() -> list[str]:
        return [t["track_id"] for t in tisa["analyst"].tracks if t["track_id"] == "KOR-sent-once"]

    closed, refused = _mount(tisa, relayed, wait=1.0)
    assert (closed, refused) == ((None, "kept open"), [])
    deadline = time.monotonic() + 120
    while not shown() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shown() == ["KOR-sent-once"]
    dropped = _duplicates(jpn)
    closed, refused = _mount(tisa, relayed, wait=1.0)  # the same relay, on a new link
    assert (closed, refused) == ((None, "kept open"), [])
    _wait_duplicates(jpn, dropped + 1)
    whole = encode_group(group.jws, group.size, group.entries)  # the whole batch, as KOR sent it
    closed, refused = _mount(tisa, whole)
    assert closed == (1008, "replayed-batch")  # checked before any of its tracks is read
    assert [(r["subject"], r["detail"]["error"]) for r in refused] == [("USA", "replayed-batch")]
    time.sleep(1.0)
    assert shown() == ["KOR-sent-once"]  # once


def test_a_relayed_group_part_new_part_sent_before_shows_the_new_tracks_once(
    tisa: dict[str, Any],
) -> None:
    """KOR signs a batch of three tracks for JPN through the hub. The hub relays the first; then
    the first two (its queue handing the first again after a takeover, with the next); then all
    three; then all three again. JPN shows each once, in order of arrival, keeps the link, and
    counts every track sent again as a duplicate: a leaf taken before taints neither the group nor
    the link, and is never taken twice."""
    from gsomia.stream._origin import Entry, encode_group, sign_batch, verify_group

    kor: NetNode = tisa["members"]["KOR"]
    jpn: NetNode = tisa["members"]["JPN"]
    ids = [f"KOR-part-{n}" for n in range(3)]
    messages = [_message_for_jpn(track_id, 3 + n) for n, track_id in enumerate(ids)]
    body = sign_batch(ring(kor), messages, datetime.now(UTC))
    (whole,) = decode_groups(body, "KOR")
    verified = verify_group(whole, {"KOR": identity(kor)}.get, datetime.now(UTC), timedelta(minutes=5))
    entries = [Entry(e.index, verified.proof(e), e.message) for e in whole.entries]

    def shown() -> list[str]:
        return [t["track_id"] for t in tisa["analyst"].tracks if t["track_id"] in ids]

    def relay(part: list[Entry], count: int) -> None:
        closed, refused = _mount(tisa, encode_group(whole.jws, whole.size, part), wait=1.0)
        assert (closed, refused) == ((None, "kept open"), [])
        deadline = time.monotonic() + 120
        while len(shown()) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    dropped = _duplicates(jpn)
    relay(entries[:1], 1)
    assert shown() == ids[:1]
    relay(entries[:2], 2)
    assert shown() == ids[:2]
    _wait_duplicates(jpn, dropped + 1)
    relay(entries, 3)
    _wait_duplicates(jpn, dropped + 1 + 2)
    assert shown() == ids
    relay(entries, 3)
    _wait_duplicates(jpn, dropped + 1 + 2 + 3)
    time.sleep(1.0)
    assert shown() == ids


def _message_for_jpn(track_id: str, launch: int) -> bytes:
    """A track as KOR's node writes it for JPN through the hub (the message KOR signs)."""
    track = track_update_to_json(
        replay(launches(2019)[launch], originator="KOR", every_s=60, track_id=track_id)[1]
    )
    return kor_message(track, via="USA")


def _duplicates(jpn: NetNode) -> int:
    return sum(int(r["detail"]["count"]) for r in audit(jpn, "stream.receive") if r["outcome"] == "duplicate")


def _wait_duplicates(jpn: NetNode, count: int) -> None:
    deadline = time.monotonic() + 30
    while _duplicates(jpn) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _duplicates(jpn) == count


# Kept last in this module: once the hub is refused for replaying, JPN refuses any track it sends
# again for a minute (HANDOFF_MAX_AGE_S), which the tests above would otherwise meet.
def test_a_hub_replaying_relayed_tracks_in_a_loop_loses_its_link_and_reconnecting_resets_nothing(
    tisa: dict[str, Any],
) -> None:
    """The hub keeps a batch KOR signed, relays it once, then sends it to JPN again and again, on
    link after link (each reconnection would reset a counter kept per link). Each sending is dropped
    as duplicates (one audit record per group) until the duplicates within a minute are more than
    the hub's JetStream could hand again (``HANDOFF_RESENDS``): then the link is refused as
    ``replayed-batch``, audited once with the count, and a new link sending one more duplicate is
    refused at once. JPN shows each track once."""
    from gsomia.stream._bus import HANDOFF_RESENDS
    from gsomia.stream._origin import Entry, encode_group, sign_batch, verify_group

    kor: NetNode = tisa["members"]["KOR"]
    jpn: NetNode = tisa["members"]["JPN"]
    leaves = 400  # a group of ~0.6 MiB, under the link's 1 MiB message
    base = track_update_to_json(replay(launches(2019)[4], originator="KOR", every_s=1, track_id="x")[1])
    ids = [f"KOR-loop-{n}" for n in range(leaves)]
    messages = [kor_message({**base, "track_id": track_id}, via="USA") for track_id in ids]
    body = sign_batch(ring(kor), messages, datetime.now(UTC))
    (whole,) = decode_groups(body, "KOR")
    verified = verify_group(whole, {"KOR": identity(kor)}.get, datetime.now(UTC), timedelta(minutes=5))
    group = encode_group(
        whole.jws, whole.size, [Entry(e.index, verified.proof(e), e.message) for e in whole.entries]
    )

    def shown() -> list[str]:
        return [t["track_id"] for t in tisa["analyst"].tracks if t["track_id"].startswith("KOR-loop-")]

    def link(frames: int, wait: float) -> tuple[int | None, str]:
        return send_frames(
            ring(tisa["members"]["USA"]),
            jpn,
            [(CONSENT, tisa["consent"])] + [(TRACKS, group)] * frames,
            wait=wait,
        )

    assert link(1, 1.0) == (None, "kept open")  # relayed once: taken
    deadline = time.monotonic() + 120
    while len(shown()) < leaves and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(shown()) == sorted(ids)
    dropped = _duplicates(jpn)
    records = _duplicate_records(jpn)
    since = _last_seq(jpn)
    sent = 0
    closed: tuple[int | None, str] = (None, "kept open")
    # the bound is crossed within a minute of the first duplicate (counted over the last minute),
    # so a few more links than it takes at most
    for _ in range(2 * HANDOFF_RESENDS // (5 * leaves) + 4):
        closed = link(5, 3.0)
        sent += 5
        if closed != (None, "kept open"):
            break
    assert closed == (1008, "replayed-batch")
    refused = _refusals(jpn, since)
    assert [(r["subject"], r["detail"]["error"]) for r in refused] == [("USA", "replayed-batch")]
    assert "more than a redelivery can" in refused[0]["detail"]["reason"]
    # while under the bound: one record per group at most, each naming at most 16 tracks
    new_records = _duplicate_records(jpn)[len(records) :]
    assert 0 < len(new_records) <= sent
    assert all(len(r["detail"]["tracks"]) <= 16 for r in new_records)
    counted = int(refused[0]["detail"]["reason"].split("sent again ")[1].split(" ")[0])
    assert counted > HANDOFF_RESENDS
    assert _duplicates(jpn) - dropped <= counted  # the refusing group is not recorded as duplicates
    # a hostile hub reconnects to start a counter afresh: the bound is in JPN's store, so the first
    # duplicate on the new link is refused, with no duplicate record
    before = len(_duplicate_records(jpn))
    since = _last_seq(jpn)
    assert link(1, 60.0) == (1008, "replayed-batch")
    again = _refusals(jpn, since)
    assert [(r["subject"], r["detail"]["error"]) for r in again] == [("USA", "replayed-batch")]
    assert len(_duplicate_records(jpn)) == before
    time.sleep(1.0)
    assert sorted(shown()) == sorted(ids)  # each once


def _duplicate_records(jpn: NetNode) -> list[dict[str, Any]]:
    return [r for r in audit(jpn, "stream.receive") if r["outcome"] == "duplicate"]
