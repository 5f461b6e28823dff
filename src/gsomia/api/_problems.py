"""RFC 9457 problem details: every error is ``application/problem+json`` a person can act on.

Under ``/taxii2/`` the same error is a TAXII 2.1 error message (``application/taxii+json``,
section 3.6.1: title, description, error_id, error_code, http_status, details), which TAXII
clients parse. HTTP status codes are assigned here, at the edge, never on domain errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from gsomia.api._fields import PATTERN_WORDS
from gsomia.errors import (
    AccessDenied,
    AgreementError,
    AuthenticationError,
    ConfigError,
    ConflictError,
    DataFileError,
    GsomiaError,
    InstantError,
    InvalidInputError,
    ItemGoneError,
    LabelError,
    NotAcceptableError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
    ReleaseRefused,
    StoreError,
    TransportError,
    UnavailableError,
    UnknownNameError,
    UnsupportedMediaTypeError,
)

MEDIA_TYPE = "application/problem+json"

_STATUS: tuple[tuple[type[GsomiaError], int, str], ...] = (
    (AuthenticationError, 401, "authentication-required"),
    (AccessDenied, 403, "access-denied"),
    (ReleaseRefused, 403, "release-refused"),
    (NotFoundError, 404, "not-found"),
    (ConflictError, 409, "conflict"),
    (NotAcceptableError, 406, "not-acceptable"),
    (ItemGoneError, 410, "item-gone"),
    (PayloadTooLargeError, 413, "payload-too-large"),
    (UnsupportedMediaTypeError, 415, "unsupported-media-type"),
    (RateLimitedError, 429, "too-many-requests"),
    (LabelError, 422, "invalid-label"),
    (UnknownNameError, 422, "unknown-name"),
    (InstantError, 422, "invalid-instant"),
    (InvalidInputError, 422, "invalid-input"),
    (DataFileError, 422, "invalid-data"),
    (AgreementError, 422, "invalid-agreement-event"),
    (StoreError, 503, "store-unavailable"),
    (TransportError, 502, "partner-unreachable"),
    (UnavailableError, 503, "service-unavailable"),
    (ConfigError, 500, "node-misconfigured"),
)


TAXII_PREFIX = "/taxii2/"
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"


def problem(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = {"type": f"urn:gsomia:problem:{slug}", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=_headers(status, headers))


def _headers(status: int, headers: dict[str, str] | None) -> dict[str, str] | None:
    if status == 401:
        return {**(headers or {}), "WWW-Authenticate": 'Bearer realm="gsomia"'}
    return headers


def taxii_error(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """The same error as a TAXII 2.1 error message (its ``error_id`` is unique per response).

    Malformed parameters and malformed content are one kind of error to a TAXII client:
    ``invalid-input``, whichever layer found them."""
    slug = "invalid-input" if slug == "invalid-request" else slug
    body: dict[str, Any] = {
        "title": title,
        "description": detail,
        "error_id": str(uuid.uuid4()),
        "error_code": slug,
        "http_status": str(status),
    }
    if extra:
        body["details"] = extra
    return JSONResponse(
        body, status_code=status, media_type=TAXII_MEDIA_TYPE, headers=_headers(status, headers)
    )


def _respond(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    render = taxii_error if request.url.path.startswith(TAXII_PREFIX) else problem
    return render(status, slug, title, detail, headers, **extra)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: Starlette, path: str) -> list[str]:
    """Every method some route of ``app`` serves at ``path`` (for ``Allow``, RFC 9110 section 10.2.1).

    Starlette names only the first route that matched the path, yet ``GET /items`` and
    ``POST /items`` are two routes: the answer must list both. Each method is asked of every route
    as a request would be, so the routes of an included router (kept as one entry of
    ``app.routes``) are asked too.
    """
    methods = set()
    for method in _METHODS:
        scope = {"type": "http", "path": path, "method": method, "root_path": "", "headers": []}
        if any(route.matches(scope)[0] is Match.FULL for route in app.routes):
            methods.add(method)
    return sorted(methods)


def _classify(error: GsomiaError) -> tuple[int, str]:
    for kind, status, slug in _STATUS:
        if isinstance(error, kind):
            return status, slug
    return 400, "bad-request"


# the caller's own text in a refusal (a field's name, a path): enough to tell which, never all of it
_NAME_SHOWN = 64
_PATH_SHOWN = 256


def _shown(text: str, limit: int) -> str:
    """``text`` as a refusal shows it: cut to ``limit`` characters, marked ``…`` where it was cut."""
    return text if len(text) <= limit else f"{text[:limit]}…"


def _in_words(error: Any) -> str:
    """A validation error as a person reads it: a pattern named by what it asks, never the input."""
    pattern = (error.get("ctx") or {}).get("pattern")
    if error.get("type") == "string_pattern_mismatch" and pattern is not None:
        return PATTERN_WORDS.get(str(pattern), "does not have the form this field takes (see the OpenAPI)")
    return str(error.get("msg", ""))


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


def rate_limited(request: Request, error: RateLimitedError) -> JSONResponse:
    """429 with ``Retry-After`` (RFC 9110 section 10.2.3): the source has spent its budget for now."""
    return _respond(
        request,
        429,
        "too-many-requests",
        "Too many requests",
        str(error),
        {"Retry-After": str(error.retry_after)},
        retry_after=error.retry_after,
    )


def install(
    app: FastAPI,
    record: Callable[[str, str | None, int, str, str | None, str | None], int | None],
    recorded: Callable[[BaseException], bool],
    caller: Callable[[Request], str | None] = lambda _: None,
) -> None:
    """Register the handlers that turn every error into a problem document.

    ``record(kind, subject, status, reason, source, actor)`` audits refusals the service did not
    already record (``recorded(error)`` says which it did; malformed requests rejected at the edge,
    unknown routes): every refusal is in the log, once; ``caller(request)`` names who sent it if
    the request carries valid credentials, else the refusal is counted per address ``source``,
    and ``record`` answers how long that source must wait if it has spent its budget: the answer
    is then 429 (the refusal itself is in the log all the same).
    """

    @app.exception_handler(GsomiaError)
    async def _domain(request: Request, error: GsomiaError) -> JSONResponse:
        if isinstance(error, RateLimitedError):
            return rate_limited(request, error)
        status, slug = _classify(error)
        extra: dict[str, Any] = {}
        if isinstance(error, AccessDenied):
            extra["checks"] = [
                {"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in error.decision.checks
            ]
        title = slug.replace("-", " ").capitalize()
        if not recorded(error):
            wait = record(
                "api.refused", request.url.path, status, str(error), _source(request), caller(request)
            )
            if wait is not None:
                return rate_limited(request, RateLimitedError(wait))
        return _respond(request, status, slug, title, str(error), **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(_shown(str(p), _NAME_SHOWN) for p in e.get("loc", ())),
                "problem": _in_words(e),
            }
            for e in error.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['problem']}" for e in errors) or "the request is malformed"
        wait = record("api.refused", request.url.path, 422, detail, _source(request), caller(request))
        if wait is not None:
            return rate_limited(request, RateLimitedError(wait))
        return _respond(request, 422, "invalid-request", "Invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        headers = dict(error.headers or {})
        detail = str(error.detail)
        path = _shown(request.url.path, _PATH_SHOWN)
        if error.status_code == 405:
            allow = allowed_methods(request.app, request.url.path)
            headers["Allow"] = ", ".join(allow)
            detail = f"{request.method} is not served at {path}; use {', '.join(allow)}"
        elif error.status_code == 404:
            detail = f"nothing is served at {path}"
        wait = record(
            "api.refused", request.url.path, error.status_code, detail, _source(request), caller(request)
        )
        if wait is not None:
            return rate_limited(request, RateLimitedError(wait))
        title = slug.replace("-", " ").capitalize()
        return _respond(request, error.status_code, slug, title, detail, headers or None)
