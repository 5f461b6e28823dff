"""A data file (``--data``, a node's data directories, a what-if events file) holding text no store
can hold: TOML writes a NUL as ``\\u0000``, in a value or in a quoted key (a lone surrogate it
refuses itself). Refused by the one rule (``gsomia._canonical.unstorable``) where the file is
parsed: exit 2, one line naming the file and the place, as the command line's other refusals.

Before, a party's name holding a NUL was listed as any other (exit 0), and a key holding one was
refused by pydantic with the NUL itself in the message."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gsomia.cli import app

runner = CliRunner()
KOR = (files("gsomia") / "data" / "parties" / "KOR.toml").read_text(encoding="utf-8")


def refused(args: list[str], *needles: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    said = " ".join(result.stderr.split()).replace("│", "")
    for needle in needles:
        assert needle in said, said
    assert "\x00" not in result.stderr
    assert "Traceback" not in result.stderr
    return said


@pytest.mark.parametrize(
    ("edit", "place"),
    [
        (('name = "Republic of Korea"', 'name = "Republic\\u0000of Korea"'), "party.name"),
        (('gloss = "Military Secret Class II"', 'gloss = "M\\u0000"'), "scheme.levels.1.gloss"),
        (("[party]\n", '[party]\n"to\\u0000pics" = 1\n'), "party (a name in it)"),
    ],
    ids=["value", "nested-value", "key"],
)
def test_a_party_file_holding_a_nul_is_exit_2_naming_file_and_place(
    tmp_path: Path, edit: tuple[str, str], place: str
) -> None:
    assert edit[0] in KOR
    (tmp_path / "KOR.toml").write_text(KOR.replace(edit[0], edit[1], 1), encoding="utf-8")
    refused(["--data", str(tmp_path), "party", "list"], "KOR.toml", f"{place}: contains a NUL character")


def test_a_what_if_events_file_holding_a_nul_is_exit_2(tmp_path: Path) -> None:
    events = tmp_path / "events.toml"
    events.write_text(
        '[[events]]\nid = "x"\nkind = "amended"\nat = "2020-01-01"\nreference = "r"\nnote = "n\\u0000"\n',
        encoding="utf-8",
    )
    args = ["agreement", "status", "kor-jpn-gsomia-2016", "--at", "2021-01-01", "--with-file", str(events)]
    refused(args, "events.toml", "events.0.note: contains a NUL character")
