"""``gsomia stream plan``: the relay decision at an instant, from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gsomia.cli import app

runner = CliRunner()


def test_the_plan_follows_the_agreements_through_the_story() -> None:
    def plan(*args: str) -> dict[str, object]:
        result = runner.invoke(app, ["stream", "plan", *args, "--json"])
        assert result.exit_code == 0, result.stderr
        return {r["recipient"]: r for r in json.loads(result.stdout)["routes"]}

    before = plan("--at", "2016-08-03T07:50:00+09:00")
    assert before["JPN"]["route"] == "via USA"
    assert before["JPN"]["agreement"] == "tisa-2014"
    refused = plan("--at", "2016-08-03T07:50:00+09:00", "--not-authorised")
    assert refused["JPN"]["allowed"] is False
    assert any("hub_authorisation" in why for why in refused["JPN"]["failed"])
    assert plan("--at", "2019-08-24T06:45:00+09:00")["JPN"]["route"] == "direct"
    ended = plan("--at", "2019-11-23T00:00:01+09:00", "--what-if", "--not-authorised")
    assert ended["JPN"]["allowed"] is False
    assert ended["USA"]["route"] == "direct"
