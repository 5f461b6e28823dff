"""The dashboard's routes: server-rendered pages (Jinja2) and two small JSON feeds, under ``/ui``.

Read-only and a thin shell: every page reads through the same :class:`~gsomia.node.Node`
methods as the REST API (items through ``list_items`` and ``inventory``, so access checks
and audit records are the API's), and the matrix asks the real release engine.

A browser cannot send a bearer header when it navigates or opens an ``EventSource``, so the
login page takes a person's token, checks it, and opens a dashboard session bound to it: the
HttpOnly, SameSite=Strict cookie holds only the session's opaque id, stored (hashed) in the
database so every process of the node accepts it. The dashboard lives under a path of this node
alone (``gsomia._web.dashboard_scope``, e.g. ``/ui/jpn-1f2e3d4c5b``) and the cookie is scoped to
that path and named for this node, so the browser never sends it to another node on the same
host (cookies ignore ports). The API's ``reader`` accepts the session for reading requests
(GET, HEAD) under that path only, so a state-changing request still needs the bearer header.
Logging out revokes the token the session was opened with. Pages carry a strict Content
Security Policy: scripts, styles and data only from this node, nothing from anywhere else.

No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at
definition time, and ``Caller`` is local to :func:`ui_router`.
"""

import functools
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from gsomia._present import flow_view, inventory_view, release_request_view
from gsomia._web import dashboard_scope, is_own_origin
from gsomia.core.access import Person
from gsomia.core.instants import local_midnight, parse_instant
from gsomia.core.labels import SecurityLabel
from gsomia.core.lifecycle import EventKind
from gsomia.core.policy import ReleaseEngine
from gsomia.errors import (
    AccessDenied,
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UnknownNameError,
)
from gsomia.kernel import unknown_item
from gsomia.node import Node
from gsomia.store import ItemFilter
from gsomia.ui._matrix import share_matrix, what_if_catalogue

__all__ = ["FIRST_DAY", "LAST_DAY", "ui_router"]

FIRST_DAY = date(2014, 12, 1)  # the matrix slider's range
LAST_DAY = date(2024, 6, 30)
_TIMELINE = (date(2014, 1, 1), date(2025, 1, 1))
_TIMELINE_WIDTH = 880.0
_WHAT_IF_KINDS = frozenset(
    {EventKind.TERMINATION_NOTIFIED, EventKind.NOTICE_SUSPENDED, EventKind.NOTICE_WITHDRAWN}
)
_TOPIC = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_STATIC_MEDIA = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gsomia.ui", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@functools.cache
def _static_files() -> dict[str, Path]:
    """The shipped assets, by name: only these are served (no path from the request reaches the disk)."""
    folder = Path(str(resources.files("gsomia.ui") / "static"))
    return {p.name: p for p in folder.iterdir() if p.suffix in _STATIC_MEDIA}


@functools.cache
def outlines() -> dict[str, Any]:
    """The bundled country outlines (Natural Earth, public domain) and their projection."""
    text = (resources.files("gsomia.ui") / "maps" / "korea-japan.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _same_origin(request: Request, endpoint: str) -> bool:
    """A form post from this node's own pages (CSRF): the browser says so by Sec-Fetch-Site or Origin.

    A client that sends neither is no browser, so no other site can be acting through it.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return is_own_origin(origin, request.url.scheme, request.headers.get("host"), endpoint)


def _safe_next(base: str, target: str | None) -> str:
    """Where to go after logging in: a page of this dashboard (one named by its old ``/ui/...`` path
    is moved under ``base``), never anywhere else."""
    if target and re.fullmatch(re.escape(base) + r"(/[A-Za-z0-9._:/-]*)?", target):
        return target
    legacy = re.fullmatch(r"/ui(/[a-z]+)", target or "")
    return base + legacy.group(1) if legacy else base + "/agreements"


def _day(node: Node, text: str | None, default: date) -> datetime:
    """A dashboard instant: a bare date is local midnight in the node's first agreement's zone."""
    tz = node.kernel.timezone
    if not text:
        return local_midnight(default, tz)
    try:
        return parse_instant(text, tz)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"at: {exc}") from exc


def _x(at: datetime) -> float:
    start, end = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in _TIMELINE)
    share = (at - start) / (end - start)
    return round(min(max(share, 0.0), 1.0) * _TIMELINE_WIDTH, 1)


def _timeline(node: Node, at: datetime) -> list[dict[str, Any]]:
    """Each agreement of the node's party: its status segments, its events and its state at ``at``."""
    rows = []
    for agreement in node.catalogue.agreements_of(node.party):
        transitions = agreement.transitions
        segments = []
        for i, t in enumerate(transitions):
            end = transitions[i + 1].at if i + 1 < len(transitions) else None
            x0 = _x(t.at)
            x1 = _TIMELINE_WIDTH if end is None else _x(end)
            if x1 > x0:
                segments.append(
                    {"x": x0, "width": round(x1 - x0, 1), "status": t.status.value, "reason": t.reason}
                )
        events = [
            {
                "id": e.id,
                "kind": e.kind.value,
                "at": e.at.date().isoformat(),
                "x": _x(e.at),
                "reference": e.reference,
                "party": e.party,
                "shown": _TIMELINE[0] <= e.at.date() < _TIMELINE[1],
            }
            for e in agreement.events
        ]
        state = agreement.state_at(at)
        rows.append(
            {
                "id": agreement.id,
                "title": agreement.title,
                "parties": agreement.parties,
                "segments": segments,
                "events": events,
                "status": state.status.value,
                "in_force": state.in_force,
                "explanation": state.explanation,
            }
        )
    return rows


def _years() -> list[dict[str, Any]]:
    return [
        {"year": y, "x": _x(datetime(y, 1, 1, tzinfo=UTC))}
        for y in range(_TIMELINE[0].year, _TIMELINE[1].year)
    ]


def _label_views(node: Node, label: SecurityLabel) -> dict[str, dict[str, Any] | None]:
    """The originator's label in its own script, and the reader's (this node's) equivalent beside it."""
    cat = node.catalogue
    own = cat.level(label.originator, label.classification)
    originator = {"party": label.originator, "level": own.name, "gloss": own.gloss, "agreement": None}
    reader: dict[str, Any] | None = originator if label.originator == node.party else None
    for alt in label.alternatives:
        if alt.party == node.party:
            lv = cat.level(alt.party, alt.classification)
            reader = {"party": alt.party, "level": lv.name, "gloss": lv.gloss, "agreement": alt.agreement}
    return {"originator": originator, "reader": reader}


def _known_purposes(node: Node) -> list[str]:
    return sorted({p for a in node.catalogue.agreements.values() for p in a.purposes})


def _what_if_events(node: Node) -> list[dict[str, str]]:
    return [
        {"id": e.id, "agreement": a.id, "kind": e.kind.value, "at": e.at.date().isoformat()}
        for a in node.catalogue.agreements_of(node.party)
        for e in a.events
        if e.kind in _WHAT_IF_KINDS
    ]


def _source(request: Request) -> str | None:
    """The caller's network address: what an unauthenticated caller's refusals are counted by."""
    return request.client.host if request.client else None


def ui_router(node: Node, reader: Callable[..., Awaitable[Person]]) -> APIRouter:
    """The dashboard of ``node`` under its own path (see :func:`gsomia._web.dashboard_scope`), with
    ``/ui`` and ``/ui/login`` leading there; ``reader`` is the API's authentication dependency."""
    scope = dashboard_scope(node.ring)
    base = scope.path
    entry = APIRouter(prefix="/ui", include_in_schema=False)
    router = APIRouter(prefix=base, include_in_schema=False)
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    engines: dict[tuple[str, ...], ReleaseEngine] = {(): node.engine}

    def viewer(request: Request) -> Person | None:
        """The person behind the session cookie, or None (the refusal is audited by the node)."""
        secret = request.cookies.get(scope.cookie)
        if not secret:
            return None
        try:
            return node.credentials.session(secret, _source(request))
        except AuthenticationError:
            return None

    def to_login(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{base}/login?next={request.url.path}", status_code=303, headers=_HEADERS)

    def common(person: Person, active: str) -> dict[str, Any]:
        return {"party": node.party, "person": person, "active": active, "base": base}

    @entry.get("")
    def home() -> RedirectResponse:
        return RedirectResponse(f"{base}/agreements", status_code=303)

    @entry.get("/login")
    def old_login(next: str | None = None) -> RedirectResponse:
        """The dashboard moved under this node's own path; its old login page leads there."""
        return RedirectResponse(
            f"{base}/login?{urlencode({'next': _safe_next(base, next)})}", status_code=303, headers=_HEADERS
        )

    @entry.get("/static/{name}")
    def static(name: str) -> FileResponse:
        path = _static_files().get(name)
        if path is None:
            raise NotFoundError(f"no dashboard asset {name!r}")
        return FileResponse(
            path, media_type=_STATIC_MEDIA[path.suffix], headers={"X-Content-Type-Options": "nosniff"}
        )

    @router.get("")
    def base_home() -> RedirectResponse:
        return RedirectResponse(f"{base}/agreements", status_code=303)

    @router.get("/login")
    def login_form(next: str | None = None) -> HTMLResponse:
        return _page("login.html", party=node.party, base=base, next=_safe_next(base, next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not _same_origin(request, node.config.endpoint):
            node.kernel.record_refusal(
                "ui.login", None, 403, "login form posted from another origin", _source(request)
            )
            return _page(
                "login.html",
                403,
                party=node.party,
                base=base,
                next=f"{base}/agreements",
                error="This form must be sent from this node's own login page.",
            )
        try:
            form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
        except ValueError:  # more fields than the form has: parse_qs's refusal was a 500
            reason = "the login form has two fields (token, next); more were sent"
            node.kernel.record_refusal("ui.login", None, 400, reason, _source(request))
            return _page(
                "login.html", 400, party=node.party, base=base, next=f"{base}/agreements", error=reason
            )
        token = (form.get("token") or [""])[0].strip()
        target = _safe_next(base, next(iter(form.get("next") or []), None))
        try:
            secret, _, expires = node.credentials.open_session(token or None, _source(request))
        except AuthenticationError as exc:
            return _page("login.html", 401, party=node.party, base=base, next=target, error=str(exc))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            scope.cookie,
            secret,
            max_age=max(1, int((expires - node.clock()).total_seconds())),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=base,
        )
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        if not _same_origin(request, node.config.endpoint):
            node.kernel.record_refusal(
                "ui.logout", None, 403, "logout posted from another origin", _source(request)
            )
            return Response("logout must be sent from this node's own pages", status_code=403)
        node.credentials.close_session(request.cookies.get(scope.cookie))
        response = RedirectResponse(f"{base}/login", status_code=303)
        response.delete_cookie(scope.cookie, path=base, httponly=True, samesite="strict")
        return response

    @router.get("/agreements")
    def agreements_page(request: Request, at: str | None = None) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        instant = _day(node, at, node.clock().date())
        marker = _x(instant)
        return _page(
            "agreements.html",
            **common(person, "agreements"),
            at=instant.date().isoformat(),
            marker=marker,
            width=_TIMELINE_WIDTH,
            years=_years(),
            rows=_timeline(node, instant),
        )

    @router.get("/matrix")
    def matrix_page(request: Request) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        today = min(max(node.clock().date(), FIRST_DAY), LAST_DAY)
        return _page(
            "matrix.html",
            **common(person, "matrix"),
            first=FIRST_DAY.isoformat(),
            days=(LAST_DAY - FIRST_DAY).days,
            start=(today - FIRST_DAY).days,
            purposes=_known_purposes(node),
            topics=node.people.topics(),
            events=_what_if_events(node),
        )

    @router.get("/api/matrix")
    def matrix(
        person: Caller,
        at: Annotated[str, Query(description="ISO 8601; a bare date is local midnight")],
        purpose: str = "threat-assessment",
        topic: str = "dprk-missile",
        without: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        """Each ordered pair: the highest level that may go, by which route, and why (see _matrix)."""
        instant = _day(node, at, FIRST_DAY)
        if purpose not in _known_purposes(node):
            raise InvalidInputError(f"purpose {purpose!r}: use one of {', '.join(_known_purposes(node))}")
        if not _TOPIC.match(topic):
            raise InvalidInputError(f"topic {topic!r} must be lower-case letters, digits and hyphens")
        struck = tuple(sorted(set(without or ())))
        engine = engines.get(struck)
        if engine is None:
            if len(engines) > 32:  # what-ifs are few; keep the cache bounded all the same
                engines.clear()
                engines[()] = node.engine
            engine = engines[struck] = ReleaseEngine(what_if_catalogue(node.catalogue, struck))
        cells = share_matrix(engine, at=instant, purpose=purpose, topic=topic)
        return {
            "at": instant.isoformat(),
            "purpose": purpose,
            "topic": topic,
            "without": list(struck),
            "parties": sorted(engine.catalogue.parties),
            "agreements": [
                {
                    "id": a.id,
                    "status": s.status.value,
                    "in_force": s.in_force,
                    "explanation": s.explanation,
                    "set_aside": list(a.set_aside),
                }
                for a in sorted(engine.catalogue.agreements.values(), key=lambda a: a.id)
                for s in (a.state_at(instant),)
            ],
            "cells": [
                {
                    "sender": c.sender,
                    "recipient": c.recipient,
                    "route": c.route,
                    "level": c.level,
                    "marking": c.marking,
                    "agreement": c.agreement,
                    "explanation": list(c.explanation),
                }
                for c in cells
            ],
        }

    @router.get("/items")
    def items_page(request: Request, cursor: str | None = None) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        page = node.items.list_items(person, ItemFilter(), cursor, 100)
        rows = [{"item": item, "labels": _label_views(node, item.label)} for item in page.items]
        return _page(
            "items.html",
            **common(person, "items"),
            rows=rows,
            next_cursor=page.next_cursor,
        )

    @router.get("/items/{item_id}")
    def item_page(request: Request, item_id: str, originator: str | None = None) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        try:  # an item the person may not read is refused as an unknown one (the kernel's decision)
            # an item is (originator, id): where two share the id here, the page asks whose (409)
            item_id = node.items.resolve_item(person, item_id, originator)
            entries = node.items.inventory(person, item_id)
        except ConflictError as exc:
            return _page("refused.html", 409, **common(person, "items"), reason=str(exc))
        except (NotFoundError, UnknownNameError) as exc:
            return _page("refused.html", 404, **common(person, "items"), reason=str(exc))
        held = node.items.held(item_id)
        # what this reader may see of it: of an item in portions, only the portions they may read
        item = None if held is None else node.items.view(person, held)
        if item is None:  # gone (or changed) between the two reads
            return _page("refused.html", 404, **common(person, "items"), reason=unknown_item(item_id))
        copies = [inventory_view(r) for r in entries]
        return _page(
            "item.html",
            **common(person, "items"),
            item=item,
            labels=_label_views(node, item.label),
            portions=[{"id": m.id, "labels": _label_views(node, m.label)} for m in item.portions],
            copies=copies,
            feedback=node.duties.feedback(person, item_id),
        )

    @router.get("/queue")
    def queue_page(request: Request) -> Response:
        """The officer's queue: release requests awaiting a second officer, this node's items whose
        review is due, and partners' items due for return or destruction; each only as far as the
        officer may read the item (the services decide). Acting on them needs the officer's token
        (CLI or API): the dashboard's session reads only."""
        person = viewer(request)
        if person is None:
            return to_login(request)
        if not node.duties.may_review(person):  # the service refuses (and records)
            try:
                node.duties.reviews_due(person)
            except AccessDenied as exc:
                return _page("refused.html", 403, **common(person, "queue"), reason=str(exc))
        # each section only for the role its service serves; each service decides what is shown
        requests = (
            node.exchange.release_requests(person, state="requested")
            if node.exchange.may_approve(person)
            else None
        )
        return _page(
            "queue.html",
            **common(person, "queue"),
            requests=None if requests is None else [release_request_view(r) for r in requests],
            reviews=[
                {"item": i, "labels": _label_views(node, i.label)} for i in node.duties.reviews_due(person)
            ],
            disposal=node.duties.disposal_queue(person),
        )

    @router.get("/flows")
    def flows_page(request: Request) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        try:
            node.audit.require_reader(person, "flows.read")
        except AccessDenied as exc:
            return _page("refused.html", 403, **common(person, "flows"), reason=str(exc))
        after = node.feed.head()  # the feed resumes here; a flow recorded meanwhile is drawn once
        head = node.audit.latest_head()
        return _page(
            "flows.html",
            **common(person, "flows"),
            flows=[flow_view(r) for r in node.audit.flows(person, 0)],
            after=after,
            head=None if head is None else {"size": head.size, "root": head.root.hex()},
        )

    @router.get("/api/flows")
    def flows(person: Caller, since: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        """Sent, received and refused envelopes after audit record ``since`` (the page draws the
        latest and then follows the live feed; this is for scripts)."""
        found = [flow_view(r) for r in node.audit.flows(person, since)]
        return {"flows": found, "last": found[-1]["seq"] if found else since}

    @router.get("/audit")
    def audit_page(request: Request) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        head = node.audit.latest_head()  # read only: the node's loop integrates and signs
        return _page(
            "audit.html",
            **common(person, "audit"),
            head=None
            if head is None
            else {
                "size": head.size,
                "root": head.root.hex(),
                "at": datetime.fromtimestamp(head.at_us / 1e6, UTC).isoformat(),
                "jws": head.jws,
            },
            pending=node.audit.pending(),
            partners=node.audit.partners(),
        )

    @router.get("/tracks")
    def tracks_page(request: Request) -> Response:
        person = viewer(request)
        if person is None:
            return to_login(request)
        return _page("tracks.html", **common(person, "tracks"), map=outlines(), stream=f"{base}/tracks/sse")

    both = APIRouter(include_in_schema=False)
    both.include_router(entry)
    both.include_router(router)
    return both
