"""Schemathesis against the node's own OpenAPI document, with ALL its checks (issue 15 §3).

The app is a JPN node of the three-nation network (people, tokens, peers, items of its own
and received ones), called in-process through ASGI with a valid token: the administrator's
for ``/people`` and ``/tokens``, the release officer's for the rest. Every check schemathesis
registers runs: no server error, documented status codes, content types, headers and bodies,
schema-invalid requests refused, schema-valid requests accepted, 405 with ``Allow``, and the
rest. One allowance, stated in the document itself: a schema-valid request refused (422) for a
rule JSON Schema cannot state (one instant after another), which the operation lists in words
under ``x-gsomia-rules`` and the refusal names.

The default suite runs a few examples per operation on SQLite; ``-m slow`` runs each store
(SQLite, PostgreSQL) for ``GSOMIA_FUZZ_MINUTES`` (10 by default).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.auths import AuthStorage
from schemathesis.checks import CHECKS as REGISTERED
from schemathesis.checks import positive_data_acceptance
from tests.conftest import POSTGRES_URL, network_schemas, require_postgres

from gsomia.api import create_app
from gsomia.demo import network
from gsomia.node import NewIngest, Node, load_config
from gsomia.node._config import update_settings


def _stated_rules(case: Any) -> list[str]:
    return list(case.operation.definition.raw.get("x-gsomia-rules", ()))


@schemathesis.check
def positive_data_accepted_unless_a_stated_rule(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's positive_data_acceptance, but a 422 naming one of the operation's own stated
    rules (``x-gsomia-rules``) is the rule working, not a constraint missing from the document."""
    if response.status_code == 422:
        try:
            detail = str(response.json().get("detail", ""))
        except ValueError:
            detail = ""
        if any(rule in detail for rule in _stated_rules(case)):
            return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [c for c in REGISTERED.get_all() if c is not positive_data_acceptance] + [
    positive_data_accepted_unless_a_stated_rule
]
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


def _seed(directory: Path, urls: dict[str, str] | None) -> tuple[Node, dict[str, str]]:
    members = network.build(directory, database_urls=urls)
    jpn_m = next(m for m in members if m.party == "JPN")
    # the fuzzer is one source sending thousands of requests without credentials a minute; its
    # node's budget for them is out of its reach (the 429s are tests/security/test_rate_limit.py's)
    update_settings(jpn_m.directory, public_rate_limit="10000000/minute")
    node = Node(load_config(jpn_m.directory))
    officer = node.people.person("officer")
    node.items.ingest_many(officer, [NewIngest(LABEL, b'{"n": %d}' % n, item_id=f"j{n}") for n in range(5)])
    node.exchange.release(officer, "j0", "KOR")  # an outbox entry (its peer is not running: pending)
    tokens = json.loads(Path(jpn_m.directory / "tokens.json").read_text(encoding="utf-8"))
    return node, tokens


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, postgres_status: str | None
) -> Iterator[tuple[Node, dict[str, str]]]:
    directory = tmp_path_factory.mktemp("net")
    with contextlib.ExitStack() as stack:
        urls = None
        if request.param == "postgresql":
            require_postgres(postgres_status)  # skips or fails when absent
            stack.enter_context(network_schemas(directory))
            urls = network.schema_urls(POSTGRES_URL, directory)
        node, tokens = _seed(directory, urls)
        yield node, tokens
        node.close()


def _auth(tokens: dict[str, str]) -> AuthStorage:
    """The node's bearer tokens as a schemathesis auth provider, not as headers forced onto every call:
    schemathesis leaves a case unauthenticated when its negative data removes or spoils the
    ``Authorization`` header (a 401 is then the right answer), and its ``ignored_auth`` check knows
    which credentials to take away."""
    storage = AuthStorage()

    @storage.auth(refresh_interval=None)
    class Tokens:
        def get(self, case: Any, context: Any) -> dict[str, str]:
            return tokens

        def set(self, case: Any, data: dict[str, str], context: Any) -> None:
            who = "admin" if case.path.startswith(("/people", "/tokens")) else "officer"
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data[who]}"

    return storage


def _exercise(
    node: Node, tokens: dict[str, str], examples: int, derandomize: bool, minutes: float = 0.0
) -> tuple[list[str], Counter[int]]:
    """Every operation of the node's schema, ``examples`` generated cases each (in rounds until
    ``minutes`` have passed, if given): the failures, the statuses."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(node))
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 25  # the whole API, TAXII included
    auth = _auth(tokens)
    deadline = time.monotonic() + minutes * 60
    while True:
        for operation, mode in itertools.product(operations, GenerationMode):

            @given(case=operation.as_strategy(mode, auth_storage=auth))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=derandomize,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def check(case: Any) -> None:
                read = (
                    {"timeout": STREAM_READ_S} if case.path in STREAMS else {}
                )  # else schemathesis's default
                response = case.call_and_validate(checks=CHECKS, **read)
                statuses[response.status_code] += 1

            try:
                check()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # no parameter or body to get wrong (GET /healthz)
            except (Exception, BaseExceptionGroup) as exc:  # a check failure group, reported below
                failures.append(f"{operation.label} ({mode.value} data): {exc}")
        if time.monotonic() >= deadline:
            return failures, statuses


def test_every_operation_answers_within_its_schema(seeded: tuple[Node, dict[str, str]]) -> None:
    if seeded[0].store.engine.dialect.name != "sqlite":
        pytest.skip("the default suite's short run is on SQLite; -m slow runs PostgreSQL at length")
    failures, statuses = _exercise(*seeded, examples=5, derandomize=True)
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) > 100
    assert statuses[200] > 20  # not only refusals: the token and the seeded data let real answers through


@pytest.mark.slow
def test_every_operation_answers_within_its_schema_at_length(seeded: tuple[Node, dict[str, str]]) -> None:
    """At least ten minutes per store (GSOMIA_FUZZ_MINUTES), all checks, fresh examples each round."""
    minutes = float(os.environ.get("GSOMIA_FUZZ_MINUTES", "10"))
    failures, statuses = _exercise(*seeded, examples=25, derandomize=False, minutes=minutes)
    assert not failures, "\n\n".join(failures)
    assert sum(statuses.values()) > 1000


def test_every_stated_rule_is_on_its_operation_in_the_words_of_a_refusal(tmp_path: Path) -> None:
    """A rule stated for an operation that does not exist, or in words no refusal uses, would let
    the fuzzer's allowance above excuse nothing, or the wrong thing."""
    from gsomia.api._openapi import RULES, TEXT_RULES
    from gsomia.testing import make_node

    node = make_node(tmp_path / "jpn", "JPN")
    try:
        spec = create_app(node).openapi()
    finally:
        node.close()
    package = Path(__file__).parents[2] / "src" / "gsomia"
    refusals = [p for p in package.rglob("*.py") if p.name != "_openapi.py"]
    source = "\n".join(p.read_text(encoding="utf-8") for p in refusals)
    for operation, rules in RULES.items():
        method, path = operation.split(" ", 1)
        assert spec["paths"][path][method.lower()]["x-gsomia-rules"] == [*rules, *TEXT_RULES], operation
        for words in rules:
            assert words in source, f"{operation}: no refusal says {words!r}"
