"""The page and the read answer a kept caller without FastAPI's dependency solving (issue 18:
``GET /items?limit=&cursor=`` and ``GET /items/{id}`` with a token this process keeps) and that
kept route answers exactly what the route as declared answers, letting in nothing more.

The reference is the declared route itself: the same request with a query parameter no route reads
(``zz=1``, which FastAPI ignores) goes through FastAPI's dependencies and validation. Attacks on two
processes of one JPN node (two ``Node`` objects over one store): a token revoked here and by the
other process, a need-to-know withdrawn and a clearance lowered by the other process, parameters
the declared route refuses or reads otherwise (each must be its 422 or its answer, never a page
served past the validation), a stated purpose (Art. 6(b)), another scheme than Bearer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.dependencies.utils import solve_dependencies
from tests.node_fixtures import JPN_ANALYSTS, app_caller, kor_label

from gsomia._codec import canonical, person_to_dict
from gsomia.kernel import DEFAULT_INTERVAL
from gsomia.node import Node
from gsomia.testing import FakeClock, make_node

NOW = datetime(2024, 3, 1, tzinfo=UTC)
ITEMS = [f"kept-{n}" for n in range(5)]


@pytest.fixture
def two(tmp_path: Path, store_url: str) -> Iterator[tuple[Node, Node]]:
    """Two processes of one JPN node: the one serving the app and one beside it; a cleared reader,
    one without the clearance, and five KOR items."""
    clock = FakeClock(NOW)
    serving = make_node(tmp_path / "jpn", "JPN", database_url=store_url, clock=clock)
    other = Node.open(tmp_path / "jpn", clock=clock)
    for person in JPN_ANALYSTS:
        serving.people.add_person(None, person)
    for item in ITEMS:
        serving.items.ingest(
            None,
            label=kor_label(),
            payload=b'{"track": 1}',
            item_id=item,
            received_from="KOR",
            agreement="kor-jpn-gsomia-2016",
        )
    yield serving, other
    serving.close()
    other.close()


@pytest.fixture
def solved(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FastAPI solved a route's dependencies for (the declared route was taken)."""
    paths: list[str] = []

    async def counting(*args: Any, **kwargs: Any) -> Any:
        paths.append(kwargs["request"].url.path)
        return await solve_dependencies(*args, **kwargs)

    monkeypatch.setattr("fastapi.routing.solve_dependencies", counting)
    return paths


def _kept(call: Callable[..., httpx.Response], serving: Node, token: str) -> None:
    """Make ``serving`` keep ``token`` (asked again after a request where the watch's interval ran out
    in between, as a loaded machine can make it)."""
    for _ in range(20):
        assert call("GET", "/agreements", token).status_code == 200
        if serving.credentials.recognise(token) is not None:
            return
    raise AssertionError("the token was never kept")


def _on_kept_route(
    call: Callable[..., httpx.Response], serving: Node, solved: list[str], token: str, url: str
) -> tuple[httpx.Response, tuple[int, int]]:
    """``url``'s answer by the kept route, and the reads it audited (allowed, refused): asked again
    when the watch's interval ran out between keeping the token and the request (the declared
    route then answered, as it must), until the kept route answers."""
    for _ in range(20):
        _kept(call, serving, token)
        allowed, refused, before = _reads(serving, "allowed"), _reads(serving, "refused"), len(solved)
        got = call("GET", url, token)
        if solved[before:] == []:
            return got, (_reads(serving, "allowed") - allowed, _reads(serving, "refused") - refused)
    raise AssertionError(f"{url}: never answered by the kept route")


def _declared(url: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}zz=1"


def _answer(response: httpx.Response) -> tuple[int, str, str | None, Any]:
    return (
        response.status_code,
        response.headers["content-type"],
        response.headers.get("cache-control"),
        response.json(),
    )


def _reads(node: Node, outcome: str) -> int:
    return len([r for r in node.store.audit(kind="item.read") if r.outcome == outcome])


def test_the_kept_routes_answer_as_the_declared_ones_each_read_audited_once(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    serving, _ = two
    call = app_caller(serving)
    _, reader, _ = serving.credentials.issue(None, "reader")
    _, junior, _ = serving.credentials.issue(None, "junior")
    first = call("GET", "/items?limit=2", reader).json()["next_cursor"]
    asked = [
        (reader, "/items"),
        (reader, "/items?limit=2"),
        (reader, f"/items?limit=2&cursor={first}"),
        (reader, f"/items?cursor={first}&limit=1000"),
        (reader, f"/items?cursor={first}"),
        (reader, f"/items/{ITEMS[1]}"),
        (reader, f"/items/KOR:{ITEMS[2]}"),
        (reader, "/items/none-such"),  # 404, as an item not held
        (junior, "/items?limit=20"),  # nothing the junior may read: an empty page
        (junior, f"/items/{ITEMS[0]}"),  # refused: 404, audited
    ]
    for token, url in asked:
        kept, once = _on_kept_route(call, serving, solved, token, url)
        allowed, refused, before = _reads(serving, "allowed"), _reads(serving, "refused"), len(solved)
        declared = call("GET", _declared(url), token)
        assert solved[before:] == [url.split("?")[0]], f"{url}: the reference took the declared route"
        assert _answer(kept) == _answer(declared), url
        assert kept.headers["x-request-id"] != declared.headers["x-request-id"]
        if url.startswith("/items/"):  # each read decided and audited once, by either route
            assert sum(once) == 1, url
            assert (_reads(serving, "allowed") - allowed, _reads(serving, "refused") - refused) == once
        else:
            assert once == (0, 0)


# each the declared route's answer: its 422, or its own reading of what is written
_NOT_AS_WRITTEN = (
    "limit=0",
    "limit=1001",
    "limit=99999",
    "limit=-1",
    "limit=01",
    "limit=%32",
    "limit=+2",
    "limit=2&limit=3",
    "cursor=x1",
    "cursor=s1&cursor=s2",
    "cursor=s" + "9" * 19,
    "limit=2&",
    "&limit=2",
    "limit=2&originator=KOR",
    "originator=USA",
    "topic=dprk-missile",
)


def test_a_query_the_kept_page_does_not_take_as_written_is_the_declared_routes(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    """The kept page serves only ``limit`` and ``cursor`` in the form the declared route accepts as
    written; anything else (a value it refuses or reads otherwise, a filter) is that route's."""
    serving, _ = two
    call = app_caller(serving)
    _, reader, _ = serving.credentials.issue(None, "reader")
    _kept(call, serving, reader)
    for query in _NOT_AS_WRITTEN:
        before = len(solved)
        got = call("GET", f"/items?{query}", reader)
        assert solved[before:] == ["/items"], query
        assert _answer(got) == _answer(call("GET", f"/items?{query}&zz=1", reader)), query
    assert call("GET", "/items?limit=1001", reader).status_code == 422
    assert call("GET", "/items?limit=0", reader).status_code == 422


def test_a_read_with_a_query_or_a_name_out_of_pattern_is_the_declared_routes(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    serving, _ = two
    call = app_caller(serving)
    _, reader, _ = serving.credentials.issue(None, "reader")
    _kept(call, serving, reader)
    for url, status in (
        (f"/items/{ITEMS[0]}?originator=KOR", 200),
        (f"/items/{ITEMS[0]}?originator=XXX", 422),
        ("/items/-starts-with-a-dash", 422),
        ("/items/" + "a" * 133, 422),
    ):
        before = len(solved)
        got = call("GET", url, reader)
        assert (got.status_code, solved[before:]) == (status, [url.split("?")[0]]), url


def test_a_token_revoked_here_or_by_another_process_is_refused_on_the_kept_routes(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    serving, other = two
    call = app_caller(serving)
    here_id, here, _ = serving.credentials.issue(None, "reader")
    there_id, there, _ = serving.credentials.issue(None, "reader")
    for token in (here, there):  # each served by the kept routes before its revocation
        assert _on_kept_route(call, serving, solved, token, "/items?limit=2")[0].status_code == 200
    serving.credentials.revoke(None, here_id)  # this process: at once
    other.credentials.revoke(None, there_id)  # the other process: within the watch interval
    time.sleep(DEFAULT_INTERVAL + 0.05)
    for token in (here, there):
        for url in ("/items?limit=2", f"/items/{ITEMS[0]}"):
            refused = call("GET", url, token)
            assert refused.status_code == 401, url
            assert "revoked" in refused.json()["detail"]
    assert _reads(serving, "allowed") == 0  # the pages read nothing; no read was served


def _auth_refusals(node: Node) -> int:
    return len([r for r in node.store.audit(kind="auth") if r.outcome == "refused"])


def test_a_kept_token_whose_counters_fell_due_stays_on_the_kept_routes(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    """Past the watch's interval the loop cannot tell (``recognise`` answers ``None``): the kept
    route checks the held token in its read thread, the counters read again, and answers there (it
    took the declared route before: FastAPI's dependencies for 7-11% of the pages and reads under
    load); each read still decided and audited once, and the counters are read, not trusted."""
    serving, _ = two
    call = app_caller(serving)
    _, reader, _ = serving.credentials.issue(None, "reader")
    for url in ("/items?limit=2", f"/items/{ITEMS[0]}", f"/items/KOR:{ITEMS[1]}", "/items/none-such"):
        _kept(call, serving, reader)
        time.sleep(DEFAULT_INTERVAL + 0.05)
        assert serving.credentials.recognise(reader) is None  # due: the loop cannot tell
        assert serving.credentials.held(reader)
        reads, allowed, refused, before = (
            serving.kernel.watch.reads,
            _reads(serving, "allowed"),
            _reads(serving, "refused"),
            len(solved),
        )
        got = call("GET", url, reader)
        assert solved[before:] == [], f"{url}: the declared route was taken"
        assert serving.kernel.watch.reads > reads, "the counters were read again"
        audited = (_reads(serving, "allowed") - allowed, _reads(serving, "refused") - refused)
        if url.startswith("/items/"):
            assert audited == ((0, 1) if url.endswith("none-such") else (1, 0)), url
            assert got.status_code == (404 if url.endswith("none-such") else 200)
        else:
            assert audited == (0, 0)
        assert _answer(got) == _answer(call("GET", _declared(url), reader)), url


@pytest.mark.parametrize("change", ["revoked", "disabled"])
def test_a_held_token_revoked_or_its_person_disabled_elsewhere_is_refused_once_by_the_declared_route(
    two: tuple[Node, Node], solved: list[str], change: str
) -> None:
    """The token held from before, its counters due, and meanwhile revoked (or its person disabled)
    by the other process: the read thread's check finds it, nothing is read or answered there, and
    the declared route refuses it (401) and audits the refusal once; no read is audited."""
    serving, other = two
    call = app_caller(serving)
    for url in ("/items?limit=2", f"/items/{ITEMS[0]}"):
        token_id, reader, _ = serving.credentials.issue(None, "reader")
        _kept(call, serving, reader)
        if change == "revoked":
            other.credentials.revoke(None, token_id)
        else:
            other.people.set_active(None, "reader", False)
        time.sleep(DEFAULT_INTERVAL + 0.05)
        assert serving.credentials.held(reader)
        refusals, before = _auth_refusals(serving), len(solved)
        reads = len(serving.store.audit(kind="item.read"))
        refused = call("GET", url, reader)
        assert refused.status_code == 401, url
        assert solved[before:] == [url.split("?")[0]], "the declared route refused it"
        assert _auth_refusals(serving) == refusals + 1, "the refusal audited once"
        assert len(serving.store.audit(kind="item.read")) == reads, "nothing read"
        if change == "disabled":
            other.people.set_active(None, "reader", True)


@pytest.mark.parametrize("change", ["need_to_know", "clearance"])
def test_a_need_to_know_withdrawn_by_another_process_stops_the_kept_page_and_read(
    two: tuple[Node, Node], solved: list[str], change: str
) -> None:
    serving, other = two
    call = app_caller(serving)
    _, reader, _ = serving.credentials.issue(None, "reader")
    _kept(call, serving, reader)
    assert [i["id"] for i in call("GET", "/items?limit=20", reader).json()["items"]] == ITEMS
    assert call("GET", f"/items/{ITEMS[0]}", reader).status_code == 200
    person = other.people.person("reader")
    lowered = (
        replace(person, need_to_know=frozenset())
        if change == "need_to_know"
        else replace(person, clearance="秘")
    )
    assert other.kernel.store.update_person("reader", canonical(person_to_dict(lowered)), 0)
    time.sleep(DEFAULT_INTERVAL + 0.05)
    # the token itself is still good: the kept routes answer, and the one decision withholds
    page, _ = _on_kept_route(call, serving, solved, reader, "/items?limit=20")
    assert page.json()["items"] == []
    read, audited = _on_kept_route(call, serving, solved, reader, f"/items/{ITEMS[0]}")
    assert (read.status_code, audited) == (404, (0, 1))


def test_a_stated_purpose_or_another_scheme_takes_the_declared_route(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    """Art. 6(b): a purpose stated in the header is the read's purpose (another is a 404), which
    the declared route's ``reader`` applies; a scheme other than Bearer is no bearer token."""
    serving, _ = two
    call = app_caller(serving)
    _, reader, _ = serving.credentials.issue(None, "reader")
    _kept(call, serving, reader)
    url = f"/items/{ITEMS[0]}"
    before = len(solved)
    assert call("GET", url, reader, headers={"Gsomia-Purpose": "targeting"}).status_code == 404
    assert call("GET", url, reader, headers={"Gsomia-Purpose": "threat-assessment"}).status_code == 200
    assert call("GET", url, headers={"Authorization": f"Basic {reader}"}).status_code == 401
    assert solved[before:] == [url, url, url]
    # a bearer token written as FastAPI's scheme reads it (any case, spaces around the token)
    assert call("GET", url, headers={"Authorization": f"bearer   {reader}  "}).status_code == 200


def test_the_kept_health_check_answers_the_declared_routes_bytes_and_nothing_more(
    two: tuple[Node, Node], solved: list[str]
) -> None:
    """``GET /healthz`` with no query is answered on the loop past FastAPI's dependencies: the same
    status, headers and bytes as the route as declared (``?zz=1``); any other method, or a path
    beside it, is the router's answer whatever the query; a bearer token (good
    or forged) changes nothing and the probe audits nothing; a refused method is audited as before."""
    serving, _ = two
    call = app_caller(serving)
    _, token, _ = serving.credentials.issue(None, "reader")
    records = len(serving.store.audit())

    def seen(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [(k, v) for k, v in response.headers.multi_items() if k != "x-request-id"]
        return response.status_code, headers, response.content

    for bearer in (None, token, "forged-token"):
        before = len(solved)
        kept = call("GET", "/healthz", bearer)
        assert solved[before:] == [], "the kept health check solved no dependency"
        declared = call("GET", "/healthz?zz=1", bearer)
        assert solved[before:] == ["/healthz"], "the reference took the declared route"
        assert seen(kept) == seen(declared)
        assert kept.status_code == 200
        assert kept.json()["party"] == "JPN"
        assert kept.headers["cache-control"] == "no-store"
        assert kept.headers["x-request-id"] != declared.headers["x-request-id"]
    assert len(serving.store.audit()) == records  # the probe audits nothing, a forged token neither
    for method, url in (
        ("POST", "/healthz"),
        ("PUT", "/healthz"),
        ("DELETE", "/healthz"),
        ("HEAD", "/healthz"),
        ("GET", "/healthzx"),
        ("GET", "/healthz/x"),
    ):
        first = len(serving.store.audit())
        plain = call(method, url)
        second = len(serving.store.audit())
        queried = call(method, f"{url}?zz=1")
        assert seen(plain) == seen(queried), (method, url)
        assert plain.status_code in (404, 405), (method, url)
        # each refusal audited as the router's own (the same records with or without the query)
        assert [(r.kind, r.outcome) for r in serving.store.audit()[first:second]] == [
            (r.kind, r.outcome) for r in serving.store.audit()[second:]
        ], (method, url)
