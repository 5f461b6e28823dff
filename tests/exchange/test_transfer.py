"""Transfer by file to an air-gapped site: export at KOR, import at JPN, receipts back at KOR.

No server runs: the three nodes only share a clock, as a courier's two ends would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gsomia.demo import network
from gsomia.errors import InvalidInputError
from gsomia.exchange import MemoryTransport
from gsomia.exchange._transfer import RECEIPTS_FORMAT, TRANSFER_FORMAT, FileTransport, Transfer
from gsomia.node import Node, PortionIngest
from gsomia.testing import FakeClock

NOW = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, Node]]:
    clock = FakeClock(datetime(2014, 12, 1, tzinfo=UTC))  # keys made then, so older instants work too
    members = network.build(tmp_path / "net", clock=clock)
    clock.now = NOW
    opened = network.open_nodes(members, clock)
    yield opened
    for node in opened.values():
        node.close()


def own_item(node: Node, item_id: str, **label: Any) -> None:
    scheme = {"KOR": "군사II급비밀", "JPN": "極秘", "USA": "SECRET"}
    data = {
        "originator": node.party,
        "classification": scheme[node.party],
        "releasable_to": [p for p in ("KOR", "JPN", "USA") if p != node.party],
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (node.clock() - timedelta(hours=1)).isoformat(),
    }
    data.update(label)
    node.items.ingest(node.people.person("officer"), label=data, payload=b'{"track": 1}', item_id=item_id)


def transfer(node: Node) -> Transfer:
    return Transfer(node.exchange)


def audit(node: Node, kind: str) -> list[dict[str, Any]]:
    return [
        {"outcome": r.outcome, "subject": r.subject, **json.loads(r.detail)}
        for r in node.store.audit(kind=kind)
    ]


def exported(nodes: dict[str, Node], to: str = "JPN", **options: Any) -> Any:
    return transfer(nodes["KOR"]).export(nodes["KOR"].people.person("officer"), to, **options)


def test_export_import_and_receipts_carry_an_item_across_the_air_gap(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    assert json.loads(out.text)["format"] == TRANSFER_FORMAT
    [entry] = out.entries
    assert entry.state == "exported"
    assert nodes["KOR"].exchange.fed.due(10**18, 10) == []  # the network sender leaves it alone

    got = transfer(nodes["JPN"]).import_file(out.text)
    assert (got.sender, [r["status"] for r in got.results]) == ("KOR", ["stored"])
    item, payload = nodes["JPN"].items.read(nodes["JPN"].people.person("officer"), "k1")
    assert item.received_from == "KOR"
    alt = item.label.alternative_for("JPN")
    assert alt is not None
    assert alt.classification == "極秘"  # decided and labelled as the inbox would
    assert json.loads(payload) == {"track": 1}
    assert json.loads(got.receipts_text)["format"] == RECEIPTS_FORMAT

    applied = transfer(nodes["KOR"]).import_receipts(got.receipts_text)
    assert (applied.delivered, applied.already, applied.refused) == ((entry.msg_id,), (), ())
    settled = nodes["KOR"].exchange.fed.outbox_entry(entry.msg_id)
    assert settled is not None
    assert settled.state == "delivered"
    assert settled.receipt is not None
    assert [r.kind for r in nodes["KOR"].store.inventory("k1")] == ["ingested", "exported", "sent"]
    assert [r.kind for r in nodes["JPN"].store.inventory("k1")] == ["received"]
    release = audit(nodes["KOR"], "item.release")[-1]
    assert (release["outcome"], release["channel"], release["transfer"]) == (
        "allowed",
        "file",
        out.transfer_id,
    )
    assert audit(nodes["KOR"], "envelope.delivered")[-1]["channel"] == "file"


def test_refused_items_are_listed_with_their_reason_and_never_in_the_file(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "ok")
    own_item(nodes["KOR"], "class-one", classification="군사I급비밀")  # Korea's Class I has no equivalent
    own_item(nodes["KOR"], "korea-only", releasable_to=["USA"])
    out = exported(nodes)
    assert out.text is not None
    assert [e.item_id for e in out.entries] == ["ok"]
    assert sorted(r.subject for r in out.refused) == ["class-one", "korea-only"]
    assert all(r.reason.startswith("release refused:") for r in out.refused)
    assert "class-one" not in out.text
    assert "korea-only" not in out.text
    assert len(json.loads(out.text)["envelopes"]) == 1
    refusals = [a for a in audit(nodes["KOR"], "item.release") if a["outcome"] == "refused"]
    assert sorted(a["subject"] for a in refusals) == ["class-one", "korea-only"]
    assert {a["transfer"] for a in refusals} == {out.transfer_id}
    transfer(nodes["JPN"]).import_file(out.text)
    assert nodes["JPN"].store.get_item("class-one") is None
    assert nodes["JPN"].store.get_item("korea-only") is None


def test_nothing_releasable_writes_no_file_and_records_the_attempt(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "secret", releasable_to=["USA"])
    out = exported(nodes)
    assert (out.text, out.entries, [r.subject for r in out.refused]) == (None, (), ["secret"])
    assert nodes["KOR"].exchange.fed.outbox() == []
    assert audit(nodes["KOR"], "transfer.export")[-1]["outcome"] == "refused"


def test_exporting_is_a_release_officers_act(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    with pytest.raises(Exception, match="release_officer"):
        transfer(nodes["KOR"]).export(nodes["KOR"].people.person("analyst"), "JPN")
    assert nodes["KOR"].exchange.fed.outbox() == []


def _altered_envelope(text: str) -> str:
    data = json.loads(text)
    envelope = json.loads(data["envelopes"][0])
    cose = envelope["cose"]
    cut = len(cose) // 2
    envelope["cose"] = cose[:cut] + ("A" if cose[cut] != "A" else "B") + cose[cut + 1 :]
    data["envelopes"][0] = json.dumps(envelope)
    return json.dumps(data)


def _altered_manifest(text: str) -> str:
    data = json.loads(text)
    head, payload, signature = data["manifest"].split(".")
    data["manifest"] = f"{head}.{payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{signature}"
    return json.dumps(data)


def _dropped_envelope(text: str) -> str:
    data = json.loads(text)
    data["envelopes"] = data["envelopes"][:-1]
    return json.dumps(data)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (lambda t: t[: len(t) // 2], "not JSON"),
        (_altered_envelope, "envelope 0 is not the one the manifest signed"),
        (_altered_manifest, "signature does not verify"),
        (_dropped_envelope, "lists 2 envelopes, the file holds 1"),
        (lambda t: json.dumps({**json.loads(t), "format": "gsomia-transfer/9"}), "not a gsomia-transfer/1"),
    ],
    ids=["truncated", "altered-envelope", "altered-manifest", "dropped-envelope", "other-format"],
)
def test_a_tampered_file_is_refused_whole_stores_nothing_and_is_audited(
    nodes: dict[str, Node], tamper: Any, reason: str
) -> None:
    own_item(nodes["KOR"], "k1")
    own_item(nodes["KOR"], "k2")
    out = exported(nodes)
    assert out.text is not None
    with pytest.raises(InvalidInputError, match=reason):
        transfer(nodes["JPN"]).import_file(tamper(out.text))
    assert nodes["JPN"].store.count_items() == 0
    assert nodes["JPN"].exchange.fed.inbox_entries([e.msg_id for e in out.entries]) == {}
    refused = audit(nodes["JPN"], "transfer.refused")
    assert len(refused) == 1
    assert reason in refused[0]["reason"]


def test_a_file_for_another_party_is_refused(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes, "USA")
    assert out.text is not None
    with pytest.raises(InvalidInputError, match="sealed for USA, not for this node \\(JPN\\)"):
        transfer(nodes["JPN"]).import_file(out.text)
    assert nodes["JPN"].store.count_items() == 0
    assert audit(nodes["JPN"], "transfer.refused")[0]["sender"] == "KOR"


def test_an_expired_file_is_refused(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes, validity=timedelta(days=1))
    assert out.text is not None
    nodes["JPN"].clock.advance(seconds=2 * 86400)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match="expired"):
        transfer(nodes["JPN"]).import_file(out.text)
    assert nodes["JPN"].store.count_items() == 0


def test_reimporting_a_file_acknowledges_the_same_receipts_and_stores_nothing_twice(
    nodes: dict[str, Node],
) -> None:
    own_item(nodes["KOR"], "k1")
    own_item(nodes["KOR"], "k2")
    out = exported(nodes)
    assert out.text is not None
    first = transfer(nodes["JPN"]).import_file(out.text)
    again = transfer(nodes["JPN"]).import_file(out.text)
    assert [r["status"] for r in first.results] == ["stored", "stored"]
    assert [r["status"] for r in again.results] == ["duplicate", "duplicate"]
    assert [r["receipt"] for r in again.results] == [r["receipt"] for r in first.results]
    assert nodes["JPN"].store.count_items() == 2
    assert [r.kind for r in nodes["JPN"].store.inventory("k1")] == ["received"]

    kor = transfer(nodes["KOR"])
    assert len(kor.import_receipts(first.receipts_text).delivered) == 2
    replayed = kor.import_receipts(again.receipts_text)
    assert (len(replayed.delivered), len(replayed.already)) == (0, 2)
    assert [r.kind for r in nodes["KOR"].store.inventory("k1")] == ["ingested", "exported", "sent"]


def test_a_second_export_of_the_same_items_is_already_held_not_stored_twice(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    first, second = exported(nodes), exported(nodes)
    assert first.text is not None
    assert second.text is not None
    transfer(nodes["JPN"]).import_file(first.text)
    got = transfer(nodes["JPN"]).import_file(second.text)
    assert [r["status"] for r in got.results] == ["already-held"]
    assert nodes["JPN"].store.count_items() == 1


def test_receipts_from_the_wrong_party_or_altered_are_refused_and_audited(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    got = transfer(nodes["JPN"]).import_file(out.text)
    data = json.loads(got.receipts_text)
    head, payload, signature = data["receipts"][0].split(".")
    data["receipts"] = [f"{head}.{payload}.{signature[:-4]}AAAA"]
    applied = transfer(nodes["KOR"]).import_receipts(json.dumps(data))
    assert applied.delivered == ()
    assert "signature does not verify" in applied.refused[0].reason
    # a receipt USA signed for a message KOR never sent it
    own_item(nodes["USA"], "u1")
    usa_out = transfer(nodes["USA"]).export(nodes["USA"].people.person("officer"), "JPN")
    assert usa_out.text is not None
    usa_receipts = transfer(nodes["JPN"]).import_file(usa_out.text).receipts_text
    applied = transfer(nodes["KOR"]).import_receipts(usa_receipts)
    assert applied.delivered == ()
    assert "acknowledges no message this node exported" in applied.refused[0].reason
    entry = nodes["KOR"].exchange.fed.outbox_entry(out.entries[0].msg_id)
    assert entry is not None
    assert entry.state == "exported"
    assert len(audit(nodes["KOR"], "transfer.receipt-refused")) == 2
    with pytest.raises(InvalidInputError, match="not a gsomia-receipts/1"):
        transfer(nodes["KOR"]).import_receipts(out.text)


def test_a_hub_file_reaches_the_hub_which_relays_it_by_the_network(nodes: dict[str, Node]) -> None:
    nodes["KOR"].clock.now = datetime(2016, 11, 22, tzinfo=UTC)  # type: ignore[attr-defined]
    own_item(nodes["KOR"], "h1")
    refused = exported(nodes, via="USA")
    assert refused.text is None
    assert "hub_authorisation" in refused.refused[0].reason
    out = exported(nodes, via="USA", authorise_relay=True)
    assert out.text is not None
    assert out.next_hop == "USA"
    with pytest.raises(InvalidInputError, match="sealed for USA"):
        transfer(nodes["JPN"]).import_file(out.text)
    got = transfer(nodes["USA"]).import_file(out.text)
    assert [r["status"] for r in got.results] == ["relayed"]
    [onward] = nodes["USA"].exchange.fed.outbox()
    assert (onward.recipient, onward.state) == ("JPN", "pending")


def test_exported_entries_are_not_sent_by_the_network_sender(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    exported(nodes)
    dead = MemoryTransport()  # no partner reachable: had the sender picked them up, they would wait
    assert nodes["KOR"].exchange.deliver_due(dead) == []
    assert dead.calls == 0


# --- the file is streamed: the signed manifest first, then the entries, within a configured size ---


class _Counting:
    """A file object that counts what was read from it (to prove the entries were not read)."""

    def __init__(self, data: bytes) -> None:
        import io

        self.inner = io.BytesIO(data)
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.read_bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)


def test_a_forged_manifest_is_refused_before_any_entry_is_read(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    data = json.loads(out.text)
    data["manifest"] = data["manifest"][:-8] + "AAAAAAAA"  # a forged signature
    data["envelopes"] = data["envelopes"] + ["x" * 4_000_000]  # entries an attacker made large
    source = _Counting(json.dumps(data).encode())
    with pytest.raises(InvalidInputError, match="signature does not verify"):
        transfer(nodes["JPN"]).import_stream(source)  # type: ignore[arg-type]
    assert source.read_bytes < 1_000_000  # the manifest was checked with the entries still unread
    assert nodes["JPN"].store.count_items() == 0


def test_the_manifest_must_open_the_file(nodes: dict[str, Node]) -> None:
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    data = json.loads(out.text)
    reordered = json.dumps(
        {"format": data["format"], "envelopes": data["envelopes"], "manifest": data["manifest"]}
    )
    with pytest.raises(InvalidInputError, match="manifest must come before the envelopes"):
        transfer(nodes["JPN"]).import_file(reordered)
    truncated_manifest = out.text[: out.text.index('"envelopes"') - 40]
    with pytest.raises(InvalidInputError, match="not JSON"):
        transfer(nodes["JPN"]).import_file(truncated_manifest)
    assert nodes["JPN"].store.count_items() == 0


def test_a_file_over_the_configured_size_is_refused_unread(nodes: dict[str, Node], tmp_path: Path) -> None:
    """``max_import_bytes`` in node.toml bounds what ``gsomia import`` reads; the CLI exits 2."""
    from typer.testing import CliRunner

    from gsomia.cli import app
    from gsomia.node._config import update_settings

    jpn = nodes["JPN"].config.directory
    update_settings(jpn, max_import_bytes=1000)
    junk = tmp_path / "junk.json"
    junk.write_bytes(b"A" * 5000)
    result = CliRunner().invoke(app, ["import", "--dir", str(jpn), str(junk)])
    assert result.exit_code == 2, result.output
    assert "more than this node reads (1000, max_import_bytes" in result.output
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    with pytest.raises(InvalidInputError, match="larger than this node reads"):
        transfer(nodes["JPN"]).import_stream(
            _Counting(out.text.encode() + b" " * 2000), limit=len(out.text) + 10
        )  # type: ignore[arg-type]


def test_a_report_in_portions_crosses_the_air_gap_as_its_tearline_alone(nodes: dict[str, Node]) -> None:
    """Issue 20 §2 by file: the export decides each portion as a release does; JPN's import checks the
    tearline's proof against KOR's signed root and stores it alone."""
    kor = nodes["KOR"]
    label = {
        "originator": "KOR",
        "purpose": "threat-assessment",
        "topics": ["dprk-missile"],
        "created": (kor.clock() - timedelta(hours=1)).isoformat(),
    }
    kor.items.ingest(
        kor.people.person("officer"),
        label=None,
        payload=b"",
        item_id="r1",
        portions=[
            PortionIngest(
                "body",
                {**label, "classification": "군사II급비밀", "releasable_to": ["USA"]},
                b'{"text": "USA-only body"}',
            ),
            PortionIngest(
                "tearline",
                {**label, "classification": "군사III급비밀", "releasable_to": ["JPN", "USA"]},
                b'{"text": "the tearline"}',
            ),
        ],
    )
    out = exported(nodes)
    assert out.text is not None
    got = transfer(nodes["JPN"]).import_file(out.text)
    assert [r["status"] for r in got.results] == ["stored"]
    item, payload = nodes["JPN"].items.read(nodes["JPN"].people.person("officer"), "r1")
    assert [m.id for m in item.portions] == ["tearline"]
    assert item.label.classification == "군사III급비밀"
    assert json.loads(payload)["portions"][0]["payload"] == {"text": "the tearline"}


def test_a_file_signed_by_one_party_carrying_anothers_envelopes_is_refused(nodes: dict[str, Node]) -> None:
    """USA, holding KOR's file for JPN (a courier's copy), wraps KOR's envelopes in a manifest of its
    own: the import would credit the transfer to USA and hand USA the receipts JPN signs for KOR
    (naming KOR's items). A file's envelopes are its signer's, each one."""
    own_item(nodes["KOR"], "k1")
    out = exported(nodes)
    assert out.text is not None
    envelopes = json.loads(out.text)["envelopes"]
    usa = nodes["USA"]
    jpn = usa.exchange.peer("JPN")
    assert jpn is not None
    wrapper = FileTransport(usa.ring, "usa-wrap", "JPN", None, usa.clock(), timedelta(days=1))
    wrapper.push(jpn, envelopes)
    with pytest.raises(InvalidInputError, match="USA signed"):
        transfer(nodes["JPN"]).import_file(wrapper.text())
    assert nodes["JPN"].store.get_item("k1") is None
    assert audit(nodes["JPN"], "transfer.refused")[-1]["outcome"] == "refused"
