"""Fixtures of the reliability suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.reliability.livenet import SUMMARIES, LiveNet, live_net


@pytest.fixture(scope="module")
def shared_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNet]:
    """One network for a whole module (its tests use their own item ids and put the clock back)."""
    yield from live_net(tmp_path_factory.mktemp("net"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the suite's tables (hostile envelopes, faults) whether or not output is captured."""
    for title, lines in SUMMARIES:
        terminalreporter.write_sep("-", title)
        for line in lines:
            terminalreporter.write_line(line)
