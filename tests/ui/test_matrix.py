"""The who-may-share-what matrix says exactly what the release engine decides, at every turn of 2014–2024."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from tests.conftest import kst, make_request

from gsomia import Catalogue, ReleaseEngine
from gsomia.core.policy import Consent, ConsentKind
from gsomia.errors import InvalidInputError
from gsomia.ui._matrix import Cell, share_matrix, what_if_catalogue


def _instants(catalogue: Catalogue) -> list[datetime]:
    """A day either side of every recorded event from 2014 on, and the events themselves."""
    out = set()
    for agreement in catalogue.agreements.values():
        for event in agreement.events:
            if event.at >= kst(2014, 1, 1):
                out |= {event.at - timedelta(days=1), event.at, event.at + timedelta(days=1)}
    return sorted(out)


def _allowed(engine: ReleaseEngine, cell: Cell, level: str, route: str, at: datetime) -> bool:
    catalogue = engine.catalogue
    via = () if route == "direct" else (route.removeprefix("via "),)
    consents = [Consent(ConsentKind.HUB_RELAY, cell.sender, cell.recipient, at, "test", hub=h) for h in via]
    request = make_request(
        catalogue,
        sender=cell.sender,
        recipient=cell.recipient,
        classification=level,
        via=via,
        consents=consents,
        created=at,
    )
    return engine.decide(request, at=at).allowed


@pytest.mark.parametrize("without", [(), ("2019-11-22-notice-suspended",)])
def test_each_cell_is_the_highest_level_the_engine_allows(
    catalogue: Catalogue, without: tuple[str, ...]
) -> None:
    engine = ReleaseEngine(what_if_catalogue(catalogue, without))
    routes = ("direct", "via USA")
    for at in _instants(catalogue):
        for cell in share_matrix(engine, at=at, purpose="threat-assessment", topic="dprk-missile"):
            levels = sorted(catalogue.party(cell.sender).scheme.levels, key=lambda lv: -lv.rank)
            names = [lv.name for lv in levels]
            top = names.index(cell.level) if cell.level is not None else len(names)
            for name in names[:top]:
                assert not any(_allowed(engine, cell, name, r, at) for r in routes), (at, cell, name)
            if cell.level is not None:
                assert _allowed(engine, cell, cell.level, cell.route, at), (at, cell)
                assert cell.marking is not None
                assert cell.marking.startswith(cell.sender)


def test_the_november_2019_what_if_moves_kor_to_jpn_through_the_hub(engine: ReleaseEngine) -> None:
    def kor_jpn(eng: ReleaseEngine, at: datetime, topic: str = "dprk-missile") -> Cell:
        cells = share_matrix(eng, at=at, purpose="threat-assessment", topic=topic, parties=["KOR", "JPN"])
        return next(c for c in cells if c.sender == "KOR")

    at = kst(2019, 11, 23)
    assert (kor_jpn(engine, at).route, kor_jpn(engine, at).agreement) == ("direct", "kor-jpn-gsomia-2016")
    without = ReleaseEngine(what_if_catalogue(engine.catalogue, ["2019-11-22-notice-suspended"]))
    cell = kor_jpn(without, at)
    assert (cell.route, cell.level, cell.marking, cell.agreement) == (
        "via USA",
        "군사II급비밀",
        "KOR 極秘",
        "tisa-2014",
    )
    assert any("not direct: kor-jpn-gsomia-2016: terminated" in line for line in cell.explanation)
    outside = kor_jpn(without, at, "prc-navy")  # TISA covers DPRK nuclear and missile threats only
    assert outside.route == "none"
    assert any("outside the scope of tisa-2014" in line for line in outside.explanation)


def test_what_if_names_an_event_no_agreement_records(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidInputError, match="no-such-event"):
        what_if_catalogue(catalogue, ["no-such-event"])
