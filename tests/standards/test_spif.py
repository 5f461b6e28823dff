"""XML-SPIF from the agreements: valid, with the equivalences in force at the instant asked for,
and read back into the very party files that were shipped."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from gsomia._datafiles import parse_party
from gsomia.core.catalogue import Catalogue
from gsomia.errors import InvalidInputError
from gsomia.standards import scheme_from_spif, spif_for

KST = ZoneInfo("Asia/Seoul")
S = "{http://www.xmlspif.org/spif}"


def equivalents(spif: bytes, level: str) -> set[tuple[str, str, str]]:
    root = etree.fromstring(spif)
    found = root.find(f"{S}securityClassifications/{S}securityClassification[@name='{level}']")
    assert found is not None
    return {
        (e.get("policyRef"), e.get("lacv"), e.get("applied"))
        for e in found.iter(f"{S}equivalentClassification")
    }  # type: ignore[misc]


@pytest.mark.parametrize("party", ["KOR", "JPN", "USA"])
def test_each_shipped_scheme_round_trips_through_its_spif(catalogue: Catalogue, party: str) -> None:
    spif = spif_for(catalogue, party, datetime(2019, 8, 24, tzinfo=KST))
    back = scheme_from_spif(spif)
    assert back.code == party
    assert parse_party(f"{party}.toml", back.text.encode()) == catalogue.party(party)


def test_the_gsomia_equivalences_follow_the_agreements_lifecycle(catalogue: Catalogue) -> None:
    before = spif_for(catalogue, "KOR", datetime(2014, 6, 1, tzinfo=KST))  # neither TISA nor GSOMIA yet
    during = spif_for(catalogue, "KOR", datetime(2019, 11, 23, 0, 0, 1, tzinfo=KST))  # notice suspended
    jpn_secret = ("GSOMIA-JPN", "2", "both")
    assert jpn_secret not in equivalents(before, "군사II급비밀")
    assert jpn_secret in equivalents(during, "군사II급비밀")  # a suspended notice keeps it valid
    assert ("GSOMIA-JPN", "3", "decrypt") in equivalents(during, "군사II급비밀")  # 特定秘密, one way from JPN
    assert not equivalents(during, "군사I급비밀")  # Class I is outside every agreement
    root = etree.fromstring(during)
    assert root.get("notBefore") is not None
    periods = root.findall(
        ".//{urn:gsomia:spif:1:0}agreement[@id='kor-jpn-gsomia-2016']/{urn:gsomia:spif:1:0}inForce"
    )
    assert [p.get("notBefore") for p in periods] == ["20161122150000Z"]


def test_a_partners_own_spif_becomes_a_party_file_that_keeps_its_policy(catalogue: Catalogue) -> None:
    spif = spif_for(catalogue, "USA", datetime(2024, 1, 1, tzinfo=KST))
    root = etree.fromstring(spif)
    extensions = root.find(f"{S}extensions")
    assert extensions is not None
    root.remove(extensions)  # as a partner's tool would write it: no gsomia extension
    policy = root.find(f"{S}securityPolicyId")
    assert policy is not None
    policy.set("name", "UK-GSCP")
    policy.set("id", "1.2.826.0.1.6726289.0.4")
    with pytest.raises(InvalidInputError, match="--party"):
        scheme_from_spif(etree.tostring(root))
    made = scheme_from_spif(etree.tostring(root), party="GBR", name="United Kingdom")
    party = parse_party("GBR.toml", made.text.encode())
    assert [lv.name for lv in party.scheme.levels] == ["TOP SECRET", "SECRET", "CONFIDENTIAL"]
    assert [lv.alias for lv in party.scheme.levels] == ["top-secret", "secret", "confidential"]
    assert (party.scheme.policy_name, party.scheme.policy_oid) == ("UK-GSCP", "1.2.826.0.1.6726289.0.4")


def test_a_hostile_or_foreign_document_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="document type declaration"):
        scheme_from_spif(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    with pytest.raises(InvalidInputError, match="not an XML-SPIF"):
        scheme_from_spif(b"<SPIF/>")
    with pytest.raises(InvalidInputError, match="not valid"):
        scheme_from_spif(b'<spif:SPIF xmlns:spif="http://www.xmlspif.org/spif"/>')


def test_spif_files_write_and_read_from_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gsomia.cli import app

    runner = CliRunner()
    out = tmp_path / "kor.spif.xml"
    made = runner.invoke(
        app, ["spif", "export", "--party", "KOR", "--at", "2019-08-24T07:00+09:00", "--out", str(out)]
    )
    assert made.exit_code == 0, made.stderr
    read = runner.invoke(app, ["spif", "import", str(out), "--out", str(tmp_path / "KOR.toml")])
    assert read.exit_code == 0, read.stderr
    assert (tmp_path / "KOR.toml").read_text(encoding="utf-8").count("[[scheme.levels]]") == 4
    bad = runner.invoke(app, ["spif", "export", "--party", "XXX", "--at", "2019-08-24"])
    assert bad.exit_code == 2
