"""TAXII 2.1 on every node, mounted under ``/taxii2/``: discovery, one API root, collections.

Collections (ids are stable UUIDs derived from their names, the same at every node):

- ``agreement:<id>`` for each agreement the node's party is in: the items that came in under
  it, and this party's own items releasable to another of its parties. Readable and writable:
  a POSTed object originated by another party is ingested as received from its originator
  under this agreement.
- ``party:<code>`` for each partner party: the items that party originated. Read only.

What a reader gets is decided per object by ``decide_read`` (through the node, which records
every object served and counts what it withheld); an object or manifest entry the reader may
not read is simply absent, and asking for it by id is a 404 like an unknown id. TLP:RED
objects are never served. Pages are the store's keyset cursor (``next``), never an offset.
No ``from __future__ import annotations``: FastAPI reads the handlers' annotations.
"""

import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gsomia.core.access import Person
from gsomia.core.instants import epoch_us
from gsomia.errors import (
    GsomiaError,
    InvalidInputError,
    NotAcceptableError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from gsomia.node._service import MAX_PAGE, Item, Node
from gsomia.store import ItemFilter
from gsomia.taxii._stix import STIX_MEDIA_TYPE, from_objects, is_tlp_red, stix_timestamp, to_stix

__all__ = ["TAXII_MEDIA_TYPE", "taxii_router"]

TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
_NAMESPACE = uuid.UUID("5b1f7a64-0c1e-4a55-9a53-2f1d3c0e8b7a")
_STATUSES = 1000  # status resources kept in memory (they do not survive a restart)


class TaxiiResponse(JSONResponse):
    media_type = TAXII_MEDIA_TYPE


class TaxiiError(BaseModel):
    """The TAXII 2.1 error message (§3.6.1) every error under ``/taxii2/`` is answered with."""

    title: str
    description: str | None = None
    error_id: str | None = None
    error_code: str | None = None
    http_status: str | None = None
    details: dict[str, Any] | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": TaxiiError, "content": {TAXII_MEDIA_TYPE: {}}}
    for code in (400, 401, 403, 404, 406, 409, 411, 413, 415, 422)
}


def _media_ranges(header: str) -> list[tuple[str, dict[str, str]]]:
    """``Accept``/``Content-Type`` as (type, parameters) pairs, lower-cased (RFC 9110 §12.5.1)."""
    ranges = []
    for part in header.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        if kind:
            pairs = (p.partition("=") for p in params if "=" in p)
            ranges.append((kind.lower(), {k.strip().lower(): v.strip().strip('"') for k, _, v in pairs}))
    return ranges


def _taxii_21(kind: str, params: dict[str, str]) -> bool:
    """``application/taxii+json`` at version 2.1 (or with no version: the latest, which is 2.1)."""
    return kind == "application/taxii+json" and params.get("version", "2.1") == "2.1"


def accepts_taxii(request: Request) -> None:
    """TAXII 2.1 §1.6.8.1: a client that accepts neither TAXII 2.1 nor any JSON gets 406."""
    header = request.headers.get("accept")
    if header is None:
        return
    for kind, params in _media_ranges(header):
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        if kind in ("*/*", "application/*", "application/json") or _taxii_21(kind, params):
            return
    raise NotAcceptableError(f"this server speaks {TAXII_MEDIA_TYPE}; Accept: {header} asks for none of it")


@dataclass(frozen=True, slots=True)
class Collection:
    id: str
    title: str
    description: str
    where: ItemFilter
    member: Callable[[Item], bool]
    agreement: str | None  # where POSTed objects from other parties are taken to have come under


def _collections(node: Node) -> dict[str, Collection]:
    found: dict[str, Collection] = {}
    partners: set[str] = set()
    for agreement in node.catalogue.agreements_of(node.party):
        others = frozenset(agreement.parties) - {node.party}
        partners |= others

        def member(item: Item, aid: str = agreement.id, others: frozenset[str] = others) -> bool:
            own = item.label.originator == node.party and bool(item.label.releasable_to & others)
            return item.agreement == aid or own

        cid = str(uuid.uuid5(_NAMESPACE, f"agreement:{agreement.id}"))
        found[cid] = Collection(
            cid,
            f"agreement:{agreement.id}",
            f"{agreement.title}: items received under it and {node.party}'s own items releasable to "
            f"{', '.join(sorted(others))}",
            ItemFilter(),
            member,
            agreement.id,
        )
    for party in sorted(partners):
        cid = str(uuid.uuid5(_NAMESPACE, f"party:{party}"))
        found[cid] = Collection(
            cid,
            f"party:{party}",
            f"the items {party} originated that this node holds",
            ItemFilter(originator=party),
            lambda _item: True,
            None,
        )
    return found


def _csv(value: str | None) -> set[str] | None:
    return None if value is None else {v.strip() for v in value.split(",") if v.strip()}


def _instant(text: str, name: str) -> datetime:
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError(f"{name}: {text!r} is not a timestamp") from exc
    if at.tzinfo is None:
        raise InvalidInputError(f"{name}: {text!r} has no UTC offset (end it with Z)")
    return at


def _version_of(obj: dict[str, Any]) -> str:
    return str(obj.get("modified") or obj.get("created") or "")


class _Matcher:
    """``match[...]`` and ``added_after`` filters of a TAXII request."""

    def __init__(
        self,
        ids: str | None,
        types: str | None,
        versions: str | None,
        spec_versions: str | None,
    ) -> None:
        self.ids, self.types = _csv(ids), _csv(types)
        wanted = _csv(versions) or {"last"}
        # every item has exactly one version, so first, last and all all select it
        self.any_version = bool(wanted & {"first", "last", "all"})
        self.versions = {_instant(v, "match[version]") for v in wanted - {"first", "last", "all"}}
        self.spec_ok = spec_versions is None or "2.1" in (_csv(spec_versions) or set())

    def __call__(self, obj: dict[str, Any]) -> bool:
        if not self.spec_ok or is_tlp_red(obj):
            return False
        if self.ids is not None and obj["id"] not in self.ids:
            return False
        if self.types is not None and obj["type"] not in self.types:
            return False
        return self.any_version or _instant(_version_of(obj), "version") in self.versions


def taxii_router(node: Node, reader: Callable[..., Person]) -> APIRouter:
    """The TAXII 2.1 routes of ``node``; ``reader`` is the REST API's bearer-token dependency."""
    router = APIRouter(
        prefix="/taxii2",
        tags=["taxii"],
        default_response_class=TaxiiResponse,
        dependencies=[Depends(accepts_taxii)],
        responses=_ERRORS,
    )
    Caller = Annotated[Person, Depends(reader)]  # noqa: N806 - a type alias for the handlers below
    collections = _collections(node)
    statuses: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()

    def collection(collection_id: str) -> Collection:
        found = collections.get(collection_id)
        if found is None:
            raise NotFoundError(f"no collection {collection_id!r} at this node")
        return found

    def page(
        person: Person,
        where: Collection,
        matcher: _Matcher,
        added_after: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[tuple[Item, dict[str, Any]]], str | None]:
        filters = where.where
        if added_after is not None:
            after = _instant(added_after, "added_after")
            filters = replace(filters, ingested_after_us=epoch_us(after))
        objects: dict[str, dict[str, Any]] = {}

        def keep(item: Item, payload: bytes) -> bool:
            if not where.member(item):
                return False
            obj = to_stix(item.id, item.label, item.payload_type, payload, item.ingested)
            if not matcher(obj):
                return False
            objects[item.id] = obj
            return True

        result = node.read_page(person, filters, cursor=cursor, limit=limit, keep=keep, channel="taxii")
        return [(item, objects[item.id]) for item, _ in result.items], result.next_cursor

    def headers(found: list[tuple[Item, dict[str, Any]]]) -> dict[str, str]:
        if not found:
            return {}
        return {
            "X-TAXII-Date-Added-First": stix_timestamp(found[0][0].ingested),
            "X-TAXII-Date-Added-Last": stix_timestamp(found[-1][0].ingested),
        }

    Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]  # noqa: N806 - a type alias
    MatchId = Annotated[str | None, Query(alias="match[id]")]  # noqa: N806
    MatchType = Annotated[str | None, Query(alias="match[type]")]  # noqa: N806
    MatchVersion = Annotated[str | None, Query(alias="match[version]")]  # noqa: N806
    MatchSpec = Annotated[str | None, Query(alias="match[spec_version]")]  # noqa: N806

    @router.get("/")
    def discovery(request: Request, person: Caller) -> dict[str, Any]:
        """TAXII discovery: this node's one API root."""
        root = f"{str(request.base_url).rstrip('/')}/taxii2/api/"
        return {
            "title": f"gsomia node ({node.party})",
            "description": "TAXII 2.1 over this node's items; every object is decided per reader",
            "default": root,
            "api_roots": [root],
        }

    @router.get("/api/")
    def api_root(person: Caller) -> dict[str, Any]:
        return {
            "title": f"gsomia {node.party}",
            "description": "Collections per agreement and per partner party",
            "versions": [TAXII_MEDIA_TYPE],
            "max_content_length": node.config.max_payload_bytes,
        }

    def collection_out(c: Collection) -> dict[str, Any]:
        return {
            "id": c.id,
            "title": c.title,
            "description": c.description,
            "can_read": True,
            "can_write": c.agreement is not None,
            "media_types": [STIX_MEDIA_TYPE],
        }

    @router.get("/api/collections/")
    def list_collections(person: Caller) -> dict[str, Any]:
        return {"collections": [collection_out(c) for c in collections.values()]}

    @router.get("/api/collections/{collection_id}/")
    def get_collection(collection_id: str, person: Caller) -> dict[str, Any]:
        return collection_out(collection(collection_id))

    @router.get("/api/collections/{collection_id}/objects/")
    def get_objects(
        collection_id: str,
        person: Caller,
        added_after: str | None = None,
        match_id: MatchId = None,
        match_type: MatchType = None,
        match_version: MatchVersion = None,
        match_spec_version: MatchSpec = None,
        limit: Limit = 100,
        next: str | None = None,
    ) -> TaxiiResponse:
        """An envelope of the objects the caller may read, oldest first; ``next`` pages on."""
        matcher = _Matcher(match_id, match_type, match_version, match_spec_version)
        found, cursor = page(person, collection(collection_id), matcher, added_after, limit, next)
        body: dict[str, Any] = {"more": cursor is not None, "objects": [obj for _, obj in found]}
        if cursor is not None:
            body["next"] = cursor
        return TaxiiResponse(body, headers=headers(found))

    @router.get("/api/collections/{collection_id}/manifest/")
    def get_manifest(
        collection_id: str,
        person: Caller,
        added_after: str | None = None,
        match_id: MatchId = None,
        match_type: MatchType = None,
        match_version: MatchVersion = None,
        match_spec_version: MatchSpec = None,
        limit: Limit = 100,
        next: str | None = None,
    ) -> TaxiiResponse:
        """The manifest: one entry per object the caller may read (no payloads)."""
        matcher = _Matcher(match_id, match_type, match_version, match_spec_version)
        found, cursor = page(person, collection(collection_id), matcher, added_after, limit, next)
        entries = [
            {
                "id": obj["id"],
                "date_added": stix_timestamp(item.ingested),
                "version": _version_of(obj),
                "media_type": STIX_MEDIA_TYPE,
            }
            for item, obj in found
        ]
        body: dict[str, Any] = {"more": cursor is not None, "objects": entries}
        if cursor is not None:
            body["next"] = cursor
        return TaxiiResponse(body, headers=headers(found))

    def one(person: Person, collection_id: str, object_id: str) -> tuple[Item, dict[str, Any]]:
        """The object by id, if the caller may read it: else 404, the same as an unknown id."""
        where = collection(collection_id)
        matcher = _Matcher(object_id, None, "all", None)
        cursor: str | None = None
        while True:
            found, cursor = page(person, where, matcher, None, MAX_PAGE, cursor)
            if found:
                return found[0]
            if cursor is None:
                raise NotFoundError(f"no object {object_id} you may read in this collection")

    @router.get("/api/collections/{collection_id}/objects/{object_id}/")
    def get_object(collection_id: str, object_id: str, person: Caller) -> TaxiiResponse:
        found = [one(person, collection_id, object_id)]
        return TaxiiResponse({"more": False, "objects": [found[0][1]]}, headers=headers(found))

    @router.get("/api/collections/{collection_id}/objects/{object_id}/versions/")
    def get_versions(collection_id: str, object_id: str, person: Caller) -> TaxiiResponse:
        found = [one(person, collection_id, object_id)]
        return TaxiiResponse({"more": False, "versions": [_version_of(found[0][1])]}, headers=headers(found))

    @router.post("/api/collections/{collection_id}/objects/", status_code=202)
    async def add_objects(collection_id: str, request: Request, person: Caller) -> TaxiiResponse:
        """Ingest labelled STIX objects, one by one; the status resource says which were stored."""
        target = collection(collection_id)
        if target.agreement is None:
            raise InvalidInputError(f"{target.title} is read only: post to an agreement's collection")
        content_type = request.headers.get("content-type", "")
        sent = _media_ranges(content_type)[:1]
        if not any(_taxii_21(kind, params) or kind == "application/json" for kind, params in sent):
            sent_type = content_type or "no content type"
            raise UnsupportedMediaTypeError(f"send {TAXII_MEDIA_TYPE}, not {sent_type}")
        try:
            envelope = await request.json()
        except ValueError as exc:
            raise InvalidInputError("the body is not JSON") from exc
        if not isinstance(envelope, dict) or not isinstance(envelope.get("objects"), list):
            raise InvalidInputError('expected a TAXII envelope: {"objects": [...]}')
        requested = datetime.now(UTC)  # the edge's clock: when the request arrived
        imported = from_objects(envelope["objects"])
        successes, failures = [], []
        for entry in imported:
            originator = str(entry.label.get("originator", "")).upper()
            foreign = originator != node.party
            try:
                item = node.ingest(
                    person,
                    label=entry.label,
                    payload=entry.payload,
                    payload_type=entry.payload_type,
                    item_id=entry.item_id,
                    received_from=originator if foreign else None,
                    agreement=target.agreement if foreign else None,
                )
            except GsomiaError as exc:
                failures.append({"id": entry.item_id, "message": str(exc)})
                continue
            successes.append({"id": entry.item_id, "message": f"stored as item {item.id}"})
        status_id = str(uuid.uuid4())
        status = {
            "id": status_id,
            "status": "complete",
            "request_timestamp": stix_timestamp(requested),
            "total_count": len(imported),
            "success_count": len(successes),
            "successes": successes,
            "failure_count": len(failures),
            "failures": failures,
            "pending_count": 0,
            "pendings": [],
        }
        statuses[status_id] = (person.id, status)
        while len(statuses) > _STATUSES:
            statuses.popitem(last=False)
        return TaxiiResponse(status, status_code=202)

    @router.get("/api/status/{status_id}/")
    def get_status(status_id: str, person: Caller) -> dict[str, Any]:
        """A POST's status resource: only for the person who posted."""
        owner, status = statuses.get(status_id, (None, {}))
        if owner != person.id:
            raise NotFoundError(f"no status {status_id!r} of yours at this node")
        return status

    return router
