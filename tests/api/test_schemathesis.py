"""Schemathesis against the node's own OpenAPI document: no 500, and every answer fits the schema.

The app is a JPN node of the three-nation network (people, tokens, peers, items of its own
and received ones), called in-process through ASGI with a valid token: the administrator's
for ``/people`` and ``/tokens``, the release officer's for the rest. Checks: no server
error, a documented status code, the documented content type, a body that fits the
documented schema. ``-m slow`` runs many more examples per operation.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gsomia import network
from gsomia.api import create_app
from gsomia.node import NewIngest, Node, load_config

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
LABEL = {
    "originator": "JPN",
    "classification": "秘",
    "releasable_to": ["KOR"],
    "purpose": "threat-assessment",
    "topics": ["dprk-missile"],
    "created": "2024-01-01T00:00:00+09:00",
}
# An event stream never ends by itself: schemathesis reads it until the request timeout (10 s by
# default) and checks what arrived. 1.5 s holds the opening comment and at least one keep-alive
# (the node sends one every KEEPALIVE_S = 1 s), which is all an idle stream ever sends.
STREAM_READ_S = 1.5
STREAMS = {"/stream/tracks/sse"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, dict[str, str]]]:
    members = network.build(tmp_path_factory.mktemp("net"))
    jpn_m = next(m for m in members if m.party == "JPN")
    node = Node(load_config(jpn_m.directory))
    officer = node.person("officer")
    node.ingest_many(officer, [NewIngest(LABEL, b'{"n": %d}' % n, item_id=f"j{n}") for n in range(5)])
    node.exchange.release(officer, "j0", "KOR")  # an outbox entry (its peer is not running: pending)
    tokens = json.loads(Path(jpn_m.directory / "tokens.json").read_text(encoding="utf-8"))
    yield node, tokens
    node.close()


def _headers(case: Any, tokens: dict[str, str]) -> dict[str, str]:
    who = "admin" if case.path.startswith(("/people", "/tokens")) else "officer"
    return {"Authorization": f"Bearer {tokens[who]}"}


def _exercise(
    node: Node, tokens: dict[str, str], examples: int, derandomize: bool
) -> tuple[list[str], Counter[int]]:
    """Every operation of the node's schema, ``examples`` generated cases each: the failures, the statuses."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(node))
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25  # the whole API, TAXII included
    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=derandomize,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case: Any) -> None:
            read = {"timeout": STREAM_READ_S} if case.path in STREAMS else {}  # else schemathesis's default
            response = case.call_and_validate(headers=_headers(case, tokens), checks=CHECKS, **read)
            statuses[response.status_code] += 1

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # no parameter or body to get wrong (GET /healthz)
        except (Exception, BaseExceptionGroup) as exc:  # a check failure group, reported below
            failures.append(f"{operation.label} ({mode.value} data): {exc}")
    return failures, statuses


def test_every_operation_answers_within_its_schema(seeded: tuple[Node, dict[str, str]]) -> None:
    failures, statuses = _exercise(*seeded, examples=5, derandomize=True)
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) > 100
    assert statuses[200] > 20  # not only refusals: the token and the seeded data let real answers through


@pytest.mark.slow
def test_every_operation_answers_within_its_schema_at_length(seeded: tuple[Node, dict[str, str]]) -> None:
    failures, statuses = _exercise(*seeded, examples=100, derandomize=False)
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) > 1000
